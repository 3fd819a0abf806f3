//! API keys: the secret format (prefix, random part, checksum), scopes and the stored record.
//!
//! A key reads `<prefix>_<random>_<checksum>`: `random` is 30 base62 characters (about 178
//! bits from the CSPRNG), `checksum` is the CRC-32 of everything before it in 6 base62
//! characters, so a mistyped or invented key is refused before any lookup. Only the key's
//! SHA-256 is stored.

use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

use super::organization::{parse_name, parse_stored_name};
use super::{ApiKeyId, Credits, NameError, OrganizationId, RateLimit, Refill, TokenHash};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of the random part.
pub const RANDOM_CHARS: usize = 30;
/// Characters of the checksum.
pub const CHECKSUM_CHARS: usize = 6;
/// Characters of the random part shown in `prefix`.
pub const DISPLAY_CHARS: usize = 8;

/// A scope: 1..=64 characters of `[a-z0-9:._-]`. `admin` holds every scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

/// Why a scope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("scope must be 1 to 64 characters of a-z, 0-9, ':', '.', '_' or '-'")]
pub struct ScopeError;

impl Scope {
    /// The scope that holds every other.
    pub const ADMIN: &'static str = "admin";

    /// Validates a scope.
    ///
    /// # Errors
    /// [`ScopeError`].
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        let ok = (1..=64).contains(&raw.len())
            && raw.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b':' | b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ScopeError)
        }
    }

    /// The scope text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `admin`.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.0 == Self::ADMIN
    }
}

/// A set of scopes, sorted and without duplicates, at most [`Scopes::MAX`] of them.
///
/// Sorted order makes every check a walk of two sorted lists: `admin` is one binary search and
/// [`Scopes::grant`] one merge walk, O(n + m) for n held and m required scopes (never n·m).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

/// Why a set of scopes was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("at most 100 scopes")]
pub struct TooManyScopes;

impl Scopes {
    /// Most scopes a key may hold, and a verification may require. A bound keeps every
    /// answer that lists them small: without it, a 64 KiB body could ask for thousands.
    pub const MAX: usize = 100;

    /// Sorts and de-duplicates; more than [`Scopes::MAX`] distinct scopes are refused.
    ///
    /// # Errors
    /// [`TooManyScopes`].
    pub fn new(scopes: Vec<Scope>) -> Result<Self, TooManyScopes> {
        let scopes = Self::from_stored(scopes);
        if scopes.0.len() > Self::MAX {
            return Err(TooManyScopes);
        }
        Ok(scopes)
    }

    /// Sorts and de-duplicates scopes read from storage, whatever their number: keys issued
    /// before the bound existed keep working. For storage adapters; new input goes through
    /// `new`.
    #[must_use]
    pub fn from_stored(mut scopes: Vec<Scope>) -> Self {
        scopes.sort_unstable();
        scopes.dedup();
        Self(scopes)
    }

    /// True when every `required` scope is held (`admin` holds all).
    #[must_use]
    pub fn grant(&self, required: &Self) -> bool {
        self.is_admin() || is_sorted_subset(&required.0, &self.0)
    }

    /// True when `admin` is held.
    #[must_use]
    pub fn is_admin(&self) -> bool {
        self.0
            .binary_search_by(|s| s.as_str().cmp(Scope::ADMIN))
            .is_ok()
    }

    /// The scopes, sorted.
    #[must_use]
    pub fn as_slice(&self) -> &[Scope] {
        &self.0
    }

