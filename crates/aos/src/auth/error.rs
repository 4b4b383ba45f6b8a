//! Why no token could be had, classified once.
//!
//! Errors are `Clone` because one failed refresh is shared by every caller that waited for it
//! (single-flight): a thousand requests queued behind a refused grant all get that one answer
//! instead of each sending their own grant. For the same reason they hold text, not the
//! `reqwest::Error` itself.
//!
//! [`TokenError::is_retryable`] says whether waiting can help (network, 5xx, 429) or the
//! deployment must change (bad key, 4xx from Maskinporten or the exchange); `aos check-config`
//! and the logs use it. The pipeline still retries every token error
//! (`AltinnError::is_retryable`): a refused grant says nothing about the message being
//! processed, and poisoning every message while a certificate is renewed would be worse than
//! letting the queue retry them.

/// The Maskinporten key material is unusable (never retryable: the deployment must change), or
/// could not be loaded yet ([`KeyError::Unavailable`], retryable).
#[derive(Clone, Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("wrong password for the PKCS#12 file (its integrity check failed)")]
    WrongPassword,
    #[error("not a usable PKCS#12 file: {0}")]
    Pkcs12(String),
    #[error("not a usable PEM file: {0}")]
    Pem(String),
    #[error("not a usable JWK: {0}")]
    Jwk(String),
    /// The key or certificate is readable but cannot be used (not RSA, too short, the key does
    /// not belong to the certificate, …).
    #[error("{0}")]
    Unusable(String),
    #[error("Key Vault: {0}")]
    KeyVault(String),
    /// A load did not end within its time limit (`auth/key_store.rs` `LOAD_TIMEOUT`): a vault
    /// that accepts connections and never answers.
    #[error("no answer within {secs} s")]
    TimedOut { secs: u64 },
    /// No key has been loaded yet and the last attempt failed (Key Vault unreachable, the
    /// identity not authorised yet, the secret not uploaded yet): waiting can help, so the
    /// step that needed the token is retried later (`auth/key_store.rs`).
    #[error("cannot load it from {setting} (next attempt in {retry_in_secs} s): {cause}")]
    Unavailable {
        setting: String,
        retry_in_secs: u64,
        cause: Box<KeyError>,
    },
}

/// A Maskinporten grant or an Altinn exchange failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum TokenError {
    #[error("Maskinporten key: {0}")]
    Key(#[from] KeyError),
    /// Maskinporten answered with an OAuth error body (`error`, `error_description`).
    #[error("Maskinporten refused the grant (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// An HTTP error status without a usable error body.
    #[error("{what}: HTTP {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Status {
        what: &'static str,
        status: u16,
        detail: String,
    },
    /// The request never got an answer (connection refused, TLS, timeout).
    #[error("{what}: {detail}")]
    Transport { what: &'static str, detail: String },
    /// An answer that is not what the protocol promises.
    #[error("{what}: unreadable response: {detail}")]
    Decode { what: &'static str, detail: String },
}

impl TokenError {
    /// Network errors, 5xx, 408 and 429 may go away by themselves; a bad key, a refused grant
    /// (4xx) or an unreadable answer will not until someone changes the configuration.
    pub fn is_retryable(&self) -> bool {
        match self {
            TokenError::Transport { .. } => true,
            TokenError::Status { status, .. } | TokenError::Refused { status, .. } => {
                *status >= 500 || matches!(*status, 408 | 429)
            }
            TokenError::Key(KeyError::Unavailable { .. }) => true,
            TokenError::Key(_) | TokenError::Decode { .. } => false,
        }
    }

    pub(crate) fn transport(what: &'static str, e: &reqwest::Error) -> Self {
        TokenError::Transport {
            what,
            detail: with_causes(e),
        }
    }
}

/// An error and its causes on one line. HTTP client errors say only "error sending request"
/// or "retry policy expired"; the cause (connection refused, unknown certificate issuer) is
/// what an operator needs.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// Sends a token request and reads its (small) body whole; a failure on either side is a
/// transport error. The grant and the exchange both go through here.
pub(crate) async fn send_and_read(
    request: reqwest::RequestBuilder,
    what: &'static str,
) -> Result<(reqwest::StatusCode, bytes::Bytes), TokenError> {
    let response = request
        .send()
        .await
        .map_err(|e| TokenError::transport(what, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| TokenError::transport(what, &e))?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let status = |status| TokenError::Status {
            what: "x",
            status,
            detail: String::new(),
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(
            TokenError::Transport {
                what: "x",
                detail: "refused".into()
            }
            .is_retryable()
        );
        assert!(!TokenError::Key(KeyError::WrongPassword).is_retryable());
        let refused = TokenError::Refused {
            status: 400,
            error: "invalid_grant".into(),
            description: Some("bad aud".into()),
        };
        assert!(!refused.is_retryable());
        assert_eq!(
            refused.to_string(),
            "Maskinporten refused the grant (HTTP 400): invalid_grant: bad aud"
        );
    }
}
