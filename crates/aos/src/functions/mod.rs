//! The Azure Functions custom-handler adapter.
//!
//! The host POSTs each invocation to `/<FunctionName>` on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`
//! (see `docs/specs/functions-custom-handler.md`). Each route decodes the payload
//! ([`invocation`]; the webhook's HTTP request by [`http_trigger`], in one borrowing pass),
//! runs one pipeline step, and maps the outcome to the host's language:
//! a 2xx JSON response with outputs, or — for anything worth retrying, and for permanent
//! failures that must reach the poison queue — a non-2xx, so the host requeues the message and
//! poisons it after `maxDequeueCount` attempts.

pub mod bindings;
mod deadline;
pub mod http_trigger;
pub mod invocation;
mod names;
mod routes;
mod subscription_routes;

pub use names::*;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use crate::pipeline::Pipeline;
use crate::pipeline::error::ErrorKind;
use crate::request_body::{Capped, read_capped};

/// Invocation payloads larger than this fail the invocation (queue, timer and blob triggers
/// carry small payloads). `EventsReceiver` reads its own (a webhook body too large is answered
/// 413, never a failed invocation).
const MAX_INVOCATION_BYTES: usize = 8 * 1024 * 1024;

/// What every route is given: the pipeline, and the deadline each invocation ends by.
struct Functions {
    pipeline: Arc<Pipeline>,
    deadline: Option<Duration>,
}

type Route = MethodRouter<Arc<Functions>>;

/// One route per function, named by the function (the host's invocation path).
fn function_routes() -> [(&'static str, Route); 8] {
    [
        streamed(EVENTS_RECEIVER, routes::events_receiver),
        buffered(EVENTS_PROCESSOR, routes::events_processor),
        buffered(EVENTS_CONFIRMATION, routes::events_confirmation),
        buffered(EVENTS_RECONCILER, routes::events_reconciler),
        buffered(EVENTS_FEEDBACK, routes::events_feedback),
        buffered(EVENTS_SUBSCRIBER, subscription_routes::events_subscriber),
        buffered(
            EVENTS_DESUBSCRIBER,
            subscription_routes::events_desubscriber,
        ),
        // Health reads nothing of its invocation: its body is left unread, as before.
        streamed(HEALTH, |pipeline, _| routes::health(pipeline)),
    ]
}

/// The handler's routes; with a `deadline`, every invocation ends by then (see [`deadline`]).
pub fn router(pipeline: Pipeline, deadline: Option<Duration>) -> Router {
    let functions = Arc::new(Functions {
        pipeline: Arc::new(pipeline),
        deadline,
    });
    function_routes()
        .into_iter()
        .fold(
            Router::new().route("/", get(routes::ready)),
            |router, (name, route)| router.route(&format!("/{name}"), route),
        )
        .with_state(functions)
}

/// The route of `function`, whose step reads the invocation body itself (the webhook answers a
/// body too large rather than failing the invocation). Every invocation runs through
/// [`invocation`].
///
/// Why not axum middleware (`from_fn` layers on the router, as before): each layer clones the
/// boxed service under it and boxes its own future on every request: some thirty allocations
/// per invocation for three layers (the ids, the deadline, the body limit), about 7 % of the
/// webhook's instructions in the ingest profile (`docs/benchmarks.md`, "Instructions per
/// invocation").
fn streamed<F, Fut>(function: &'static str, step: F) -> (&'static str, Route)
where
    F: Fn(Arc<Pipeline>, Body) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let route = post(
        move |State(functions): State<Arc<Functions>>, request: Request| async move {
            let (parts, body) = request.into_parts();
            let work = step(functions.pipeline.clone(), body);
            invocation(function, functions.deadline, &parts.headers, work).await
        },
    );
    (function, route)
}

