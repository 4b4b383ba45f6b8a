//! Fault injection: make chosen requests fail the way Altinn (or the network
//! in front of it) fails, so the archiver's retry, back-off and length checks
//! can be tested deterministically.
//!
//! Rules are matched in the order they were added; the first rule whose
//! `path_contains` is a substring of the request path and that has `times > 0`
//! fires and is decremented. Faults sit in front of authentication (like a
//! gateway would), so a faulted request is answered even without a token. The
//! control API (`/_sim/`) is never faulted, so a dev CLI can always reach it.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::state::{SimState, lock};

/// A fault to apply to the next `times` requests whose path contains
/// `path_contains` (e.g. `"/data/"`, an instance guid, or `"/complete"`).
#[derive(Clone, Debug)]
pub struct FaultRule {
    pub path_contains: String,
    pub fault: Fault,
    pub times: u32,
}

/// What happens to a matching request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a short text body instead of the real answer.
    /// A value that is not a valid HTTP status becomes 500.
    Status(u16),
    /// Answer 429 with `Retry-After: <seconds>`.
    RetryAfter(u64),
    /// Send the real headers (including the full `Content-Length`) but abort the
    /// body after `after_bytes` bytes, as a dropped connection would. If the body
    /// is not longer than `after_bytes` it is sent whole.
    Truncate { after_bytes: u64 },
    /// Wait this long, then answer normally (for client timeouts).
    Delay(Duration),
}

/// The active rules. A plain mutex is enough: it is held only to scan a short
/// list and never across an await.
#[derive(Default)]
pub(crate) struct FaultTable {
    rules: Mutex<Vec<FaultRule>>,
}

impl FaultTable {
    pub(crate) fn add(&self, rule: FaultRule) {
        if rule.times > 0 {
            lock(&self.rules).push(rule);
        }
    }

    /// Consumes one use of the first matching rule, dropping exhausted rules.
    pub(crate) fn take(&self, path: &str) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let idx = rules
            .iter()
            .position(|r| r.times > 0 && path.contains(r.path_contains.as_str()))?;
        let rule = &mut rules[idx];
        rule.times -= 1;
        let fault = rule.fault.clone();
        if rule.times == 0 {
            rules.remove(idx);
        }
        Some(fault)
    }
}

/// Middleware applying the first matching fault rule to a request.
pub(crate) async fn apply_faults(
    State(state): State<Arc<SimState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    match state.faults.take(path) {
        None => next.run(req).await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                status,
                format!("simulated fault: status {}", status.as_u16()),
            )
                .into_response()
        }
        Some(Fault::RetryAfter(seconds)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(seconds))],
            "simulated fault: too many requests",
        )
            .into_response(),
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(req).await
        }
        Some(Fault::Truncate { after_bytes }) => truncate(next.run(req).await, after_bytes),
    }
}

/// Pause before failing a truncated body. Hyper buffers the head and the first
/// body frames; if the body errors in the same poll the connection is dropped
/// with that buffer unsent and the client would see no response at all. A
/// pending poll makes hyper flush first, so the client gets the headers and
/// the first `after_bytes` bytes, then an early close.
const FLUSH_PAUSE: Duration = Duration::from_millis(20);

/// Wraps a response body so it fails after `after_bytes` bytes while the
/// headers still announce the full length.
fn truncate(resp: Response, after_bytes: u64) -> Response {
    let (mut parts, body) = resp.into_parts();
    // Buffered bodies (JSON) carry their length only as a size hint, which the
    // stream wrapper loses; pin it as a header so the client expects it all.
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(len) = body.size_hint().exact()
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    let stream = truncating(body.into_data_stream(), after_bytes);
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Where a truncating stream is.
enum Cut<S> {
    /// Still forwarding; `sent` bytes passed so far.
    Forwarding { inner: S, sent: u64 },
    /// The limit cut into real data: fail on the next poll.
    Fail,
    /// Error delivered or inner stream ended.
    Done,
}

/// Passes through up to `limit` bytes of `inner`; if `inner` has more, yields
/// an error instead of the rest.
fn truncating<S, E>(inner: S, limit: u64) -> impl Stream<Item = Result<Bytes, io::Error>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    futures::stream::unfold(Cut::Forwarding { inner, sent: 0 }, move |st| async move {
        match st {
            Cut::Done => None,
            Cut::Fail => {
                tokio::time::sleep(FLUSH_PAUSE).await;
                Some((
                    Err(io::Error::other("simulated fault: body truncated")),
                    Cut::Done,
                ))
            }
            Cut::Forwarding { mut inner, sent } => match inner.next().await {
                None => None,
                Some(Err(e)) => Some((Err(io::Error::other(e)), Cut::Done)),
                Some(Ok(chunk)) => {
                    let remaining = limit.saturating_sub(sent);
                    let len = chunk.len() as u64;
                    if len > remaining {
                        // Cut inside (or right at the start of) this chunk.
                        let part = chunk.slice(..remaining as usize);
                        Some((Ok(part), Cut::Fail))
                    } else {
                        Some((
                            Ok(chunk),
                            Cut::Forwarding {
                                inner,
                                sent: sent + len,
                            },
                        ))
                    }
                }
            },
        }
    })
}
