//! Devices: caller-named, organization-owned, authenticating with a secret for a device token.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

use super::organization::{parse_name, parse_stored_name};
use super::{NameError, OrganizationId, TokenHash};

/// A device's id, chosen by its owner: 1..=128 characters of `[A-Za-z0-9_.:-]`, not made
/// only of dots and not `authenticate`, unique across the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(String);

/// Why a device id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "device_id must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.', ':' or '-', not only dots, and not 'authenticate'"
)]
pub struct DeviceIdError;

impl DeviceId {
    /// Validates an id (compared exactly: nothing is trimmed or case-folded). An id made only
    /// of dots (`.`, `..`) is refused: as a path segment (`/devices/../revoke`) clients and
    /// proxies normalise it away, so the device could not be addressed, and a request meant
    /// for it would reach another path. `authenticate` is refused too: `/devices/authenticate`
    /// is the endpoint of that name, a resource of its own for every method.
    ///
    /// # Errors
    /// [`DeviceIdError`].
    pub fn parse(raw: &str) -> Result<Self, DeviceIdError> {
        if raw.bytes().all(|b| b == b'.') || raw == "authenticate" {
            return Err(DeviceIdError);
        }
        Self::from_stored(raw)
    }

    /// Rebuilds an id stored before ids made only of dots were refused (every other rule of
    /// `parse` holds), so such a device still loads and lists. For storage adapters; new input
    /// goes through `parse`.
    ///
    /// # Errors
    /// [`DeviceIdError`].
    pub fn from_stored(raw: &str) -> Result<Self, DeviceIdError> {
        let ok = (1..=128).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(DeviceIdError)
        }
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's display name: trimmed, 1..=100 characters, no control characters, no
/// bidirectional controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceName(String);

impl DeviceName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`NameError`].
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        parse_name(raw).map(Self)
    }

    /// Rebuilds a name stored before bidirectional controls were refused (every other rule
    /// of `parse` holds). For storage adapters; new input goes through `parse`.
    ///
    /// # Errors
    /// [`NameError`].
    pub fn from_stored(raw: &str) -> Result<Self, NameError> {
        parse_stored_name(raw).map(Self)
    }

    /// The name given when none is: the device id (cut to 100 characters).
    #[must_use]
    pub fn from_id(id: &DeviceId) -> Self {
        Self(id.as_str().chars().take(100).collect())
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form metadata: a JSON object of at most 16 KiB (serialised), with no control
/// character and no bidirectional control in any key or string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceMetadata(serde_json::Map<String, serde_json::Value>);

/// Why metadata was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// Not a JSON object.
    #[error("metadata must be a JSON object")]
    NotAnObject,
    /// Over 16 KiB serialised.
    #[error("metadata must be at most 16 KiB")]
    TooLarge,
    /// A key or string value holds a control character.
    #[error("metadata must not contain control characters")]
    ControlCharacter,
    /// A key or string value holds a bidirectional control (U+202A..U+202E, U+2066..U+2069).
    #[error("metadata must not contain bidirectional control characters")]
    BidiControl,
}

/// True when a key or string at any depth of `map` satisfies `bad`.
pub(crate) fn any_text(
    map: &serde_json::Map<String, serde_json::Value>,
    bad: fn(&str) -> bool,
) -> bool {
    fn value(v: &serde_json::Value, bad: fn(&str) -> bool) -> bool {
        match v {
            serde_json::Value::String(s) => bad(s),
            serde_json::Value::Array(items) => items.iter().any(|i| value(i, bad)),
            serde_json::Value::Object(map) => any_text(map, bad),
            _ => false,
        }
    }
    map.iter().any(|(k, v)| bad(k) || value(v, bad))
}

/// The rules every free-form JSON object of the service follows, but bidirectional controls:
/// an object, at most `max_bytes` serialised, no control character in any member name or
/// string.
pub(crate) fn stored_object(
    value: serde_json::Value,
    max_bytes: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, MetadataError> {
    let serde_json::Value::Object(map) = value else {
        return Err(MetadataError::NotAnObject);
    };
    if serde_json::to_vec(&map).map_or(usize::MAX, |v| v.len()) > max_bytes {
        return Err(MetadataError::TooLarge);
    }
    if any_text(&map, super::text::has_control_chars) {
        return Err(MetadataError::ControlCharacter);
    }
    Ok(map)
}

impl DeviceMetadata {
    /// Largest serialised size.
    pub const MAX_BYTES: usize = 16 * 1024;

    /// Validates metadata.
    ///
    /// # Errors
    /// [`MetadataError`].
    pub fn new(value: serde_json::Value) -> Result<Self, MetadataError> {
        let metadata = Self::from_stored(value)?;
        if any_text(&metadata.0, super::text::has_bidi_controls) {
            return Err(MetadataError::BidiControl);
        }
        Ok(metadata)
    }

    /// Rebuilds metadata stored before bidirectional controls were refused (every other rule
    /// of `new` holds). For storage adapters; new input goes through `new`.
    ///
    /// # Errors
    /// [`MetadataError`].
    pub fn from_stored(value: serde_json::Value) -> Result<Self, MetadataError> {
        stored_object(value, Self::MAX_BYTES).map(Self)
    }

    /// The object.
    #[must_use]
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    /// The object as a JSON value.
    #[must_use]
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.clone())
    }
}