    /// How many.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// True when every element of `needles` is in `haystack`; both sorted and de-duplicated. One
/// merge walk: each comparison moves past at least one element of `haystack`, or settles a
/// needle, so at most `needles.len() + haystack.len()` comparisons.
fn is_sorted_subset<T: Ord>(needles: &[T], haystack: &[T]) -> bool {
    let mut rest = haystack.iter();
    needles.iter().all(|needle| {
        rest.by_ref()
            .find(|held| *held >= needle)
            .is_some_and(|held| held == needle)
    })
}

/// An API key's name: trimmed, 1..=100 characters, no control characters, no bidirectional
/// controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyName(String);

impl ApiKeyName {
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

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key prefix (`AUTH_API_KEY_PREFIX`): 1..=32 characters of `[a-z0-9_]`, starting with a
/// letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPrefix(String);

/// Why a prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("API key prefix must be 1 to 32 characters of a-z, 0-9 or '_', starting with a letter")]
pub struct ApiKeyPrefixError;

impl ApiKeyPrefix {
    /// Validates a prefix.
    ///
    /// # Errors
    /// [`ApiKeyPrefixError`].
    pub fn parse(raw: &str) -> Result<Self, ApiKeyPrefixError> {
        let ok = (1..=32).contains(&raw.len())
            && raw.as_bytes()[0].is_ascii_lowercase()
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiKeyPrefixError)
        }
    }

    /// The prefix.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ApiKeyPrefix {
    fn default() -> Self {
        Self("ak_live".into())
    }
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes());
    let mut out = [b'0'; CHECKSUM_CHARS];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// A plaintext API key: shown once at creation, never stored. `Debug` is redacted.
#[derive(Clone)]
pub struct ApiKeySecret(SecretString);

impl ApiKeySecret {
    /// Builds a key from random bytes: each byte below 248 yields one base62 character
    /// (rejection sampling keeps the characters uniform). Returns `None` when `random` does not
    /// hold enough usable bytes; callers pass at least 64.
    #[must_use]
    pub fn from_random(prefix: &ApiKeyPrefix, random: &[u8]) -> Option<Self> {
        let chars: String = random
            .iter()
            .filter(|&&b| b < 248)
            .take(RANDOM_CHARS)
            .map(|&b| char::from(BASE62[usize::from(b % 62)]))
            .collect();
        if chars.len() < RANDOM_CHARS {
            return None;
        }
        let body = format!("{}_{chars}", prefix.as_str());
        let sum = checksum(&body);
        Some(Self(SecretString::from(format!("{body}_{sum}"))))
    }

    /// The key text, to show once.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The displayable prefix: `<prefix>_` and the first 8 random characters.
    #[must_use]
    pub fn display_prefix(&self, prefix: &ApiKeyPrefix) -> String {
        let start = prefix.as_str().len() + 1;
        self.expose()
            .get(..start + DISPLAY_CHARS)
            .unwrap_or_default()
            .to_owned()
    }

    /// SHA-256 of the key: what storage keeps.
    #[must_use]
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose().as_bytes())
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([REDACTED])")
    }
}

/// Checks a presented key's shape and checksum, with no I/O, and returns its hash. Keys are
/// compared byte-exact: nothing is trimmed.
#[must_use]
pub fn parse_presented_key(prefix: &ApiKeyPrefix, presented: &str) -> Option<TokenHash> {
    let rest = presented.strip_prefix(prefix.as_str())?.strip_prefix('_')?;
    let (random, sum) = rest.rsplit_once('_')?;
    let well_formed = random.len() == RANDOM_CHARS
        && sum.len() == CHECKSUM_CHARS
        && random.bytes().all(|b| b.is_ascii_alphanumeric())
        && sum.bytes().all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return None;
    }
    // Well-formed means all ASCII, so this cut falls on a character boundary.
    let body = &presented[..presented.len() - CHECKSUM_CHARS - 1];
    (checksum(body) == sum).then(|| TokenHash::of(presented.as_bytes()))
}

/// Lifecycle state of a key at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyStatus {
    /// Usable.
    Active,
    /// Revoked (by hand or by rotation).
    Revoked,
    /// Past its expiry.
    Expired,
}

impl ApiKeyStatus {
    /// `active`, `revoked` or `expired`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }
}

