//! [`StepError`]: how a step fails, and whether a retry can help.
//!
//! A step error is a *kind* — [`ErrorKind::Retry`] (Altinn or storage unavailable, truncated
//! download, scan pending: the same message may succeed later) or [`ErrorKind::Permanent`]
//! (malformed message, anomalous instance: it never will, and the message should end in the
//! poison queue for a human) — and the *cause*, kept whole as an [`anyhow::Error`] so the
//! operator sees the chain (`blob storage: failed to execute request: … connection refused`),
//! not only its first line.
//!
//! The kind is decided once, where the cause is understood (`From` below for the clients'
//! errors, or the step that fails); the runtimes only read [`StepError::kind`].
//!
//! This module is the bottom of the pipeline: it imports the clients' error types and nothing
//! of the wiring, so any step (or a layer below the runtimes) can use it.

use std::fmt;

use crate::altinn::AltinnError;
use crate::archive::ArchiveError;
use crate::domain::EventError;

/// Whether a failed step may succeed on a later attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The same message may succeed later; the runtime retries it.
    Retry,
    /// It never will; the message goes on failing until it reaches the poison queue.
    Permanent,
}

impl ErrorKind {
    /// The word logs, invocation answers and failure records use for the kind.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Retry => "retryable",
            ErrorKind::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A step failed: its [`ErrorKind`] and its cause.
///
/// `Display` shows the whole cause chain on one line (`context: cause: its cause`), so logs,
/// invocation answers and the failure records in `aos-state` carry it. The error types here
/// often repeat their source in their own message already (`blob storage: {0}`); a cause whose
/// text is already on the line is not repeated. The line is redacted ([`crate::redact`]): a
/// cause may carry a credential (a transport error names its request URL, which for storage
/// can carry a SAS).
#[derive(Debug)]
pub struct StepError {
    kind: ErrorKind,
    cause: anyhow::Error,
}

impl StepError {
    pub fn new(kind: ErrorKind, cause: impl Into<anyhow::Error>) -> Self {
        StepError {
            kind,
            cause: cause.into(),
        }
    }

    /// A failure a later attempt may not have: `StepError::retry(e)` or
    /// `StepError::retry(anyhow!("…"))`.
    pub fn retry(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::Retry, cause)
    }

    /// A failure no retry can help.
    pub fn permanent(cause: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorKind::Permanent, cause)
    }

    /// Puts `context` in front of the cause (`context: cause`); the kind stays.
    pub fn context<C>(self, context: C) -> Self
    where
        C: fmt::Display + Send + Sync + 'static,
    {
        StepError {
            kind: self.kind,
            cause: self.cause.context(context),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The cause, with its chain.
    pub fn cause(&self) -> &anyhow::Error {
        &self.cause
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::cause::line(self.cause.as_ref()))
    }
}

// `source()` is deliberately not given: `Display` already shows the chain, and an outer
// reporter walking `source()` would print it twice. `cause()` gives it to code that wants it.
impl std::error::Error for StepError {}

impl From<AltinnError> for StepError {
    fn from(e: AltinnError) -> Self {
        let kind = if e.is_retryable() {
            ErrorKind::Retry
        } else {
            ErrorKind::Permanent
        };
        StepError::new(kind, e)
    }
}

impl From<ArchiveError> for StepError {
    /// Storage trouble and broken downloads are retried; a download that completed with
    /// another length than the element's `size` is permanent: Altinn's metadata contradicts
    /// its bytes, and another attempt would download the same contradiction.
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::SizeMismatch { .. } => StepError::permanent(e),
            _ => StepError::retry(e),
        }
    }
}

impl From<EventError> for StepError {
    fn from(e: EventError) -> Self {
        StepError::permanent(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn display_shows_the_chain_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StepError::retry(Repeats(Inner(io))).context("step");
        assert_eq!(e.to_string(), "step: outer: inner: refused");
        assert_eq!(e.kind(), ErrorKind::Retry);
    }

    #[test]
    fn a_message_is_shown_as_given() {
        let e = StepError::permanent(anyhow::anyhow!("instance x is anomalous: y"));
        assert_eq!(e.to_string(), "instance x is anomalous: y");
        assert_eq!(e.kind(), ErrorKind::Permanent);
    }

    #[test]
    fn the_kind_follows_the_altinn_classification() {
        let status = |status| AltinnError::Status {
            what: "GET instance".into(),
            status,
            retry_after: None,
            detail: None,
        };
        assert_eq!(StepError::from(status(503)).kind(), ErrorKind::Retry);
        assert_eq!(StepError::from(status(400)).kind(), ErrorKind::Permanent);
        assert_eq!(
            StepError::from(status(400)).to_string(),
            status(400).to_string()
        );
    }

    #[test]
    fn labels() {
        assert_eq!(ErrorKind::Retry.label(), "retryable");
        assert_eq!(ErrorKind::Permanent.label(), "permanent");
    }

    #[test]
    fn causes_added_by_the_chain_lose_their_credentials() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to execute request")]
        struct Transport(#[source] anyhow::Error);
        let sas = anyhow::anyhow!(
            "error sending request for url (http://127.0.0.1:10000/acct/c/b?sv=1&sig=SECRET)"
        );
        let e = StepError::retry(Transport(sas)).context("blob storage");
        let line = e.to_string();
        assert!(!line.contains("SECRET"), "{line}");
        assert_eq!(
            line,
            "blob storage: failed to execute request: error sending request for url \
             (http://127.0.0.1:10000/acct/c/b?sv=REDACTED&sig=REDACTED)"
        );
    }
}
