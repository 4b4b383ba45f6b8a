//! A whole test world: Azurite, the Altinn simulator, and the real `aos` binary under the
//! Functions host harness, wired together with the settings a user would give.

use std::time::Duration;

use altinn_aos::archive::{Archive, InstancePaths, Manifest};
use altinn_aos::domain::{BaseUrl, InstanceRef};
use altinn_aos::storage::{AZURITE_ACCOUNT, AZURITE_KEY, StorageEndpoint};
use altinn_sim::{
    self as simulator, CreatedInstance, ElementSpec, InstanceSpec, SimulatorConfig, SimulatorHandle,
};
use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
use futures::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::azurite::Azurite;
use crate::host::{FunctionsHost, HostConfig, HttpCall};
use crate::storage_proxy::StorageProxy;

pub const TOKEN: &str = "test-altinn-token";
pub const ARCHIVE_CONTAINER: &str = "inbound";
pub const QUEUES: [&str; 2] = ["events-inbound", "events-confirmation"];

/// Azurite and the Altinn simulator, with the checks every end-to-end test makes on them.
pub struct Backends {
    pub azurite: Azurite,
    pub sim: SimulatorHandle,
    pub archive: Archive,
    pub blobs: StorageEndpoint,
    /// The storage proxy the product is pointed through, when started with one
    /// ([`Backends::start_behind_proxy`]); the tests' own checks and the host harness still talk
    /// to Azurite directly.
    pub proxy: Option<StorageProxy>,
}

/// The backends plus the real `aos` binary under the Functions host harness.
pub struct TestApp {
    pub backends: Backends,
    pub host: FunctionsHost,
}

impl std::ops::Deref for TestApp {
    type Target = Backends;
    fn deref(&self) -> &Backends {
        &self.backends
    }
}

/// An element of `size` bytes with an optional file name.
pub fn element(size: u64, filename: Option<&str>) -> ElementSpec {
    let content_type = if filename.is_some_and(|f| f.ends_with(".xml")) {
        "application/xml"
    } else {
        "application/octet-stream"
    };
    ElementSpec {
        data_type: "attachment".into(),
        content_type: content_type.into(),
        filename: filename.map(str::to_string),
        size,
    }
}

/// A completed instance of `ttd/test-app` owned by `party_id`.
pub fn instance(party_id: u64, elements: Vec<ElementSpec>) -> InstanceSpec {
    InstanceSpec {
        org: "ttd".into(),
        app: "test-app".into(),
        party_id,
        elements,
        process_ended: true,
    }
}

/// What the webhook caller (Altinn) saw, plus how many messages the invocation queued.
pub struct WebhookResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub queued_messages: usize,
}

impl WebhookResponse {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn queued(&self) -> bool {
        self.queued_messages > 0
    }
}

impl Backends {
    /// Fresh Azurite and simulator; every complete call is checked against the archive.
    pub async fn start() -> Backends {
        let backends = Self::start_unguarded()
            .await
            .expect("Azurite (run `npm ci` first) and the simulator start");
        backends.guard_confirms_with_the_manifest();
        backends
    }

    /// [`Backends::start`] with a [`StorageProxy`] (faults seeded by `seed`, no rule yet) between
    /// the product and Azurite: [`Backends::settings_env`] then names the proxy's endpoints.
    pub async fn start_behind_proxy(seed: u64) -> Backends {
        let backends = Self::start_unguarded_behind_proxy(seed)
            .await
            .expect("Azurite, the simulator and the storage proxy start");
        backends.guard_confirms_with_the_manifest();
        backends
    }

    /// [`Backends::start_unguarded`] with a [`StorageProxy`] in front of Azurite (benchmarks
    /// count the product's storage requests with it).
    pub async fn start_unguarded_behind_proxy(seed: u64) -> anyhow::Result<Backends> {
        let mut backends = Self::start_unguarded().await?;
        backends.proxy =
            Some(StorageProxy::start(&backends.azurite.connection_string(), seed).await?);
        Ok(backends)
    }

