//! Bearer-token checks. Storage/App endpoints accept the configured fixed
//! token (local development, tests without Maskinporten) or an unexpired
//! Altinn JWT from this simulator's exchange; a Maskinporten token is refused
//! there, which catches a client that skips the exchange. The exchange accepts
//! only Maskinporten tokens this simulator issued.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::altinn_token::is_valid_altinn_token;
use super::state::SimState;

/// The Altinn token exchange path; the caller presents a Maskinporten token
/// there, not the Altinn one.
pub(crate) const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";

/// The bearer token in `Authorization`, if any (scheme is case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request carries the configured token (an empty configured
/// token authorises nobody) or an unexpired Altinn JWT issued here.
pub(crate) fn has_token(state: &SimState, headers: &HeaderMap) -> bool {
    match bearer(headers) {
        Some(token) => {
            (!state.token.is_empty() && token == state.token) || is_valid_altinn_token(token)
        }
        None => false,
    }
}

/// The `authorized` flag recorded for a request: the credential its endpoint
/// would accept.
pub(crate) fn is_authorized(state: &SimState, path: &str, headers: &HeaderMap) -> bool {
    if path == EXCHANGE_PATH {
        bearer(headers).is_some_and(|t| state.maskinporten.issued(t).is_some())
    } else {
        has_token(state, headers)
    }
}

pub(crate) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
        "missing or invalid bearer token",
    )
        .into_response()
}

/// Route layer for the Storage/App endpoints: 401 unless the configured token
/// is presented.
pub(crate) async fn require_token(
    State(state): State<Arc<SimState>>,
    req: Request,
    next: Next,
) -> Response {
    if has_token(&state, req.headers()) {
        next.run(req).await
    } else {
        unauthorized()
    }
}
