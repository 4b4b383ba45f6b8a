//! A storage-side HTTP proxy between the product and Azurite: it counts every request by
//! storage operation (the request budget per instance, issue 18) and injects seeded faults —
//! 503 `ServerBusy`, 500, 408, connection resets, lost responses, delays — on blob and queue
//! operations (storage faults for the chaos suites, issue 15).
//!
//! One listener per service (blob, queue) on a free `127.0.0.1` port, each forwarding to
//! Azurite's port for that service. Bodies are streamed both ways (elements can be 64 MiB and
//! more), never buffered. Only the product is pointed through the proxy
//! ([`StorageProxy::connection_string`], [`crate::world::Backends::start_behind_proxy`]): the
//! tests' own checks and the Functions host harness talk to Azurite directly, so they are
//! neither counted nor faulted.
//!
//! - [`classify`] — which operation a request is (pure);
//! - [`faults`] — the rules and the seeded decision.

pub mod classify;
pub mod faults;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{Context as _, anyhow};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub use classify::{Operation, Service, classify};
pub use faults::{Fault, FaultRule, Scope, When};

use faults::Injector;

type ProxyBody = BoxBody<Bytes, hyper::Error>;
type Upstream = Client<HttpConnector, Incoming>;

/// The proxy; stops (listeners and open connections) when dropped.
pub struct StorageProxy {
    blob: SocketAddr,
    queue: SocketAddr,
    upstream_connection_string: String,
    state: Arc<State>,
    tasks: JoinSet<()>,
}

/// What the listeners share: counts and the fault injector.
struct State {
    requests: Mutex<BTreeMap<Operation, u64>>,
    faults: Mutex<BTreeMap<&'static str, u64>>,
    injector: Mutex<Injector>,
}

impl StorageProxy {
    /// Starts a proxy in front of the Azurite whose connection string is `azurite` (its
    /// `BlobEndpoint` and `QueueEndpoint` are where requests go), with faults decided by a
    /// generator seeded with `seed`. No rule is set: add them with [`StorageProxy::add_rule`].
    pub async fn start(azurite: &str, seed: u64) -> anyhow::Result<StorageProxy> {
        let blob_upstream = endpoint_address(azurite, "BlobEndpoint")?;
        let queue_upstream = endpoint_address(azurite, "QueueEndpoint")?;
        let state = Arc::new(State {
            requests: Mutex::default(),
            faults: Mutex::default(),
            injector: Mutex::new(Injector::new(seed)),
        });
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Upstream = Client::builder(TokioExecutor::new()).build(connector);
        let mut tasks = JoinSet::new();
        let mut listen = |service, upstream: String| -> anyhow::Result<SocketAddr> {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").context("binding the storage proxy")?;
            listener.set_nonblocking(true)?;
            let address = listener.local_addr()?;
            let listener = TcpListener::from_std(listener)?;
            tasks.spawn(accept_loop(
                listener,
                Route {
                    service,
                    upstream,
                    state: state.clone(),
                    client: client.clone(),
                },
            ));
            Ok(address)
        };
        let blob = listen(Service::Blob, blob_upstream)?;
        let queue = listen(Service::Queue, queue_upstream)?;
        Ok(StorageProxy {
            blob,
            queue,
            upstream_connection_string: azurite.to_string(),
            state,
            tasks,
        })
    }

    /// Azurite's connection string with its blob and queue endpoints replaced by the proxy's.
    pub fn connection_string(&self) -> String {
        replace_endpoints(
            &self.upstream_connection_string,
            &self.blob_endpoint(),
            &self.queue_endpoint(),
        )
    }

    /// `http://127.0.0.1:<proxy blob port>/<account>`
    pub fn blob_endpoint(&self) -> String {
        self.endpoint(self.blob, "BlobEndpoint")
    }

