//! `FunctionsHost`: a fake Azure Functions host for custom handlers.
//!
//! It does what the real host does for this app, as written down in
//! `docs/specs/functions-custom-handler.md`: starts the handler with the host's environment
//! and waits for `GET /` (§1), sends JSON-payload invocations (§2–3), validates answers and
//! binds outputs (§4), and drives queue triggers with dequeue counts, retries after
//! `visibilityTimeout` and `<queue>-poison` (§7). All settings come from the app's `host.json`
//! and `function.json` files. Blob triggers are driven by the test ([`FunctionsHost::invoke_blob`]
//! for one attempt, [`FunctionsHost::scan_blobs`] for the host's listener: receipts per
//! (name, ETag), retries, `webjobs-blobtrigger-poison`). The payload rules themselves live in
//! `invocation.rs`.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use azure_storage_queue::models::ReceivedMessage;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::GroupChild;
use crate::app::{Binding, FunctionApp, FunctionDef};
use crate::blobs::{Blobs, ListedBlob};
use crate::invocation::{
    BlobTriggerInfo, HOST_VERSION, HandlerResponse, QueueMessageInfo, QueueOutput, SysInfo,
    apply_outputs, blob_request, decode_message, http_request, match_blob_name,
    parse_handler_response, queue_request, split_blob_path, timer_request,
};
pub use crate::invocation::{HttpCall, HttpResult};
use crate::queue::Queues;
use crate::{free_port, poll_until};

/// How long the handler may take to answer its first `GET /` (the host's
/// `HttpWorkerOptions.InitializationTimeout`).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of the readiness probe (the host's).
const READY_PROBE_INTERVAL: Duration = Duration::from_millis(25);
/// How long an invocation waits for a (re)starting handler before failing.
const READY_WAIT: Duration = Duration::from_secs(35);
/// Poll interval of an empty trigger queue: much shorter than the host's back-off, for fast tests.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Pause after a failed receive (e.g. Azurite stopped).
const RECEIVE_ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Invisibility of a message while it is processed; renewed at half-time like the host does.
const LEASE: Duration = Duration::from_secs(60);
/// How long everything must stay quiet before [`FunctionsHost::wait_until_idle`] succeeds.
const IDLE_STABLE: Duration = Duration::from_millis(300);
/// The host gives up after this many handler failures within [`ERROR_WINDOW`].
const MAX_HANDLER_ERRORS: usize = 3;
const ERROR_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Longest queue name the service accepts (a poison queue name must fit too).
const MAX_QUEUE_NAME: usize = 63;
/// Where the blob trigger puts a blob that failed every attempt (docs, blob trigger
/// "Poison blobs"; one queue for every function of the app).
pub const BLOB_POISON_QUEUE: &str = "webjobs-blobtrigger-poison";

/// Set this environment variable to echo handler output, invocation logs and host events to
/// the test's stderr (e.g. `AOS_HARNESS_ECHO=1 cargo test -- --nocapture`).
pub const ECHO_VARIABLE: &str = "AOS_HARNESS_ECHO";

/// How to run the function app.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Folder with `host.json` and the function folders; the handler's working directory.
    pub app_root: PathBuf,
    /// The handler executable (replaces `defaultExecutablePath`).
    pub binary: PathBuf,
    /// App settings, passed to the handler as environment variables.
    pub env: Vec<(String, String)>,
    /// The storage account of every queue binding.
    pub connection_string: String,
    /// Overrides host.json `extensions.queues.visibilityTimeout` (the delay before a failed
    /// message is retried), so retry tests do not wait 30 s per attempt. Second resolution
    /// (the queue service's), rounded down.
    pub visibility_timeout: Option<Duration>,
}

impl HostConfig {
    /// This crate's function app, run with the `aos` binary under test.
    pub fn new(connection_string: impl Into<String>) -> HostConfig {
        HostConfig {
            app_root: crate::app_root(),
            binary: crate::aos_binary(),
            env: Vec::new(),
            connection_string: connection_string.into(),
            visibility_timeout: None,
        }
    }

    pub fn env(mut self, name: &str, value: &str) -> HostConfig {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    pub fn visibility_timeout(mut self, delay: Duration) -> HostConfig {
        self.visibility_timeout = Some(delay);
        self
    }
}

/// What the caller of an HTTP-triggered function receives.
#[derive(Debug, Clone)]
pub struct HttpOutcome {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False when the host failed the invocation (the caller then sees 500).
    pub invocation_succeeded: bool,
    /// The response's `Logs` (empty when the invocation failed: the host drops them).
    pub logs: Vec<String>,
    /// The response's `Outputs` as the handler sent them (null on failure or when absent),
    /// e.g. to see what a call enqueued.
    pub outputs: Value,
}

impl HttpOutcome {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.text()))
    }
}

/// One invocation as the host saw it.
#[derive(Debug, Clone)]
pub struct InvocationRecord {
    pub function: String,
    /// The `X-Azure-Functions-InvocationId` the host sent (a new GUID per invocation).
    pub invocation_id: String,
    /// For queue triggers: the message's dequeue count on this attempt. For blob triggers
    /// driven by [`FunctionsHost::scan_blobs`]: the attempt (the host's internal queue count).
    pub dequeue_count: Option<u32>,
    pub succeeded: bool,
    /// The handler's HTTP status; 0 when no response arrived.
    pub status: u16,
    /// The response's `Logs` (empty on failure).
    pub logs: Vec<String>,
    /// The response's `Outputs` (null on failure or when absent).
    pub outputs: Value,
    pub started: SystemTime,
    pub duration: Duration,
    /// Why the host failed the invocation.
    pub error: Option<String>,
}

/// A handler output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn label(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The severity the host logs a handler console line at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostLevel {
    Information,
    Warning,
    Error,
}

