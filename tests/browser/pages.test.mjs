// The pages of mailed links, /verify-email and /reset-password, in a real browser: the links
// are taken from the mails the service writes (.eml files), opened in Chromium, the form
// filled in and sent, and the outcome checked in the page and through the API.
//
// Run by scripts/browser-test.sh, which starts the service and runs this inside a network
// namespace where only loopback exists. Settings (environment):
//   AUTH_BASE_URL  the service, http://127.0.0.1:PORT (also its AUTH_PUBLIC_URL)
//   AUTH_MAIL_DIR  where the service writes its mails
//   CHROMIUM       the browser binary (default /usr/lib/chromium/chromium, Debian's chromium)

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

import { decodeMail, linkIn } from "./eml.mjs";

const base = process.env.AUTH_BASE_URL;
const mailDir = process.env.AUTH_MAIL_DIR;
const chromium = process.env.CHROMIUM || "/usr/lib/chromium/chromium";
const OLD_PASSWORD = "first correct horse battery";
const NEW_PASSWORD = "second violet tugboat margin";
/** How long a mail may take to reach the folder (the outbox worker sends it after the answer). */
const MAIL_TIMEOUT_MS = 15_000;
/** A token of the right shape (256 random bits, base64url) that the service never issued. */
const madeUpToken = () => randomBytes(32).toString("base64url");

let browser;

