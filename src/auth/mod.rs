//! The Altinn token, behind the interface every Altinn call uses.
//!
//! [`TokenProvider`] is what the Altinn client asks for a bearer token and tells when Altinn
//! answered 401. The provider in this module is the simple one: a fixed token from the
//! `AltinnApplicationOwnerSystemSettings__AltinnToken` setting, for local development against
//! the simulator. The Maskinporten grant + Altinn exchange + cache implements the same trait.

use std::sync::Arc;

use async_trait::async_trait;

/// A bearer token. `Debug` and `Display` never show it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        AccessToken(token.into())
    }

    /// The token itself, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Why no token could be had; always worth a retry later.
#[derive(Debug, thiserror::Error)]
#[error("no Altinn token: {0}")]
pub struct TokenError(pub String);

#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A token valid for at least the next request.
    async fn token(&self) -> Result<AccessToken, TokenError>;
    /// Altinn refused `token` (401): drop it so the next call gets a fresh one.
    fn invalidate(&self, token: &AccessToken);
}

/// A fixed token (local development and tests against the simulator).
pub struct StaticToken(AccessToken);

impl StaticToken {
    pub fn new(token: impl Into<Arc<str>>) -> Self {
        StaticToken(AccessToken::new(token))
    }
}

#[async_trait]
impl TokenProvider for StaticToken {
    async fn token(&self) -> Result<AccessToken, TokenError> {
        Ok(self.0.clone())
    }

    fn invalidate(&self, _token: &AccessToken) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_redacted_in_debug() {
        let token = AccessToken::new("eyJsecret");
        assert!(!format!("{token:?}").contains("eyJ"));
    }
}