    /// `http://127.0.0.1:<proxy queue port>/<account>`
    pub fn queue_endpoint(&self) -> String {
        self.endpoint(self.queue, "QueueEndpoint")
    }

    fn endpoint(&self, address: SocketAddr, key: &str) -> String {
        let upstream = setting(&self.upstream_connection_string, key).unwrap_or_default();
        let path = url::Url::parse(upstream)
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        format!("http://{address}{path}")
    }

    /// Requests seen since the start or the last [`StorageProxy::reset`], by operation name
    /// (operations not seen are absent).
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state.requests)
            .iter()
            .map(|(op, n)| (op.name(), *n))
            .collect()
    }

    /// Requests seen by operation, keyed by [`Operation`] (for tables in a fixed order).
    pub fn counts_by_operation(&self) -> BTreeMap<Operation, u64> {
        lock(&self.state.requests).clone()
    }

    /// Faults injected since the start or the last reset, by [`Fault::kind`].
    pub fn faults(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.state.faults).clone()
    }

    /// Zeroes the request and fault counts (the rules stay).
    pub fn reset(&self) {
        lock(&self.state.requests).clear();
        lock(&self.state.faults).clear();
    }

    /// Adds a fault rule after the existing ones.
    /// The storage-fault mix of the fault suites (`storage_faults`, `replica_soak`): about 8 %
    /// of blob and of queue requests fail (503, 500, 408, a reset before the write, the answer
    /// lost after it) and 5 % are answered 400 ms late.
    pub fn add_typical_faults(&self) {
        for service in [Service::Blob, Service::Queue] {
            let scope = Scope::Service(service);
            for (probability, fault) in [
                (0.025, Fault::ServerBusy),
                (0.015, Fault::InternalError),
                (0.015, Fault::Timeout),
                (0.015, Fault::Reset),
                (0.01, Fault::LostResponse),
                (0.05, Fault::Delay(std::time::Duration::from_millis(400))),
            ] {
                self.add_rule(FaultRule::sometimes(scope, probability, fault));
            }
        }
    }

    pub fn add_rule(&self, rule: FaultRule) {
        lock(&self.state.injector).add(rule);
    }

    /// Removes every fault rule: from now on requests pass through untouched.
    pub fn clear_rules(&self) {
        lock(&self.state.injector).clear();
    }
}

impl Drop for StorageProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

impl State {
    fn count(&self, op: Operation) {
        *lock(&self.requests).entry(op).or_default() += 1;
    }

    fn count_fault(&self, fault: Fault) {
        *lock(&self.faults).entry(fault.kind()).or_default() += 1;
    }
}

/// Where one listener forwards, and what it shares.
#[derive(Clone)]
struct Route {
    service: Service,
    /// `host:port` of Azurite's service.
    upstream: String,
    state: Arc<State>,
    client: Upstream,
}

/// Accepts connections until the proxy is dropped; the connections are tasks of this one, so
/// they end with it.
async fn accept_loop(listener: TcpListener, route: Route) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(stream, route.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, route: Route) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(ResettableStream {
        inner: stream,
        reset: reset.clone(),
    });
    let service = service_fn(move |request| {
        let (route, reset) = (route.clone(), reset.clone());
        async move { handle(request, route, reset).await }
    });
    // An error here is a reset we made or a client that went away: nothing to report.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