impl HostLevel {
    /// The host's rule (spec §1.7; `WorkerProcess.ParseErrorMessageAndLog` with
    /// `UseStdErrorStreamForErrorsOnly`, true for custom handlers): a stdout line is
    /// Information; a stderr line is Warning when it contains "warn" in any case, otherwise
    /// Error. (A stderr line about a port in use is replaced by the host's own Error line.)
    pub fn of(stream: Stream, line: &str) -> HostLevel {
        match stream {
            Stream::Stdout => HostLevel::Information,
            Stream::Stderr if line.to_lowercase().contains("warn") => HostLevel::Warning,
            Stream::Stderr => HostLevel::Error,
        }
    }
}

/// One handler console line as the host records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    pub stream: Stream,
    pub level: HostLevel,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum HandlerState {
    Starting,
    Ready,
    Failed(String),
}

/// State shared by the host's tasks.
struct Shared {
    app: FunctionApp,
    port: u16,
    client: reqwest::Client,
    queues: Queues,
    /// The account of every blob trigger (the harness has one account, whatever `connection`
    /// a `function.json` names).
    blobs: Blobs,
    /// Blob receipts: (function, blob path, ETag) already handled — succeeded or poisoned —
    /// which the host keeps in `azure-webjobs-hosts/blobreceipts`; kept in memory here.
    receipts: Mutex<std::collections::HashSet<(String, String, String)>>,
    retry_delay: Duration,
    echo: bool,
    records: Mutex<Vec<InvocationRecord>>,
    in_flight: AtomicUsize,
    output: Arc<Mutex<Vec<String>>>,
    console: Arc<Mutex<Vec<ConsoleLine>>>,
    events: Mutex<Vec<String>>,
    state: watch::Sender<HandlerState>,
    restart: Notify,
    restarts: AtomicU32,
    stopping: AtomicBool,
}

/// A running fake host. Dropping it stops the pollers and kills the handler.
pub struct FunctionsHost {
    shared: Arc<Shared>,
    handler: Arc<Mutex<Option<GroupChild>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl FunctionsHost {
    /// Starts the handler binary like the host does and begins polling the trigger queues.
    /// Fails if the handler does not answer `GET /` within 30 s.
    pub async fn start(config: HostConfig) -> anyhow::Result<FunctionsHost> {
        let port = free_port()?;
        let mut host = FunctionsHost::new(&config, port)?;
        let launch = Launch::from_config(&config, &host.shared.app, port);
        let supervisor = supervise(host.shared.clone(), launch, host.handler.clone());
        host.tasks.push(tokio::spawn(supervisor));
        if let Err(e) = host.shared.await_ready().await {
            let output = host.handler_output().join("\n");
            host.stop();
            bail!("{e}\n--- handler output ---\n{output}");
        }
        host.start_pollers()?;
        Ok(host)
    }

    /// Like [`FunctionsHost::start`] but for a handler already listening on `127.0.0.1:port`
    /// (e.g. a stand-in server inside a test); `config.binary` is not used and the handler is
    /// neither restarted nor killed.
    pub async fn attach(config: HostConfig, port: u16) -> anyhow::Result<FunctionsHost> {
        let mut host = FunctionsHost::new(&config, port)?;
        wait_ready(&host.shared, None).await?;
        host.shared.state.send_replace(HandlerState::Ready);
        host.start_pollers()?;
        Ok(host)
    }

    fn new(config: &HostConfig, port: u16) -> anyhow::Result<FunctionsHost> {
        let app = FunctionApp::load(&config.app_root)?;
        let client_timeout = app
            .host
            .function_timeout
            .map(|t| t + Duration::from_secs(60));
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0);
        if let Some(timeout) = client_timeout {
            client = client.timeout(timeout);
        }
        let retry_delay = config
            .visibility_timeout
            .unwrap_or(app.host.queues.visibility_timeout);
        let shared = Shared {
            port,
            client: client.build().context("building the host's HTTP client")?,
            queues: Queues::new(&config.connection_string)?,
            blobs: Blobs::new(&config.connection_string)?,
            receipts: Mutex::new(std::collections::HashSet::new()),
            retry_delay,
            echo: std::env::var_os(ECHO_VARIABLE).is_some(),
            records: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            output: Arc::new(Mutex::new(Vec::new())),
            console: Arc::new(Mutex::new(Vec::new())),
            events: Mutex::new(Vec::new()),
            state: watch::Sender::new(HandlerState::Starting),
            restart: Notify::new(),
            restarts: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
            app,
        };
        Ok(FunctionsHost {
            shared: Arc::new(shared),
            handler: Arc::new(Mutex::new(None)),
            tasks: Vec::new(),
        })
    }

    fn start_pollers(&mut self) -> anyhow::Result<()> {
        for (function, trigger) in self.shared.app.queue_triggered() {
            let queue = trigger
                .queue_name
                .clone()
                .ok_or_else(|| anyhow!("`{}`: queueTrigger without queueName", function.name))?;
            let poller = poll_queue(
                self.shared.clone(),
                function.clone(),
                trigger.clone(),
                queue,
            );
            self.tasks.push(tokio::spawn(poller));
        }
        Ok(())
    }

    /// The handler's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The app configuration the host runs.
    pub fn app(&self) -> &FunctionApp {
        &self.shared.app
    }