/// A device secret: 256 bits from the CSPRNG, base64url with a `ds_` prefix. Shown at
/// registration and rotation only; stored as SHA-256. `Debug` is redacted.
#[derive(Clone)]
pub struct DeviceSecret(SecretString);

impl DeviceSecret {
    /// Random bytes in a secret.
    pub const BYTES: usize = 32;

    /// Encodes fresh random bytes.
    #[must_use]
    pub fn from_random(bytes: &[u8; Self::BYTES]) -> Self {
        Self(SecretString::from(format!(
            "ds_{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }

    /// Wraps a presented secret.
    #[must_use]
    pub fn presented(raw: &str) -> Self {
        Self(SecretString::from(raw))
    }

    /// The secret text.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// SHA-256 of the secret: what storage keeps.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose().as_bytes())
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceSecret([REDACTED])")
    }
}

/// `active` or `revoked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// May authenticate.
    Active,
    /// May not; its tokens no longer verify.
    Revoked,
}

impl DeviceStatus {
    /// `active` or `revoked`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The caller-chosen id.
    pub id: DeviceId,
    /// Owner.
    pub organization_id: OrganizationId,
    /// Display name.
    pub name: DeviceName,
    /// Free-form metadata.
    pub metadata: DeviceMetadata,
    /// SHA-256 of the current secret.
    pub secret_hash: TokenHash,
    /// Revocation time, once revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication (written in batches).
    pub last_authenticated_at: Option<DateTime<Utc>>,
    /// Device tokens issued (`iat`) before this time no longer verify; set by a secret
    /// rotation to the whole second after it, so tokens minted with the old secret die, even
    /// within the same second, and tokens minted after it (issued at this time at the
    /// earliest) live. `None` until the first rotation.
    pub tokens_not_before: Option<DateTime<Utc>>,
}

impl Device {
    /// Active or revoked.
    #[must_use]
    pub fn status(&self) -> DeviceStatus {
        if self.revoked_at.is_some() {
            DeviceStatus::Revoked
        } else {
            DeviceStatus::Active
        }
    }
}

/// The domain content of a device token. The signer adds `iss`, `aud`, `nbf` and the
/// `typ: device+jwt` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceClaims {
    /// `sub`: the device.
    pub device_id: DeviceId,
    /// `org`: its organization.
    pub organization_id: OrganizationId,
    /// `jti`.
    pub token_id: uuid::Uuid,
    /// `iat` (and `nbf`).
    pub issued_at: DateTime<Utc>,
    /// `exp`.
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_metadata_and_secrets() {
        assert!(DeviceId::parse("frame-01:kitchen.v2_A").is_ok());
        for bad in ["", " frame", "frame/1", "é", &"a".repeat(129)] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?}");
        }
        let id = DeviceId::parse(&"x".repeat(128)).unwrap();
        assert_eq!(DeviceName::from_id(&id).as_str().len(), 100);
        assert_eq!(
            DeviceMetadata::new(serde_json::json!([1])),
            Err(MetadataError::NotAnObject)
        );
        let big = serde_json::json!({"k": "v".repeat(DeviceMetadata::MAX_BYTES)});
        assert_eq!(DeviceMetadata::new(big), Err(MetadataError::TooLarge));
        let nul = serde_json::json!({"a": [{"b": "x\u{0}y"}]});
        assert_eq!(
            DeviceMetadata::new(nul),
            Err(MetadataError::ControlCharacter)
        );
        let key = serde_json::json!({"k\u{7}": 1});
        assert_eq!(
            DeviceMetadata::new(key),
            Err(MetadataError::ControlCharacter)
        );
        let s = DeviceSecret::from_random(&[1u8; 32]);
        assert!(s.expose().starts_with("ds_") && s.expose().len() == 46);
        assert!(!format!("{s:?}").contains(s.expose()));
        assert_eq!(s.hash(), DeviceSecret::presented(s.expose()).hash());
    }

    #[test]
    fn ids_made_only_of_dots_are_refused() {
        for bad in [".", "..", "...", &".".repeat(128), "authenticate"] {
            assert_eq!(DeviceId::parse(bad), Err(DeviceIdError), "{bad:?}");
        }
        for good in [
            ".a",
            "a.",
            "..a..",
            "a..b",
            "-",
            "_",
            "Authenticate",
            "authenticate-2",
        ] {
            assert!(DeviceId::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn names_and_metadata_refuse_bidi_controls_but_keep_joiners() {
        for c in crate::model::text::BIDI {
            assert!(DeviceName::parse(&format!("Frame{c}1")).is_err(), "{c:?}");
            for bad in [
                serde_json::json!({"k": format!("v{c}")}),
                serde_json::json!({format!("k{c}"): 1}),
                serde_json::json!({"k": [{"deep": format!("{c}")}]}),
            ] {
                assert!(DeviceMetadata::new(bad.clone()).is_err(), "{bad}");
            }
        }
        let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}";
        assert!(DeviceName::parse(&format!("{family} frame")).is_ok());
        assert!(DeviceMetadata::new(serde_json::json!({family: family})).is_ok());
    }
}
