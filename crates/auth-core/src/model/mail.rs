//! Mails: what the service sends (rendered from templates kept in the repository), and a
//! mail as the outbox holds it.
//!
//! A template is plain text and HTML with `{{name}}` placeholders. Values are substituted as
//! they are into the text part and HTML-escaped into the HTML part, so no value (a display
//! name, an address) can inject markup. The templates name the product and link to
//! `AUTH_PUBLIC_URL`; which values a template uses is fixed by its variant.

use chrono::{DateTime, Utc};

use super::{Email, MailId};

/// A mail ready to send: one recipient, a subject, a plain-text and an HTML body.
///
/// `Debug` names neither the recipient nor the bodies: bodies carry one-time links, and an
/// address is personal data that no log line needs.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The recipient.
    pub to: Email,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

impl std::fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// A mail in the outbox, claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// Its id in the outbox.
    pub id: MailId,
    /// The mail.
    pub mail: OutgoingMail,
    /// Failed attempts to send it so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
}

/// The mails the service sends, each with its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTemplate {
    /// Confirms an address (after registration, or a new address). Values: `product`,
    /// `link`, `hours` (how long the link works).
    VerifyEmail,
    /// A link that sets a new password. Values: `product`, `link`, `minutes`.
    PasswordReset,
    /// Confirms a new address, which then replaces the account's. Values: `product`,
    /// `link`, `hours`.
    ChangeEmail,
}

/// A template's subject, text and HTML, with `{{name}}` placeholders.
struct Source {
    subject: &'static str,
    text: &'static str,
    html: &'static str,
}

impl MailTemplate {
    fn source(self) -> Source {
        match self {
            Self::VerifyEmail => Source {
                subject: "Confirm your email address for {{product}}",
                text: include_str!("../../templates/verify_email.txt"),
                html: include_str!("../../templates/verify_email.html"),
            },
            Self::PasswordReset => Source {
                subject: "Reset your {{product}} password",
                text: include_str!("../../templates/password_reset.txt"),
                html: include_str!("../../templates/password_reset.html"),
            },
            Self::ChangeEmail => Source {
                subject: "Confirm your new email address for {{product}}",
                text: include_str!("../../templates/change_email.txt"),
                html: include_str!("../../templates/change_email.html"),
            },
        }
    }

    /// The template filled with `values` (`(name, value)`), addressed to `to`. A placeholder
    /// with no value is left empty.
    #[must_use]
    pub fn render(self, to: Email, values: &[(&str, &str)]) -> OutgoingMail {
        let source = self.source();
        OutgoingMail {
            to,
            // One line: a value cannot add headers or break the subject.
            subject: substitute(source.subject, values, false).replace(['\r', '\n'], " "),
            text: substitute(source.text, values, false),
            html: substitute(source.html, values, true),
        }
    }
}

/// Replaces every `{{name}}` in `template` with its value, HTML-escaped when `html`.
fn substitute(template: &str, values: &[(&str, &str)], html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = values
            .iter()
            .find(|(key, _)| *key == name)
            .map_or("", |(_, value)| *value);
        if html {
            out.push_str(&escape_html(value));
        } else {
            out.push_str(value);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `value` with `& < > " '` replaced by entities: safe in HTML text and in quoted attributes.
#[must_use]
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_html_only() {
        let to = Email::parse("ada@example.com").unwrap();
        let mail = MailTemplate::VerifyEmail.render(
            to,
            &[
                ("product", "A<b>&\"'"),
                ("link", "http://x/verify-email#token=abc"),
                ("hours", "24"),
            ],
        );
        assert!(mail.subject.contains("A<b>&\"'"));
        assert!(mail.text.contains("A<b>&\"'"));
        assert!(mail.text.contains("http://x/verify-email#token=abc"));
        assert!(mail.html.contains("A&lt;b&gt;&amp;&quot;&#39;"));
        assert!(!mail.html.contains("A<b>"));
        assert!(
            mail.html
                .contains("href=\"http://x/verify-email#token=abc\"")
        );
        assert!(!mail.html.contains("{{"));
        assert!(!mail.text.contains("{{"));
        assert!(!format!("{mail:?}").contains("ada@"));
        assert!(!format!("{mail:?}").contains("token"));
    }

    #[test]
    fn unknown_placeholders_are_empty_and_unclosed_ones_kept() {
        assert_eq!(substitute("a{{x}}b", &[], false), "ab");
        assert_eq!(substitute("a{{x", &[("x", "1")], false), "a{{x");
    }
}
