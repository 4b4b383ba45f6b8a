//! The Altinn token: Maskinporten grant → Altinn exchange → cache (`docs/specs/altinn.md` §4.2).
//!
//! - The exchange is `GET {platform}authentication/api/v1/exchange/maskinporten` with the
//!   Maskinporten token as bearer and `Accept: text/plain`. Altinn answers the JWT as a plain
//!   string or, depending on content negotiation in front of it, as a JSON string literal; both
//!   are accepted. `?test=true` is added only in `TestMode` (it only matters for Digdir).
//! - The cache keeps the token until shortly before the `exp` in its own payload (Altinn's
//!   lifetime is configuration, 30 minutes today; the reference system's 9 s cache and other
//!   peers' use of the Maskinporten lifetime are both wrong guesses). The margin is 60 s or
//!   10 % of the lifetime, whichever is smaller, so short-lived tokens are still reused.
//! - Refresh is single-flight: callers that find no fresh token queue on one async mutex; the
//!   first does the grant and the exchange, the rest find its token (or share its error — a
//!   thousand callers behind a refused grant must not send a thousand grants).
//! - [`TokenProvider::invalidate`] drops the cached token only if it is still the one Altinn
//!   refused, so a 401 on an old token never throws away a newer one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use time::OffsetDateTime;
use url::Url;

use super::error::TokenError;
use super::maskinporten::{MaskinportenClient, MaskinportenToken, excerpt};
use super::provider::{AccessToken, TokenProvider};
use crate::config::MaskinportenSettings;
use crate::domain::BaseUrl;

const WHAT: &str = "Altinn token exchange";
/// Refresh at most this long before the token's `exp` …
const MAX_MARGIN: Duration = Duration::from_secs(60);
/// … and at most this fraction of its lifetime before it.
const MARGIN_FRACTION: f64 = 0.1;

/// A freshly exchanged Altinn token and when it expires (from its own `exp`).
#[derive(Clone, Debug)]
pub struct ExchangedToken {
    pub token: AccessToken,
    pub expires_at: OffsetDateTime,
    /// `expires_at - now` when it arrived.
    pub lifetime: Duration,
}

struct Cached {
    token: AccessToken,
    refresh_after: Instant,
}

/// The production [`TokenProvider`]: one per process.
pub struct AltinnTokenProvider {
    maskinporten: MaskinportenClient,
    http: reqwest::Client,
    exchange_url: Url,
    cache: Mutex<Option<Cached>>,
    /// Held while a refresh runs; remembers the last failure for the callers that waited on it.
    refresh: tokio::sync::Mutex<Option<TokenError>>,
    /// Completed refresh attempts, to tell "someone refreshed while I waited" from "nobody did".
    attempts: AtomicU64,
}

impl AltinnTokenProvider {
    pub fn new(
        http: reqwest::Client,
        maskinporten: MaskinportenClient,
        settings: &MaskinportenSettings,
        platform: &BaseUrl,
    ) -> Self {
        let mut exchange_url = platform.join("authentication/api/v1/exchange/maskinporten");
        if settings.test_mode {
            exchange_url.set_query(Some("test=true"));
        }
        AltinnTokenProvider {
            maskinporten,
            http,
            exchange_url,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        }
    }

    pub fn maskinporten(&self) -> &MaskinportenClient {
        &self.maskinporten
    }

    pub fn exchange_url(&self) -> &Url {
        &self.exchange_url
    }

    /// One grant and one exchange, bypassing the cache (`aos check-config`).
    pub async fn fetch(&self) -> Result<(MaskinportenToken, ExchangedToken), TokenError> {
        let maskinporten = self.maskinporten.fetch_token().await?;
        let altinn = self.exchange(&maskinporten.access_token).await?;
        Ok((maskinporten, altinn))
    }

    /// Trades a Maskinporten token for an Altinn token.
    pub async fn exchange(&self, maskinporten: &AccessToken) -> Result<ExchangedToken, TokenError> {
        let request = self
            .http
            .get(self.exchange_url.clone())
            .bearer_auth(maskinporten.secret())
            .header(reqwest::header::ACCEPT, "text/plain");
        let (status, body) = super::error::send_and_read(request, WHAT).await?;
        if !status.is_success() {
            return Err(TokenError::Status {
                what: WHAT,
                status: status.as_u16(),
                detail: excerpt(&body),
            });
        }
        let token =
            token_from_body(&body).map_err(|detail| TokenError::Decode { what: WHAT, detail })?;
        let expires_at =
            jwt_expiry(&token).map_err(|detail| TokenError::Decode { what: WHAT, detail })?;
        let now = OffsetDateTime::now_utc();
        let lifetime = Duration::try_from(expires_at - now).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            TokenError::Decode {
                what: WHAT,
                detail: format!(
                    "the Altinn token expired at {} before it arrived (is this machine's clock right?)",
                    super::keys::rfc3339(expires_at)
                ),
            }
        })?;
        Ok(ExchangedToken {
            token: AccessToken::new(token),
            expires_at,
            lifetime,
        })
    }

    fn cached(&self) -> Option<AccessToken> {
        let cache = lock(&self.cache);
        cache
            .as_ref()
            .filter(|c| Instant::now() < c.refresh_after)
            .map(|c| c.token.clone())
    }
}