/// What the key's owner says about it: a JSON object of at most 4 KiB (serialised), with no
/// control character and no bidirectional control in any member name or string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyMeta(serde_json::Map<String, serde_json::Value>);

/// Why `meta` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum MetaError {
    /// Not a JSON object.
    #[error("meta must be a JSON object")]
    NotAnObject,
    /// Over 4 KiB serialised.
    #[error("meta must be at most 4 KiB serialised")]
    TooLarge,
    /// A member name or string holds a control character.
    #[error("meta must not contain control characters")]
    ControlCharacter,
    /// A member name or string holds a bidirectional control.
    #[error("meta must not contain bidirectional control characters")]
    BidiControl,
}

impl MetaError {
    /// The code of a 422 entry.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::TooLarge => "too_large",
            Self::ControlCharacter => "control_character",
            Self::BidiControl => "bidi_control",
        }
    }
}

impl From<super::device::MetadataError> for MetaError {
    fn from(err: super::device::MetadataError) -> Self {
        use super::device::MetadataError as E;
        match err {
            E::NotAnObject => Self::NotAnObject,
            E::TooLarge => Self::TooLarge,
            E::ControlCharacter => Self::ControlCharacter,
            E::BidiControl => Self::BidiControl,
        }
    }
}

impl ApiKeyMeta {
    /// Largest serialised size, in bytes.
    pub const MAX_BYTES: usize = 4 * 1024;

    /// Validates `meta`.
    ///
    /// # Errors
    /// [`MetaError`].
    pub fn new(value: serde_json::Value) -> Result<Self, MetaError> {
        let map = super::device::stored_object(value, Self::MAX_BYTES)?;
        if super::device::any_text(&map, super::text::has_bidi_controls) {
            return Err(MetaError::BidiControl);
        }
        Ok(Self(map))
    }

    /// Rebuilds stored `meta`, which only [`ApiKeyMeta::new`] writes: only its shape is
    /// checked, so that a key read on the verification path is not measured and walked again.
    /// For storage adapters.
    ///
    /// # Errors
    /// [`MetaError::NotAnObject`].
    pub fn from_stored(value: serde_json::Value) -> Result<Self, MetaError> {
        match value {
            serde_json::Value::Object(map) => Ok(Self(map)),
            _ => Err(MetaError::NotAnObject),
        }
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

/// The key owner's own id for whom the key was issued (`external_id`): 1..=128 characters, no
/// control characters or bidirectional controls, kept byte-exact. Not unique.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExternalId(String);

/// Why an `external_id` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ExternalIdError {
    /// Empty.
    #[error("external_id must not be empty")]
    Empty,
    /// Over 128 characters.
    #[error("external_id must be at most 128 characters")]
    TooLong,
    /// Holds a control character.
    #[error("external_id must not contain control characters")]
    ControlCharacter,
    /// Holds a bidirectional control.
    #[error("external_id must not contain bidirectional control characters")]
    BidiControl,
}

impl ExternalIdError {
    /// The code of a 422 entry.
    #[must_use]
    pub const fn code(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLong => "too_long",
            Self::ControlCharacter => "control_character",
            Self::BidiControl => "bidi_control",
        }
    }
}

impl ExternalId {
    /// Longest id, in characters.
    pub const MAX_CHARS: usize = 128;

    /// Validates an id.
    ///
    /// # Errors
    /// [`ExternalIdError`].
    pub fn parse(raw: &str) -> Result<Self, ExternalIdError> {
        let id = Self::from_stored(raw)?;
        if super::text::has_bidi_controls(raw) {
            return Err(ExternalIdError::BidiControl);
        }
        Ok(id)
    }

