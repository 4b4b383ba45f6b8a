//! An error's cause chain, as people read it and as the CLI's exit status needs it.
//!
//! - [`line`]: the whole chain on one redacted line (`context: cause: its cause`), each text
//!   once. The error types here often repeat their source in their own message already
//!   (`blob storage: {0}`), and a transport error's own text (`error sending request for url
//!   (…)`) says nothing of *why* — the `connection refused` or the DNS failure is two causes
//!   further down. So every cause is shown, but one already on the line is not repeated.
//! - [`is_unreachable`]: whether somewhere in the chain a dependency could not be reached at
//!   all (refused or reset connection, DNS failure, timeout; a failed TLS handshake too, since
//!   the HTTP client reports it as a connect error) — the CLI's exit status 3, "the same
//!   command may work later without any change" — as opposed to an answer that refused.
//!
//! Below the pipeline and the CLI: it knows the transport error types and the token's own
//! (`auth::TokenError`, `auth::KeyError`), nothing of the steps.

use std::error::Error;

use crate::redact::redact;

/// The chain on one line, each cause once, redacted.
pub fn line(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else {
            let shown = redact(&text);
            if !text.is_empty() && !line.contains(&text) && !line.contains(shown.as_ref()) {
                line.push_str(": ");
                line.push_str(&shown);
            }
        }
        next = cause.source();
    }
    redact(&line).into_owned()
}

/// Whether a cause in the chain is a dependency that did not answer: a connection refused,
/// reset or timed out, a name that did not resolve, a request that timed out.
pub fn is_unreachable(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if unreachable_here(cause) {
            return true;
        }
        next = cause.source();
    }
    false
}

fn unreachable_here(cause: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind as Io;
    if let Some(e) = cause.downcast_ref::<reqwest::Error>() {
        return e.is_connect() || e.is_timeout();
    }
    if let Some(e) = cause.downcast_ref::<std::io::Error>() {
        return matches!(
            e.kind(),
            Io::ConnectionRefused
                | Io::ConnectionReset
                | Io::ConnectionAborted
                | Io::NotConnected
                | Io::TimedOut
                | Io::HostUnreachable
                | Io::NetworkUnreachable
                | Io::AddrNotAvailable
        );
    }
    if let Some(e) = cause.downcast_ref::<crate::auth::TokenError>() {
        return matches!(e, crate::auth::TokenError::Transport { .. });
    }
    if let Some(e) = cause.downcast_ref::<crate::auth::KeyError>() {
        return matches!(e, crate::auth::KeyError::TimedOut { .. });
    }
    if cause.is::<tokio::time::error::Elapsed>() {
        return true;
    }
    // The text of a transport error that reached us as a string only (an SDK that flattened
    // its cause): the operating system's words for it.
    let text = cause.to_string().to_ascii_lowercase();
    [
        "connection refused",
        "dns error",
        "failed to lookup address",
        "timed out",
    ]
    .iter()
    .any(|words| text.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_has_every_cause_once_and_no_secret() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e = anyhow::Error::from(io)
            .context("tcp connect error")
            .context("error sending request for url (http://h/q?sv=1&sig=SECRET)")
            .context("list subscriptions");
        let shown = line(e.as_ref());
        assert_eq!(
            shown,
            "list subscriptions: error sending request for url (http://h/q?sv=REDACTED&sig=REDACTED): tcp connect error: Connection refused"
        );
        assert!(is_unreachable(e.as_ref()));
    }

    #[test]
    fn an_answer_that_refused_is_not_unreachable() {
        let e = anyhow::anyhow!("Altinn answered HTTP 403").context("list subscriptions");
        assert!(!is_unreachable(e.as_ref()));
        let repeated = anyhow::anyhow!("HTTP 403").context("list: HTTP 403");
        assert_eq!(line(repeated.as_ref()), "list: HTTP 403");
    }
}
