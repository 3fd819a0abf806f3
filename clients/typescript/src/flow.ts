// The path a new integrator walks first, through a client generated from the service's OpenAPI
// document: register, log in, verify the access token, create an organization, create an API
// key, verify it. Every request and answer is typed by the generated `paths`; `tsc --strict`
// fails when the document types an operation with another operation's body (as it did while
// operation ids were shared), and the run fails when the service answers otherwise.
//
//   node build/flow.js http://127.0.0.1:8080

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Problem = components["schemas"]["Problem"];

const base = process.argv[2] ?? process.env["AUTH_URL"] ?? "http://127.0.0.1:8080";
const client = createClient<paths>({ baseUrl: base });

function check(condition: boolean, what: string): asserts condition {
  if (!condition) {
    throw new Error(`check failed: ${what}`);
  }
}

function problem(error: Problem | undefined, response: Response, step: string): never {
  const detail = error === undefined ? "" : ` ${error.code}: ${error.detail}`;
  throw new Error(`${step}: HTTP ${response.status}${detail}`);
}

const email = `ts-client-${Date.now()}-${Math.floor(Math.random() * 1e9)}@example.com`;
const password = "a long enough passphrase";

// 1. Register.
const registered = await client.POST("/api/v1/auth/register", {
  body: { email, password, display_name: "TypeScript client" },
});
if (registered.data === undefined) problem(registered.error, registered.response, "register");
check(registered.response.status === 201, "register answers 201");
const userId: string = registered.data.id;
check(registered.data.email === email, "register echoes the email");

// 2. Log in.
const login = await client.POST("/api/v1/auth/login", { body: { email, password } });
if (login.data === undefined) problem(login.error, login.response, "login");
// The answer is a union: tokens, or a second-factor step for a user who enabled one.
if ("mfa_required" in login.data) throw new Error("login: a second factor was not expected");
const accessToken: string = login.data.access_token;
const refreshToken: string = login.data.refresh_token;
check(login.data.token_type === "Bearer", "token_type is Bearer");
check(login.data.user.id === userId, "login names the registered user");
check(refreshToken.length > 0, "a refresh token is issued");

// A wrong password: the error is the typed problem+json body.
const refused = await client.POST("/api/v1/auth/login", {
  body: { email, password: "not the passphrase" },
});
check(refused.data === undefined, "a wrong password is refused");
check(refused.response.status === 401, "a wrong password answers 401");
check(refused.error?.code === "INVALID_CREDENTIALS", "the problem names INVALID_CREDENTIALS");

const bearer = { headers: { Authorization: `Bearer ${accessToken}` } };

// 3. Verify the access token.
const verified = await client.GET("/api/v1/auth/verify", bearer);
if (verified.data === undefined) problem(verified.error, verified.response, "verify");
check(verified.data.valid, "the access token is valid");
check(verified.data.user_id === userId, "verify names the user");
const sessionId: string = verified.data.session_id;
check(sessionId.length > 0, "verify names the session");
// @ts-expect-error GET /auth/verify answers a session, not an API-key verdict
void verified.data.key_id;

// 4. Create an organization.
const organization = await client.POST("/api/v1/organizations", {
  ...bearer,
  body: { name: "TypeScript client org" },
});
if (organization.data === undefined) problem(organization.error, organization.response, "organization");
check(organization.response.status === 201, "organization answers 201");
const organizationId: string = organization.data.id;
// @ts-expect-error POST /organizations answers an organization, not an API key
void organization.data.key;

// 5. Create an API key.
const created = await client.POST("/api/v1/api-keys", {
  ...bearer,
  body: { organization_id: organizationId, name: "ts client", scopes: ["orders:read"] },
});
if (created.data === undefined) problem(created.error, created.response, "create key");
check(created.response.status === 201, "create key answers 201");
const key: string = created.data.key;
check(created.data.status === "active", "a new key is active");
check(key.startsWith(created.data.prefix), "the key starts with its prefix");

// 6. Verify the key, with a scope it holds and with one it lacks.
const keyVerdict = await client.POST("/api/v1/api-keys/verify", {
  body: { key, required_scopes: ["orders:read"] },
});
if (keyVerdict.data === undefined) problem(keyVerdict.error, keyVerdict.response, "verify key");
check(keyVerdict.data.valid, "the key is valid");
check(keyVerdict.data.key_id === created.data.id, "the verdict names the key");
check(keyVerdict.data.organization_id === organizationId, "the verdict names the organization");

const lacking = await client.POST("/api/v1/api-keys/verify", {
  body: { key, required_scopes: ["orders:write"] },
});
if (lacking.data === undefined) problem(lacking.error, lacking.response, "verify key scope");
check(!lacking.data.valid, "a missing scope is refused");
check(lacking.data.error === "INSUFFICIENT_SCOPE", "the verdict says INSUFFICIENT_SCOPE");

console.log(
  `register → login → verify → organization → key → verify: ok (user ${userId}, key ${created.data.prefix}…)`,
);