    /// Rebuilds a stored id (every rule of `parse` but bidirectional controls). For storage
    /// adapters.
    ///
    /// # Errors
    /// [`ExternalIdError`].
    pub fn from_stored(raw: &str) -> Result<Self, ExternalIdError> {
        if raw.is_empty() {
            return Err(ExternalIdError::Empty);
        }
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(ExternalIdError::TooLong);
        }
        if super::text::has_control_chars(raw) {
            return Err(ExternalIdError::ControlCharacter);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored API key (the record, never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id.
    pub id: ApiKeyId,
    /// Owner.
    pub organization_id: OrganizationId,
    /// Name.
    pub name: ApiKeyName,
    /// Displayable start of the key.
    pub prefix: String,
    /// SHA-256 of the key.
    pub key_hash: TokenHash,
    /// Scopes held.
    pub scopes: Scopes,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, once revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful verification (kept approximately: written in batches).
    pub last_used_at: Option<DateTime<Utc>>,
    /// What the owner says about the key.
    pub meta: Option<ApiKeyMeta>,
    /// The owner's own id for whom the key was issued.
    pub external_id: Option<ExternalId>,
    /// Valid verifications allowed per window, if limited.
    pub rate_limit: Option<RateLimit>,
    /// Uses left, if counted. The count read with the record is as of that read: a
    /// verification takes its credit from the store.
    pub credits: Option<Credits>,
}

impl ApiKey {
    /// Whether a verification of this key must reach past any cache: it has a rate limit or
    /// credits.
    #[must_use]
    pub const fn is_metered(&self) -> bool {
        self.rate_limit.is_some() || self.credits.is_some()
    }
}

/// Longest lifetime a key may be given, in days (create's `expires_in_days`, a change's
/// `expires_at`).
pub const MAX_KEY_LIFETIME_DAYS: u32 = 3650;

/// Whether `expires_at` may be given to a key at `now`: after now, and at most
/// [`MAX_KEY_LIFETIME_DAYS`] ahead.
#[must_use]
pub fn expiry_allowed(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    expires_at > now && expires_at <= now + chrono::Duration::days(i64::from(MAX_KEY_LIFETIME_DAYS))
}

/// A change of a key in place (`PATCH`): `None` leaves a member as it is; for the optional
/// members, `Some(None)` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyChanges {
    /// A new name.
    pub name: Option<ApiKeyName>,
    /// New scopes.
    pub scopes: Option<Scopes>,
    /// New or no meta.
    pub meta: Option<Option<ApiKeyMeta>>,
    /// New or no external id.
    pub external_id: Option<Option<ExternalId>>,
    /// New expiry, or none (never expires).
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// A new rate limit, or none.
    pub rate_limit: Option<Option<RateLimit>>,
    /// A new count of credits (the refill stays as it is unless `refill` is given too), or
    /// none: no credits, and no refill either.
    pub remaining: Option<Option<u64>>,
    /// A new refill, or none. A refill is only given with a count (`remaining: Some(Some(_))`):
    /// [`ApiKeyChanges::refill_without_count`] says when it is not.
    pub refill: Option<Option<Refill>>,
}

impl ApiKeyChanges {
    /// True when nothing would change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members().is_empty()
    }

