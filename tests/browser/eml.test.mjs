// The .eml reader on mails shaped as lettre writes them, so that the browser test never
// fails (or passes) because a link was read wrongly.

import { test } from "node:test";
import assert from "node:assert/strict";

import { decodeMail, decodeQuotedPrintable, linkIn } from "./eml.mjs";

const TOKEN = "Zm9vYmFyLWJhei1xdXV4LTAxMjM0NTY3ODktYWJjZGVm_-x";
const LINK = `http://127.0.0.1:8000/reset-password#token=${TOKEN}`;

/** A mail as lettre writes one: multipart/alternative, CRLF, quoted-printable wrapped at 76. */
function mail(plainEncoding, htmlEncoding) {
  const encode = (text, encoding) => {
    if (encoding === "base64") return Buffer.from(text).toString("base64").replace(/.{76}/g, "$&\r\n");
    if (encoding !== "quoted-printable") return text;
    const escaped = Buffer.from(text)
      .toString("latin1")
      .replace(/[=\x80-\xff]/g, (c) => `=${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
    return escaped.split("\n").map((line) => line.replace(/.{75}(?!$)/g, "$&=\r\n")).join("\r\n");
  };
  const plain = `Hello,\n\nchoose a new password here \u2014 at 127.0.0.1:8000:\n\n${LINK}\n\nThe link works once.\n`;
  const html = `<p>Choose a <a href="${LINK}" style="display: inline-block">new password</a></p>`;
  return [
    "From: no-reply@127.0.0.1",
    "To: ada-1@example.com",
    "Subject: Reset your password",
    "MIME-Version: 1.0",
    'Content-Type: multipart/alternative;',
    ' boundary="AbCdEf0123"',
    "",
    "--AbCdEf0123",
    "Content-Type: text/plain; charset=utf-8",
    `Content-Transfer-Encoding: ${plainEncoding}`,
    "",
    encode(plain, plainEncoding),
    "--AbCdEf0123",
    "Content-Type: text/html; charset=utf-8",
    `Content-Transfer-Encoding: ${htmlEncoding}`,
    "",
    encode(html, htmlEncoding),
    "--AbCdEf0123--",
    "",
  ].join("\r\n");
}

test("quoted-printable: soft line breaks and escaped bytes", () => {
  assert.equal(decodeQuotedPrintable("a=3Db=\r\nc =C3=A9  \r\nd").toString("utf8"), "a=bc \u00e9\r\nd");
});

test("a link is read whole from every transfer encoding", () => {
  for (const [plain, html] of [
    ["quoted-printable", "quoted-printable"],
    ["base64", "base64"],
    ["7bit", "quoted-printable"],
  ]) {
    const raw = mail(plain, html);
    if (plain === "quoted-printable") assert.ok(!raw.includes(LINK), "the raw mail wraps the link");
    const decoded = decodeMail(raw);
    assert.equal(decoded.headers.get("to"), "ada-1@example.com");
    assert.equal(decoded.parts.length, 2);
    assert.equal(linkIn(decoded, "http://127.0.0.1:8000/reset-password"), LINK, plain);
    assert.equal(linkIn(decoded, "http://127.0.0.1:8000/verify-email"), null);
  }
});
