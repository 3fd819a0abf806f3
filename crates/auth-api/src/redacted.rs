//! [`Redacted`]: a value shown once (an API key, a device secret, a token) that never reaches
//! `Debug` output or logs, while serializing as the bare value.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret on the wire: serialized and deserialized as the bare `T`, printed by `Debug` as
/// `[REDACTED]`. Read it with [`expose`](Self::expose).
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted<T = String>(T);

impl<T> Redacted<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself: call it only where the secret is meant to go (a response body, a
    /// request, the one place a CLI shows it).
    pub const fn expose(&self) -> &T {
        &self.0
    }

    /// The secret, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl From<&str> for Redacted<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(feature = "openapi")]
impl<T: utoipa::PartialSchema> utoipa::PartialSchema for Redacted<T> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        T::schema()
    }
}

#[cfg(feature = "openapi")]
impl<T: utoipa::ToSchema> utoipa::ToSchema for Redacted<T> {
    fn name() -> std::borrow::Cow<'static, str> {
        T::name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_and_serde_passes_through() {
        let secret = Redacted::new("ak_live_hunter2".to_owned());
        assert_eq!(format!("{secret:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&secret)), "Some([REDACTED])");
        assert_eq!(
            serde_json::to_string(&secret).unwrap(),
            "\"ak_live_hunter2\""
        );
        let back: Redacted = serde_json::from_str("\"ak_live_hunter2\"").unwrap();
        assert_eq!(back, secret);
        assert_eq!(back.expose(), "ak_live_hunter2");
        assert_eq!(back.into_inner(), "ak_live_hunter2");
    }
}
