//! Small text value objects and the shared rules for user-supplied text: no control
//! characters anywhere; no invisible format characters in emails; no bidirectional controls in
//! names and metadata.
//!
//! Why two spoofing rules: an email is an identifier compared by machines, so every format
//! character (general category Cf: bidi controls, zero-width spaces and joiners, the soft
//! hyphen, the byte order mark, ...) only serves to make two different addresses look alike.
//! Names and metadata are shown to people and may hold emoji sequences, which need the
//! zero-width joiner (`👩‍💻` is three code points joined by U+200D), so there only the
//! bidirectional controls are refused: they reorder the text around them (`exe.txt` shown for
//! `txt.exe`).

use thiserror::Error;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// True when `s` contains a Unicode control character (U+0000..U+001F, U+007F..U+009F).
#[must_use]
pub fn has_control_chars(s: &str) -> bool {
    // On bytes, without decoding: C0 controls and DEL are single bytes below 0x80 (which
    // never occur inside a multi-byte sequence), and the C1 controls are exactly the
    // sequences C2 80..C2 9F (0xC2 is only ever a lead byte).
    let bytes = s.as_bytes();
    // First one pass with no early exit, which the compiler vectorises: printable ASCII
    // alone (every token and most text) ends here. A C0 control, DEL or any non-ASCII byte
    // sends the string to the exact look.
    if !bytes
        .iter()
        .fold(false, |seen, &b| seen | !(0x20..0x7f).contains(&b))
    {
        return false;
    }
    bytes.iter().any(|&b| b < 0x20 || b == 0x7f)
        || bytes
            .windows(2)
            .any(|w| w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1]))
}

/// True when `s` contains a Unicode format character (general category Cf), e.g. U+200B
/// ZERO WIDTH SPACE, U+200D ZERO WIDTH JOINER, U+00AD SOFT HYPHEN, U+FEFF, U+202E.
#[must_use]
pub fn has_format_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
}

/// True for the bidirectional embeddings, overrides and isolates (U+202A..U+202E,
/// U+2066..U+2069): each opens a run that reorders the text after it, which is how `txt.exe`
/// is made to show as `exe.txt`.
///
/// The other `Bidi_Control` characters, the marks U+200E LEFT-TO-RIGHT MARK, U+200F
/// RIGHT-TO-LEFT MARK and U+061C ARABIC LETTER MARK, are kept, as the contract says: they open
/// no run, and right-to-left names need them to show correctly next to digits and Latin text.
#[must_use]
pub const fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// True when `s` contains a bidirectional control (see [`is_bidi_control`]).
#[must_use]
pub fn has_bidi_controls(s: &str) -> bool {
    s.chars().any(is_bidi_control)
}

/// A user's display name: trimmed, 1..=100 characters, no control characters, no
/// bidirectional controls.
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
    /// Contains a bidirectional control (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F,
    /// U+061C).
    #[error("display name must not contain bidirectional control characters")]
    BidiControl,
}

impl DisplayName {
    /// Maximum length in characters.
    pub const MAX_CHARS: usize = 100;

    /// Validates and trims a display name.
    ///
    /// # Errors
    /// [`DisplayNameError`] when the trimmed name is empty, too long or holds a control
    /// character or a bidirectional control.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let name = Self::from_stored(raw)?;
        if has_bidi_controls(&name.0) {
            return Err(DisplayNameError::BidiControl);
        }
        Ok(name)
    }

    /// Rebuilds a name stored before bidirectional controls were refused: every rule of
    /// [`DisplayName::parse`] but that one, so an old row still loads. For storage adapters;
    /// new input goes through `parse`.
    ///
    /// # Errors
    /// [`DisplayNameError`].
    pub fn from_stored(raw: &str) -> Result<Self, DisplayNameError> {
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

/// Every refused bidirectional control, for the tests of each value object that refuses them.
#[cfg(test)]
pub(crate) const BIDI: [char; 9] = [
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}',
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_on_bytes_as_char_is_control_finds_them() {
        let mut buf = [0u8; 4];
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            let alone: &str = c.encode_utf8(&mut buf);
            assert_eq!(
                has_control_chars(alone),
                c.is_control(),
                "U+{:04X}",
                c as u32
            );
            let amid = format!("aé{c}z");
            assert_eq!(
                has_control_chars(&amid),
                c.is_control(),
                "U+{:04X}",
                c as u32
            );
        }
    }

    /// A control anywhere in a token-sized string, printable ASCII around it, is found.
    #[test]
    fn a_control_is_found_at_every_place_of_a_long_string() {
        let clean = "eyJhbGciOiJIUzI1NiJ9.".repeat(15);
        assert!(!has_control_chars(&clean));
        for at in 0..clean.len() {
            for control in ["\0", "\n", "\u{7f}", "\u{85}"] {
                let mut dirty = clean.clone();
                dirty.insert_str(at, control);
                assert!(has_control_chars(&dirty), "{control:?} at {at}");
            }
            let mut accented = clean.clone();
            accented.insert(at, 'é');
            assert!(!has_control_chars(&accented), "é at {at}");
        }
    }

    #[test]
    fn bidi_controls_are_format_characters() {
        for c in BIDI {
            assert!(is_bidi_control(c), "{c:?}");
            assert!(has_format_chars(&c.to_string()), "{c:?} is Cf");
        }
        for c in [
            '\u{200B}', '\u{200C}', '\u{200D}', '\u{FEFF}', '\u{00AD}', '\u{2060}',
        ] {
            assert!(has_format_chars(&c.to_string()), "{c:?} is Cf");
            assert!(!is_bidi_control(c), "{c:?} is no bidi control");
        }
        assert!(!has_format_chars("plain ascii, Küche ✓ 👩\u{1F3FD}"));
    }

    #[test]
    fn display_names_refuse_bidi_controls_but_keep_emoji_joiners() {
        for c in BIDI {
            let raw = format!("Ada{c}Lovelace");
            assert_eq!(
                DisplayName::parse(&raw),
                Err(DisplayNameError::BidiControl),
                "{c:?}"
            );
            assert!(DisplayName::from_stored(&raw).is_ok(), "{c:?} stored");
        }
        let coder = "Ada 👩\u{200D}💻";
        assert_eq!(DisplayName::parse(coder).unwrap().as_str(), coder);
        // The marks right-to-left text needs are kept.
        for name in [
            "\u{05D3}\u{05E0}\u{05D4} 2\u{200F}",
            "\u{0645}\u{061C}1",
            "A\u{200E}B",
        ] {
            assert_eq!(DisplayName::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(
            DisplayName::parse("a\u{0}b"),
            Err(DisplayNameError::ControlCharacter)
        );
    }
}
