//! In-process Altinn simulator for integration tests and local development (`aos dev` starts
//! one; the `altinn-sim` binary runs one on its own).
//!
//! It serves, on one listener, the slice of Altinn 3 the archiver talks to
//! (docs: `docs/specs/altinn.md` §3.1–3.5, §4): Storage and App instance
//! GETs, streamed data element downloads, complete confirmation, a
//! Maskinporten token endpoint that verifies grants, and the Altinn token
//! exchange. Both the platform and the app base URL are `base_url()`; the
//! Maskinporten issuer is `maskinporten_url()`.
//!
//! Tests drive it through [`SimulatorHandle`]: create instances, build the
//! CloudEvent that would announce them, inject faults, then assert on the
//! recorded calls and confirmations. Element content is generated from a seed
//! ([`fill_content`]) so multi-GiB elements cost no memory and their expected
//! digest ([`content_sha256`]) is computable without downloading.
//!
//! Module map: `spec` (test-facing instance descriptions), `state` (instances
//! and recordings), `model` (Altinn JSON), `content` (generator), `routes`
//! (Altinn endpoints + request recording), `auth`, `faults`, `control`
//! (`/_sim/` API for the dev command), `query` (the Storage instance query), `upload` (data
//! elements uploaded to an instance); Altinn Events: `events` (registry,
//! publishing), `subscription` (rules), `events_routes`, `push`, `events_handle`, `events_feed`
//! (the pull API with its sequence numbers, hold-back and `next` links);
//! Maskinporten and tokens: `maskinporten` (grant verification), `altinn_token` (exchange
//! and Altinn JWTs).

mod altinn_token;
mod auth;
mod content;
mod control;
mod events;
mod events_feed;
mod events_handle;
mod events_routes;
mod faults;
mod maskinporten;
mod model;
mod push;
mod query;
mod routes;
mod spec;
mod state;
mod subscription;
mod upload;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

pub use altinn_token::{ExchangeBody, ExchangeRequest};
pub use content::{content_sha256, fill_content};
pub use faults::{Fault, FaultRule};
pub use maskinporten::ClientKey;
pub use push::{Delivery, altinn_retry_schedule};
pub use spec::{CreatedElement, CreatedInstance, ElementSpec, InstanceSpec};
pub use state::{ConfirmGuard, Confirmation, RecordedCall};
pub use upload::DataUpload;

use state::SimState;

/// How to run a simulator.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// Address to listen on; port 0 picks a free port (the default, so
    /// parallel tests never collide).
    pub listen: SocketAddr,
    /// A fixed bearer token the Storage/App endpoints accept (besides the
    /// Altinn JWTs the exchange issues). Empty: only exchanged tokens work.
    pub token: String,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            token: "altinn-simulator-token".to_owned(),
        }
    }
}

/// Namespace for [`Simulator::start`]; the free function [`start`] is the same.
pub struct Simulator;

impl Simulator {
    pub async fn start(config: SimulatorConfig) -> anyhow::Result<SimulatorHandle> {
        start(config).await
    }
}

/// Binds the listener and serves in a background task on the current Tokio
/// runtime. The simulator stops on [`SimulatorHandle::shutdown`] or when the
/// runtime ends (e.g. at the end of a `#[tokio::test]`).
pub async fn start(config: SimulatorConfig) -> anyhow::Result<SimulatorHandle> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding Altinn simulator to {}", config.listen))?;
    let addr = listener.local_addr().context("reading simulator address")?;
    let base = base_url_for(addr)?;

    let state = Arc::new(SimState::new(config.token, base));
    let app = routes::router(state.clone());
    let (stop_tx, mut stop_rx) = watch::channel(false);

    tokio::spawn(async move {
        let stopped = async move {
            // Err means every sender is gone: no one can ask us to stop any
            // more, so keep serving until the runtime ends.
            if stop_rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "altinn simulator stopped with an error");
        }
    });

    tracing::info!(%addr, "altinn simulator listening");
    Ok(SimulatorHandle {
        inner: Arc::new(HandleInner {
            state,
            stop: stop_tx,
        }),
    })
}

/// A URL clients can connect to: an unspecified listen address (0.0.0.0/::)
/// is reachable through loopback.
fn base_url_for(addr: SocketAddr) -> anyhow::Result<Url> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/", SocketAddr::new(ip, addr.port()));
    Url::parse(&url).with_context(|| format!("building base URL {url}"))
}

struct HandleInner {
    state: Arc<SimState>,
    stop: watch::Sender<bool>,
}

/// Control and inspection handle for a running simulator. Cheap to clone;
/// all clones refer to the same simulator.
#[derive(Clone)]
pub struct SimulatorHandle {
    inner: Arc<HandleInner>,
}

impl SimulatorHandle {
    fn state(&self) -> &SimState {
        &self.inner.state
    }

    /// `http://127.0.0.1:PORT/` (with trailing slash): base for both the
    /// platform (Storage) and the app URLs.
    pub fn base_url(&self) -> Url {
        self.state().base.clone()
    }

    /// The fixed bearer token the simulator accepts.
    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// Creates an instance (fresh random ids) that the endpoints serve at once.
    pub fn add_instance(&self, spec: InstanceSpec) -> CreatedInstance {
        self.state().add_instance(spec)
    }

    /// An `app.instance.process.completed` CloudEvent for `inst`, as Altinn
    /// Events would push it (new event id on every call).
    pub fn completed_event(&self, inst: &CreatedInstance) -> serde_json::Value {
        model::completed_event(&self.state().base, inst)
    }

