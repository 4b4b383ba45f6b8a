//! The Function App's function names: its folder names and the handler's invocation paths.

/// Function names: the folder names of the Function App, and the invocation paths.
pub const EVENTS_RECEIVER: &str = "EventsReceiver";
pub const EVENTS_PROCESSOR: &str = "EventsProcessor";
pub const EVENTS_CONFIRMATION: &str = "EventsConfirmation";
pub const EVENTS_RECONCILER: &str = "EventsReconciler";
pub const EVENTS_FEEDBACK: &str = "EventsFeedback";
pub const EVENTS_SUBSCRIBER: &str = "EventsSubscriber";
pub const EVENTS_DESUBSCRIBER: &str = "EventsDeSubscriber";
/// `GET /api/health` (anonymous): readiness, as `aos run`'s `GET /health`.
pub const HEALTH: &str = "Health";

/// Every function the handler serves: each has a route here and a folder with a
/// `function.json` in the Function App (the `packaging` e2e suite checks both ways).
pub const FUNCTIONS: &[&str] = &[
    EVENTS_RECEIVER,
    EVENTS_PROCESSOR,
    EVENTS_CONFIRMATION,
    EVENTS_RECONCILER,
    EVENTS_FEEDBACK,
    EVENTS_SUBSCRIBER,
    EVENTS_DESUBSCRIBER,
    HEALTH,
];