    /// Calls an HTTP-triggered function the way a client calling the host would. A method not
    /// in the trigger's `methods` gets 404 without an invocation.
    pub async fn invoke_http(&self, function: &str, call: HttpCall) -> anyhow::Result<HttpOutcome> {
        let shared = &self.shared;
        let def = shared.app.function(function)?;
        let trigger = def
            .http_trigger()
            .ok_or_else(|| anyhow!("function `{function}` is not HTTP-triggered"))?;
        if !method_allowed(trigger, &call.method) {
            let not_found = HttpResult {
                status: 404,
                headers: Vec::new(),
                body: Vec::new(),
            };
            return Ok(outcome(not_found, false, None));
        }
        let payload = http_request(
            def,
            &shared.app.host.route_prefix,
            &call,
            &SysInfo::now(function),
        )
        .map_err(anyhow::Error::msg)?;
        let _in_flight = InFlight::enter(shared);
        let started = (SystemTime::now(), Instant::now());
        let caller_trace = call
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
            .map(|(_, value)| value.as_str());
        let invocation_id = Uuid::new_v4().to_string();
        let (status, completion) =
            invoke_in_trace(shared, def, &payload, &invocation_id, caller_trace).await;
        shared.record(def, &invocation_id, None, status, &completion, started);
        Ok(match completion {
            Ok(done) => outcome(
                done.http.clone().unwrap_or_else(HttpResult::no_content),
                true,
                Some(done),
            ),
            Err(_) => outcome(HttpResult::internal_server_error(), false, None),
        })
    }

    /// Fires a timer-triggered function once, as the host does when its schedule is due (the
    /// harness has no clock of its own: tests decide when a timer fires). Outputs are bound
    /// like any invocation's — a queue output array becomes one message per element. Returns
    /// the invocation's record.
    pub async fn invoke_timer(&self, function: &str) -> anyhow::Result<InvocationRecord> {
        let shared = &self.shared;
        let def = shared.app.function(function)?;
        let trigger = def
            .bindings
            .iter()
            .find(|b| b.kind.eq_ignore_ascii_case("timerTrigger"))
            .ok_or_else(|| anyhow!("function `{function}` is not timer-triggered"))?;
        let payload = timer_request(trigger, &SysInfo::now(function), false);
        let _in_flight = InFlight::enter(shared);
        let started = (SystemTime::now(), Instant::now());
        let invocation_id = Uuid::new_v4().to_string();
        let (status, completion) = invoke(shared, def, &payload, &invocation_id).await;
        shared.record(def, &invocation_id, None, status, &completion, started);
        self.invocations_of(function)
            .pop()
            .ok_or_else(|| anyhow!("no record of the `{function}` invocation"))
    }

    /// Invokes a blob-triggered function once for `blob_name` in the container of its trigger
    /// `path`, reading the blob from storage and sending it as the host does (one attempt, no
    /// receipt, no retry). Fails when the blob does not exist or does not match the path.
    pub async fn invoke_blob(
        &self,
        function: &str,
        blob_name: &str,
    ) -> anyhow::Result<InvocationRecord> {
        let def = self.shared.app.function(function)?.clone();
        let (container, _) = blob_trigger_path(&def)?;
        let listed = self
            .shared
            .blobs
            .list(container)
            .await?
            .into_iter()
            .find(|b| b.name == blob_name)
            .ok_or_else(|| anyhow!("no blob {container}/{blob_name}"))?;
        self.blob_attempt(&def, &listed, None).await
    }

    /// One pass of the host's blob listener over every blob-triggered function: each blob
    /// matching the trigger's `path` whose (name, ETag) has no receipt is invoked; a failed
    /// attempt is retried after the queues' `visibilityTimeout` up to `maxDequeueCount` attempts
    /// in all (the host retries through an internal queue with those settings), then a message
    /// naming the blob goes to `webjobs-blobtrigger-poison`. Succeeded and poisoned blobs get a
    /// receipt, so an unchanged blob is never invoked again; a changed one (new ETag) is.
    /// Returns this pass's invocations.
    pub async fn scan_blobs(&self) -> anyhow::Result<Vec<InvocationRecord>> {
        let mut records = Vec::new();
        let functions: Vec<FunctionDef> = self
            .shared
            .app
            .blob_triggered()
            .map(|(f, _)| f.clone())
            .collect();
        for def in functions {
            let (container, pattern) = blob_trigger_path(&def)?;
            for blob in self.shared.blobs.list(container).await? {
                if match_blob_name(pattern, &blob.name).is_none() {
                    continue;
                }
                let receipt = (
                    def.name.clone(),
                    format!("{container}/{}", blob.name),
                    blob.etag.clone(),
                );
                if lock(&self.shared.receipts).contains(&receipt) {
                    continue;
                }
                let max = self.shared.app.host.queues.max_dequeue_count;
                for attempt in 1..=max {
                    let record = self.blob_attempt(&def, &blob, Some(attempt)).await?;
                    let succeeded = record.succeeded;
                    records.push(record);
                    if succeeded {
                        break;
                    }
                    if attempt == max {
                        self.poison_blob(&def, container, &blob).await?;
                    } else {
                        tokio::time::sleep(self.shared.retry_delay).await;
                    }
                }
                lock(&self.shared.receipts).insert(receipt);
            }
        }
        Ok(records)
    }

    /// Texts in `webjobs-blobtrigger-poison` (up to 32).
    pub async fn blob_poison_texts(&self) -> anyhow::Result<Vec<String>> {
        let encoding = self.shared.app.host.queues.message_encoding;
        self.shared
            .queues
            .peek_texts(BLOB_POISON_QUEUE, encoding)
            .await
    }