    /// The names of the members set, in the contract's order.
    #[must_use]
    pub fn members(&self) -> Vec<&'static str> {
        [
            ("name", self.name.is_some()),
            ("scopes", self.scopes.is_some()),
            ("meta", self.meta.is_some()),
            ("external_id", self.external_id.is_some()),
            ("expires_at", self.expires_at.is_some()),
            ("rate_limit", self.rate_limit.is_some()),
            ("remaining", self.remaining.is_some()),
            ("refill", self.refill.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// True when a refill is given without a count of credits beside it: a refill only ever
    /// comes with the count it refills (422 on `refill`).
    #[must_use]
    pub const fn refill_without_count(&self) -> bool {
        matches!(self.refill, Some(Some(_))) && !matches!(self.remaining, Some(Some(_)))
    }

    /// The credits `key` has after these changes, a count set at `now`.
    #[must_use]
    pub fn credits_of(&self, key: &ApiKey, now: DateTime<Utc>) -> Option<Credits> {
        let refill = match self.refill {
            Some(refill) => refill,
            None => key.credits.and_then(|c| c.refill),
        };
        match self.remaining {
            Some(None) => None,
            Some(Some(remaining)) => Some(Credits {
                remaining,
                refill,
                refilled_at: now,
            }),
            None => key.credits.map(|c| Credits { refill, ..c }),
        }
    }

    /// `key` with these changes applied at `now`.
    #[must_use]
    pub fn apply_to(&self, key: &ApiKey, now: DateTime<Utc>) -> ApiKey {
        let mut changed = key.clone();
        if let Some(name) = &self.name {
            changed.name = name.clone();
        }
        if let Some(scopes) = &self.scopes {
            changed.scopes = scopes.clone();
        }
        if let Some(meta) = &self.meta {
            changed.meta = meta.clone();
        }
        if let Some(external_id) = &self.external_id {
            changed.external_id = external_id.clone();
        }
        if let Some(expires_at) = self.expires_at {
            changed.expires_at = expires_at;
        }
        if let Some(rate_limit) = self.rate_limit {
            changed.rate_limit = rate_limit;
        }
        changed.credits = self.credits_of(key, now);
        changed
    }
}

impl ApiKey {
    /// This new key as the successor of `old` in a rotation: its own id, secret, prefix and
    /// creation time, and `old`'s members as they are (name, scopes, meta, external id,
    /// expiry, rate limit, credits left and their refill).
    #[must_use]
    pub fn succeeding(&self, old: &Self) -> Self {
        Self {
            organization_id: old.organization_id,
            name: old.name.clone(),
            scopes: old.scopes.clone(),
            expires_at: old.expires_at,
            meta: old.meta.clone(),
            external_id: old.external_id.clone(),
            rate_limit: old.rate_limit,
            credits: old.credits,
            ..self.clone()
        }
    }

    /// Status at `now`: revoked wins over expired.
    #[must_use]
    pub fn status(&self, now: DateTime<Utc>) -> ApiKeyStatus {
        if self.revoked_at.is_some() {
            ApiKeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| now >= e) {
            ApiKeyStatus::Expired
        } else {
            ApiKeyStatus::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (ApiKeyPrefix, ApiKeySecret) {
        let prefix = ApiKeyPrefix::default();
        let random: Vec<u8> = (0u8..=255).cycle().skip(7).take(64).collect();
        (
            prefix.clone(),
            ApiKeySecret::from_random(&prefix, &random).unwrap(),
        )
    }

    #[test]
    fn format_prefix_and_checksum() {
        let (prefix, k) = key();
        let text = k.expose();
        assert!(text.starts_with("ak_live_"));
        assert_eq!(
            text.len(),
            "ak_live_".len() + RANDOM_CHARS + 1 + CHECKSUM_CHARS
        );
        assert_eq!(k.display_prefix(&prefix), text[..16]);
        assert_eq!(parse_presented_key(&prefix, text), Some(k.hash()));
        assert!(!format!("{k:?}").contains(text));
    }

    #[test]
    fn refuses_typos_and_inventions_without_lookup() {
        let (prefix, k) = key();
        let text = k.expose();
        let mut typo = text.as_bytes().to_vec();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        for bad in [
            typo.as_str(),
            &format!(" {text}"),
            &format!("{text} "),
            &text.replace("ak_live", "ak_test"),
            "ak_live_short_abcdef",
            "",
            "ak_live__",
            "ak_live_aé12345_",
            "ak_live_éééééééééééééééééééééééééééééé_abcdef",
            &format!("{}é", &text[..text.len() - 1]),
        ] {
            assert_eq!(parse_presented_key(&prefix, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn short_prefixes_and_short_inputs_never_panic() {
        let p = ApiKeyPrefix::parse("a").unwrap();
        for bad in ["a__", "a_", "a", "", "a_x_y", "a_é_é"] {
            assert_eq!(parse_presented_key(&p, bad), None, "{bad:?}");
        }
    }

    fn scopes(names: &[&str]) -> Scopes {
        Scopes::new(names.iter().map(|x| Scope::parse(x).unwrap()).collect()).unwrap()
    }

    fn numbered(prefix: &str, n: usize) -> Vec<Scope> {
        (0..n)
            .map(|i| Scope::parse(&format!("{prefix}{i:03}")).unwrap())
            .collect()
    }

    #[test]
    fn scopes_and_admin() {
        assert!(Scope::parse("keys:read").is_ok());
        assert!(Scope::parse("Keys").is_err());
        assert!(Scope::parse("").is_err());
        assert!(Scope::parse(&"a".repeat(65)).is_err());
        let held = scopes(&["read", "write", "read"]);
        assert_eq!(held.as_slice().len(), 2);
        assert!(held.grant(&scopes(&["read"])));
        assert!(held.grant(&scopes(&["write", "read"])));
        assert!(!held.grant(&scopes(&["read", "delete"])));
        assert!(!held.grant(&scopes(&["zzz"])));
        assert!(!held.grant(&scopes(&["a"])));
        assert!(!scopes(&[]).grant(&scopes(&["read"])));
        assert!(scopes(&["admin"]).grant(&scopes(&["anything"])));
        let hundred = Scopes::new(numbered("s", 100)).unwrap();
        assert!(scopes(&["a", "admin", "zz"]).grant(&hundred));
        assert!(hundred.grant(&Scopes::new(numbered("s", 50)).unwrap()));
        assert!(held.grant(&Scopes::default()));
        assert!(!held.is_admin() && scopes(&["admin:read"]).grant(&scopes(&["admin:read"])));
        assert!(!scopes(&["admin:read", "admins"]).is_admin());
    }

    #[test]
    fn at_most_a_hundred_distinct_scopes() {
        assert_eq!(Scopes::new(numbered("s", 100)).unwrap().len(), 100);
        assert_eq!(Scopes::new(numbered("s", 101)), Err(TooManyScopes));
        let mut twice = numbered("s", 100);
        twice.extend(numbered("s", 100));
        assert_eq!(
            Scopes::new(twice).unwrap().len(),
            100,
            "duplicates count once"
        );
        assert_eq!(Scopes::from_stored(numbered("s", 500)).len(), 500);
    }

    /// The scope check is one merge walk: for n held and m required scopes it makes at most
    /// n + m comparisons, where checking each required scope by a linear search makes n·m.
    #[test]
    fn grant_is_a_merge_walk() {
        use std::cell::Cell;
        thread_local!(static COMPARISONS: Cell<usize> = const { Cell::new(0) });
        /// Counts every comparison made through it.
        struct Counted(u32);
        impl Ord for Counted {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                COMPARISONS.with(|c| c.set(c.get() + 1));
                self.0.cmp(&other.0)
            }
        }
        impl PartialOrd for Counted {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl PartialEq for Counted {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other).is_eq()
            }
        }
        impl Eq for Counted {}
        let held: Vec<Counted> = (0..100).map(|i| Counted(i * 2)).collect();
        for (required, expected) in [
            ((0..100).map(|i| Counted(i * 2)).collect::<Vec<_>>(), true),
            ((0..100).map(|i| Counted(i * 2 + 1)).collect(), false),
            ((100..200).map(Counted).collect(), false),
            (vec![Counted(198)], true),
        ] {
            COMPARISONS.with(|c| c.set(0));
            assert_eq!(is_sorted_subset(&required, &held), expected);
            let made = COMPARISONS.with(Cell::get);
            // A linear search per required scope would make up to 100 × 100.
            assert!(
                made <= held.len() + 2 * required.len(),
                "{made} comparisons"
            );
        }
    }
}
