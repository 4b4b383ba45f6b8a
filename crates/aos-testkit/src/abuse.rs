//! Hostile HTTP clients for the edge tests, on raw TCP (an HTTP client library will not
//! misbehave on purpose): a large POST that keeps sending while it waits for the answer, a
//! client that trickles its body or its headers, and the resident memory of a process.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// What a raw client saw, and when (from its first byte sent).
#[derive(Debug, Clone)]
pub struct RawAnswer {
    /// The response status, when a response head arrived.
    pub status: Option<u16>,
    /// The response head as text (empty without one).
    pub head: String,
    /// The server closed (or reset) the connection.
    pub closed: bool,
    pub elapsed: Duration,
}

impl RawAnswer {
    /// The value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }

    /// The server ended the exchange: it answered or closed the connection.
    pub fn cut_off(&self) -> bool {
        self.status.is_some() || self.closed
    }
}

/// The request head of a POST to `path` (with its query) declaring `content_length` bytes.
fn post_head(path: &str, content_type: &str, content_length: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
         Content-Length: {content_length}\r\n\r\n"
    )
}

/// Reads until the end of the response head, EOF or an error; `(status, head, closed)`.
async fn read_head(reader: &mut OwnedReadHalf) -> (Option<u16>, String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return (status_of(&buf), text_of(&buf), true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return (status_of(&buf), text_of(&buf), false);
        }
    }
}

fn text_of(buf: &[u8]) -> String {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn status_of(buf: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(buf).ok()?.lines().next()?.to_string();
    let mut parts = line.split(' ');
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

/// POSTs `body_len` bytes to `path`, sending the body as fast as the server takes it while
/// waiting for the answer (an uploader that does not wait for `100 Continue`). Returns when the
/// response head arrived or the connection ended.
pub async fn large_post(
    addr: SocketAddr,
    path: &str,
    body_len: usize,
) -> std::io::Result<RawAnswer> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(post_head(path, "application/json", body_len).as_bytes())
        .await?;
    let sender = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = body_len;
        while left > 0 {
            let n = left.min(chunk.len());
            if writer.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        // Keep the write half open until the reader is done.
        std::future::pending::<()>().await;
    });
    let (status, head, closed) = read_head(&mut reader).await;
    sender.abort();
    Ok(RawAnswer {
        status,
        head,
        closed,
        elapsed: started.elapsed(),
    })
}

/// Sends `head` in one piece, then `trickle` one byte every `every`, until the server answers or
/// closes the connection, or `give_up` passes (then neither `status` nor `closed` is set).
async fn trickle(
    addr: SocketAddr,
    head: &[u8],
    trickle: &[u8],
    every: Duration,
    give_up: Duration,
) -> std::io::Result<RawAnswer> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head).await?;
    let bytes = trickle.to_vec();
    let sender = tokio::spawn(async move {
        for byte in bytes.iter().cycle() {
            tokio::time::sleep(every).await;
            if writer.write_all(std::slice::from_ref(byte)).await.is_err() {
                return;
            }
        }
    });
    let answer = tokio::time::timeout(give_up, read_head(&mut reader)).await;
    sender.abort();
    let (status, head, closed) = answer.unwrap_or((None, String::new(), false));
    Ok(RawAnswer {
        status,
        head,
        closed,
        elapsed: started.elapsed(),
    })
}

/// A client that sends its headers at once (declaring a body of 4 KiB) and then the body one
/// byte every `every`: how long does the server let it hold the connection?
pub async fn slow_body(
    addr: SocketAddr,
    path: &str,
    every: Duration,
    give_up: Duration,
) -> std::io::Result<RawAnswer> {
    let head = post_head(path, "application/json", 4096);
    trickle(addr, head.as_bytes(), b" ", every, give_up).await
}

/// A client that sends its request line and then its headers one byte every `every`.
pub async fn slow_headers(
    addr: SocketAddr,
    path: &str,
    every: Duration,
    give_up: Duration,
) -> std::io::Result<RawAnswer> {
    let head = format!("POST {path} HTTP/1.1\r\n");
    trickle(addr, head.as_bytes(), b"X-Slow: yes\r\n", every, give_up).await
}

/// The resident set size of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`; Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
