//! The HTTP surface: Storage and App endpoints, the Maskinporten token
//! endpoint and the token exchange, and the middleware that records every
//! request.
//!
//! Layering, outermost first: `record` (every request, with its final status)
//! → `faults::apply_faults` → routing → `auth::require_token` (protected
//! routes only) → handler. Path segments are taken as strings and parsed here
//! so malformed ids get Altinn-like 400s instead of extractor rejections.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use uuid::Uuid;

use super::altinn_token;
use super::auth::{self, EXCHANGE_PATH};
use super::content::content_stream;
use super::control;
use super::events_routes;
use super::faults;
use super::maskinporten;
use super::model::instance_json;
use super::state::{RecordedCall, SimState, StoredInstance};

type Sim = State<Arc<SimState>>;

/// Builds the complete router for one simulator.
pub(crate) fn router(state: Arc<SimState>) -> Router {
    const INSTANCE: &str = "/storage/api/v1/instances/{party}/{guid}";
    const APP_INSTANCE: &str = "/{org}/{app}/instances/{party}/{guid}";

    let protected = Router::new()
        .route(
            "/storage/api/v1/instances",
            get(super::query::query_instances),
        )
        .route(INSTANCE, get(storage_instance))
        .route(&format!("{INSTANCE}/data/{{data}}"), get(storage_data))
        .route(&format!("{INSTANCE}/complete"), post(storage_complete))
        .route(
            &format!("{INSTANCE}/data"),
            post(super::upload::storage_upload),
        )
        .route(APP_INSTANCE, get(app_instance))
        .route(&format!("{APP_INSTANCE}/data/{{data}}"), get(app_data))
        .route(&format!("{APP_INSTANCE}/complete"), post(app_complete))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));

    Router::new()
        .route("/", get(|| async { "altinn simulator" }))
        .route(EXCHANGE_PATH, get(altinn_token::exchange))
        .route(maskinporten::TOKEN_PATH, post(maskinporten::token_endpoint))
        .merge(protected)
        .merge(events_routes::router(state.clone()))
        .merge(control::router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            faults::apply_faults,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// Records every request with the status it was finally answered with.
async fn record(State(state): Sim, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let authorized = auth::is_authorized(&state, &path, req.headers());
    let resp = next.run(req).await;
    state.record_call(RecordedCall {
        method,
        path,
        authorized,
        status: resp.status().as_u16(),
        at,
    });
    resp
}

/// An early answer from a handler: status plus a short text body. Small and
/// `IntoResponse`, so handlers can use `?` on parsing and lookups.
type Rejection = (StatusCode, &'static str);

fn error(status: StatusCode, msg: &'static str) -> Rejection {
    (status, msg)
}

/// Parses `{partyId}/{instanceGuid}`; Storage answers 400 for a party id of 0,
/// and a non-numeric one or a non-GUID cannot be routed to an instance.
fn parse_ids(party: &str, guid: &str) -> Result<(u64, Uuid), Rejection> {
    let party = party
        .parse::<u64>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "invalid instanceOwnerPartyId"))?;
    let guid = Uuid::try_parse(guid)
        .map_err(|_| error(StatusCode::BAD_REQUEST, "invalid instanceGuid"))?;
    Ok((party, guid))
}

fn parse_data_id(data: &str) -> Result<Uuid, Rejection> {
    Uuid::try_parse(data).map_err(|_| error(StatusCode::BAD_REQUEST, "invalid dataGuid"))
}

/// What the Storage/App handlers return: an answer or an early rejection.
type Answer = Result<Response, Rejection>;

/// Finds an instance by ids and, for App API paths, org/app; any mismatch is
/// answered with `missing` (404 for reads, 403 for complete).
fn find_instance(
    state: &SimState,
    app: Option<(&str, &str)>,
    party: &str,
    guid: &str,
    missing: Rejection,
) -> Result<StoredInstance, Rejection> {
    let (party, guid) = parse_ids(party, guid)?;
    state
        .instance(party, guid)
        .filter(|s| app.is_none_or(|(org, app)| s.created.org == org && s.created.app == app))
        .ok_or(missing)
}

const INSTANCE_NOT_FOUND: Rejection = (StatusCode::NOT_FOUND, "instance not found");

fn instance_response(state: &SimState, stored: &StoredInstance) -> Response {
    Json(instance_json(&state.base, stored)).into_response()
}

