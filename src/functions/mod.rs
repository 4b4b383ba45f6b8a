//! The Azure Functions custom-handler adapter.
//!
//! The host POSTs each invocation to `/<FunctionName>` on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`
//! (see `specs/functions-custom-handler.md`). Each route decodes the payload
//! ([`invocation`]), runs one pipeline step, and maps the outcome to the host's language:
//! a 2xx JSON response with outputs, or — for anything worth retrying, and for permanent
//! failures that must reach the poison queue — a non-2xx, so the host requeues the message and
//! poisons it after `maxDequeueCount` attempts.

pub mod invocation;
mod routes;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{get, post};

use crate::pipeline::Pipeline;

/// Function names: the folder names of the Function App, and the invocation paths.
pub const EVENTS_RECEIVER: &str = "EventsReceiver";
pub const EVENTS_PROCESSOR: &str = "EventsProcessor";
pub const EVENTS_CONFIRMATION: &str = "EventsConfirmation";
pub const EVENTS_RECONCILER: &str = "EventsReconciler";

/// Binding names, as in each `function.json`.
pub mod bindings {
    pub const REQUEST: &str = "req";
    pub const RESPONSE: &str = "res";
    pub const INBOUND_OUTPUT: &str = "inbound";
    pub const TRIGGER_EVENT: &str = "event";
    pub const CONFIRMATION_OUTPUT: &str = "confirmation";
    pub const TIMER_TRIGGER: &str = "timer";
}

/// Invocation payloads larger than this fail the invocation. The webhook body inside is
/// limited to 1 MiB separately (answered 413); the margin covers the host's JSON escaping.
const MAX_INVOCATION_BYTES: usize = 8 * 1024 * 1024;

pub fn router(pipeline: Pipeline) -> Router {
    Router::new()
        .route("/", get(routes::ready))
        .route(
            &format!("/{EVENTS_RECEIVER}"),
            post(routes::events_receiver),
        )
        .route(
            &format!("/{EVENTS_PROCESSOR}"),
            post(routes::events_processor),
        )
        .route(
            &format!("/{EVENTS_CONFIRMATION}"),
            post(routes::events_confirmation),
        )
        .route(
            &format!("/{EVENTS_RECONCILER}"),
            post(routes::events_reconciler),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_INVOCATION_BYTES))
        .with_state(pipeline)
}

/// Serves the handler until the process is stopped. Binds IPv4 loopback: the host always
/// dials `127.0.0.1`.
pub async fn serve(pipeline: Pipeline, port: u16) -> std::io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "custom handler listening");
    axum::serve(listener, router(pipeline))
        .with_graceful_shutdown(crate::shutdown_signal())
        .await
}