    async fn blob_attempt(
        &self,
        def: &FunctionDef,
        listed: &ListedBlob,
        attempt: Option<u32>,
    ) -> anyhow::Result<InvocationRecord> {
        let shared = &self.shared;
        let (container, pattern) = blob_trigger_path(def)?;
        let trigger = def
            .blob_trigger()
            .ok_or_else(|| anyhow!("`{}` is not blob-triggered", def.name))?;
        let path_data = match_blob_name(pattern, &listed.name)
            .ok_or_else(|| anyhow!("{container}/{} does not match `{pattern}`", listed.name))?;
        let now = OffsetDateTime::now_utc();
        let started = (SystemTime::now(), Instant::now());
        let _in_flight = InFlight::enter(shared);
        let invocation_id = Uuid::new_v4().to_string();
        let (status, completion) = match shared.blobs.read(container, &listed.name).await? {
            // Deleted since the listing: the host's attempt fails to bind the blob.
            None => (
                0,
                Err(format!("{container}/{} no longer exists", listed.name)),
            ),
            Some(content) => {
                let info = BlobTriggerInfo {
                    content,
                    blob_path: format!("{container}/{}", listed.name),
                    uri: shared.blobs.uri(container, &listed.name),
                    path_data,
                    etag: listed.etag.clone(),
                    length: listed.length,
                    content_type: listed.content_type.clone(),
                    last_modified: listed.last_modified.unwrap_or(now),
                    created: listed.created.unwrap_or(now),
                };
                match blob_request(trigger, &info, &SysInfo::now(&def.name)) {
                    Ok(payload) => invoke(shared, def, &payload, &invocation_id).await,
                    Err(e) => (0, Err(e)),
                }
            }
        };
        shared.record(def, &invocation_id, attempt, status, &completion, started);
        self.invocations_of(&def.name)
            .pop()
            .ok_or_else(|| anyhow!("no record of the `{}` invocation", def.name))
    }

    /// The WebJobs SDK's poison message for a blob (`BlobTriggerMessage`: the function id and
    /// the blob's container, name and ETag; member names inferred from the SDK, not captured).
    async fn poison_blob(
        &self,
        def: &FunctionDef,
        container: &str,
        blob: &ListedBlob,
    ) -> anyhow::Result<()> {
        let message = serde_json::json!({
            "Type": "BlobTrigger",
            "FunctionId": format!("Host.Functions.{}", def.name),
            "BlobType": "BlockBlob",
            "ContainerName": container,
            "BlobName": blob.name,
            "ETag": blob.etag,
        });
        self.shared.event(format!(
            "moving blob {container}/{} to `{BLOB_POISON_QUEUE}` after {} attempts",
            blob.name, self.shared.app.host.queues.max_dequeue_count
        ));
        let encoding = self.shared.app.host.queues.message_encoding;
        self.shared
            .queues
            .send(BLOB_POISON_QUEUE, message.to_string().as_bytes(), encoding)
            .await
    }

    /// Every invocation so far, in completion order.
    pub fn invocations(&self) -> Vec<InvocationRecord> {
        lock(&self.shared.records).clone()
    }

    /// Invocations of one function.
    pub fn invocations_of(&self, function: &str) -> Vec<InvocationRecord> {
        self.invocations()
            .into_iter()
            .filter(|r| r.function == function)
            .collect()
    }

    /// The handler's stdout and stderr lines so far, interleaved in arrival order.
    pub fn handler_output(&self) -> Vec<String> {
        lock(&self.shared.output).clone()
    }

    /// The handler's console lines so far with the stream and the severity the host logs them
    /// at ([`HostLevel::of`]), interleaved in arrival order.
    pub fn console(&self) -> Vec<ConsoleLine> {
        lock(&self.shared.console).clone()
    }

    /// Things the host did besides invocations: handler restarts, poisoned messages, storage
    /// errors.
    pub fn host_events(&self) -> Vec<String> {
        lock(&self.shared.events).clone()
    }

    /// The running handler's process id (`None` when attached or between restarts).
    pub fn handler_pid(&self) -> Option<u32> {
        lock(&self.handler).as_ref().map(GroupChild::id)
    }

    /// How often the handler process was restarted after exiting or timing out.
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// Texts in `<queue>-poison`, decoded like the trigger decodes them (up to 32).
    pub async fn poison_texts(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        let encoding = self.shared.app.host.queues.message_encoding;
        self.shared
            .queues
            .peek_texts(&poison_queue_name(queue), encoding)
            .await
    }

