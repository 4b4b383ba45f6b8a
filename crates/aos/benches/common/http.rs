//! A minimal HTTP/1.1 keep-alive client over one TCP connection, for load generators: one
//! pre-built request is written, the response is read by its `Content-Length`. Much lighter
//! than a general client, so the figures are the server's and not the client's (the load
//! generator shares the machine's cores with the process it measures).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bytes of one HTTP/1.1 request (keep-alive) with a body.
pub fn request(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    request_with(method, path, content_type, &[], body)
}

/// [`request`] with further `headers` (name, value).
pub fn request_with(
    method: &str,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// One keep-alive connection.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Connection {
    pub async fn open(port: u16) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Sends `request` and reads the whole response; returns it with the round-trip time.
    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<(Response, Duration)> {
        let started = Instant::now();
        self.stream.write_all(request).await?;
        let response = self.read_response().await?;
        Ok((response, started.elapsed()))
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end]).context("response head")?;
                let (status, length) = parse_head(head)?;
                let total = end + 4 + length;
                while self.buf.len() < total {
                    self.fill().await?;
                }
                let body = self.buf[end + 4..total].to_vec();
                self.buf.drain(..total);
                return Ok(Response { status, body });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Result of [`load`] and [`load_with`].
pub struct LoadResult {
    pub requests: usize,
    pub elapsed: Duration,
    /// Closed loop ([`load`]): each request's round trip. Paced ([`Schedule::Paced`]): from the
    /// time the request was due to be sent to its response, so a request held back by a slow
    /// answer before it counts its wait (no coordinated omission).
    pub latencies: Vec<Duration>,
    /// Paced only: each request's round trip, from when it was sent to its response (the
    /// server's and the kernel's time, where `latencies` also count the wait to be sent).
    pub round_trips: Vec<Duration>,
    /// Paced only: how long after each request could go (it was due, and its connection had its
    /// previous answer) it was sent. Beyond a few microseconds that is the load generator itself
    /// running late (descheduled, or busy with its other connections), not the server, so a
    /// latency tail with many of these is the client's stall, one without them the server's.
    pub held_by_client: Vec<Duration>,
    /// Responses that were not 200 or failed their check.
    pub failures: usize,
    pub first_failure: Option<String>,
    pub checked: usize,
}

/// How the connections of a load take their requests.
#[derive(Clone, Copy)]
pub enum Schedule {
    /// Each connection sends its next request as soon as the previous is answered: the server
    /// runs saturated, with `concurrency` requests always in flight, and the throughput is the
    /// server's at that concurrency.
    ClosedLoop,
    /// Request `i` is due at `i / rate` seconds after the start (connection `i % concurrency`
    /// sends it): the offered rate is fixed, whatever the server does with it, and the latency
    /// is the one a client sees at that rate, measured as wrk2 measures it (from when each
    /// request was due). The connections wait for their due time by yielding in a loop, so the
    /// load generator keeps its CPU busy: use it only with the load generator on a CPU of its
    /// own.
    Paced { rate: f64 },
}

/// Sends `total` requests over `concurrency` keep-alive connections (request `i` is
/// `requests[i % len]`), closed loop, and checks every `check_every`-th response body with
/// `check` (every response's status must be 200).
pub async fn load(
    port: u16,
    requests: std::sync::Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    total: usize,
    check_every: usize,
    check: fn(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<LoadResult> {
    let closed = Schedule::ClosedLoop;
    load_with(
        port,
        requests,
        concurrency,
        total,
        closed,
        check_every,
        check,
    )
    .await
}

/// [`load`] on the given [`Schedule`].
pub async fn load_with(
    port: u16,
    requests: std::sync::Arc<Vec<Vec<u8>>>,
    concurrency: usize,
    total: usize,
    schedule: Schedule,
    check_every: usize,
    check: fn(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<LoadResult> {
    if let Schedule::Paced { rate } = schedule {
        anyhow::ensure!(
            rate.is_finite() && rate > 0.0,
            "a paced load needs a rate above 0, not {rate}"
        );
    }
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(port).await?);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, mut connection) in connections.into_iter().enumerate() {
        let (next, requests) = (next.clone(), requests.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(total / concurrency + 1);
            let (mut round_trips, mut held_by_client) = (Vec::new(), Vec::new());
            let (mut failures, mut checked, mut first_failure) = (0, 0, None);
            let mut own = (index..total).step_by(concurrency);
            // When this connection last got its answer: a paced request can go only after.
            let mut free_at = started;
            loop {
                let (i, due) = match schedule {
                    Schedule::ClosedLoop => match next.fetch_add(1, Ordering::Relaxed) {
                        i if i < total => (i, None),
                        _ => break,
                    },
                    Schedule::Paced { rate } => match own.next() {
                        Some(i) => (i, Some(started + Duration::from_secs_f64(i as f64 / rate))),
                        None => break,
                    },
                };
                if let Some(due) = due {
                    // tokio's timer ticks in milliseconds, far coarser than the gaps between
                    // requests: yield until due (each yield lets the runtime poll its sockets).
                    while Instant::now() < due {
                        tokio::task::yield_now().await;
                    }
                    held_by_client.push(due.max(free_at).elapsed());
                }
                let (response, round_trip) = connection.send(&requests[i % requests.len()]).await?;
                free_at = Instant::now();
                latencies.push(due.map_or(round_trip, |due| due.elapsed()));
                if due.is_some() {
                    round_trips.push(round_trip);
                }
                let verdict = if response.status != 200 {
                    Err(anyhow::anyhow!(
                        "status {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body)
                    ))
                } else if i % check_every == 0 {
                    checked += 1;
                    check(&response.body)
                } else {
                    Ok(())
                };
                if let Err(e) = verdict {
                    failures += 1;
                    first_failure.get_or_insert_with(|| format!("{e:#}"));
                }
            }
            anyhow::Ok((
                latencies,
                round_trips,
                held_by_client,
                failures,
                checked,
                first_failure,
            ))
        });
    }
    let mut result = LoadResult {
        requests: total,
        elapsed: Duration::ZERO,
        latencies: Vec::with_capacity(total),
        round_trips: Vec::new(),
        held_by_client: Vec::new(),
        failures: 0,
        first_failure: None,
        checked: 0,
    };
    while let Some(done) = tasks.join_next().await {
        let (latencies, round_trips, held_by_client, failures, checked, first_failure) = done??;
        result.latencies.extend(latencies);
        result.round_trips.extend(round_trips);
        result.held_by_client.extend(held_by_client);
        result.failures += failures;
        result.checked += checked;
        if result.first_failure.is_none() {
            result.first_failure = first_failure;
        }
    }
    result.elapsed = started.elapsed();
    Ok(result)
}

/// The status and `Content-Length` of a response head (the text before the blank line).
pub fn parse_head(head: &str) -> anyhow::Result<(u16, usize)> {
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .context("the response has no Content-Length")?;
    Ok((status, length))
}