    /// The proxy the product goes through; panics when started without one.
    pub fn proxy(&self) -> &StorageProxy {
        self.proxy
            .as_ref()
            .expect("backends started with Backends::start_behind_proxy")
    }

    /// The storage connection string the product gets: the proxy's when there is one.
    pub fn product_connection_string(&self) -> String {
        match &self.proxy {
            Some(proxy) => proxy.connection_string(),
            None => self.azurite.connection_string(),
        }
    }

    /// Fresh Azurite and simulator without the confirm guard (which reads the manifest on every
    /// confirmation): for benchmarks, which measure the product, not the tests' checks.
    pub async fn start_unguarded() -> anyhow::Result<Backends> {
        let azurite = Azurite::start().await?;
        let sim = simulator::start(SimulatorConfig {
            token: TOKEN.into(),
            ..Default::default()
        })
        .await?;
        let blobs = StorageEndpoint::blobs_from_connection_string(&azurite.connection_string())
            .map_err(|e| anyhow::anyhow!("Azurite connection string: {e}"))?;
        let archive = Archive::new(blobs.clone(), ARCHIVE_CONTAINER);
        Ok(Backends {
            azurite,
            sim,
            archive,
            blobs,
            proxy: None,
        })
    }

    /// The settings a user would give `aos` to use these backends (storage through the proxy
    /// when there is one).
    pub fn settings_env(&self) -> Vec<(String, String)> {
        let base = self.sim.base_url().to_string();
        [
            (
                "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
                base.clone(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
                base,
            ),
            (
                "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
                self.proxy
                    .as_ref()
                    .map_or_else(|| self.azurite.blob_endpoint(), StorageProxy::blob_endpoint),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AccountName",
                AZURITE_ACCOUNT.to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AccountKey",
                AZURITE_KEY.to_string(),
            ),
            (
                "AltinnApplicationOwnerSystemSettings__AltinnToken",
                TOKEN.to_string(),
            ),
            (
                "QueueStorageSettings__ConnectionString",
                self.product_connection_string(),
            ),
            ("AOS_LOG_FORMAT", "text".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The archive's blob names for a simulator instance.
    pub fn paths(&self, inst: &CreatedInstance) -> InstancePaths {
        InstancePaths::new(&instance_ref(&self.apps_base(), inst))
    }

    pub fn apps_base(&self) -> BaseUrl {
        BaseUrl::parse(self.sim.base_url().as_str()).expect("simulator URL")
    }

    /// Every complete call must find the instance's manifest already in the archive, and every
    /// element the manifest lists must carry the SHA-256 of the element's content *as the
    /// simulator has it at that moment* (so a confirmation with stale bytes is a violation).
    /// While storage itself is down (chaos tests stop Azurite) the manifest cannot be read: the
    /// guard keeps trying for a while, since only a definite answer is a violation.
    fn guard_confirms_with_the_manifest(&self) {
        let archive = self.archive.clone();
        let apps = self.apps_base();
        self.sim
            .set_confirm_guard(std::sync::Arc::new(move |inst: CreatedInstance| {
                let archive = archive.clone();
                let paths = InstancePaths::new(&instance_ref(&apps, &inst));
                Box::pin(async move {
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    loop {
                        match archive.manifest(&paths).await {
                            Ok(Some(manifest)) => return manifest_matches(&inst, &manifest),
                            Ok(None) => {
                                return Err(format!(
                                    "confirm of {} before its manifest existed",
                                    inst.instance_id()
                                ));
                            }
                            Err(e) if std::time::Instant::now() > deadline => {
                                return Err(format!(
                                    "confirm of {}: manifest unreadable: {e}",
                                    inst.instance_id()
                                ));
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                        }
                    }
                })
            }));
    }

    /// Waits until the simulator has seen every instance of `wanted` confirmed (benchmarks
    /// poll this tightly, so the time they measure ends within 20 ms of the last confirm).
    pub async fn wait_all_confirmed(
        &self,
        wanted: &std::collections::HashSet<String>,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let confirmed = self
                .sim
                .confirmations()
                .iter()
                .filter(|c| wanted.contains(&c.instance_id))
                .map(|c| c.instance_id.clone())
                .collect::<std::collections::HashSet<_>>()
                .len();
            if confirmed == wanted.len() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("only {confirmed}/{} instances confirmed", wanted.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn confirmed(&self, inst: &CreatedInstance) -> bool {
        let id = inst.instance_id();
        self.sim.confirmations().iter().any(|c| c.instance_id == id)
    }

    /// The archive holds the instance JSON, every element byte-identical with its content type
    /// and metadata, and a manifest listing them.
    pub async fn assert_archived(&self, inst: &CreatedInstance) {
        let paths = InstancePaths::new(&instance_ref(&self.apps_base(), inst));
        let manifest: Manifest = self
            .archive
            .manifest(&paths)
            .await
            .expect("manifest readable")
            .unwrap_or_else(|| panic!("no manifest for {}", inst.instance_id()));
        assert_eq!(manifest.instance_id, inst.instance_id());
        assert_eq!(manifest.elements.len(), inst.elements.len());

        let json = self
            .archive
            .read_small(&paths.instance_json())
            .await
            .unwrap()
            .expect("instance JSON archived");
        let parsed: Value = serde_json::from_slice(&json).expect("instance JSON is JSON");
        assert_eq!(parsed["id"], inst.instance_id());

        for element in &inst.elements {
            let name = paths.data(element.id);
            let listed = manifest
                .elements
                .iter()
                .find(|m| m.id == element.id)
                .expect("element in manifest");
            assert_eq!(listed.blob_name, name);
            assert_eq!(listed.size, element.size);
            let content_sha256 = hex(&simulator::content_sha256(element.seed, element.size));
            assert_eq!(
                listed.sha256, content_sha256,
                "{name}: the manifest's SHA-256"
            );
            assert_eq!(listed.filename, element.filename);
            let blob = self.blobs.blob(ARCHIVE_CONTAINER, &name).unwrap();
            let props = blob
                .get_properties(None)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                props.content_length().unwrap(),
                Some(element.size),
                "{name} size"
            );
            assert_eq!(
                props.content_type().unwrap().as_deref(),
                Some(element.content_type.as_str())
            );
            let metadata = props.metadata().unwrap();
            assert_eq!(metadata.get("size"), Some(&element.size.to_string()));
            assert_eq!(metadata.get("datatype"), Some(&element.data_type));
            assert_eq!(metadata.get("instanceid"), Some(&inst.instance_id()));
            assert_eq!(
                metadata.get("sha256"),
                Some(&content_sha256),
                "{name}: the SHA-256 in the blob's metadata"
            );
            assert!(
                listed.last_changed.is_some()
                    && metadata.get("lastchanged") == listed.last_changed.as_ref(),
                "{name}: the element's version is recorded"
            );
            if let Some(filename) = &element.filename {
                let stored = metadata.get("filename").expect("filename metadata");
                assert!(stored.is_ascii(), "{stored}");
                assert_eq!(
                    percent_encoding::percent_decode_str(stored)
                        .decode_utf8()
                        .unwrap(),
                    filename.as_str()
                );
            }
            assert_eq!(
                self.blob_sha256(&name).await,
                simulator::content_sha256(element.seed, element.size),
                "{name} content"
            );
        }
    }

    async fn blob_sha256(&self, name: &str) -> [u8; 32] {
        let blob = self.blobs.blob(ARCHIVE_CONTAINER, name).unwrap();
        let options = azure_storage_blob::models::BlobClientDownloadOptions {
            parallel: std::num::NonZero::new(1),
            ..Default::default()
        };
        let mut body = blob.download(Some(options)).await.unwrap().body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            hasher.update(chunk.unwrap());
        }
        hasher.finalize().into()
    }

    pub async fn assert_no_poison(&self) {
        for queue in QUEUES {
            let poisoned = self
                .azurite
                .queue_texts(&format!("{queue}-poison"))
                .await
                .unwrap();
            assert!(poisoned.is_empty(), "{queue}-poison holds {poisoned:?}");
        }
    }
}

/// Lower-case hex, as the manifest writes SHA-256s.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every element the manifest lists has the simulator's current size and content hash.
fn manifest_matches(inst: &CreatedInstance, manifest: &Manifest) -> Result<(), String> {
    for listed in &manifest.elements {
        let Some(element) = inst.elements.iter().find(|e| e.id == listed.id) else {
            continue;
        };
        if listed.size != element.size || listed.sha256 != hex(&element.sha256()) {
            return Err(format!(
                "confirm of {}: the manifest records element {} as {} bytes with SHA-256 {}, \
                 the simulator has {} bytes with {}",
                inst.instance_id(),
                element.id,
                listed.size,
                listed.sha256,
                element.size,
                hex(&element.sha256())
            ));
        }
    }
    Ok(())
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with_retry_delay(Duration::from_millis(200)).await
    }

    /// With the host's `visibilityTimeout` (the pause between attempts) set to `delay`
    /// (whole seconds; less is an immediate retry).
    pub async fn spawn_with_retry_delay(delay: Duration) -> TestApp {
        Self::spawn_with(Backends::start().await, delay, Vec::new()).await
    }

    /// Around `backends`, with settings replaced or added by `overrides` (a value of `""`
    /// removes the setting).
    pub async fn spawn_with(
        backends: Backends,
        delay: Duration,
        overrides: Vec<(String, String)>,
    ) -> TestApp {
        Self::spawn_in(crate::app_root(), backends, delay, overrides).await
    }

    /// [`TestApp::spawn_with`] for the Function App at `app_root` (e.g. a copy with another
    /// `host.json`).
    pub async fn spawn_in(
        app_root: std::path::PathBuf,
        backends: Backends,
        delay: Duration,
        overrides: Vec<(String, String)>,
    ) -> TestApp {
        let mut env = backends.settings_env();
        for (name, value) in overrides {
            env.retain(|(n, _)| *n != name);
            if !value.is_empty() {
                env.push((name, value));
            }
        }
        let host = FunctionsHost::start(HostConfig {
            app_root,
            binary: crate::aos_binary(),
            env,
            connection_string: backends.azurite.connection_string(),
            visibility_timeout: Some(delay),
        })
        .await
        .expect("the handler starts under the host harness");
        TestApp { backends, host }
    }

    /// Waits until `function` has had at least one failed invocation (`what` names the wait in
    /// the timeout error).
    pub async fn wait_for_a_failed_invocation(
        &self,
        function: &str,
        what: &str,
        timeout: Duration,
    ) {
        crate::poll_until(what, timeout, Duration::from_millis(50), || async {
            Ok(self
                .host
                .invocations_of(function)
                .iter()
                .any(|i| !i.succeeded)
                .then_some(()))
        })
        .await
        .unwrap();
    }

    /// POSTs a CloudEvent to the webhook as Altinn does (`application/json; charset=utf-8`).
    pub async fn post_event(&self, event: &Value) -> WebhookResponse {
        self.post_raw(
            event.to_string().into_bytes(),
            "application/json; charset=utf-8",
        )
        .await
    }

    pub async fn post_raw(&self, body: Vec<u8>, content_type: &str) -> WebhookResponse {
        let call = HttpCall {
            method: "POST".into(),
            query: vec![("code".into(), "test-function-key".into())],
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
        };
        let outcome = self
            .host
            .invoke_http("EventsReceiver", call)
            .await
            .expect("the host reaches the handler");
        let queued_messages = match outcome.outputs.get("inbound") {
            None | Some(Value::Null) => 0,
            Some(Value::Array(items)) => items.len(),
            Some(_) => 1,
        };
        WebhookResponse {
            status: outcome.status,
            body: outcome.body,
            queued_messages,
        }
    }
}

fn instance_ref(apps: &BaseUrl, inst: &CreatedInstance) -> InstanceRef {
    let source = format!(
        "{apps}{}/{}/instances/{}",
        inst.org,
        inst.app,
        inst.instance_id()
    );
    InstanceRef::from_source(&source, apps).expect("simulator instances have valid references")
}
