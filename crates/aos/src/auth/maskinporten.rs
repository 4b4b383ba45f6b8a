//! The Maskinporten JWT grant (`docs/specs/altinn.md` §4.1).
//!
//! A grant is a short-lived RS256 JWT signed with the organisation's key, POSTed form-encoded
//! to `{issuer}token`. Its claims are exactly `aud`, `iss`, `scope`, `iat`, `exp` and `jti`:
//! Maskinporten refuses claims outside its list, `aud` must be the issuer itself (the reference
//! system's hard-coded `ver2` audience is why it broke), `exp - iat` must not exceed 120 s, and
//! a `jti` is single-use, so every grant gets a new UUID. The header carries `x5c` or `kid`
//! (from [`SigningKey::header`]) and no `typ`.
//!
//! The Maskinporten token is used once, right away, for the Altinn exchange
//! ([`super::token`]); it is never cached on its own, so its own lifetime does not matter.
//!
//! The key comes from a [`KeyStore`]: loaded when the first grant needs it. When Maskinporten
//! refuses a grant in a way a replaced key explains (401, `invalid_client`, `invalid_grant`),
//! the store is told, and the grant is sent once more with the other key it then has: the key
//! loaded again (a rotated certificate), or the previous key when the refused one was a new key
//! not yet accepted (a certificate put into the vault before Maskinporten knows it) — so
//! rotating the certificate needs no restart and fails no message.

use std::sync::Arc;

use serde::Deserialize;
use time::OffsetDateTime;
use url::Url;

use super::error::TokenError;
use super::key_store::KeyStore;
use super::keys::SigningKey;
use super::provider::AccessToken;
use crate::config::MaskinportenSettings;

/// Seconds between `iat` and `exp`. Maskinporten allows at most 120; 60 leaves room for clock
/// skew without keeping a stolen grant usable for long.
pub const GRANT_LIFETIME_SECS: i64 = 60;

const WHAT: &str = "Maskinporten token request";

/// Exactly the claims Maskinporten documents for a grant, nothing else.
#[derive(serde::Serialize)]
struct GrantClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    scope: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// A Maskinporten access token, as the token endpoint returned it.
#[derive(Debug)]
pub struct MaskinportenToken {
    pub access_token: AccessToken,
    /// Seconds, if Maskinporten said.
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
}

/// Builds grants and trades them for Maskinporten access tokens.
pub struct MaskinportenClient {
    http: reqwest::Client,
    token_endpoint: Url,
    audience: String,
    client_id: String,
    scopes: String,
    keys: Arc<KeyStore<SigningKey>>,
}

impl MaskinportenClient {
    /// Whether the signing key is held or can be loaded now ([`KeyStore::get`]).
    pub async fn key_ready(&self) -> Result<(), String> {
        self.keys.get().await.map(drop).map_err(|e| e.to_string())
    }

    pub fn new(
        http: reqwest::Client,
        settings: &MaskinportenSettings,
        keys: Arc<KeyStore<SigningKey>>,
    ) -> Self {
        MaskinportenClient {
            http,
            token_endpoint: settings.issuer.join("token"),
            // `BaseUrl` always ends with exactly one '/', which is the issuer form `aud` needs.
            audience: settings.issuer.to_string(),
            client_id: settings.client_id.clone(),
            scopes: settings.scopes.clone(),
            keys,
        }
    }

