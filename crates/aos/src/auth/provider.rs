//! What every Altinn call asks for a bearer token: the [`TokenProvider`] interface, the redacting
//! [`AccessToken`], and the fixed [`StaticToken`]. The providers in `token.rs` and the grant in
//! `maskinporten.rs` build on this file, not on `auth/mod.rs`, which wires them together.

use std::sync::Arc;

use async_trait::async_trait;

use super::error::TokenError;
use crate::domain::Secret;

/// A bearer token. `Debug` and `Display` never show it, so it cannot leak into logs; its copies
/// share one [`Secret`], overwritten when the last copy is dropped (a token expired from the
/// cache does not linger in freed memory).
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<Secret>);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(Arc::new(Secret::new(token)))
    }

    /// The token itself, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        self.0.expose()
    }
}

/// The shared [`Secret`] zeroises itself when the last copy goes.
impl zeroize::ZeroizeOnDrop for AccessToken {}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

#[async_trait]
pub trait TokenProvider: Send + Sync {
    /// A token valid for at least the next request.
    async fn token(&self) -> Result<AccessToken, TokenError>;
    /// Altinn refused `token` (401): drop it so the next call gets a fresh one.
    fn invalidate(&self, token: &AccessToken);
    /// Whether the key material a token needs can be had now (for health checks): never asks
    /// Maskinporten or Altinn, so a health probe costs them nothing. A fixed token is ready.
    async fn key_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A fixed token (local development and tests against the simulator).
pub struct StaticToken(AccessToken);

impl StaticToken {
    pub fn new(token: impl Into<String>) -> Self {
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