/// Why the proxy dropped a connection instead of answering.
#[derive(Debug)]
struct Dropped(&'static str);

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    mut request: Request<Incoming>,
    route: Route,
    reset: Arc<AtomicBool>,
) -> Result<Response<ProxyBody>, Dropped> {
    let op = classify(
        route.service,
        request.method().as_str(),
        request.uri().path(),
        request.uri().query(),
    );
    route.state.count(op);
    let fault = lock(&route.state.injector).decide(op);
    if let Some(fault) = fault {
        route.state.count_fault(fault);
    }
    match fault {
        Some(Fault::ServerBusy) => return Ok(error_response(request, Fault::ServerBusy).await),
        Some(Fault::InternalError) => {
            return Ok(error_response(request, Fault::InternalError).await);
        }
        Some(Fault::Timeout) => return Ok(error_response(request, Fault::Timeout).await),
        Some(Fault::Reset) => {
            reset.store(true, Ordering::Relaxed);
            return Err(Dropped("injected reset"));
        }
        _ => {}
    }
    let target = format!(
        "http://{}{}",
        route.upstream,
        request.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    *request.uri_mut() = target.parse().map_err(|_| Dropped("unparsable URI"))?;
    // Storage unreachable (e.g. Azurite stopped by a chaos test): the client sees the
    // connection fail, as it would without the proxy.
    let response = route
        .client
        .request(request)
        .await
        .map_err(|_| Dropped("storage unreachable"))?;
    match fault {
        Some(Fault::LostResponse) => {
            drop(response);
            reset.store(true, Ordering::Relaxed);
            Err(Dropped("injected lost response"))
        }
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Ok(response.map(BodyExt::boxed))
        }
        _ => Ok(response.map(BodyExt::boxed)),
    }
}

/// The storage service's error answer for `fault`: status, `x-ms-error-code` and the XML body
/// the SDKs parse. The request body is read and discarded first, so the client sees the answer
/// rather than a write error on a half-sent body.
async fn error_response(request: Request<Incoming>, fault: Fault) -> Response<ProxyBody> {
    let (status, code, message) = match fault {
        Fault::ServerBusy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServerBusy",
            "The server is currently unable to receive requests. Please retry your request.",
        ),
        Fault::Timeout => (
            StatusCode::REQUEST_TIMEOUT,
            "OperationTimedOut",
            "The operation could not be completed within the permitted time.",
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "The server encountered an internal error. Please retry the request.",
        ),
    };
    let mut body = request.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
        }
    }
    let request_id = uuid::Uuid::new_v4();
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>\
         <Message>{message}\nRequestId:{request_id}</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .header("x-ms-error-code", code)
        .header("x-ms-request-id", request_id.to_string())
        .body(
            Full::new(Bytes::from(xml))
                .map_err(|never: Infallible| match never {})
                .boxed(),
        )
        .expect("a valid error response")
}