/// The route of `function`, whose step is given the whole invocation body, at most
/// [`MAX_INVOCATION_BYTES`]; a larger one fails the invocation, read to its end first (the host
/// has sent it whole, and a connection closed under it could hide the answer from the host).
fn buffered<F, Fut>(function: &'static str, step: F) -> (&'static str, Route)
where
    F: Fn(Arc<Pipeline>, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    streamed(function, move |pipeline, body| {
        let step = step.clone();
        async move {
            match read_capped(body, MAX_INVOCATION_BYTES, usize::MAX).await {
                Ok(Capped::Whole(body)) => step(pipeline, body).await,
                Ok(Capped::TooLarge { .. }) => {
                    let error = format!("the invocation is over {MAX_INVOCATION_BYTES} bytes");
                    routes::failed(function, "read", &error, ErrorKind::Permanent)
                }
                Err(e) => routes::failed(function, "read", &e, ErrorKind::Retry),
            }
        }
    })
}

/// Runs one invocation of `function`: inside its `invocation` span with its ids
/// ([`crate::correlation`]: the host's `X-Azure-Functions-InvocationId` and the `traceparent`
/// its HTTP client sends), and under `deadline` (see [`deadline`]), past which it fails
/// retryably. The deadline's failure line is inside the span, so it carries the ids too.
async fn invocation(
    function: &'static str,
    deadline: Option<Duration>,
    headers: &HeaderMap,
    work: impl Future<Output = Response>,
) -> Response {
    use crate::correlation::{Correlation, INVOCATION_ID_HEADER, TRACEPARENT};
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let correlation = Correlation::new(header(INVOCATION_ID_HEADER), header(TRACEPARENT));
    let span = correlation.span(function);
    let work = async move {
        match deadline {
            Some(deadline) => deadline::enforce(function, deadline, work).await,
            None => work.await,
        }
    };
    crate::correlation::scope(correlation, span, work).await
}

/// The app root: the host starts the handler there (`workingDirectory` ""), and names it.
fn app_root() -> std::path::PathBuf {
    std::env::var_os("FUNCTIONS_APP_ROOT_PATH")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}

/// The invocation deadline from the app root's `host.json` ([`deadline::from_host_json`]);
/// an error line when it is unreadable.
pub fn deadline() -> Result<Option<Duration>, String> {
    deadline::from_host_json(&app_root())
}

/// Serves the handler until the process is stopped, every invocation ending by `deadline`.
/// Binds IPv4 loopback: the host always dials `127.0.0.1`.
pub async fn serve(
    mut pipeline: Pipeline,
    port: u16,
    deadline: Option<Duration>,
) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    pipeline.max_attempts = max_dequeue_count(&app_root());
    tracing::info!(%addr, ?deadline, "custom handler listening");
    axum::serve(listener, router(pipeline, deadline))
        .with_graceful_shutdown(crate::shutdown_signal())
        .await
}

/// `extensions.queues.maxDequeueCount` of `host.json` in `app_root`: the attempt at which the
/// host poisons a message (its default, 5, when the file does not say).
fn max_dequeue_count(app_root: &std::path::Path) -> u32 {
    std::fs::read_to_string(app_root.join("host.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| json.pointer("/extensions/queues/maxDequeueCount")?.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0)
        .unwrap_or(crate::pipeline::DEFAULT_MAX_ATTEMPTS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_function_has_a_route_and_every_route_is_a_function() {
        let routed: Vec<&str> = super::function_routes().iter().map(|(n, _)| *n).collect();
        assert_eq!(routed, super::FUNCTIONS);
    }

    #[test]
    fn blob_trigger_paths_watch_the_subscription_containers() {
        use crate::pipeline::subscription_files::{ADD_CONTAINER, REMOVE_CONTAINER};
        let paths = super::bindings::BLOB_TRIGGER_PATHS;
        assert_eq!(paths[0].1, format!("{ADD_CONTAINER}/{{name}}.json"));
        assert_eq!(paths[1].1, format!("{REMOVE_CONTAINER}/{{name}}.json"));
    }
}
