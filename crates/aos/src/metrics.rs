//! Metrics through OpenTelemetry, exported to Application Insights (`customMetrics`).
//!
//! Off unless configured: they are on when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set (the
//! Function App has it already) and `OTEL_SDK_DISABLED` is not `true`. The SDK's periodic
//! reader exports every `OTEL_METRIC_EXPORT_INTERVAL` milliseconds (60 000 by default) and once
//! more when the process ends ([`MetricsGuard`]). Why Application Insights and not OTLP: Azure
//! Monitor ingests the exporter's track API directly with the connection string the platform
//! sets, while OTLP needs a collector in between (docs/operations.md, "Metrics").
//!
//! The instrument names are a contract: the Bicep alerts and the workbook query them as
//! `customMetrics` names ([`names`]). Besides the exporter, the counters are kept as process
//! totals ([`totals`]) for `aos dev`'s summary, whether or not metrics are exported.
//!
//! Gauges (queue depth, poison depth, certificate days left) are sampled by the reconciler
//! timer and by `aos run` on an interval ([`sample_interval`]); the certificate's `notAfter`
//! is noted whenever the Maskinporten key is (re)loaded ([`note_certificate`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, MeterProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use time::OffsetDateTime;

/// The instrument names (App Insights `customMetrics` names; alerts and the workbook use them).
pub mod names {
    pub const ARCHIVED: &str = "aos.instances.archived";
    pub const CONFIRMED: &str = "aos.instances.confirmed";
    pub const FAILED: &str = "aos.instances.failed";
    pub const ARCHIVE_BYTES: &str = "aos.archive.bytes";
    pub const STEP_DURATION: &str = "aos.step.duration";
    pub const QUEUE_DEPTH: &str = "aos.queue.depth";
    pub const POISON_DEPTH: &str = "aos.poison.depth";
    pub const CERTIFICATE_DAYS_LEFT: &str = "aos.certificate.days_left";
}

/// The platform's connection string (the Functions host sets it from the app setting).
pub const CONNECTION_STRING_ENV: &str = "APPLICATIONINSIGHTS_CONNECTION_STRING";
/// The standard OpenTelemetry off switch.
pub const DISABLED_ENV: &str = "OTEL_SDK_DISABLED";
/// Seconds between two samples of the gauges in `aos run` (default 60).
pub const SAMPLE_INTERVAL_ENV: &str = "AOS_METRICS_SAMPLE_SECS";

/// The instruments, made once when metrics are on.
struct Instruments {
    archived: Counter<u64>,
    confirmed: Counter<u64>,
    failed: Counter<u64>,
    archive_bytes: Counter<u64>,
    step_duration: Histogram<f64>,
    queue_depth: Gauge<u64>,
    poison_depth: Gauge<u64>,
    certificate_days_left: Gauge<i64>,
}

static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
static CERTIFICATE_NOT_AFTER: Mutex<Option<OffsetDateTime>> = Mutex::new(None);

/// Process totals of the counters, kept whether or not metrics are exported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub archived: u64,
    pub confirmed: u64,
    pub failed: u64,
    pub archive_bytes: u64,
}

static ARCHIVED: AtomicU64 = AtomicU64::new(0);
static CONFIRMED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static ARCHIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Flushes and stops the exporter when dropped (the end of the process).
pub struct MetricsGuard(SdkMeterProvider);

impl Drop for MetricsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            tracing::warn!(error = %e, "metrics: the last export failed");
        }
    }
}

/// Why metrics are off, or that they are on.
#[derive(Debug, PartialEq, Eq)]
pub enum Config {
    Off(&'static str),
    AppInsights(String),
}

/// What the environment asks for.
pub fn config(env: impl Fn(&str) -> Option<String>) -> Config {
    if env(DISABLED_ENV).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Config::Off("OTEL_SDK_DISABLED=true");
    }
    match env(CONNECTION_STRING_ENV).filter(|v| !v.trim().is_empty()) {
        Some(connection) => Config::AppInsights(connection),
        None => Config::Off("APPLICATIONINSIGHTS_CONNECTION_STRING is not set"),
    }
}