/// A connection that, when the proxy decided to reset it, closes with RST (`SO_LINGER` 0)
/// instead of FIN — what a client sees when a load balancer or the service drops it.
struct ResettableStream {
    inner: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::Relaxed) {
            let _ = self.inner.set_zero_linger();
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The value of `key` in a connection string (`Key=value;…`).
fn setting<'a>(connection_string: &'a str, key: &str) -> Option<&'a str> {
    connection_string
        .split(';')
        .filter_map(|part| part.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

/// `host:port` of the endpoint `key` in a connection string.
fn endpoint_address(connection_string: &str, key: &str) -> anyhow::Result<String> {
    let endpoint = setting(connection_string, key)
        .ok_or_else(|| anyhow!("the connection string has no {key}"))?;
    let url = url::Url::parse(endpoint).with_context(|| format!("{key} is not a URL"))?;
    let host = url.host_str().context("an endpoint with a host")?;
    let port = url
        .port_or_known_default()
        .context("an endpoint with a port")?;
    Ok(format!("{host}:{port}"))
}

/// `connection_string` with its `BlobEndpoint` and `QueueEndpoint` values replaced (every other
/// part, e.g. the account key, kept as it is).
fn replace_endpoints(connection_string: &str, blob: &str, queue: &str) -> String {
    connection_string
        .split(';')
        .filter(|part| !part.trim().is_empty())
        .map(|part| match part.split_once('=') {
            Some((key, _)) if key.trim().eq_ignore_ascii_case("BlobEndpoint") => {
                format!("{key}={blob}")
            }
            Some((key, _)) if key.trim().eq_ignore_ascii_case("QueueEndpoint") => {
                format!("{key}={queue}")
            }
            _ => part.to_string(),
        })
        .map(|part| part + ";")
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURITE: &str = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
        AccountKey=a2V5PT0=;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;\
        QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;";

    #[test]
    fn the_connection_string_keeps_everything_but_the_endpoints() {
        let replaced = replace_endpoints(
            AZURITE,
            "http://127.0.0.1:2/devstoreaccount1",
            "http://127.0.0.1:3/devstoreaccount1",
        );
        assert_eq!(
            replaced,
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5PT0=;\
             BlobEndpoint=http://127.0.0.1:2/devstoreaccount1;\
             QueueEndpoint=http://127.0.0.1:3/devstoreaccount1;"
        );
    }

    #[test]
    fn upstream_addresses_come_from_the_endpoints() {
        assert_eq!(
            endpoint_address(AZURITE, "BlobEndpoint").unwrap(),
            "127.0.0.1:10000"
        );
        assert_eq!(
            endpoint_address(AZURITE, "queueendpoint").unwrap(),
            "127.0.0.1:10001"
        );
        assert!(endpoint_address("AccountName=x;", "BlobEndpoint").is_err());
    }

    /// The proxy end to end against a plain upstream server: a streamed body arrives whole, the
    /// request is counted, and each fault kind is what the client sees.
    #[tokio::test]
    async fn passes_bodies_through_counts_and_injects_each_fault() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = upstream.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let echo = service_fn(|request: Request<Incoming>| async move {
                        let bytes = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(
                            bytes.len().to_string(),
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), echo)
                        .await;
                });
            }
        });
        let upstream = format!(
            "AccountName=devstoreaccount1;BlobEndpoint=http://{upstream_address}/devstoreaccount1;\
             QueueEndpoint=http://{upstream_address}/devstoreaccount1;"
        );
        let proxy = StorageProxy::start(&upstream, 5).await.unwrap();
        assert!(proxy.connection_string().contains(&proxy.blob_endpoint()));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let blob = format!("{}/c/b", proxy.blob_endpoint());

        let chunks = (0..64).map(|_| Ok::<_, io::Error>(Bytes::from(vec![7u8; 64 * 1024])));
        let response = http
            .put(&blob)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.text().await.unwrap(),
            (4 * 1024 * 1024).to_string()
        );

        for (fault, status) in [
            (Fault::ServerBusy, 503),
            (Fault::InternalError, 500),
            (Fault::Timeout, 408),
        ] {
            proxy.add_rule(FaultRule::next(
                Scope::Operation(Operation::PutBlob),
                1,
                fault,
            ));
            let response = http.put(&blob).body("x").send().await.unwrap();
            assert_eq!(response.status().as_u16(), status);
            assert!(response.headers().contains_key("x-ms-error-code"));
        }
        proxy.add_rule(FaultRule::next(
            Scope::Service(Service::Blob),
            1,
            Fault::Reset,
        ));
        assert!(http.get(&blob).send().await.is_err(), "a reset is an error");
        proxy.add_rule(FaultRule::next(
            Scope::Any,
            1,
            Fault::Delay(std::time::Duration::from_millis(300)),
        ));
        let started = std::time::Instant::now();
        assert!(http.head(&blob).send().await.unwrap().status().is_success());
        assert!(started.elapsed() >= std::time::Duration::from_millis(300));

        let counts = proxy.counts();
        assert_eq!(counts.get("put blob"), Some(&4));
        assert_eq!(counts.get("blob get"), Some(&1));
        assert_eq!(counts.get("blob head"), Some(&1));
        let faults = proxy.faults();
        assert_eq!(faults.values().sum::<u64>(), 5, "{faults:?}");
        assert_eq!(faults.get("connection reset"), Some(&1));
        proxy.reset();
        assert!(proxy.counts().is_empty() && proxy.faults().is_empty());
    }
}
