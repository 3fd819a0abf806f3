//! `Mailer`: hands one rendered mail to whatever delivers it (an SMTP server, a folder).

use async_trait::async_trait;

use super::BoxError;
use crate::model::OutgoingMail;

/// Why a mail was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// It may work later (the server is unreachable, busy, or answered a 4xx): the outbox
    /// tries again after a backoff.
    #[error("mail not sent, will retry")]
    Transient(#[source] BoxError),
    /// It will never work (the server refused the recipient or the message with a 5xx): the
    /// outbox gives it up at once.
    #[error("mail refused")]
    Permanent(#[source] BoxError),
}

/// Sends one rendered mail.
///
/// Implementations MUST:
/// - return `Ok` only once the mail is accepted by the next hop (the SMTP server answered
///   250 to the message, the file is written and flushed): the outbox then forgets it;
/// - be safe to call concurrently, and for the same mail again (delivery is at least once:
///   after a crash between sending and marking sent, the mail goes out again);
/// - classify failures as [`MailError`] says, erring on [`MailError::Transient`] when in doubt;
/// - never write the recipient, the subject or the bodies to a log or an error (bodies carry
///   one-time links; errors reach logs), and never log credentials;
/// - give up on a connection within a bounded time (a timeout), so a hung server cannot stall
///   the outbox worker forever.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Hands `mail` to the next hop.
    ///
    /// # Errors
    /// [`MailError`] when the mail was not accepted.
    async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError>;
}