/// Starts exporting when configured. Call before the async runtime starts: the exporter's
/// blocking HTTP client may not be made inside it. Never fails the process: a bad connection
/// string is one warning line and metrics stay off.
pub fn init() -> Option<MetricsGuard> {
    let connection = match config(|name| std::env::var(name).ok()) {
        Config::Off(_) => return None,
        Config::AppInsights(connection) => connection,
    };
    let client = match reqwest_sdk::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "metrics are off: cannot build their HTTP client");
            return None;
        }
    };
    let loopback = loopback_http_endpoint(&connection);
    let exporter = match opentelemetry_application_insights::Exporter::new_from_connection_string(
        connection, client,
    )
    .and_then(|exporter| match &loopback {
        // The exporter turns every `http://` endpoint into `https://`. A loopback endpoint
        // (a local collector, the tests' ingestion stand-in) keeps plain http, as every other
        // base URL of the product may on loopback (design §2.2).
        #[allow(deprecated)]
        Some(endpoint) => exporter.with_endpoint(endpoint),
        None => Ok(exporter),
    }) {
        Ok(exporter) => exporter.with_retry_notify(|error, retry_in| {
            tracing::debug!(error = %error, ?retry_in, "metrics: an export failed; retrying");
        }),
        Err(e) => {
            // The error names the part that is wrong, never the string itself.
            tracing::warn!(error = %e, "metrics are off: APPLICATIONINSIGHTS_CONNECTION_STRING is malformed");
            return None;
        }
    };
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .with_resource(
            Resource::builder()
                .with_service_name("altinn-aos")
                .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
                .build(),
        )
        .build();
    let meter = provider.meter("altinn-aos");
    let _ = INSTRUMENTS.set(Instruments {
        archived: meter
            .u64_counter(names::ARCHIVED)
            .with_description("instances archived (a new, verified archive)")
            .build(),
        confirmed: meter
            .u64_counter(names::CONFIRMED)
            .with_description("instances confirmed to Altinn")
            .build(),
        failed: meter
            .u64_counter(names::FAILED)
            .with_description("failed step attempts")
            .build(),
        archive_bytes: meter
            .u64_counter(names::ARCHIVE_BYTES)
            .with_unit("By")
            .with_description("data element bytes written to the archive")
            .build(),
        step_duration: meter
            .f64_histogram(names::STEP_DURATION)
            .with_unit("s")
            .with_description("duration of one step")
            .build(),
        queue_depth: meter
            .u64_gauge(names::QUEUE_DEPTH)
            .with_description("approximate messages in a step queue")
            .build(),
        poison_depth: meter
            .u64_gauge(names::POISON_DEPTH)
            .with_description("approximate messages in a poison queue")
            .build(),
        certificate_days_left: meter
            .i64_gauge(names::CERTIFICATE_DAYS_LEFT)
            .with_unit("d")
            .with_description("days until the Maskinporten certificate's notAfter")
            .build(),
    });
    tracing::info!("metrics are exported to Application Insights");
    Some(MetricsGuard(provider))
}

/// The connection string's `IngestionEndpoint` when it is plain http on a loopback address.
fn loopback_http_endpoint(connection: &str) -> Option<String> {
    let value = connection.split(';').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("IngestionEndpoint")
            .then(|| value.trim())
    })?;
    let url = url::Url::parse(value).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (url.scheme() == "http" && loopback).then(|| value.trim_end_matches('/').to_string())
}

/// Whether metrics are exported (the gauges are sampled only then: sampling costs requests).
pub fn enabled() -> bool {
    INSTRUMENTS.get().is_some()
}

/// The counters' totals in this process.
pub fn totals() -> Totals {
    Totals {
        archived: ARCHIVED.load(Ordering::Relaxed),
        confirmed: CONFIRMED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
        archive_bytes: ARCHIVE_BYTES.load(Ordering::Relaxed),
    }
}

/// An instance newly archived with `bytes` of data elements written.
pub fn instance_archived(bytes: u64) {
    ARCHIVED.fetch_add(1, Ordering::Relaxed);
    ARCHIVE_BYTES.fetch_add(bytes, Ordering::Relaxed);
    if let Some(i) = INSTRUMENTS.get() {
        i.archived.add(1, &[]);
        i.archive_bytes.add(bytes, &[]);
    }
}

pub fn instance_confirmed() {
    CONFIRMED.fetch_add(1, Ordering::Relaxed);
    if let Some(i) = INSTRUMENTS.get() {
        i.confirmed.add(1, &[]);
    }
}