before(async () => {
  assert.ok(base && mailDir, "AUTH_BASE_URL and AUTH_MAIL_DIR must be set (scripts/browser-test.sh sets them)");
  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: [
      // Inside the namespace the test runs as (mapped) root, where Chromium's sandbox cannot
      // start; the only page loaded is the service's own.
      "--no-sandbox",
      "--disable-component-update",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** Calls the API; answers the status and the parsed body (or null). */
async function api(method, path, body, accessToken) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (accessToken) headers.authorization = `Bearer ${accessToken}`;
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

function uniqueEmail(what) {
  return `${what}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

/** Waits for the mail to `to` holding a link to `path`, and answers that link. */
async function linkFromMail(to, path) {
  const deadline = Date.now() + MAIL_TIMEOUT_MS;
  for (;;) {
    for (const name of (await readdir(mailDir)).filter((n) => n.endsWith(".eml"))) {
      const mail = decodeMail(await readFile(join(mailDir, name), "utf8"));
      if (!mail.headers.get("to")?.includes(to)) continue;
      const link = linkIn(mail, `${base}${path}`);
      if (link) return link;
    }
    if (Date.now() > deadline) {
      throw new Error(`no mail to ${to} with a ${path} link within ${MAIL_TIMEOUT_MS} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Opens `url` in a fresh page and records what must not happen there: script errors, CSP
 * violations, requests to anywhere but the service.
 */
async function open(url) {
  const page = await browser.newPage();
  const problems = [];
  const requests = [];
  page.on("pageerror", (err) => problems.push(`script error: ${err.message}`));
  page.on("console", (msg) => {
    // Answers such as 401 and 422 are logged by Chromium as failed loads; they are expected.
    if (msg.type() === "error" && !msg.text().startsWith("Failed to load resource")) {
      problems.push(`console: ${msg.text()}`);
    }
  });
  page.on("request", (req) => requests.push(req));
  await page.evaluateOnNewDocument(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  await page.goto(url, { waitUntil: "load" });
  return { page, problems, requests };
}

/** Waits for the outcome region to show a result of `kind` ("ok" or "bad"); answers its text. */
async function outcome(page, kind) {
  await page.waitForSelector(`#outcome.${kind} h2`, { timeout: 10_000 });
  return page.$eval("#outcome", (el) => [...el.children].map((c) => c.textContent.trim()).join(" "));
}

/** Fills the reset form and sends it. */
async function submitPassword(page, password, confirmation = password) {
  await page.type("#new-password", password);
  await page.type("#confirm-password", confirmation);
  await page.click("#submit");
}

/** What every page visit must end with: no errors, nothing fetched from elsewhere. */
async function assertClean(visit) {
  assert.deepEqual(visit.problems, []);
  const foreign = visit.requests.map((r) => r.url()).filter((u) => !u.startsWith(`${base}/`));
  assert.deepEqual(foreign, [], "every request goes to the service");
  await visit.page.close();
}

describe("the pages, without a mailed link", { timeout: 120_000 }, () => {
  test("Chromium reaches nothing but loopback", async () => {
    // The namespace has no interface but loopback: Chromium sees no network at all.
    const page = await browser.newPage();
    for (const url of ["http://example.com/", "http://93.184.215.14/"]) {
      await assert.rejects(page.goto(url, { timeout: 10_000 }), /net::ERR_INTERNET_DISCONNECTED/);
    }
    // Closing a page that shows Chromium's error page sometimes never completes.
    await page.goto("about:blank");
    await page.close();
  });

  test("a link without its token says so and offers no form", async () => {
    for (const path of ["/verify-email", "/reset-password"]) {
      const visit = await open(`${base}${path}`);
      assert.match(await outcome(visit.page, "bad"), /This link is incomplete/);
      if (path === "/reset-password") {
        assert.equal(await visit.page.$eval("#reset", (f) => f.hidden), true);
      }
      await assertClean(visit);
    }
  });

  test("the form checks length and confirmation before sending anything", async () => {
    const visit = await open(`${base}/reset-password#token=${madeUpToken()}`);
    const { page } = visit;
    assert.equal(await page.evaluate(() => location.hash), "", "the token left the address bar");
    assert.equal(page.url(), `${base}/reset-password`);
    // The rules come from the running policy.
    assert.match(await page.$eval("#rules", (el) => el.textContent), /at least 8 characters long/);
    const sent = () => visit.requests.filter((r) => r.method() === "POST").length;

    await submitPassword(page, "short");
    assert.match(await page.$eval("#new-password-error", (el) => el.textContent), /at least 8 characters \(this one has 5\)/);
    assert.equal(await page.$eval("#new-password", (el) => el.getAttribute("aria-invalid")), "true");
    assert.equal(await page.evaluate(() => document.activeElement.id), "new-password");

    await page.$eval("#new-password", (el) => { el.value = ""; });
    await page.$eval("#confirm-password", (el) => { el.value = ""; });
    await submitPassword(page, NEW_PASSWORD, `${NEW_PASSWORD}!`);
    assert.match(await page.$eval("#confirm-password-error", (el) => el.textContent), /not the same/);
    assert.equal(await page.$eval("#new-password-error", (el) => el.hidden), true);
    // Characters are counted as the server counts them: 8 emoji are 8 characters.
    await page.$eval("#new-password", (el) => { el.value = ""; });
    await page.$eval("#confirm-password", (el) => { el.value = ""; });
    await submitPassword(page, "🔑🔑🔑🔑🔑🔑🔑", "🔑🔑🔑🔑🔑🔑🔑");
    assert.match(await page.$eval("#new-password-error", (el) => el.textContent), /this one has 7/);
    assert.equal(sent(), 0, "nothing was sent");
    await assertClean(visit);
  });

  test("a made-up token is refused and the page says the link cannot be used", async () => {
    const visit = await open(`${base}/reset-password#token=${madeUpToken()}`);
    await submitPassword(visit.page, NEW_PASSWORD);
    assert.match(await outcome(visit.page, "bad"), /This link can no longer be used/);
    assert.equal(await visit.page.$eval("#reset", (f) => f.hidden), true);
    await assertClean(visit);

    // Well-formed but never issued (401), and not even well-formed (422 on the token).
    for (const token of [madeUpToken(), "x".repeat(300), "abc%00def"]) {
      const verify = await open(`${base}/verify-email#token=${token}`);
      assert.match(await outcome(verify.page, "bad"), /This link can no longer be used/, token);
      await assertClean(verify);
    }
  });

  test("a password the policy refuses shows the service's reason at the field", async () => {
    const visit = await open(`${base}/reset-password#token=${madeUpToken()}`);
    await submitPassword(visit.page, "QwertyUiop");
    const text = await outcome(visit.page, "bad");
    // The policy is checked before the token: the reason is the password's.
    assert.match(text, /Please choose another password/);
    assert.match(await visit.page.$eval("#new-password-error", (el) => el.textContent), /too common/);
    assert.equal(await visit.page.$eval("#reset", (f) => f.hidden), false, "the form stays");
    await assertClean(visit);
  });
});

describe("the links of the mails", { timeout: 120_000 }, () => {
  test("registration mail: the verification link verifies the address", async () => {
    const email = uniqueEmail("verify");
    assert.equal((await api("POST", "/api/v1/auth/register", { email, password: OLD_PASSWORD })).status, 201);
    const link = await linkFromMail(email, "/verify-email");

    const visit = await open(link);
    assert.match(await outcome(visit.page, "ok"), /Your email address is verified/);
    assert.equal(await visit.page.evaluate(() => location.hash), "");
    const posts = visit.requests.filter((r) => r.method() === "POST").map((r) => r.url());
    assert.deepEqual(posts, [`${base}/api/v1/auth/verify-email`]);
    await assertClean(visit);

    const login = await api("POST", "/api/v1/auth/login", { email, password: OLD_PASSWORD });
    assert.equal(login.status, 200);
    const me = await api("GET", "/api/v1/users/me", undefined, login.body.access_token);
    assert.equal(me.status, 200);
    assert.equal(me.body.email_verified, true);

    const again = await open(link);
    assert.match(await outcome(again.page, "bad"), /This link can no longer be used/);
    await assertClean(again);
  });

  test("password reset mail: the link sets a new password, once", async () => {
    const email = uniqueEmail("reset");
    assert.equal((await api("POST", "/api/v1/auth/register", { email, password: OLD_PASSWORD })).status, 201);
    const session = await api("POST", "/api/v1/auth/login", { email, password: OLD_PASSWORD });
    assert.equal(session.status, 200);
    assert.equal((await api("POST", "/api/v1/auth/password-reset", { email })).status, 202);
    const link = await linkFromMail(email, "/reset-password");

    const visit = await open(link);
    assert.equal(await visit.page.evaluate(() => location.hash), "", "the token left the address bar");
    await submitPassword(visit.page, NEW_PASSWORD);
    assert.match(await outcome(visit.page, "ok"), /Your password has been changed/);
    assert.equal(await visit.page.$eval("#reset", (f) => f.hidden), true);
    assert.equal(await visit.page.$eval("#new-password", (el) => el.value), "", "the field was cleared");
    await assertClean(visit);

    assert.equal((await api("POST", "/api/v1/auth/login", { email, password: NEW_PASSWORD })).status, 200);
    assert.equal((await api("POST", "/api/v1/auth/login", { email, password: OLD_PASSWORD })).status, 401);
    // Every session ended.
    const refresh = await api("POST", "/api/v1/auth/refresh", { refresh_token: session.body.refresh_token });
    assert.equal(refresh.status, 401);

    const again = await open(link);
    await submitPassword(again.page, "third quiet harbour lantern");
    assert.match(await outcome(again.page, "bad"), /This link can no longer be used/);
    await assertClean(again);
    assert.equal((await api("POST", "/api/v1/auth/login", { email, password: NEW_PASSWORD })).status, 200);
  });
});