    /// Waits until every trigger queue is empty (no visible message, approximate count 0) and no
    /// invocation is in flight, continuously for 300 ms. A failed message waiting for its
    /// retry keeps the host busy.
    pub async fn wait_until_idle(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut quiet_since: Option<Instant> = None;
        loop {
            let busy = self.busy_reason().await;
            match (&busy, quiet_since) {
                (Some(_), _) => quiet_since = None,
                (None, Some(since)) if since.elapsed() >= IDLE_STABLE => return Ok(()),
                (None, None) => quiet_since = Some(Instant::now()),
                (None, Some(_)) => {}
            }
            if Instant::now() >= deadline {
                let reason = busy.unwrap_or_else(|| "it was not quiet long enough".into());
                bail!("the fake host was not idle after {timeout:?}: {reason}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Why the host is not idle, or `None`.
    async fn busy_reason(&self) -> Option<String> {
        let in_flight = self.shared.in_flight.load(Ordering::SeqCst);
        if in_flight > 0 {
            return Some(format!("{in_flight} invocation(s) in flight"));
        }
        if *self.shared.state.borrow() == HandlerState::Starting {
            return Some("the handler is (re)starting".into());
        }
        for (_, trigger) in self.shared.app.queue_triggered() {
            let queue = trigger.queue_name.as_deref().unwrap_or_default();
            match self.shared.queues.peek_raw(queue).await {
                Ok(visible) if !visible.is_empty() => {
                    return Some(format!("`{queue}` has visible messages: {visible:?}"));
                }
                Ok(_) => {}
                Err(e) => return Some(format!("cannot peek `{queue}`: {e:#}")),
            }
            match self.shared.queues.approximate_count(queue).await {
                Ok(0) => {}
                Ok(n) => {
                    return Some(format!(
                        "`{queue}` holds {n} message(s), e.g. invisible until a retry"
                    ));
                }
                Err(e) => return Some(format!("cannot count `{queue}`: {e:#}")),
            }
        }
        None
    }

    /// Stops polling and kills the handler (if this host started it). Idempotent.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(mut child) = lock(&self.handler).take() {
            // Best effort: a kill failure leaves nothing to do but report, and stop() is also
            // called from drop.
            if let Err(e) = child.kill() {
                self.shared
                    .event(format!("killing the handler failed: {e:#}"));
            }
        }
    }
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        self.stop();
    }
}

fn outcome(
    http: HttpResult,
    invocation_succeeded: bool,
    completed: Option<Completed>,
) -> HttpOutcome {
    let (logs, outputs) = completed
        .map(|c| (c.logs, c.outputs))
        .unwrap_or((Vec::new(), Value::Null));
    HttpOutcome {
        status: http.status,
        headers: http.headers,
        body: http.body,
        invocation_succeeded,
        logs,
        outputs,
    }
}

fn method_allowed(trigger: &Binding, method: &str) -> bool {
    trigger
        .methods
        .as_ref()
        .is_none_or(|methods| methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A successful invocation's results.
struct Completed {
    http: Option<HttpResult>,
    logs: Vec<String>,
    outputs: Value,
}

impl Shared {
    fn event(&self, text: String) {
        if self.echo {
            eprintln!("[fake-host] {text}");
        }
        lock(&self.events).push(text);
    }

    fn record(
        &self,
        function: &FunctionDef,
        invocation_id: &str,
        dequeue_count: Option<u32>,
        status: u16,
        completion: &Result<Completed, String>,
        (started, clock): (SystemTime, Instant),
    ) {
        let (succeeded, logs, outputs, error) = match completion {
            Ok(done) => (true, done.logs.clone(), done.outputs.clone(), None),
            Err(e) => (false, Vec::new(), Value::Null, Some(e.clone())),
        };
        if self.echo {
            for line in &logs {
                eprintln!("[{}] {line}", function.name);
            }
            if let Some(e) = &error {
                eprintln!("[fake-host] {} failed: {e}", function.name);
            }
        }
        let record = InvocationRecord {
            function: function.name.clone(),
            invocation_id: invocation_id.to_string(),
            dequeue_count,
            succeeded,
            status,
            logs,
            outputs,
            started,
            duration: clock.elapsed(),
            error,
        };
        lock(&self.records).push(record);
    }

    /// Waits (bounded) until the handler is ready; invocations arriving during a restart are
    /// held, as the host holds them.
    async fn await_ready(&self) -> Result<(), String> {
        let mut state = self.state.subscribe();
        let waited =
            tokio::time::timeout(READY_WAIT, state.wait_for(|s| *s != HandlerState::Starting))
                .await;
        let settled = match waited {
            Ok(Ok(state)) => Some(state.clone()),
            _ => None,
        };
        match settled {
            Some(HandlerState::Ready) => Ok(()),
            Some(HandlerState::Failed(reason)) => Err(format!("the host has shut down: {reason}")),
            _ => Err(format!("the handler was not ready within {READY_WAIT:?}")),
        }
    }

    /// Enqueues output messages, each queue created on demand.
    async fn write_queue_outputs(&self, messages: &[QueueOutput]) -> anyhow::Result<()> {
        let encoding = self.app.host.queues.message_encoding;
        for message in messages {
            self.queues
                .send(&message.queue, &message.message, encoding)
                .await?;
        }
        Ok(())
    }
}

/// Counts an invocation (or a received message) as in flight while alive.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

// ----------------------------------------------------------------------------------------------
// Invocation
// ----------------------------------------------------------------------------------------------

/// Sends one invocation and binds its outputs. Returns the handler's HTTP status (0 if none)
/// and the results, or why the host failed the invocation.
async fn invoke(
    shared: &Shared,
    function: &FunctionDef,
    payload: &Value,
    invocation_id: &str,
) -> (u16, Result<Completed, String>) {
    invoke_in_trace(shared, function, payload, invocation_id, None).await
}

/// [`invoke`] continuing the trace of `parent` (an HTTP trigger's caller's `traceparent`).
async fn invoke_in_trace(
    shared: &Shared,
    function: &FunctionDef,
    payload: &Value,
    invocation_id: &str,
    parent: Option<&str>,
) -> (u16, Result<Completed, String>) {
    let traceparent = host_traceparent(parent);
    let (status, response) =
        post(shared, &function.name, payload, invocation_id, &traceparent).await;
    let completion = match response {
        Ok(response) => bind_outputs(shared, function, response).await,
        Err(e) => Err(e),
    };
    (status, completion)
}

/// POSTs the payload to `/<Function>` with the host's headers and a chunked body, and validates
/// the answer (§2, §4.1). The headers are the host's own (`X-Azure-Functions-InvocationId`, a
/// new GUID per invocation, `X-Azure-Functions-HostVersion`, `User-Agent`) and the `traceparent`
/// that .NET's `HttpClient` adds for the invocation's current `Activity` (the host runs each
/// invocation in one when Application Insights is on, as in Azure). Enforces `functionTimeout`: on expiry the handler is restarted.
async fn post(
    shared: &Shared,
    function: &str,
    payload: &Value,
    invocation_id: &str,
    traceparent: &str,
) -> (u16, Result<HandlerResponse, String>) {
    if let Err(e) = shared.await_ready().await {
        return (0, Err(e));
    }
    let body = match serde_json::to_vec(payload) {
        Ok(body) => body,
        Err(e) => return (0, Err(format!("serializing the request: {e}"))),
    };
    // A stream without a known length makes hyper use chunked transfer encoding, as the host's
    // lazily serialized ObjectContent does.
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let request = shared
        .client
        .post(format!("http://127.0.0.1:{}/{function}", shared.port))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Azure-Functions-InvocationId", invocation_id)
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .header("traceparent", traceparent)
        .body(reqwest::Body::wrap_stream(stream));
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, content_type, body))
    };
    let answered = match shared.app.host.function_timeout {
        None => exchange.await,
        Some(limit) => match tokio::time::timeout(limit, exchange).await {
            Ok(answered) => answered,
            Err(_) => {
                shared.event(format!(
                    "{function} exceeded functionTimeout {limit:?}; restarting the handler"
                ));
                shared.restart.notify_one();
                return (0, Err(format!("functionTimeout {limit:?} exceeded")));
            }
        },
    };
    match answered {
        Ok((status, content_type, body)) => (
            status,
            parse_handler_response(status, content_type.as_deref(), &body),
        ),
        Err(e) => (0, Err(format!("POST /{function} failed: {e}"))),
    }
}

