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
use axum::routing::{MethodRouter, get, post};

use crate::pipeline::Pipeline;

/// Invocation payloads larger than this fail the invocation (queue, timer and blob triggers
/// carry small payloads). `EventsReceiver` reads its own (a webhook body too large is answered
/// 413, never a failed invocation).
const MAX_INVOCATION_BYTES: usize = 8 * 1024 * 1024;

/// One route per function, named by the function (the host's invocation path).
fn function_routes() -> [(&'static str, MethodRouter<Arc<Pipeline>>); 8] {
    [
        (EVENTS_RECEIVER, post(routes::events_receiver)),
        (EVENTS_PROCESSOR, post(routes::events_processor)),
        (EVENTS_CONFIRMATION, post(routes::events_confirmation)),
        (EVENTS_RECONCILER, post(routes::events_reconciler)),
        (EVENTS_FEEDBACK, post(routes::events_feedback)),
        (
            EVENTS_SUBSCRIBER,
            post(subscription_routes::events_subscriber),
        ),
        (
            EVENTS_DESUBSCRIBER,
            post(subscription_routes::events_desubscriber),
        ),
        (HEALTH, post(routes::health)),
    ]
}

/// The handler's routes; with a `deadline`, every invocation ends by then (see [`deadline`]).
pub fn router(pipeline: Pipeline, deadline: Option<Duration>) -> Router {
    let router = function_routes()
        .into_iter()
        .fold(
            Router::new().route("/", get(routes::ready)),
            |router, (name, route)| router.route(&format!("/{name}"), route),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_INVOCATION_BYTES));
    let router = match deadline {
        Some(deadline) => router.layer(axum::middleware::from_fn_with_state(
            deadline,
            deadline::enforce,
        )),
        None => router,
    };
    // Outermost, so every line of the invocation (the deadline's too) carries its ids.
    router
        .layer(axum::middleware::from_fn(correlate))
        .with_state(Arc::new(pipeline))
}

/// Runs the invocation inside its `invocation` span ([`crate::correlation`]): the host's
/// `X-Azure-Functions-InvocationId` and the `traceparent` the host's HTTP client sends; the
/// function is the path the host posts to.
async fn correlate(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use crate::correlation::{Correlation, INVOCATION_ID_HEADER, TRACEPARENT};
    let (correlation, function) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        let correlation = Correlation::new(header(INVOCATION_ID_HEADER), header(TRACEPARENT));
        (correlation, function_of_path(request.uri().path()))
    };
    let span = correlation.span(function);
    crate::correlation::scope(correlation, span, next.run(request)).await
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