async fn storage_instance(
    State(state): Sim,
    Path((party, guid)): Path<(String, String)>,
) -> Answer {
    let stored = find_instance(&state, None, &party, &guid, INSTANCE_NOT_FOUND)?;
    Ok(instance_response(&state, &stored))
}

async fn app_instance(
    State(state): Sim,
    Path((org, app, party, guid)): Path<(String, String, String, String)>,
) -> Answer {
    let stored = find_instance(
        &state,
        Some((&org, &app)),
        &party,
        &guid,
        INSTANCE_NOT_FOUND,
    )?;
    Ok(instance_response(&state, &stored))
}

async fn storage_data(
    State(state): Sim,
    Path((party, guid, data)): Path<(String, String, String)>,
) -> Answer {
    data_response(&state, None, &party, &guid, &data)
}

async fn app_data(
    State(state): Sim,
    Path((org, app, party, guid, data)): Path<(String, String, String, String, String)>,
) -> Answer {
    data_response(&state, Some((&org, &app)), &party, &guid, &data)
}

/// Streams an element's generated content. Only the element's metadata is
/// looked up; the bytes are produced chunk by chunk as hyper sends them.
fn data_response(
    state: &SimState,
    app: Option<(&str, &str)>,
    party: &str,
    guid: &str,
    data: &str,
) -> Answer {
    let stored = find_instance(state, app, party, guid, INSTANCE_NOT_FOUND)?;
    let data = parse_data_id(data)?;
    let element = stored
        .created
        .elements
        .iter()
        .find(|e| e.id == data)
        .ok_or(error(StatusCode::NOT_FOUND, "data element not found"))?;

    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&element.content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    // Explicit length: a stream body has no size hint, and the client must be
    // able to detect truncation against it.
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(element.size));
    if let Some(value) = element.filename.as_deref().and_then(content_disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    let body = Body::from_stream(content_stream(element.seed, element.size));
    Ok((StatusCode::OK, headers, body).into_response())
}

/// RFC 6266 `attr-char`s stay literal in `filename*`; everything else is
/// percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename=...; filename*=UTF-8''...`, the shape ASP.NET's
/// `File(stream, type, name)` produces: the plain `filename` is a token when
/// possible, quoted otherwise, with non-ASCII replaced by `_`.
fn content_disposition(name: &str) -> Option<HeaderValue> {
    const SEPARATORS: &str = "()<>@,;:\\\"/[]?={} \t";
    let is_token = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !SEPARATORS.contains(c));
    let plain = if is_token {
        name.to_owned()
    } else {
        let mut quoted = String::from("\"");
        for c in name.chars() {
            match c {
                '"' | '\\' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                ' ' => quoted.push(' '),
                c if c.is_ascii_graphic() => quoted.push(c),
                _ => quoted.push('_'),
            }
        }
        quoted.push('"');
        quoted
    };
    let encoded = utf8_percent_encode(name, ATTR_CHAR_ESCAPES);
    HeaderValue::from_str(&format!(
        "attachment; filename={plain}; filename*=UTF-8''{encoded}"
    ))
    .ok()
}

async fn storage_complete(
    State(state): Sim,
    Path((party, guid)): Path<(String, String)>,
) -> Answer {
    complete(&state, None, &party, &guid).await
}

async fn app_complete(
    State(state): Sim,
    Path((org, app, party, guid)): Path<(String, String, String, String)>,
) -> Answer {
    complete(&state, Some((&org, &app)), &party, &guid).await
}

/// Complete confirmation (spec §3.5): guard first (observe only), then an
/// idempotent append of the owner org's confirmation. Unknown instances get
/// 403 because Altinn authorises before it looks the instance up.
async fn complete(state: &SimState, app: Option<(&str, &str)>, party: &str, guid: &str) -> Answer {
    const FORBIDDEN: Rejection = (StatusCode::FORBIDDEN, "not authorized for this instance");
    let stored = find_instance(state, app, party, guid, FORBIDDEN)?;
    let created = stored.created;
    if let Some(guard) = state.guard()
        && let Err(msg) = guard(created.clone()).await
    {
        state.add_violation(msg);
    }
    let updated = state
        .confirm(created.party_id, created.instance_guid, &created.org)
        .ok_or(FORBIDDEN)?;
    Ok(instance_response(state, &updated))
}

#[cfg(test)]
pub(crate) fn content_disposition_for_test(name: &str) -> String {
    content_disposition(name)
        .and_then(|v| v.to_str().ok().map(str::to_owned))
        .unwrap_or_default()
}
