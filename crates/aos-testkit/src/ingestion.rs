//! `Ingestion`: a stand-in for the Application Insights ingestion endpoint, so a test can see
//! the metrics the real binary exports.
//!
//! Point `aos` at it with [`Ingestion::connection_string`] as
//! `APPLICATIONINSIGHTS_CONNECTION_STRING` (`IngestionEndpoint=http://127.0.0.1:<port>/`). It
//! accepts every `POST …/v2.1/track` (gzip-compressed JSON array of envelopes, as the exporter
//! sends it), answers 200 with the track API's answer, and keeps every request body (raw, for
//! "no secret was sent" checks) and every metric data point.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::task::JoinHandle;

/// The instrumentation key of [`Ingestion::connection_string`].
pub const INSTRUMENTATION_KEY: &str = "00000000-0000-4000-8000-000000000001";

/// One metric data point as it arrived.
#[derive(Clone, Debug)]
pub struct MetricPoint {
    pub name: String,
    /// The value (a sum for counters, the sum of the recorded values for histograms).
    pub value: f64,
    /// How many values a histogram point aggregates (1 otherwise).
    pub count: u64,
    /// The envelope's `properties` (resource attributes and the point's attributes).
    pub properties: serde_json::Map<String, Value>,
}

#[derive(Default)]
struct Received {
    bodies: Vec<String>,
    points: Vec<MetricPoint>,
}

/// A running ingestion endpoint; stops when dropped.
pub struct Ingestion {
    port: u16,
    received: Arc<Mutex<Received>>,
    server: JoinHandle<()>,
}

impl Ingestion {
    pub async fn start() -> anyhow::Result<Ingestion> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Received::default()));
        let state = received.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| track(request, state.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Ingestion {
            port,
            received,
            server,
        })
    }

    /// The connection string that sends telemetry here.
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint=http://127.0.0.1:{}/",
            self.port
        )
    }

    /// Every request body so far, decompressed.
    pub fn bodies(&self) -> Vec<String> {
        lock(&self.received).bodies.clone()
    }

    /// Every metric data point so far.
    pub fn points(&self) -> Vec<MetricPoint> {
        lock(&self.received).points.clone()
    }

    /// The points named `name`.
    pub fn points_of(&self, name: &str) -> Vec<MetricPoint> {
        self.points()
            .into_iter()
            .filter(|p| p.name == name)
            .collect()
    }

    /// The sum of the values of `name` over every export (counters are exported as deltas).
    pub fn total(&self, name: &str) -> f64 {
        self.points_of(name).iter().map(|p| p.value).sum()
    }
}

impl Drop for Ingestion {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

async fn track(
    request: Request<Incoming>,
    received: Arc<Mutex<Received>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let gzip = request
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = request.into_body().collect().await?.to_bytes();
    let text = if gzip {
        let mut text = String::new();
        match flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text) {
            Ok(_) => text,
            Err(_) => String::from_utf8_lossy(&body).into_owned(),
        }
    } else {
        String::from_utf8_lossy(&body).into_owned()
    };
    let envelopes: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut points = Vec::new();
    for envelope in &envelopes {
        let data = &envelope["data"]["baseData"];
        let properties = data["properties"].as_object().cloned().unwrap_or_default();
        for metric in data["metrics"].as_array().into_iter().flatten() {
            points.push(MetricPoint {
                name: metric["name"].as_str().unwrap_or_default().to_string(),
                value: metric["value"].as_f64().unwrap_or(f64::NAN),
                count: metric["count"].as_u64().unwrap_or(1),
                properties: properties.clone(),
            });
        }
    }
    let answer = serde_json::json!({
        "itemsReceived": envelopes.len(),
        "itemsAccepted": envelopes.len(),
        "errors": [],
    });
    {
        let mut received = lock(&received);
        received.bodies.push(text);
        received.points.extend(points);
    }
    Ok(Response::new(Full::new(Bytes::from(answer.to_string()))))
}
