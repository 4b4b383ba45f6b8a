//! Bearer-token checks. The simulator does not validate JWTs: it only checks
//! that the archiver sends the token it was given, which is what catches a
//! client that forgets the header or sends the wrong (e.g. Maskinporten
//! instead of exchanged Altinn) token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::SimState;

/// The Altinn token exchange path; it accepts any bearer token because the
/// caller presents a Maskinporten token there, not the Altinn one.
pub(crate) const EXCHANGE_PATH: &str = "/authentication/api/v1/exchange/maskinporten";

/// The bearer token in `Authorization`, if any (scheme is case-insensitive).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether the request carries the configured token. An empty configured
/// token authorises nobody.
pub(crate) fn has_token(state: &SimState, headers: &HeaderMap) -> bool {
    !state.token.is_empty() && bearer(headers) == Some(state.token.as_str())
}

/// The `authorized` flag recorded for a request: the credential its endpoint
/// would accept.
pub(crate) fn is_authorized(state: &SimState, path: &str, headers: &HeaderMap) -> bool {
    if path == EXCHANGE_PATH {
        bearer(headers).is_some()
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