/// Applies the outputs of a validated response; a binding or storage error fails the
/// invocation, as in the host.
async fn bind_outputs(
    shared: &Shared,
    function: &FunctionDef,
    response: HandlerResponse,
) -> Result<Completed, String> {
    let applied = apply_outputs(function, &response)?;
    shared
        .write_queue_outputs(&applied.queue_messages)
        .await
        .map_err(|e| format!("binding queue outputs: {e:#}"))?;
    let outputs = response.outputs.map(Value::Object).unwrap_or(Value::Null);
    Ok(Completed {
        http: applied.http,
        logs: response.logs,
        outputs,
    })
}

// ----------------------------------------------------------------------------------------------
// Queue triggers
// ----------------------------------------------------------------------------------------------

/// Polls one function's trigger queue and processes messages concurrently, up to
/// `batchSize + newBatchThreshold` at a time (24 with the defaults).
async fn poll_queue(shared: Arc<Shared>, function: FunctionDef, trigger: Binding, queue: String) {
    let batch_size = shared.app.host.queues.batch_size.max(1) as usize;
    let permits = Arc::new(Semaphore::new(batch_size + batch_size / 2));
    let mut running = JoinSet::new();
    let mut receive_failing = false;
    while !shared.stopping.load(Ordering::SeqCst) {
        while running.try_join_next().is_some() {}
        let free = permits.available_permits().min(batch_size);
        if free == 0 {
            // Wait for one invocation to finish before fetching more.
            drop(permits.clone().acquire_owned().await);
            continue;
        }
        let lease = LEASE.as_secs() as i32;
        match shared.queues.receive(&queue, free as i32, lease).await {
            Err(e) => {
                if !receive_failing {
                    shared.event(format!(
                        "receiving from `{queue}` failed (will keep polling): {e:#}"
                    ));
                }
                receive_failing = true;
                tokio::time::sleep(RECEIVE_ERROR_BACKOFF).await;
            }
            Ok(messages) if messages.is_empty() => {
                receive_failing = false;
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Ok(messages) => {
                receive_failing = false;
                for message in messages {
                    let Ok(permit) = permits.clone().acquire_owned().await else {
                        return;
                    };
                    let job = MessageJob {
                        shared: shared.clone(),
                        function: function.clone(),
                        trigger: trigger.clone(),
                        queue: queue.clone(),
                        _in_flight: InFlight::enter(&shared),
                        _permit: permit,
                    };
                    running.spawn(job.run(message));
                }
            }
        }
    }
}

/// One received message on its way through an invocation.
struct MessageJob {
    shared: Arc<Shared>,
    function: FunctionDef,
    trigger: Binding,
    queue: String,
    _in_flight: InFlight,
    _permit: OwnedSemaphorePermit,
}

impl MessageJob {
    /// The message lifecycle of §7.2.
    async fn run(self, message: ReceivedMessage) {
        let (Some(id), Some(mut pop_receipt)) =
            (message.message_id.clone(), message.pop_receipt.clone())
        else {
            self.shared.event(format!(
                "`{}` returned a message without id or pop receipt",
                self.queue
            ));
            return;
        };
        let stored = message.message_text.clone().unwrap_or_default();
        let dequeue_count = message
            .dequeue_count
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1);
        let max = self.shared.app.host.queues.max_dequeue_count;
        let Some(body) = decode_message(&stored, self.shared.app.host.queues.message_encoding)
        else {
            return self
                .poison(&id, &pop_receipt, &stored, "its text is not valid base64")
                .await;
        };
        if dequeue_count > max {
            let reason = format!("its dequeue count {dequeue_count} exceeds maxDequeueCount {max}");
            return self.poison(&id, &pop_receipt, &stored, &reason).await;
        }
        let info = message_info(&message, body, dequeue_count, &id, &pop_receipt);
        let started = (SystemTime::now(), Instant::now());
        let invocation_id = Uuid::new_v4().to_string();
        let (status, completion) =
            match queue_request(&self.trigger, &info, &SysInfo::now(&self.function.name)) {
                Err(e) => (0, Err(e)),
                Ok(payload) => {
                    let work = invoke(&self.shared, &self.function, &payload, &invocation_id);
                    self.with_lease(&id, &mut pop_receipt, work).await
                }
            };
        self.shared.record(
            &self.function,
            &invocation_id,
            Some(dequeue_count),
            status,
            &completion,
            started,
        );
        self.settle(
            &id,
            &pop_receipt,
            &stored,
            dequeue_count,
            completion.is_ok(),
        )
        .await;
    }

    /// Runs `work` while renewing the message's invisibility at half-lease, so a long
    /// invocation is not delivered twice.
    async fn with_lease<F: Future>(
        &self,
        id: &str,
        pop_receipt: &mut String,
        work: F,
    ) -> F::Output {
        let mut work = std::pin::pin!(work);
        let half = LEASE / 2;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        loop {
            tokio::select! {
                output = &mut work => return output,
                _ = renew.tick() => {
                    let lease = LEASE.as_secs() as i32;
                    match self.shared.queues.set_visibility(&self.queue, id, pop_receipt, lease).await {
                        Ok(renewed) => *pop_receipt = renewed,
                        Err(e) => self.shared.event(format!("renewing the lease of {id} failed: {e:#}")),
                    }
                }
            }
        }
    }

    /// Success deletes the message; failure retries it after the visibility timeout or, on the
    /// last allowed attempt, moves it to the poison queue.
    async fn settle(
        &self,
        id: &str,
        pop_receipt: &str,
        stored: &str,
        dequeue_count: u32,
        succeeded: bool,
    ) {
        let shared = &self.shared;
        let result = if succeeded {
            shared.queues.delete(&self.queue, id, pop_receipt).await
        } else if dequeue_count >= shared.app.host.queues.max_dequeue_count {
            let reason = format!("attempt {dequeue_count} failed");
            return self.poison(id, pop_receipt, stored, &reason).await;
        } else {
            let delay = i32::try_from(shared.retry_delay.as_secs()).unwrap_or(i32::MAX);
            shared
                .queues
                .set_visibility(&self.queue, id, pop_receipt, delay)
                .await
                .map(drop)
        };
        if let Err(e) = result {
            shared.event(format!(
                "settling message {id} of `{}` failed: {e:#}",
                self.queue
            ));
        }
    }

    /// Copies the stored text to `<queue>-poison` and deletes the original. Queues that cannot
    /// have a poison queue keep the message invisible until its lease lapses (§7.2).
    async fn poison(&self, id: &str, pop_receipt: &str, stored: &str, reason: &str) {
        let shared = &self.shared;
        let poison = poison_queue_name(&self.queue);
        if self.queue.ends_with("-poison") || poison.len() > MAX_QUEUE_NAME {
            shared.event(format!(
                "message {id} of `{}` failed for good ({reason}); no poison queue",
                self.queue
            ));
            return;
        }
        shared.event(format!(
            "moving message {id} of `{}` to `{poison}`: {reason}",
            self.queue
        ));
        let moved = async {
            shared.queues.send_raw(&poison, stored).await?;
            shared.queues.delete(&self.queue, id, pop_receipt).await
        };
        if let Err(e) = moved.await {
            shared.event(format!("poisoning message {id} failed: {e:#}"));
        }
    }
}

