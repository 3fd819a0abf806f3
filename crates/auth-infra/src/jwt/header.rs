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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StrictHeader {
    /// `alg`: compared with the pinned algorithm by the caller.
    pub alg: String,
    /// `typ`: compared with the expected kind by the caller.
    pub typ: String,
    /// `kid`: present (as a string; `null` is refused) only under asymmetric algorithms.
    #[serde(default, deserialize_with = "present_string")]
    pub kid: Option<String>,
}

fn present_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// The decoded header segment of a compact JWS of exactly three parts, or `None`.
fn header_bytes(token: &str) -> Option<Vec<u8>> {
    if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
        return None;
    }
    let encoded = token.split('.').next()?;
    URL_SAFE_NO_PAD.decode(encoded).ok()
}

/// The header, if it holds only `alg`, `typ` and optionally `kid`, each once, as strings.
pub(super) fn read_strict(token: &str) -> Option<StrictHeader> {
    let raw = header_bytes(token)?;
    // A struct also deserialises from a JSON array; a header must be an object.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(&raw).ok()
}

/// The `typ` member, read leniently (for routing only, never for a decision).
pub(super) fn read_typ(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Typ {
        typ: String,
    }
    let raw = header_bytes(token)?;
    serde_json::from_slice::<Typ>(&raw).ok().map(|h| h.typ)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(header: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(header))
    }

    #[test]
    fn strict_header_accepts_only_issued_members() {
        let ok = read_strict(&token(r#"{"typ":"at+jwt","alg":"EdDSA","kid":"k"}"#)).unwrap();
        assert_eq!(
            (ok.alg.as_str(), ok.typ.as_str(), ok.kid.as_deref()),
            ("EdDSA", "at+jwt", Some("k"))
        );
        assert!(
            read_strict(&token(r#"{"typ":"at+jwt","alg":"HS256"}"#))
                .unwrap()
                .kid
                .is_none()
        );
        for bad in [
            r#"{"typ":"at+jwt","alg":"HS256","kid":null}"#,
            r#"{"typ":"at+jwt","alg":"HS256","kid":1}"#,
            r#"{"typ":"at+jwt","alg":"HS256","alg":"none"}"#,
            r#"{"typ":"at+jwt","alg":"HS256","crit":["exp"]}"#,
            r#"{"typ":"at+jwt","alg":"HS256","jku":"https://x"}"#,
            r#"{"alg":"HS256"}"#,
            r#"["HS256","at+jwt"]"#,
            r#"{"typ":"at+jwt","alg":"HS256"} x"#,
        ] {
            assert!(read_strict(&token(bad)).is_none(), "{bad}");
        }
        let good = token(r#"{"typ":"at+jwt","alg":"HS256"}"#);
        assert!(read_strict(&format!("{good}.x")).is_none());
        assert!(read_strict(&good.replacen(".e30", "", 1)).is_none());
        assert_eq!(read_typ(&good).as_deref(), Some("at+jwt"));
    }
}