    pub fn token_endpoint(&self) -> &Url {
        &self.token_endpoint
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn scopes(&self) -> &str {
        &self.scopes
    }

    /// The key held now; `None` before the first grant loaded it (Key Vault is read lazily).
    pub fn key(&self) -> Option<Arc<SigningKey>> {
        self.keys.current()
    }

    /// A signed grant issued at `now` with the key held now, with a fresh `jti`.
    pub fn assertion(&self, now: OffsetDateTime) -> Result<String, TokenError> {
        let key = self.key().ok_or_else(|| {
            super::KeyError::Unusable("the Maskinporten key has not been loaded yet".into())
        })?;
        self.assertion_with(&key, now)
    }

    fn assertion_with(&self, key: &SigningKey, now: OffsetDateTime) -> Result<String, TokenError> {
        let iat = now.unix_timestamp();
        let claims = GrantClaims {
            aud: &self.audience,
            iss: &self.client_id,
            scope: &self.scopes,
            iat,
            exp: iat + GRANT_LIFETIME_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&key.header(), &claims, key.encoding_key())
            .map_err(|e| super::KeyError::Unusable(format!("cannot sign the grant: {e}")).into())
    }

    /// A Maskinporten token: one grant, or two when the first was refused and another key is
    /// at hand — the key it replaced, if the refused one was new and never accepted, or the key
    /// loaded again (a rotated certificate). A grant that goes through tells the store the key
    /// is accepted (see `key_store.rs` on keys on probation).
    pub async fn fetch_token(&self) -> Result<MaskinportenToken, TokenError> {
        let key = self.keys.get().await?;
        match self.grant(&key).await {
            Err(e) if refuses_the_key(&e) => {
                self.keys.refused(&key);
                let other = self.keys.get().await?;
                if *other == *key {
                    return Err(e);
                }
                tracing::info!(
                    certificate = %other.describe(),
                    refused = %e,
                    "Maskinporten refused the key; trying the other key at hand"
                );
                let result = self.grant(&other).await;
                if result.is_ok() {
                    self.keys.accepted(&other);
                }
                result
            }
            Ok(token) => {
                self.keys.accepted(&key);
                Ok(token)
            }
            result => result,
        }
    }

    /// One grant signed with `key`, one token request.
    async fn grant(&self, key: &SigningKey) -> Result<MaskinportenToken, TokenError> {
        let assertion = self.assertion_with(key, OffsetDateTime::now_utc())?;
        let request = self
            .http
            .post(self.token_endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ]);
        let (status, body) = super::error::send_and_read(request, WHAT).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &body));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            expires_in: Option<u64>,
            scope: Option<String>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| TokenError::Decode {
                what: WHAT,
                detail: format!("not a token response ({e})"),
            })?;
        if parsed.access_token.trim().is_empty() {
            return Err(TokenError::Decode {
                what: WHAT,
                detail: "empty access_token".into(),
            });
        }
        Ok(MaskinportenToken {
            access_token: AccessToken::new(parsed.access_token),
            expires_in: parsed.expires_in,
            scope: parsed.scope,
        })
    }
}

/// A refusal that a key Maskinporten no longer accepts explains: the client authentication
/// failed (401, `invalid_client`), or the grant's signature or certificate was not accepted
/// (`invalid_grant`, which is also how Maskinporten answers a replaced certificate). Other
/// causes of `invalid_grant` (clock skew, scopes) cost one extra key load per grant.
fn refuses_the_key(e: &TokenError) -> bool {
    match e {
        TokenError::Refused { status, error, .. } => {
            *status == 401 || matches!(error.as_str(), "invalid_client" | "invalid_grant")
        }
        TokenError::Status { what, status, .. } => *what == WHAT && *status == 401,
        _ => false,
    }
}

/// An OAuth error body (`error`, `error_description`) becomes [`TokenError::Refused`], so the
/// operator sees Maskinporten's own reason; anything else a plain status with a short excerpt.
fn refusal(status: u16, body: &[u8]) -> TokenError {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => TokenError::Refused {
            status,
            error: e.error,
            description: e.error_description,
        },
        Err(_) => TokenError::Status {
            what: WHAT,
            status,
            detail: excerpt(body),
        },
    }
}

/// The start of a response body on one line, for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_named() {
        let e = refusal(400, br#"{"error":"invalid_grant","error_description":"Invalid assertion. Client authentication failed."}"#);
        assert_eq!(
            e.to_string(),
            "Maskinporten refused the grant (HTTP 400): invalid_grant: Invalid assertion. Client authentication failed."
        );
        assert!(!e.is_retryable());
        let e = refusal(503, b"<html>\n  Service   Unavailable</html>");
        assert_eq!(
            e.to_string(),
            "Maskinporten token request: HTTP 503: <html> Service Unavailable</html>"
        );
        assert!(e.is_retryable());
    }
}