/// The container and blob-name pattern of a function's blob trigger `path`.
fn blob_trigger_path(def: &FunctionDef) -> anyhow::Result<(&str, &str)> {
    let trigger = def
        .blob_trigger()
        .ok_or_else(|| anyhow!("function `{}` is not blob-triggered", def.name))?;
    let path = trigger
        .path
        .as_deref()
        .ok_or_else(|| anyhow!("`{}`: blobTrigger without path", def.name))?;
    split_blob_path(path)
        .ok_or_else(|| anyhow!("`{}`: path `{path}` has no container/name", def.name))
}

pub fn poison_queue_name(queue: &str) -> String {
    format!("{queue}-poison")
}

fn message_info(
    message: &ReceivedMessage,
    body: Vec<u8>,
    dequeue_count: u32,
    id: &str,
    pop: &str,
) -> QueueMessageInfo {
    let now = OffsetDateTime::now_utc();
    QueueMessageInfo {
        body,
        dequeue_count,
        id: id.to_string(),
        pop_receipt: pop.to_string(),
        expiration_time: message.expiration_time.unwrap_or(now),
        insertion_time: message.insertion_time.unwrap_or(now),
        next_visible_time: message.time_next_visible.unwrap_or(now),
    }
}

// ----------------------------------------------------------------------------------------------
// Handler process
// ----------------------------------------------------------------------------------------------

/// How to start the handler process.
#[derive(Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    working_dir: PathBuf,
    env: Vec<(String, String)>,
    app_root: PathBuf,
}

impl Launch {
    fn from_config(config: &HostConfig, app: &FunctionApp, port: u16) -> Launch {
        let args = app
            .host
            .arguments
            .iter()
            .map(|a| expand_settings(a, &config.env))
            .collect();
        let working_dir = match app.host.working_directory.as_str() {
            "" => config.app_root.clone(),
            dir => config.app_root.join(dir),
        };
        let mut env = config.env.clone();
        env.push(("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()));
        env.push(("FUNCTIONS_HTTPWORKER_PORT".into(), port.to_string()));
        env.push((
            "FUNCTIONS_APP_ROOT_PATH".into(),
            config.app_root.display().to_string(),
        ));
        Launch {
            program: config.binary.clone(),
            args,
            working_dir,
            env,
            app_root: config.app_root.clone(),
        }
    }

    /// Spawns the handler with piped output; a new worker id each time, as the host does.
    fn spawn(
        &self,
        output: &Arc<Mutex<Vec<String>>>,
        console: &Arc<Mutex<Vec<ConsoleLine>>>,
        echo: bool,
    ) -> anyhow::Result<GroupChild> {
        let worker_id = Uuid::new_v4().to_string();
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.working_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", &worker_id)
            .env("FUNCTIONS_HTTPWORKER_ID", &worker_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = GroupChild::spawn(command)?;
        let sink = |stream| Capture {
            stream,
            output: output.clone(),
            console: console.clone(),
            echo,
        };
        if let Some(stdout) = child.take_stdout() {
            capture_lines(stdout, sink(Stream::Stdout));
        }
        if let Some(stderr) = child.take_stderr() {
            capture_lines(stderr, sink(Stream::Stderr));
        }
        Ok(child)
    }
}

/// Expands `%NAME%` from the app settings, then the environment (§1.1); unknown names stay.
fn expand_settings(argument: &str, settings: &[(String, String)]) -> String {
    let mut parts = argument.split('%');
    let mut expanded = parts.next().unwrap_or_default().to_string();
    let rest: Vec<&str> = parts.collect();
    let mut i = 0;
    while i < rest.len() {
        let name = rest[i];
        let value = settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok());
        match (value, rest.get(i + 1)) {
            (Some(value), Some(after)) if !name.is_empty() => {
                expanded.push_str(&value);
                expanded.push_str(after);
                i += 2;
            }
            _ => {
                expanded.push('%');
                expanded.push_str(name);
                i += 1;
            }
        }
    }
    expanded
}

/// Where a pipe's lines go.
struct Capture {
    stream: Stream,
    output: Arc<Mutex<Vec<String>>>,
    console: Arc<Mutex<Vec<ConsoleLine>>>,
    echo: bool,
}

/// Collects a pipe's lines on a thread of its own (the pipe ends when the process exits), each
/// with the severity the host gives it.
fn capture_lines(pipe: impl Read + Send + 'static, capture: Capture) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            if capture.echo {
                eprintln!("[handler {}] {text}", capture.stream.label());
            }
            let level = HostLevel::of(capture.stream, &text);
            lock(&capture.output).push(text.clone());
            lock(&capture.console).push(ConsoleLine {
                stream: capture.stream,
                level,
                text,
            });
            line.clear();
        }
    });
}

