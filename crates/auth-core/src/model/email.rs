//! `Email`: trimmed, validated, stored as typed and compared case-insensitively.

use std::fmt;
use std::hash::{Hash, Hasher};

use thiserror::Error;

use super::text::{has_control_chars, has_format_chars};

/// An email address that passed validation.
///
/// Two emails are equal when their normalised forms (lower-cased) are equal, so `Bob@X.com`
/// and `bob@x.com` name one account. [`Email::as_str`] gives the address as the user typed it
/// (trimmed); [`Email::normalized`] gives the form used for lookups and uniqueness.
#[derive(Clone)]
pub struct Email {
    original: String,
    normalized: String,
}

/// Why an email address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EmailError {
    /// Empty after trimming.
    #[error("email must not be empty")]
    Empty,
    /// Longer than 254 characters.
    #[error("email must be at most 254 characters")]
    TooLong,
    /// Not of the form `local@domain.tld`, or holds white space, control characters or
    /// invisible format characters (Unicode Cf: bidi controls, zero-width spaces and joiners,
    /// the soft hyphen, ...).
    #[error("email must be of the form name@example.com")]
    Invalid,
}

impl Email {
    /// Maximum length in characters (RFC 5321 path limit less the angle brackets).
    pub const MAX_CHARS: usize = 254;

    /// Validates an address: trimmed, at most 254 characters, exactly one `@` with a non-empty
    /// local part and a domain that contains a dot (with no empty label), no white space,
    /// control characters or format characters (Cf: an address is an identifier, and an
    /// invisible character only makes two different addresses look alike).
    ///
    /// # Errors
    /// [`EmailError`] saying which rule was broken.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let email = Self::from_stored(raw)?;
        if has_format_chars(&email.original) {
            return Err(EmailError::Invalid);
        }
        Ok(email)
    }

    /// Rebuilds an address stored before format characters were refused: every rule of
    /// [`Email::parse`] but that one, so an account made then still loads and lists. Its owner
    /// cannot type the address at login any more (input goes through `parse`): an
    /// administrator changes it. For storage adapters.
    ///
    /// # Errors
    /// [`EmailError`].
    pub fn from_stored(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(EmailError::TooLong);
        }
        if has_control_chars(trimmed) || trimmed.chars().any(char::is_whitespace) {
            return Err(EmailError::Invalid);
        }
        let mut parts = trimmed.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(EmailError::Invalid);
        };
        let domain_ok = domain.contains('.') && domain.split('.').all(|label| !label.is_empty());
        if local.is_empty() || !domain_ok {
            return Err(EmailError::Invalid);
        }
        Ok(Self {
            original: trimmed.to_owned(),
            normalized: trimmed.to_lowercase(),
        })
    }

    /// The address as typed (trimmed).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The lower-cased form used for lookups and uniqueness.
    #[must_use]
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The key of this address's failed-login counter (the lockout): SHA-256 of the
    /// normalised form, so the counter store never holds the address itself.
    #[must_use]
    pub fn attempt_key(&self) -> super::TokenHash {
        super::TokenHash::of(self.normalized.as_bytes())
    }
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        self.normalized == other.normalized
    }
}

impl Eq for Email {}

impl Hash for Email {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalized.hash(state);
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.original).finish()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_compares_case_insensitively() {
        let a = Email::parse("  Bob@X.com ").unwrap();
        let b = Email::parse("bob@x.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Bob@X.com");
        assert_eq!(a.normalized(), "bob@x.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "bob",
            "@x.com",
            "bob@",
            "bob@x",
            "bob@@x.com",
            "a@b@c.com",
            "bob@x..com",
            "bob@.com",
            "bo b@x.com",
            "bob\u{0}@x.com",
            "bob@x.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long).unwrap_err(), EmailError::TooLong);
    }

    #[test]
    fn refuses_every_format_character() {
        for c in [
            '\u{202A}',
            '\u{202E}',
            '\u{2066}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0001}',
        ] {
            for raw in [
                format!("bob{c}@x.com"),
                format!("bob@x{c}.com"),
                format!("{c}bob@x.com"),
            ] {
                assert_eq!(Email::parse(&raw), Err(EmailError::Invalid), "{raw:?}");
            }
        }
        assert!(
            Email::parse("bøb@exämple.com").is_ok(),
            "other letters stay allowed"
        );
    }
}
