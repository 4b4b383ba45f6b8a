//! Binding names, as in each `function.json`, and the bindings each route uses: the contract
//! between the routes and the Function App's files (the `packaging` e2e suite checks both ways).

use super::names::{EVENTS_CONFIRMATION, EVENTS_PROCESSOR, EVENTS_RECEIVER, EVENTS_RECONCILER};
use super::names::{EVENTS_DESUBSCRIBER, EVENTS_FEEDBACK, EVENTS_SUBSCRIBER, HEALTH};

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
/// (the `packaging` e2e suite checks the `function.json` files against this).
pub const BLOB_TRIGGER_PATHS: &[(&str, &str)] = &[
    (EVENTS_SUBSCRIBER, "add-subscriptions/{name}.json"),
    (EVENTS_DESUBSCRIBER, "remove-subscriptions/{name}.json"),
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

use QueueRole::*;

/// The bindings each route uses (see `routes.rs`).
pub const USED: &[Binding] = &[
    binding(HEALTH, REQUEST, "httpTrigger", "in", None),
    binding(HEALTH, RESPONSE, "http", "out", None),
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
