//! Reading a token's JOSE header before anything else is trusted.
//!
//! jsonwebtoken ignores header parameters it does not act on (`crit`, `jku`, `x5u`, unknown
//! names), and a JSON map would silently keep the last of two duplicate members. The strict
//! reader here accepts exactly the members this service issues, each once, and nothing else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer};

/// Tokens longer than this are refused before any parsing (ours are a few hundred bytes).
pub(super) const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The only header members this service issues. Unknown members and duplicates are errors.
/// Members are borrowed from the decoded header: one that needs a JSON escape (which this
/// service never writes) is refused too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StrictHeader<'a> {
    /// `alg`: compared with the pinned algorithm by the caller.
    pub alg: &'a str,
    /// `typ`: compared with the expected kind by the caller.
    pub typ: &'a str,
    /// `kid`: present (as a string; `null` is refused) only under asymmetric algorithms.
    #[serde(default, borrow, deserialize_with = "present_string")]
    pub kid: Option<&'a str>,
}

fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    <&str>::deserialize(d).map(Some)
}

/// The three segments of a compact JWS, still base64url-encoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Segments<'a> {
    /// `header.payload`: what the signature covers.
    pub signed: &'a str,
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

/// Splits a compact JWS of exactly three segments, at most [`MAX_TOKEN_BYTES`] long.
pub(super) fn segments(token: &str) -> Option<Segments<'_>> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let (signed, signature) = token.rsplit_once('.')?;
    let (header, payload) = signed.split_once('.')?;
    if payload.contains('.') {
        return None;
    }
    Some(Segments {
        signed,
        header,
        payload,
        signature,
    })
}

/// The decoded header segment, if it is a JSON object.
pub(super) fn decode(encoded: &str) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(encoded).ok()?;
    // A struct also deserialises from a JSON array; a header must be an object.
    (raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')).then_some(raw)
}

/// The header in `raw` (from [`decode`]), if it holds only `alg`, `typ` and optionally `kid`,
/// each once, as strings.
pub(super) fn read_strict(raw: &[u8]) -> Option<StrictHeader<'_>> {
    serde_json::from_slice(raw).ok()
}

/// The `typ` member, read leniently (for routing only, never for a decision).
pub(super) fn read_typ(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typ {
        typ: String,
    }
    let raw = URL_SAFE_NO_PAD.decode(segments(token)?.header).ok()?;
    serde_json::from_slice::<Typ>(&raw).ok().map(|h| h.typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    fn header(json: &str) -> Option<Vec<u8>> {
        decode(segments(&token(json))?.header)
    }

    fn strict(json: &str) -> bool {
        header(json).is_some_and(|raw| read_strict(&raw).is_some())
    }

    #[test]
    fn strict_header_accepts_only_issued_members() {
        let raw = header(r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k"}"#).unwrap();
        let ok = read_strict(&raw).unwrap();
        assert_eq!((ok.alg, ok.typ, ok.kid), ("EdDSA", "at+jwt", Some("k")));
        let raw = header(r#"{"typ":"at+jwt","alg":"HS256"}"#).unwrap();
        assert!(read_strict(&raw).unwrap().kid.is_none());
        for bad in [
            r#"{"typ":"at+jwt","alg":"HS256","kid":null}"#,
            r#"{"typ":"at+jwt","alg":"HS256","kid":1}"#,
            r#"{"typ":"at+jwt","alg":"HS256","alg":"none"}"#,
            r#"{"typ":"at+jwt","alg":"HS256","crit":["exp"]}"#,
            r#"{"typ":"at+jwt","alg":"HS256","jku":"https://x"}"#,
            r#"{"alg":"HS256"}"#,
            r#"["HS256","at+jwt"]"#,
            r#"{"typ":"at+jwt","alg":"HS256"} x"#,
            // Escapes are never written by this service: refused rather than unescaped.
            r#"{"typ":"at+jwt","alg":"HS\u0032\u0035\u0036"}"#,
        ] {
            assert!(!strict(bad), "{bad}");
        }
        let good = token(r#"{"typ":"at+jwt","alg":"HS256"}"#);
        assert!(segments(&good).is_some());
        assert!(segments(&format!("{good}.x")).is_none());
        assert!(segments(&good.replacen(".e30", "", 1)).is_none());
        assert!(segments(&"x".repeat(MAX_TOKEN_BYTES + 1)).is_none());
        let s = segments(&good).unwrap();
        assert_eq!(format!("{}.{}.{}", s.header, s.payload, s.signature), good);
        assert_eq!(s.signed, format!("{}.{}", s.header, s.payload));
        assert_eq!(read_typ(&good).as_deref(), Some("at+jwt"));
    }
}