#[async_trait]
impl TokenProvider for AltinnTokenProvider {
    async fn token(&self) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let attempts_before = self.attempts.load(Ordering::Acquire);
        let mut last_error = self.refresh.lock().await;
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        if self.attempts.load(Ordering::Acquire) != attempts_before
            && let Some(e) = last_error.as_ref()
        {
            // A refresh ran and failed while this caller waited: share its answer.
            return Err(e.clone());
        }
        let result = self.fetch().await;
        self.attempts.fetch_add(1, Ordering::Release);
        match result {
            Ok((_, fresh)) => {
                *last_error = None;
                let margin = MAX_MARGIN.min(fresh.lifetime.mul_f64(MARGIN_FRACTION));
                let refresh_after = Instant::now() + fresh.lifetime.saturating_sub(margin);
                *lock(&self.cache) = Some(Cached {
                    token: fresh.token.clone(),
                    refresh_after,
                });
                tracing::info!(expires_at = %super::keys::rfc3339(fresh.expires_at), "new Altinn token");
                Ok(fresh.token)
            }
            Err(e) => {
                tracing::warn!(error = %e, retryable = e.is_retryable(), "no Altinn token");
                *last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn invalidate(&self, token: &AccessToken) {
        let mut cache = lock(&self.cache);
        if cache.as_ref().is_some_and(|c| c.token == *token) {
            *cache = None;
        }
    }

    async fn key_ready(&self) -> Result<(), String> {
        self.maskinporten.key_ready().await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The token from an exchange body: a plain JWT or a JSON string literal holding one.
fn token_from_body(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body)
        .map_err(|_| "the body is not UTF-8".to_string())?
        .trim();
    let token = if text.starts_with('"') {
        serde_json::from_str::<String>(text)
            .map_err(|e| format!("a quoted body that is not a JSON string ({e})"))?
    } else {
        text.to_string()
    };
    let parts = token.split('.').count();
    if parts != 3
        || token
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
    {
        return Err("the body is not a JWT".into());
    }
    Ok(token)
}

/// `exp` from a JWT's payload. The signature is Altinn's business, not ours: we only need to
/// know how long the token lives.
fn jwt_expiry(token: &str) -> Result<OffsetDateTime, String> {
    let payload = token.split('.').nth(1).ok_or("the token has no payload")?;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let bytes = engine
        .decode(payload)
        .map_err(|_| "the token payload is not base64url".to_string())?;
    let claims: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| "the token payload is not JSON".to_string())?;
    let exp = claims
        .get("exp")
        .and_then(serde_json::Value::as_f64)
        .ok_or("the token has no numeric `exp`")?;
    OffsetDateTime::from_unix_timestamp(exp as i64)
        .map_err(|_| format!("the token's `exp` ({exp}) is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            e.encode(r#"{"alg":"RS256"}"#),
            e.encode(claims),
            e.encode("sig")
        )
    }

    #[test]
    fn exchange_body_plain_and_quoted() {
        let token = jwt(r#"{"exp":1700000000}"#);
        assert_eq!(token_from_body(token.as_bytes()).unwrap(), token);
        assert_eq!(
            token_from_body(format!("\"{token}\"\n").as_bytes()).unwrap(),
            token
        );
        assert!(token_from_body(b"<html>oops</html>").is_err());
        assert!(token_from_body(b"\"unterminated").is_err());
        assert!(token_from_body(b"a.b").is_err());
    }

    #[test]
    fn expiry_comes_from_the_payload() {
        let exp = jwt_expiry(&jwt(r#"{"exp":1700000000,"iat":1699998200}"#)).unwrap();
        assert_eq!(exp.unix_timestamp(), 1_700_000_000);
        assert!(jwt_expiry(&jwt(r#"{"iat":1}"#)).is_err());
        assert!(jwt_expiry(&jwt(r#"{"exp":"soon"}"#)).is_err());
        assert!(jwt_expiry("a.!!!.c").is_err());
    }
}