/// Probes `GET /` every 25 ms for up to 30 s; any HTTP response means ready (§1.4). With a
/// child, its early exit ends the wait with an error.
async fn wait_ready(
    shared: &Shared,
    child: Option<&Arc<Mutex<Option<GroupChild>>>>,
) -> anyhow::Result<()> {
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .context("building the readiness probe")?;
    let url = format!("http://127.0.0.1:{}/", shared.port);
    let what = format!("the handler to answer GET {url}");
    poll_until(&what, READY_TIMEOUT, READY_PROBE_INTERVAL, || {
        let exited = child.map(|slot| lock(slot).as_mut().map(GroupChild::try_wait));
        let request = probe.get(&url).send();
        async move {
            if let Some(Some(exit)) = exited
                && let Some(status) = exit?
            {
                bail!("the handler exited before it was ready ({status})");
            }
            Ok(request.await.ok().map(drop))
        }
    })
    .await
}

/// Runs the handler like the host's `HttpWorkerChannel`: start, wait for readiness, and restart
/// it when it exits or a restart is requested (function timeout); after 3 failures within 30
/// minutes the host gives up. A handler that never becomes ready the first time fails `start`.
async fn supervise(shared: Arc<Shared>, launch: Launch, slot: Arc<Mutex<Option<GroupChild>>>) {
    let mut failures: Vec<Instant> = Vec::new();
    let mut first = true;
    loop {
        shared.state.send_replace(HandlerState::Starting);
        match launch.spawn(&shared.output, &shared.console, shared.echo) {
            Ok(child) => *lock(&slot) = Some(child),
            Err(e) => {
                return fail(
                    &shared,
                    format!("starting {}: {e:#}", launch.program.display()),
                );
            }
        }
        let why = match wait_ready(&shared, Some(&slot)).await {
            Ok(()) => {
                shared.state.send_replace(HandlerState::Ready);
                watch_handler(&shared, &slot).await
            }
            Err(e) if first => {
                kill_handler(&slot);
                return fail(
                    &shared,
                    format!("{e:#} (app root {})", launch.app_root.display()),
                );
            }
            Err(e) => format!("{e:#}"),
        };
        kill_handler(&slot);
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        first = false;
        failures.retain(|t| t.elapsed() < ERROR_WINDOW);
        failures.push(Instant::now());
        if failures.len() >= MAX_HANDLER_ERRORS {
            return fail(
                &shared,
                format!(
                    "{} handler failures within 30 minutes; last: {why}",
                    failures.len()
                ),
            );
        }
        shared.restarts.fetch_add(1, Ordering::SeqCst);
        shared.event(format!("{why}; restarting the handler"));
    }
}

/// Returns when the running handler exits or a restart is requested, saying which.
async fn watch_handler(shared: &Shared, slot: &Arc<Mutex<Option<GroupChild>>>) -> String {
    loop {
        let exit = lock(slot).as_mut().map(GroupChild::try_wait);
        match exit {
            None => return "the handler is gone".into(),
            Some(Err(e)) => return format!("cannot watch the handler: {e:#}"),
            Some(Ok(Some(status))) => return format!("the handler exited ({status})"),
            Some(Ok(None)) => {}
        }
        tokio::select! {
            _ = shared.restart.notified() => return "restart requested".into(),
            _ = tokio::time::sleep(Duration::from_millis(25)) => {}
        }
    }
}

fn kill_handler(slot: &Arc<Mutex<Option<GroupChild>>>) {
    if let Some(mut child) = lock(slot).take() {
        // The process is being replaced or abandoned; a failed kill is already reflected in
        // what happens next (the port stays busy and readiness fails).
        let _ = child.kill();
    }
}

fn fail(shared: &Shared, reason: String) {
    shared.event(format!("the host gives up: {reason}"));
    shared.state.send_replace(HandlerState::Failed(reason));
}

/// The `traceparent` of the host's invocation `Activity`: a new span in the trace of `parent`
/// when it is a valid W3C value (ASP.NET Core continues an HTTP caller's trace), otherwise in a
/// new trace; sampled (`01`), as Application Insights records it.
fn host_traceparent(parent: Option<&str>) -> String {
    let parent_trace = parent.and_then(|p| {
        let parts: Vec<&str> = p.trim().split('-').collect();
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        (parts.len() >= 4 && hex(parts[0], 2) && hex(parts[1], 32) && hex(parts[2], 16))
            .then(|| parts[1].to_ascii_lowercase())
            .filter(|t| t.bytes().any(|b| b != b'0'))
    });
    let trace = parent_trace.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let span = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}
