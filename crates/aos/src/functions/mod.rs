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
mod subscription_routes;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::{MethodRouter, get, post};

use crate::pipeline::Pipeline;

/// Function names: the folder names of the Function App, and the invocation paths.
pub const EVENTS_RECEIVER: &str = "EventsReceiver";
pub const EVENTS_PROCESSOR: &str = "EventsProcessor";
pub const EVENTS_CONFIRMATION: &str = "EventsConfirmation";
pub const EVENTS_RECONCILER: &str = "EventsReconciler";
pub const EVENTS_FEEDBACK: &str = "EventsFeedback";
pub const EVENTS_SUBSCRIBER: &str = "EventsSubscriber";
pub const EVENTS_DESUBSCRIBER: &str = "EventsDeSubscriber";

/// Every function the handler serves: each has a route here and a folder with a
/// `function.json` in the Function App (`tests/packaging.rs` checks both ways).
pub const FUNCTIONS: &[&str] = &[
    EVENTS_RECEIVER,
    EVENTS_PROCESSOR,
    EVENTS_CONFIRMATION,
    EVENTS_RECONCILER,
    EVENTS_FEEDBACK,
    EVENTS_SUBSCRIBER,
    EVENTS_DESUBSCRIBER,
];

/// Binding names, as in each `function.json`.
pub mod bindings {
    pub const REQUEST: &str = "req";
    pub const RESPONSE: &str = "res";
    pub const INBOUND_OUTPUT: &str = "inbound";
    pub const TRIGGER_EVENT: &str = "event";
    pub const CONFIRMATION_OUTPUT: &str = "confirmation";
    pub const TIMER_TRIGGER: &str = "timer";
    pub const FEEDBACK_OUTPUT: &str = "feedback";
    pub const BLOB_TRIGGER: &str = "blob";

    /// The blob triggers' `path`s (`{name}` is the file's name without `.json`); their
    /// `connection` is `QueueStorageSettings:ConnectionString` and `dataType` `binary`
    /// (`tests/packaging.rs` checks the `function.json` files against this).
    pub const BLOB_TRIGGER_PATHS: &[(&str, &str)] = &[
        (super::EVENTS_SUBSCRIBER, "add-subscriptions/{name}.json"),
        (
            super::EVENTS_DESUBSCRIBER,
            "remove-subscriptions/{name}.json",
        ),
    ];

    /// Which queue a queue binding names, as the settings call it (their defaults are the
    /// `queueName`s in `function.json`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum QueueRole {
        Inbound,
        Confirmation,
        Feedback,
    }

    /// A binding the code reads or writes; `function.json` must declare it exactly so, or the
    /// host drops the output (or never delivers the input) without an error.
    #[derive(Clone, Copy, Debug)]
    pub struct Binding {
        pub function: &'static str,
        pub name: &'static str,
        pub kind: &'static str,
        pub direction: &'static str,
        pub queue: Option<QueueRole>,
    }

    const fn binding(
        function: &'static str,
        name: &'static str,
        kind: &'static str,
        direction: &'static str,
        queue: Option<QueueRole>,
    ) -> Binding {
        Binding {
            function,
            name,
            kind,
            direction,
            queue,
        }
    }

    use super::{EVENTS_CONFIRMATION, EVENTS_PROCESSOR, EVENTS_RECEIVER, EVENTS_RECONCILER};
    use super::{EVENTS_DESUBSCRIBER, EVENTS_FEEDBACK, EVENTS_SUBSCRIBER};
    use QueueRole::*;

    /// The bindings each route uses (see `routes.rs`).
    pub const USED: &[Binding] = &[
        binding(EVENTS_RECEIVER, REQUEST, "httpTrigger", "in", None),
        binding(EVENTS_RECEIVER, RESPONSE, "http", "out", None),
        binding(
            EVENTS_RECEIVER,
            INBOUND_OUTPUT,
            "queue",
            "out",
            Some(Inbound),
        ),
        binding(
            EVENTS_PROCESSOR,
            TRIGGER_EVENT,
            "queueTrigger",
            "in",
            Some(Inbound),
        ),
        binding(
            EVENTS_PROCESSOR,
            CONFIRMATION_OUTPUT,
            "queue",
            "out",
            Some(Confirmation),
        ),
        binding(
            EVENTS_CONFIRMATION,
            TRIGGER_EVENT,
            "queueTrigger",
            "in",
            Some(Confirmation),
        ),
        binding(EVENTS_RECONCILER, TIMER_TRIGGER, "timerTrigger", "in", None),
        binding(
            EVENTS_RECONCILER,
            INBOUND_OUTPUT,
            "queue",
            "out",
            Some(Inbound),
        ),
        // Feedback: the processor writes to `feedback` instead of `confirmation` when it is on.
        binding(
            EVENTS_PROCESSOR,
            FEEDBACK_OUTPUT,
            "queue",
            "out",
            Some(Feedback),
        ),
        binding(
            EVENTS_FEEDBACK,
            TRIGGER_EVENT,
            "queueTrigger",
            "in",
            Some(Feedback),
        ),
        binding(
            EVENTS_FEEDBACK,
            CONFIRMATION_OUTPUT,
            "queue",
            "out",
            Some(Confirmation),
        ),
        // The subscription files (reference parity): blob triggers, no outputs — the handler
        // writes and deletes the blobs itself, so the order (result first, source last) is its own.
        binding(EVENTS_SUBSCRIBER, BLOB_TRIGGER, "blobTrigger", "in", None),
        binding(EVENTS_DESUBSCRIBER, BLOB_TRIGGER, "blobTrigger", "in", None),
    ];
}

/// Invocation payloads larger than this fail the invocation. The webhook body inside is
/// limited to 1 MiB separately (answered 413); the margin covers the host's JSON escaping.
const MAX_INVOCATION_BYTES: usize = 8 * 1024 * 1024;

/// One route per function, named by the function (the host's invocation path).
fn function_routes() -> [(&'static str, MethodRouter<Pipeline>); 7] {
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
    ]
}

pub fn router(pipeline: Pipeline) -> Router {
    function_routes()
        .into_iter()
        .fold(
            Router::new().route("/", get(routes::ready)),
            |router, (name, route)| router.route(&format!("/{name}"), route),
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
