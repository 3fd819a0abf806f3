//! `Password` (a secret that never prints), the policy a new password must meet, and the
//! stored `PasswordHash`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use thiserror::Error;

use super::text::has_control_chars;

/// A plaintext password. Its `Debug` output is redacted and its memory is zeroed on drop.
#[derive(Clone)]
pub struct Password(SecretString);

/// Why a password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PasswordError {
    /// Empty.
    #[error("password must not be empty")]
    Empty,
    /// Shorter than the policy's minimum.
    #[error("password must be at least {min} characters")]
    TooShort {
        /// The minimum in characters.
        min: usize,
    },
    /// Longer than the policy's maximum.
    #[error("password must be at most {max} characters")]
    TooLong {
        /// The maximum in characters.
        max: usize,
    },
    /// Contains a control character (U+0000..U+001F, U+007F..U+009F).
    #[error("password must not contain control characters")]
    ControlCharacter,
}

/// Rules for choosing a new password (NIST SP 800-63B: length, no composition rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Minimum length in characters (default 8).
    pub min_chars: usize,
    /// Maximum length in characters (default 128).
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_chars: 8,
            max_chars: 128,
        }
    }
}

impl PasswordPolicy {
    /// Checks a candidate new password against the policy.
    ///
    /// # Errors
    /// [`PasswordError`] saying which rule was broken.
    pub fn new_password(&self, raw: &str) -> Result<Password, PasswordError> {
        let chars = raw.chars().count();
        if has_control_chars(raw) {
            return Err(PasswordError::ControlCharacter);
        }
        if chars == 0 {
            return Err(PasswordError::Empty);
        }
        if chars < self.min_chars {
            return Err(PasswordError::TooShort {
                min: self.min_chars,
            });
        }
        if chars > self.max_chars {
            return Err(PasswordError::TooLong {
                max: self.max_chars,
            });
        }
        Ok(Password(SecretString::from(raw)))
    }
}

impl Password {
    /// A password presented to prove identity (login, password change). No length policy
    /// applies: a password set under an older policy must still work, and a wrong one simply
    /// fails verification.
    ///
    /// # Errors
    /// [`PasswordError::Empty`] or [`PasswordError::ControlCharacter`].
    pub fn presented(raw: &str) -> Result<Self, PasswordError> {
        if raw.is_empty() {
            return Err(PasswordError::Empty);
        }
        if has_control_chars(raw) {
            return Err(PasswordError::ControlCharacter);
        }
        Ok(Self(SecretString::from(raw)))
    }

    /// The plaintext, for a hasher.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

/// A password hash as produced by a [`crate::ports::PasswordHasher`] (a PHC-like string).
/// Not secret in the way a password is, but never worth printing: `Debug` shows only its scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a stored hash string.
    #[must_use]
    pub fn new(encoded: String) -> Self {
        Self(encoded)
    }

    /// The encoded hash.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split('$').nth(1).unwrap_or("?");
        write!(f, "PasswordHash(${scheme}$…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let p = Password::presented("hunter2-canary").unwrap();
        assert!(!format!("{p:?}").contains("canary"));
    }

    #[test]
    fn policy_counts_characters_not_bytes() {
        let policy = PasswordPolicy::default();
        assert!(policy.new_password("ééééééé").is_err());
        assert!(policy.new_password("éééééééé").is_ok());
        assert_eq!(
            policy.new_password(&"x".repeat(129)).unwrap_err(),
            PasswordError::TooLong { max: 128 }
        );
        assert_eq!(
            policy.new_password("abc\u{0}defgh").unwrap_err(),
            PasswordError::ControlCharacter
        );
    }
}
