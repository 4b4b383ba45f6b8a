//! `aos dev`: the newcomer's command — the whole system on a laptop, no Azure needed.
//!
//! Starts Azurite (from the npm lock file), the Altinn simulator and the standalone runtime;
//! subscribes the runtime's webhook to the simulator's Events (which validates the endpoint and
//! then pushes events as Altinn does); completes a batch of sample instances with attachments;
//! shows progress while they are archived and confirmed; prints a summary; and keeps running so
//! the user can post their own events, until Ctrl-C.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::{SettingSource, Settings};
use crate::pipeline::Pipeline;
use crate::standalone::{self, RunOptions};
use altinn_sim::{self as simulator, ElementSpec, InstanceSpec, SimulatorConfig, SimulatorHandle};

/// What `aos dev` does.
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Where the webhook listens.
    pub listen: SocketAddr,
    /// Where the simulator listens.
    pub simulator: SocketAddr,
    /// Sample instances to complete.
    pub instances: usize,
    /// Stop after the summary instead of waiting for Ctrl-C (smoke tests, CI).
    pub exit_after_summary: bool,
}

const DEMO_ORG: &str = "ttd";
const DEMO_APP: &str = "demo-app";

pub async fn run(options: DevOptions) -> anyhow::Result<DevSummary> {
    let root = aos_azurite::project_root();
    println!("Starting Azurite (local Azure Storage) …");
    let storage = aos_azurite::Azurite::start(&root).await?;
    let token = format!("dev-{}", uuid::Uuid::new_v4());
    let sim = simulator::start(SimulatorConfig {
        listen: options.simulator,
        token: token.clone(),
    })
    .await?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let base = sim.base_url().to_string();

    let blob_endpoint = storage.blob_endpoint();
    let connection = storage.connection_string();
    let settings = Settings::from_source(&SettingSource::from_pairs([
        (
            "AltinnApplicationOwnerSystemSettings__AppsBaseUrl",
            base.as_str(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__PlatformBaseUrl",
            base.as_str(),
        ),
        ("AltinnApplicationOwnerSystemSettings__Org", DEMO_ORG),
        (
            "AltinnApplicationOwnerSystemSettings__BlobEndpoint",
            blob_endpoint.as_str(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__AccountName",
            aos_azurite::ACCOUNT,
        ),
        (
            "AltinnApplicationOwnerSystemSettings__AccountKey",
            aos_azurite::KEY,
        ),
        (
            "AltinnApplicationOwnerSystemSettings__AltinnToken",
            token.as_str(),
        ),
        (
            "AltinnApplicationOwnerSystemSettings__WebhookSecret",
            secret.as_str(),
        ),
        (
            "QueueStorageSettings__ConnectionString",
            connection.as_str(),
        ),
    ]))?;
    let container = settings.blob.container.clone();
    let pipeline = Pipeline::from_settings(settings).await?;

    let shutdown = CancellationToken::new();
    let mut run_options = RunOptions {
        listen: options.listen,
        ..RunOptions::default()
    };
    run_options.worker.retry_delay = Duration::from_secs(2);
    let runtime = tokio::spawn(standalone::run(pipeline, run_options, shutdown.clone()));
    wait_for_webhook(options.listen).await?;

    let webhook = format!("http://{}/api/EventsReceiver?code={secret}", options.listen);
    println!(
        "Altinn simulator on {base}; webhook on http://{}/api/EventsReceiver",
        options.listen
    );
    let source_filter = format!("{base}{DEMO_ORG}/{DEMO_APP}");
    let subscription = sim.add_subscription(
        &webhook,
        &source_filter,
        Some("app.instance.process.completed"),
    )?;
    let validated = || {
        sim.subscriptions().iter().any(|s| {
            s["id"].as_u64() == Some(subscription) && s["validated"].as_bool() == Some(true)
        })
    };
    wait_until(
        "the subscription to be validated",
        Duration::from_secs(30),
        validated,
    )
    .await?;
    println!("Subscribed {source_filter} (subscription {subscription}, validated by the endpoint)");

    let started = Instant::now();
    let mut bytes = 0u64;
    let mut expected = Vec::new();
    for n in 0..options.instances {
        let spec = sample_instance(n);
        bytes += spec.elements.iter().map(|e| e.size).sum::<u64>();
        expected.push(sim.complete_instance(spec).instance_id());
    }
    println!(
        "Completed {} sample instances ({}) — Altinn pushes one event each",
        options.instances,
        human_bytes(bytes)
    );

    let confirmed = show_progress(&sim, &expected, Duration::from_secs(300)).await;
    let summary = DevSummary {
        instances: expected.len(),
        confirmed,
        bytes,
        elapsed: started.elapsed(),
    };
    summary.print(&blob_endpoint, &container, &base, &webhook);

    if !options.exit_after_summary {
        println!(
            "\nRunning until Ctrl-C. Complete another instance (its event is pushed to the webhook):"
        );
        println!(
            "  curl -XPOST '{base}_sim/instances?publish=true' -H 'content-type: application/json' -d '{{\"org\":\"{DEMO_ORG}\",\"app\":\"{DEMO_APP}\",\"partyId\":5001,\"elements\":[{{\"size\":1000}}]}}'"
        );
        crate::shutdown_signal().await;
    }
    shutdown.cancel();
    runtime.await??;
    sim.shutdown();
    drop(storage);
    Ok(summary)
}

/// The result shown at the end of the demo.
#[derive(Clone, Debug)]
pub struct DevSummary {
    pub instances: usize,
    pub confirmed: usize,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl DevSummary {
    fn print(&self, blob_endpoint: &str, container: &str, base: &str, webhook: &str) {
        println!("\nSummary");
        println!(
            "  instances archived and confirmed: {}/{}",
            self.confirmed, self.instances
        );
        println!(
            "  data archived:                    {}",
            human_bytes(self.bytes)
        );
        println!(
            "  time:                             {:.1} s",
            self.elapsed.as_secs_f64()
        );
        // The counters `aos.instances.*` and `aos.archive.bytes` as this process counted them
        // (exported too when APPLICATIONINSIGHTS_CONNECTION_STRING is set).
        let totals = crate::metrics::totals();
        println!(
            "  metrics:                          {} archived, {} confirmed, {} failed attempts, {} archived bytes",
            totals.archived, totals.confirmed, totals.failed, totals.archive_bytes
        );
        println!(
            "  archive:                          {blob_endpoint}/{container}  ({{org}}/{{app}}/{{instanceGuid}}/…)"
        );
        println!("  confirmations:                    {base}_sim/confirmations");
        println!("  webhook:                          {webhook}");
    }
}

/// Instance `n` of the demo: a form, a PDF receipt and some attachments of varied sizes.
fn sample_instance(n: usize) -> InstanceSpec {
    let mut elements = vec![
        ElementSpec {
            data_type: "model".into(),
            content_type: "application/xml".into(),
            filename: Some("skjema.xml".into()),
            size: 4_096 + n as u64,
        },
        ElementSpec {
            data_type: "ref-data-as-pdf".into(),
            content_type: "application/pdf".into(),
            filename: Some("kvittering.pdf".into()),
            size: 80_000,
        },
    ];
    for a in 0..(n % 3) {
        elements.push(ElementSpec {
            data_type: "vedlegg".into(),
            content_type: "application/octet-stream".into(),
            filename: Some(format!("vedlegg-{a}.bin")),
            size: 256 * 1024 * (a as u64 + 1) * (1 + (n as u64 % 5)),
        });
    }
    InstanceSpec {
        org: DEMO_ORG.into(),
        app: DEMO_APP.into(),
        party_id: 50_001 + n as u64,
        elements,
        process_ended: true,
    }
}

async fn show_progress(sim: &SimulatorHandle, expected: &[String], timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut last = usize::MAX;
    loop {
        let confirmed_ids: std::collections::HashSet<String> = sim
            .confirmations()
            .into_iter()
            .map(|c| c.instance_id)
            .collect();
        let confirmed = expected
            .iter()
            .filter(|id| confirmed_ids.contains(*id))
            .count();
        if confirmed != last {
            println!("  archived and confirmed {confirmed}/{}", expected.len());
            last = confirmed;
        }
        if confirmed == expected.len() || Instant::now() > deadline {
            return confirmed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn wait_for_webhook(addr: SocketAddr) -> anyhow::Result<()> {
    wait_until_async(
        "the webhook to listen",
        Duration::from_secs(30),
        || async move { tokio::net::TcpStream::connect(addr).await.is_ok() },
    )
    .await
}

async fn wait_until(what: &str, timeout: Duration, check: impl Fn() -> bool) -> anyhow::Result<()> {
    wait_until_async(what, timeout, || std::future::ready(check())).await
}

async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, check: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        if Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    /// `UseDevelopmentStorage=true` (storage) must mean the account the launcher starts.
    #[test]
    fn the_development_storage_account_is_the_one_azurite_runs() {
        assert_eq!(crate::storage::AZURITE_ACCOUNT, aos_azurite::ACCOUNT);
        assert_eq!(crate::storage::AZURITE_KEY, aos_azurite::KEY);
    }
}
