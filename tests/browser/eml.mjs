// Reads the .eml files the service writes (AUTH_MAIL_DIR): headers, MIME parts, and each
// part's body decoded by its Content-Transfer-Encoding. A link in a quoted-printable part may
// be wrapped by soft line breaks ("=" at a line end) and have "=" written as "=3D"; reading
// the raw file would miss it or cut it short.

/** Splits a message or part into its headers (names lower-cased, folded lines joined) and body. */
function split(raw) {
  const text = raw.replace(/\r\n/g, "\n");
  const end = text.indexOf("\n\n");
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? "" : text.slice(end + 2);
  const headers = new Map();
  for (const line of head.replace(/\n[ \t]+/g, " ").split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body };
}

/** A header parameter: `boundary` of `multipart/alternative; boundary="x"`. */
function parameter(value, name) {
  const match = new RegExp(`;\\s*${name}="?([^";]+)"?`, "i").exec(value || "");
  return match ? match[1] : null;
}

/** RFC 2045 quoted-printable to bytes. */
export function decodeQuotedPrintable(text) {
  const bytes = [];
  // Trailing blanks of a line were added in transport; "=" at a line end is a soft break.
  const joined = text.replace(/[ \t]+(?=\r?\n)/g, "").replace(/=\r?\n/g, "");
  for (let i = 0; i < joined.length; i++) {
    const c = joined[i];
    if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(joined.slice(i + 1, i + 3))) {
      bytes.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(...Buffer.from(c, "utf8"));
    }
  }
  return Buffer.from(bytes);
}

function decodeBody(body, encoding, contentType) {
  const charset = (parameter(contentType, "charset") || "utf-8").toLowerCase();
  let bytes;
  switch ((encoding || "7bit").toLowerCase()) {
    case "quoted-printable":
      bytes = decodeQuotedPrintable(body);
      break;
    case "base64":
      bytes = Buffer.from(body.replace(/\s+/g, ""), "base64");
      break;
    default:
      bytes = Buffer.from(body, "utf8");
  }
  return new TextDecoder(charset).decode(bytes);
}

/** The leaf parts of a message: `{type, text}` with the body decoded. */
function leaves(raw) {
  const { headers, body } = split(raw);
  const type = headers.get("content-type") || "text/plain; charset=us-ascii";
  if (type.toLowerCase().startsWith("multipart/")) {
    const boundary = parameter(type, "boundary");
    if (!boundary) throw new Error(`multipart without a boundary: ${type}`);
    const sections = body.split(`--${boundary}`);
    // Before the first delimiter: the preamble; from the closing "--boundary--": the epilogue.
    return sections
      .slice(1)
      .filter((s) => !s.startsWith("--"))
      .flatMap((s) => leaves(s.replace(/^\n/, "").replace(/\n$/, "")));
  }
  return [{ type: type.split(";")[0].trim().toLowerCase(), text: decodeBody(body, headers.get("content-transfer-encoding"), type) }];
}

/** A mail: its top-level headers and its decoded parts. */
export function decodeMail(raw) {
  return { headers: split(raw).headers, parts: leaves(raw) };
}

/**
 * The link starting with `prefix` (`http://127.0.0.1:8000/reset-password`) in the plain-text
 * part, with its `#token=...`; the HTML part must carry the same link. Null when there is none.
 */
export function linkIn(mail, prefix) {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`${escaped}#token=[A-Za-z0-9_-]+`);
  const plain = mail.parts.find((p) => p.type === "text/plain");
  const link = plain && pattern.exec(plain.text)?.[0];
  if (!link) return null;
  const html = mail.parts.find((p) => p.type === "text/html");
  if (html && !html.text.includes(`href="${link}"`)) {
    throw new Error(`the HTML part does not link to ${link}`);
  }
  return link;
}
