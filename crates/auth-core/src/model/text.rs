//! Small text value objects and the shared rule that user-supplied text holds no control characters.

use thiserror::Error;

/// True when `s` contains a Unicode control character (U+0000..U+001F, U+007F..U+009F).
#[must_use]
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// A user's display name: trimmed, 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

/// Why a display name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DisplayNameError {
    /// Empty after trimming.
    #[error("display name must not be empty")]
    Empty,
    /// Longer than 100 characters.
    #[error("display name must be at most 100 characters")]
    TooLong,
    /// Contains a control character.
    #[error("display name must not contain control characters")]
    ControlCharacter,
}

impl DisplayName {
    /// Maximum length in characters.
    pub const MAX_CHARS: usize = 100;

    /// Validates and trims a display name.
    ///
    /// # Errors
    /// [`DisplayNameError`] when the trimmed name is empty, too long or holds a control character.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let trimmed = raw.trim();
        if has_control_chars(trimmed) {
            return Err(DisplayNameError::ControlCharacter);
        }
        if trimmed.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(DisplayNameError::TooLong);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as stored.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Consumes the value, returning the string.
    #[must_use]
    pub fn into_inner(self) -> String {
        self.0
    }
}