/// A failed attempt of `step`; `kind` is the failure's label (`retryable`, `permanent`).
pub fn step_failed(step: &'static str, kind: &'static str, permanent: bool) {
    FAILED.fetch_add(1, Ordering::Relaxed);
    if let Some(i) = INSTRUMENTS.get() {
        let attributes = [
            KeyValue::new("kind", kind),
            KeyValue::new("permanent", permanent),
            KeyValue::new("step", step),
        ];
        i.failed.add(1, &attributes);
    }
}

/// How long one run of `step` took (`receive`, `process`, `confirm`, `feedback`, `reconcile`,
/// `catchup`).
pub fn step_duration(step: &'static str, elapsed: Duration) {
    if let Some(i) = INSTRUMENTS.get() {
        i.step_duration
            .record(elapsed.as_secs_f64(), &[KeyValue::new("step", step)]);
    }
}

/// Times `work` as `step`.
pub async fn timed<F: Future>(step: &'static str, work: F) -> F::Output {
    let started = std::time::Instant::now();
    let output = work.await;
    step_duration(step, started.elapsed());
    output
}

pub fn queue_depth(queue: &str, messages: u64) {
    if let Some(i) = INSTRUMENTS.get() {
        i.queue_depth
            .record(messages, &[KeyValue::new("queue", queue.to_string())]);
    }
}

pub fn poison_depth(queue: &str, messages: u64) {
    if let Some(i) = INSTRUMENTS.get() {
        i.poison_depth
            .record(messages, &[KeyValue::new("queue", queue.to_string())]);
    }
}

/// Notes the Maskinporten certificate's `notAfter` (`None`: the key is not a certificate).
pub fn note_certificate(not_after: Option<OffsetDateTime>) {
    *CERTIFICATE_NOT_AFTER
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = not_after;
}

/// Records the certificate's days left, when the key is a certificate (absent otherwise).
pub fn sample_certificate() {
    let not_after = *CERTIFICATE_NOT_AFTER
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let (Some(i), Some(not_after)) = (INSTRUMENTS.get(), not_after) {
        i.certificate_days_left
            .record(days_left(not_after, OffsetDateTime::now_utc()), &[]);
    }
}

/// Whole days from `now` to `not_after` (negative once expired).
fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (not_after - now).whole_days()
}

/// How often `aos run` samples the gauges ([`SAMPLE_INTERVAL_ENV`], default 60 s).
pub fn sample_interval() -> Duration {
    std::env::var(SAMPLE_INTERVAL_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(60), Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_only_with_a_connection_string_and_off_with_the_standard_switch() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(matches!(config(env(&[])), Config::Off(_)));
        assert!(matches!(
            config(env(&[(CONNECTION_STRING_ENV, " ")])),
            Config::Off(_)
        ));
        assert_eq!(
            config(env(&[(CONNECTION_STRING_ENV, "InstrumentationKey=k")])),
            Config::AppInsights("InstrumentationKey=k".into())
        );
        assert!(matches!(
            config(env(&[
                (CONNECTION_STRING_ENV, "InstrumentationKey=k"),
                (DISABLED_ENV, "TRUE")
            ])),
            Config::Off(_)
        ));
    }

    #[test]
    fn only_a_loopback_http_ingestion_endpoint_stays_http() {
        let endpoint = |e: &str| {
            loopback_http_endpoint(&format!("InstrumentationKey=k;IngestionEndpoint={e}"))
        };
        assert_eq!(
            endpoint("http://127.0.0.1:4318/").as_deref(),
            Some("http://127.0.0.1:4318")
        );
        assert_eq!(
            endpoint("http://localhost:1").as_deref(),
            Some("http://localhost:1")
        );
        assert_eq!(endpoint("http://example.com/"), None);
        assert_eq!(endpoint("https://127.0.0.1/"), None);
        assert_eq!(loopback_http_endpoint("InstrumentationKey=k"), None);
    }

    #[test]
    fn days_left_counts_whole_days_and_goes_negative_after_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(days_left(now + time::Duration::hours(24 * 30 + 5), now), 30);
        assert_eq!(days_left(now - time::Duration::days(2), now), -2);
    }
}
