//! `Password` (a secret that never prints), the policy a new password must meet, and the
//! stored `PasswordHash`.
//!
//! The policy refuses passwords on a list of common passwords shipped in the binary
//! (`crates/auth-core/data/common-passwords.txt`; source, licence and extraction in the
//! `README.md` next to it).

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

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
    /// On the list of common passwords (compared in lower case).
    #[error("this password is too common")]
    Common,
}

/// The common-password list: one lower-cased password per line, most common first.
const COMMON_PASSWORDS_TXT: &str = include_str!("../../data/common-passwords.txt");

/// The common-password list as a set, built on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TXT
        .lines()
        .filter(|line| !line.is_empty())
        .collect()
});

/// Whether `raw`, lower-cased (Unicode), is on the common-password list.
fn is_common(raw: &str) -> bool {
    // The lower-cased copy is as secret as the password: zeroed on drop like it.
    let lower = SecretString::from(raw.to_lowercase());
    COMMON_PASSWORDS.contains(lower.expose_secret())
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
    /// Checks a candidate new password against the policy: no control characters, a length
    /// within the bounds, and not on the common-password list (compared in lower case; only a
    /// candidate of allowed length is looked up).
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
        if is_common(raw) {
            return Err(PasswordError::Common);
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

    #[test]
    fn the_common_password_list_is_complete_and_normalised() {
        assert!(
            COMMON_PASSWORDS.len() >= 10_000,
            "{}",
            COMMON_PASSWORDS.len()
        );
        // No duplicates and no blank lines: every line is one distinct entry.
        assert_eq!(COMMON_PASSWORDS.len(), COMMON_PASSWORDS_TXT.lines().count());
        for entry in COMMON_PASSWORDS.iter() {
            assert_eq!(*entry, entry.to_lowercase(), "not lower-case: {entry:?}");
            assert_eq!(*entry, entry.trim(), "surrounding whitespace: {entry:?}");
            assert!(!has_control_chars(entry), "control character: {entry:?}");
        }
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        let policy = PasswordPolicy::default();
        for common in [
            "password",
            "123456789",
            "qwertyuiop",
            "PASSWORD",
            "PassWord",
            "QwertyUiop",
            "iloveyou1",
            "987654321",
        ] {
            assert!(COMMON_PASSWORDS.contains(common.to_lowercase().as_str()));
            assert_eq!(
                policy.new_password(common).unwrap_err(),
                PasswordError::Common,
                "{common}"
            );
        }
        // Unicode lower-casing: "ПАРОЛЬ" is "пароль", which is on the list.
        let short = PasswordPolicy {
            min_chars: 6,
            ..PasswordPolicy::default()
        };
        assert_eq!(
            short.new_password("ПАРОЛЬ").unwrap_err(),
            PasswordError::Common
        );
    }

    #[test]
    fn length_rules_come_before_the_list() {
        // "123456" is the most common password, but at the default minimum of 8 it is
        // refused as too short: only candidates of allowed length are looked up.
        assert!(COMMON_PASSWORDS.contains("123456"));
        assert_eq!(
            PasswordPolicy::default()
                .new_password("123456")
                .unwrap_err(),
            PasswordError::TooShort { min: 8 }
        );
        let tight = PasswordPolicy {
            min_chars: 4,
            max_chars: 6,
        };
        assert_eq!(
            tight.new_password("123456").unwrap_err(),
            PasswordError::Common
        );
        assert_eq!(
            tight.new_password("password").unwrap_err(),
            PasswordError::TooLong { max: 6 }
        );
    }

    #[test]
    fn uncommon_passwords_and_random_passphrases_are_accepted() {
        let policy = PasswordPolicy::default();
        for fine in [
            "violet tugboat margin 47",
            "Tr0ub4dor&3-staple-battery",
            "kq7v-xw2m-9hzr-t4pb",
            "first password",
        ] {
            assert!(policy.new_password(fine).is_ok(), "{fine}");
        }
        // Random 16..=30 character passphrases from the OS generator are never refused.
        for _ in 0..200 {
            let mut bytes = [0_u8; 30];
            getrandom::fill(&mut bytes).unwrap();
            let candidate: String = bytes[..16 + usize::from(bytes[0] % 15)]
                .iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            assert!(policy.new_password(&candidate).is_ok(), "{candidate}");
        }
    }
}
