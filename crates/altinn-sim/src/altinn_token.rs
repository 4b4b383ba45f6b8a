//! The Altinn token exchange and the Altinn JWTs it issues
//! (`docs/specs/altinn.md` §4.2).
//!
//! `GET {base}authentication/api/v1/exchange/maskinporten` trades a bearer
//! token that this simulator's Maskinporten issued for an RS256 Altinn JWT
//! with Altinn's claims and `exp = now + lifetime` (30 minutes unless a test
//! shortens it). The Storage/App endpoints accept those JWTs until `exp` — an
//! expired one gets 401, which is what drives the client's refresh logic —
//! and still accept the configured fixed token, so tests and local setups
//! without Maskinporten keep working.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use time::OffsetDateTime;

use super::auth;
use super::state::{SimState, lock};

/// How the exchange writes the token in its body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExchangeBody {
    /// Like ASP.NET content negotiation: a JSON string literal when the
    /// request accepts `application/json`, the plain token otherwise.
    #[default]
    Negotiated,
    /// Always a JSON string literal (`"eyJ…"`).
    JsonQuoted,
    /// Always the plain token.
    Plain,
}

/// One exchange request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct ExchangeRequest {
    /// Whether the query had `test=true`.
    pub test: bool,
    pub accept: Option<String>,
    pub status: u16,
}

pub(crate) struct AltinnTokens {
    lifetime: Mutex<Duration>,
    body: Mutex<ExchangeBody>,
    exchanges: AtomicUsize,
    requests: Mutex<Vec<ExchangeRequest>>,
}

impl Default for AltinnTokens {
    fn default() -> Self {
        Self {
            // Altinn's JwtValidityMinutes.
            lifetime: Mutex::new(Duration::from_secs(30 * 60)),
            body: Mutex::default(),
            exchanges: AtomicUsize::new(0),
            requests: Mutex::default(),
        }
    }
}

impl AltinnTokens {
    pub(crate) fn set_lifetime(&self, lifetime: Duration) {
        *lock(&self.lifetime) = lifetime;
    }

    pub(crate) fn set_body(&self, body: ExchangeBody) {
        *lock(&self.body) = body;
    }

    pub(crate) fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> Vec<ExchangeRequest> {
        lock(&self.requests).clone()
    }

    /// A signed Altinn token for `client_id` that expires `lifetime` from now.
    pub(crate) fn issue(
        &self,
        base: &url::Url,
        client_id: &str,
        scope: &str,
        lifetime: Duration,
    ) -> Result<String, String> {
        let key = signing_key()?;
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = json!({
            "scope": scope,
            "client_id": client_id,
            "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:991825827"},
            "urn:altinn:org": "ttd",
            "urn:altinn:orgNumber": "991825827",
            "urn:altinn:authenticatemethod": "maskinporten",
            "urn:altinn:authlevel": 3,
            "iss": format!("{base}authentication/api/v1/openid/"),
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + lifetime,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("altinn-simulator".to_owned());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())
    }
}

/// Whether `token` is an Altinn JWT this simulator signed and that has not
/// expired: valid strictly before `exp`, without leeway, so a client that
/// uses a token at or past `exp` sees 401.
pub(crate) fn is_valid_altinn_token(token: &str) -> bool {
    let Ok(key) = signing_key() else { return false };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    match jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &validation) {
        Ok(data) => data.claims["exp"]
            .as_i64()
            .is_some_and(|exp| OffsetDateTime::now_utc().unix_timestamp() < exp),
        Err(_) => false,
    }
}

struct SimKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// One RSA key per process, made on first use (key generation takes a
/// moment, and most simulator tests never exchange a token).
fn signing_key() -> Result<&'static SimKey, String> {
    static KEY: OnceLock<Result<SimKey, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| format!("generating the simulator's signing key: {e}"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|e| format!("encoding the simulator's key: {e}"))?;
        let info = pkcs8::PrivateKeyInfoRef::try_from(pkcs8.as_ref()).map_err(|e| e.to_string())?;
        Ok(SimKey {
            encoding: EncodingKey::from_rsa_der(info.private_key.as_bytes()),
            decoding: DecodingKey::from_rsa_der(pair.public_key().as_ref()),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The exchange handler.
pub(crate) async fn exchange(State(state): State<Arc<SimState>>, req: Request) -> Response {
    let tokens = &state.altinn_tokens;
    tokens.exchanges.fetch_add(1, Ordering::SeqCst);
    let test = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "test" && v == "true")
    });
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let grant = auth::bearer(req.headers()).and_then(|t| state.maskinporten.issued(t));
    let response = match grant {
        None => auth::unauthorized(),
        Some(grant) => {
            let lifetime = *lock(&tokens.lifetime);
            match tokens.issue(&state.base, &grant.client_id, &grant.scope, lifetime) {
                Ok(token) => body_response(*lock(&tokens.body), accept.as_deref(), token),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
    };
    lock(&tokens.requests).push(ExchangeRequest {
        test,
        accept,
        status: response.status().as_u16(),
    });
    response
}

fn body_response(mode: ExchangeBody, accept: Option<&str>, token: String) -> Response {
    let wants_json = accept.is_some_and(|a| a.contains("application/json"));
    let quoted = match mode {
        ExchangeBody::Negotiated => wants_json,
        ExchangeBody::JsonQuoted => true,
        ExchangeBody::Plain => false,
    };
    if quoted {
        let body = serde_json::Value::String(token).to_string();
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            )],
            body,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            token,
        )
            .into_response()
    }
}
