//! # altinn-aos
//!
//! An Application Owner System for Altinn 3: receives Altinn Events webhooks, archives every
//! completed instance (metadata and all data elements) into Azure Blob Storage, verifies the
//! archive, and only then confirms completion back to Altinn. It runs as an Azure Functions
//! custom handler (`aos serve`) or standalone (`aos run`), and replaces the reference C# system
//! on the data side (same settings, queue names and blob layout; a new app means a new webhook
//! URL, so subscriptions are re-created: docs/migration.md).
//!
//! ## Module map
//!
//! Data flows one way: adapter → pipeline step → Altinn client / archive → outcome → adapter.
//!
//! - [`domain`] — the bottom layer, importing nothing else from the crate: types that parse
//!   (org/app names, [`domain::CloudEvent`], [`domain::InstanceRef`], [`domain::BaseUrl`], one
//!   redacting [`domain::Secret`], one escaping [`domain::Printable`] for outside text in logs
//!   and printed lines). Every URL and blob path is built from an `InstanceRef`, never from raw
//!   event text.
//! - [`config`] — typed settings (reference names) on top of `domain`: a setting source with
//!   one typed getter per kind of value, one file per area; parsed once at start, one clear
//!   error line naming the setting.
//! - [`pipeline`] — the domain steps: [`pipeline::receive`] (pure classification of a webhook
//!   body), [`pipeline::process`] (archive an instance), [`pipeline::confirm`] (confirm only a
//!   verified archive), [`pipeline::identity`] (reject anomalous instance metadata),
//!   [`pipeline::freshness`] (whether the archive holds the instance as Altinn has it now:
//!   one listing, element versions, the manifest's fingerprint), [`pipeline::handoff`] (the
//!   optional downstream queue after each confirmation), [`pipeline::messages`] (queue steps
//!   as both runtimes run them), [`pipeline::error`] (the step error: retry or permanent, with
//!   its cause chain).
//! - [`altinn`] — the Altinn HTTP client (Storage, app API) and the lenient JSON model.
//! - [`auth`] — the Altinn token: Maskinporten JWT grant, Altinn exchange, single-flight cache,
//!   key material (PKCS#12, PEM, JWK, Key Vault), and `aos check-config`; also the Entra ID
//!   credential (managed identity via the platform's endpoint or IMDS, or the developer's
//!   login) that Key Vault and key-less storage share.
//! - [`archive`] — the blob archive: layout and metadata, streamed block upload with its
//!   SHA-256, the manifest and its fingerprint, one listing of an instance's folder.
//! - [`storage`] — blob/queue clients with account-SAS or Entra ID credentials.
//! - [`queue`] — storage queues the way the Functions host uses them (base64 text, leases,
//!   `<queue>-poison`), what one message holds ([`queue::MAX_MESSAGE_TEXT_BYTES`]), and an
//!   event's message text written once and measured as the host would write it
//!   ([`queue::MessageText`]).
//! - [`redact`] — the one redaction layer every text passes before it leaves the process (CLI
//!   error line, log lines, the host's `Logs`, failure records): SAS parameters, account keys,
//!   bearer tokens, JWTs, passwords, secrets and function keys (as `name=value` or JSON
//!   members), and every configured secret value registered at start-up, become `REDACTED`. A
//!   bottom module, like `domain`.
//! - [`cause`] — an error's cause chain on one redacted line, and whether it says a dependency
//!   could not be reached (the CLI's exit status 3). A bottom module, like `redact`.
//! - [`failures`] — last-failure records in the `aos-state` container; [`holds`] — instances
//!   held out of reconciliation and catch-up after a permanent failure; [`poison`] — reading
//!   and replaying the poison queues (`aos poison list|replay`).
//! - [`functions`] — the custom-handler adapter: payload codec (the webhook's HTTP request
//!   decoded in one borrowing pass) and one route per function.
//! - [`request_body`] — reading a webhook or invocation body with a cap, reading a larger one
//!   to its end and dropping it (both adapters).
//! - [`standalone`] — `aos run`: the same steps without the Functions host (webhook with its
//!   edge limits + queue workers with the host's semantics).
//! - [`dev`] — `aos dev`: the local demo (Azurite, simulator, standalone runtime, sample batch).
//! - [`pipeline::reconcile`] — find completed instances whose events never arrived and feed them
//!   in as synthetic events (`EventsReconciler`, `aos reconcile`).
//! - [`pipeline::catchup`] — optional catch-up from the Events pull API with a cursor per app in
//!   `aos-state` (`EventsReconciler` when `EventsCatchUp=true`, `aos catch-up`).
//! - [`altinn::subscriptions`] — the Events subscription API (`aos subscriptions`);
//!   [`pipeline::subscription_files`] — the same through files dropped into blob containers
//!   (`EventsSubscriber`, `EventsDeSubscriber`).
//! - [`status`] — `aos status`: the whole system's state in one report (queues and poison
//!   queues, recent failures, holds, cursors, the reconciler's last run, subscriptions, the
//!   key and its certificate, the archive reachable and writable) and one verdict on it:
//!   healthy, degraded or broken.
//! - [`correlation`] — the ids on every log line and failure record of an invocation
//!   (invocation id, W3C trace id, event, instance); [`metrics`] — OpenTelemetry metrics to
//!   Application Insights, off unless configured.
//! - [`cli`] — the `aos` command line on top of everything: one file per command, one
//!   [`cli::CliError`] with its exit status, one settings loader.

mod altinn;
pub mod archive;
mod auth;
mod cause;
pub mod cli;
pub mod config;
mod correlation;
#[cfg(feature = "dev")]
mod dev;
pub mod domain;
mod failures;
mod functions;
mod holds;
pub mod metrics;
mod pipeline;
mod poison;
mod queue;
mod redact;
mod request_body;
mod standalone;
mod status;
pub mod storage;
#[cfg(test)]
mod test_fixtures;

// The library's surface beyond its public modules (`cli`, `config`, `domain`, `storage`,
// `archive`): what the test kit, the end-to-end tests and the benchmarks reach. Every other module
// is private, so the compiler reports code that nothing uses.
pub use altinn::AltinnClient;
pub use altinn::client::ATTEMPTS as ALTINN_ATTEMPTS;
pub use auth::token::AltinnTokenProvider;
pub use auth::{AccessToken, KeyError, TokenError, TokenProvider, altinn_provider, keys};
pub use functions::http_trigger::HttpTriggerRequest;
pub use functions::invocation::InvocationRequest;
pub use functions::{FUNCTIONS, bindings};
pub use pipeline::Pipeline;
pub use pipeline::catchup::{CatchUpOptions, EventSink};
pub use pipeline::process::ELEMENT_CONCURRENCY;
pub use pipeline::receive::{ReceiveOutcome, receive};

/// Resolves on Ctrl-C or SIGTERM (what the Functions host and container platforms send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