    /// Every request served so far, in order of completion.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state().calls()
    }

    /// Every successful complete call so far, in order (repeats included).
    pub fn confirmations(&self) -> Vec<Confirmation> {
        self.state().confirmations()
    }

    /// Sets (replaces) the guard run on each complete call.
    pub fn set_confirm_guard(&self, guard: ConfirmGuard) {
        self.state().set_guard(guard)
    }

    /// Messages returned by the confirm guard as `Err`, in order.
    pub fn guard_violations(&self) -> Vec<String> {
        self.state().violations()
    }

    /// Replaces a field of the instance JSON the simulator serves for `instance_guid`
    /// (`pointer` is a JSON pointer such as `/data/0/blobStoragePath`), to test how anomalous
    /// metadata is handled. Returns false for an unknown instance.
    pub fn tamper(
        &self,
        instance_guid: uuid::Uuid,
        pointer: &str,
        value: serde_json::Value,
    ) -> bool {
        self.state().tamper(instance_guid, pointer, value)
    }

    /// Gives a data element new content of the same length and a new `lastChanged` (a user
    /// replacing a file, an app regenerating a PDF). Returns the element as it is now (its new
    /// seed gives the new bytes), or `None` for an unknown instance or element.
    pub fn replace_content(
        &self,
        instance_guid: uuid::Uuid,
        element: uuid::Uuid,
    ) -> Option<CreatedElement> {
        self.state().replace_content(instance_guid, element)
    }

    /// Ends the process of an instance created with `process_ended: false` (`process.ended` is
    /// now). False for an unknown instance.
    pub fn end_process(&self, instance_guid: uuid::Uuid) -> bool {
        self.state().end_process(instance_guid)
    }

    /// Records a complete confirmation by `stakeholder` without a complete call, as another
    /// system (e.g. the one this replaces) would have left it. False for an unknown instance.
    pub fn mark_confirmed(&self, instance_guid: uuid::Uuid, stakeholder: &str) -> bool {
        self.state().mark_confirmed(instance_guid, stakeholder)
    }

    /// Makes the instance query's confirmed filter (`excludeConfirmedBy`, `confirmed=false`)
    /// leave `instance_guid` out although it is not confirmed: the production bug of
    /// Altinn/altinn-studio#5482, which a time-window sweep must compensate for.
    pub fn miss_in_confirmed_filter(&self, instance_guid: uuid::Uuid) {
        self.state().query.miss(instance_guid)
    }

    /// Adds a fault rule (a rule with `times == 0` never fires).
    pub fn inject(&self, rule: FaultRule) {
        self.state().faults.add(rule)
    }

    /// The Maskinporten issuer URL without a trailing slash,
    /// `http://127.0.0.1:PORT/maskinporten` (what `MaskinportenBaseAddress`
    /// is set to); the grant's `aud` is this with one trailing slash.
    pub fn maskinporten_url(&self) -> Url {
        let mut url = self.state().base.clone();
        url.set_path("/maskinporten");
        url
    }

    /// Registers (or replaces) a Maskinporten client allowed `scopes`.
    pub fn register_client(&self, client_id: &str, key: ClientKey, scopes: &[&str]) {
        self.state().maskinporten.register(client_id, key, scopes)
    }

    /// `expires_in` of Maskinporten tokens issued from now on (default 120 s);
    /// the exchange refuses them after that.
    pub fn set_maskinporten_token_lifetime(&self, lifetime: std::time::Duration) {
        self.state().maskinporten.set_token_lifetime(lifetime)
    }

    /// Lifetime (`exp - iat`) of Altinn tokens exchanged from now on
    /// (default 30 minutes, Altinn's).
    pub fn set_altinn_token_lifetime(&self, lifetime: std::time::Duration) {
        self.state().altinn_tokens.set_lifetime(lifetime)
    }

    /// How the exchange writes the token (default: negotiated by `Accept`).
    pub fn set_exchange_body(&self, body: ExchangeBody) {
        self.state().altinn_tokens.set_body(body)
    }

    /// Requests to the Maskinporten token endpoint so far, accepted or not.
    pub fn grants(&self) -> usize {
        self.state().maskinporten.grants()
    }

    /// `error_description` of every refused grant, in order.
    pub fn grant_refusals(&self) -> Vec<String> {
        self.state().maskinporten.refusals()
    }

    /// Requests to the token exchange so far, accepted or not.
    pub fn exchanges(&self) -> usize {
        self.state().altinn_tokens.exchanges()
    }

    /// Every exchange request, in order.
    pub fn exchange_requests(&self) -> Vec<ExchangeRequest> {
        self.state().altinn_tokens.requests()
    }

    /// An Altinn JWT as the exchange would issue it, valid for `lifetime`
    /// (for tests of token expiry without a Maskinporten client).
    pub fn issue_altinn_token(&self, lifetime: std::time::Duration) -> String {
        self.state()
            .altinn_tokens
            .issue(
                &self.state().base,
                "test-client",
                "altinn:serviceowner/instances.read",
                lifetime,
            )
            .unwrap_or_default()
    }

    /// Stops accepting connections and lets in-flight requests finish.
    /// Returns at once; the listener closes shortly after.
    pub fn shutdown(&self) {
        // send_replace works even if the server task already ended.
        self.inner.stop.send_replace(true);
    }
}
