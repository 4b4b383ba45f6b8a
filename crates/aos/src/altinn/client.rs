//! The Altinn HTTP client: read an instance, stream a data element, confirm completion.
//!
//! Every URL is built from a configured base URL and a validated [`InstanceRef`]; nothing from
//! an event or from instance metadata is ever used as a URL, so the token is only ever sent to
//! the configured Altinn hosts. A 401 drops the token and retries the call once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use uuid::Uuid;

use crate::auth::TokenProvider;
use crate::domain::{BaseUrl, InstanceRef};

use super::model::Instance;

/// Data element upload (the feedback step).
mod upload;

/// The Events pull API (catch-up).
mod events;
pub use events::{EventPage, PullStart};

/// An Altinn call that failed, classified once as retryable or permanent.
#[derive(Debug, thiserror::Error)]
pub enum AltinnError {
    #[error("{what}: Altinn answered HTTP {status}{}", detail_suffix(.detail))]
    Status {
        what: String,
        status: u16,
        retry_after: Option<Duration>,
        /// The start of the body of a permanent refusal (e.g. Altinn's validation problem),
        /// so the error says *why*; `None` for retryable statuses and unread bodies.
        detail: Option<String>,
    },
    #[error("{what}: {source}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: unreadable response: {detail}")]
    Decode { what: String, detail: String },
    #[error(transparent)]
    Token(#[from] crate::auth::TokenError),
}

fn detail_suffix(detail: &Option<String>) -> String {
    detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// How much of a refusal's body goes into [`AltinnError::Status`].
const MAX_DETAIL: usize = 500;

/// Reads the start of a refused request's body as one line of text.
async fn refusal_detail(response: reqwest::Response) -> Option<String> {
    let bytes = response.bytes().await.ok()?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_DETAIL)]);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!line.is_empty()).then_some(line)
}

impl AltinnError {
    /// 5xx, 401 (after one refresh), 408, 429, timeouts and connection errors are worth
    /// retrying; other 4xx and unreadable bodies are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            AltinnError::Status { status, .. } => {
                *status >= 500 || matches!(*status, 401 | 408 | 429)
            }
            AltinnError::Transport { .. } | AltinnError::Token(_) => true,
            AltinnError::Decode { .. } => false,
        }
    }
}

/// One per process: connection reuse across invocations.
#[derive(Clone)]
pub struct AltinnClient {
    http: reqwest::Client,
    apps: BaseUrl,
    platform: BaseUrl,
    tokens: Arc<dyn TokenProvider>,
}

/// An instance as Altinn returned it: the raw bytes (archived byte-for-byte) and the parsed view.
#[derive(Clone, Debug)]
pub struct FetchedInstance {
    pub raw: Bytes,
    pub instance: Instance,
}

/// One page of an instance query: the instances (raw JSON) and the token of the next page.
#[derive(Clone, Debug, Default)]
pub struct InstancePage {
    pub instances: Vec<serde_json::Value>,
    /// `continuationToken` of the `next` link; `None` on the last page.
    pub continuation: Option<String>,
}

impl InstancePage {
    /// `{"count", "self", "next", "instances": [...]}`; `next` absent or null on the last page.
    pub fn parse(raw: &[u8]) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Body {
            instances: Option<Vec<serde_json::Value>>,
            next: Option<String>,
        }
        let body: Body = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        let instances = body.instances.ok_or("no `instances` array")?;
        let continuation = match body.next.filter(|n| !n.trim().is_empty()) {
            None => None,
            Some(next) => {
                let url = url::Url::parse(&next)
                    .map_err(|e| format!("`next` is not a URL ({e}): {next}"))?;
                let token = url
                    .query_pairs()
                    .find(|(name, _)| name.eq_ignore_ascii_case("continuationToken"))
                    .map(|(_, value)| value.into_owned())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("`next` has no continuationToken: {next}"))?;
                Some(token)
            }
        };
        Ok(InstancePage {
            instances,
            continuation,
        })
    }
}

impl AltinnClient {
    /// Whether a token could be had (the key material is loadable), without asking anyone.
    pub async fn key_ready(&self) -> Result<(), String> {
        self.tokens.key_ready().await
    }

    pub fn new(apps: BaseUrl, platform: BaseUrl, tokens: Arc<dyn TokenProvider>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // A stalled body is an error, not a hung invocation; whole transfers may be long.
            .read_timeout(Duration::from_secs(60))
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("altinn-aos/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is compiled in");
        AltinnClient {
            http,
            apps,
            platform,
            tokens,
        }
    }

    /// The configured platform base (for the subscription API, [`super::subscriptions`]).
    pub(crate) fn platform(&self) -> &BaseUrl {
        &self.platform
    }

    fn storage_instance_url(&self, instance: &InstanceRef) -> url::Url {
        self.platform.join(&format!(
            "storage/api/v1/instances/{}",
            instance.instance_id()
        ))
    }

    /// `GET {platform}storage/api/v1/instances/{partyId}/{guid}`.
    pub async fn get_instance(
        &self,
        instance: &InstanceRef,
    ) -> Result<FetchedInstance, AltinnError> {
        let what = format!("read instance {instance}");
        let url = self.storage_instance_url(instance);
        let response = self
            .send(Method::GET, url, &what, Duration::from_secs(30))
            .await?;
        let raw = body_bytes(response, &what).await?;
        let parsed = serde_json::from_slice(&raw).map_err(|e| AltinnError::Decode {
            what,
            detail: e.to_string(),
        })?;
        Ok(FetchedInstance {
            raw,
            instance: parsed,
        })
    }

    /// `GET {platform}storage/api/v1/instances/{partyId}/{guid}/data/{dataId}`: the response with
    /// its body not yet read, so the caller can stream it.
    pub async fn open_data(
        &self,
        instance: &InstanceRef,
        data_id: Uuid,
    ) -> Result<reqwest::Response, AltinnError> {
        let what = format!("download data element {data_id} of {instance}");
        let url = self.platform.join(&format!(
            "storage/api/v1/instances/{}/data/{data_id}",
            instance.instance_id()
        ));
        // No total timeout: elements can be gigabytes; the read timeout catches stalls.
        self.send(Method::GET, url, &what, Duration::from_secs(24 * 3600))
            .await
    }

    /// One page of `GET {platform}storage/api/v1/instances?{params}` (spec §3.6), continuing
    /// after `continuation` when given.
    ///
    /// Of Storage's `next` link only the `continuationToken` is used: the next URL is built here
    /// from the configured platform base, so the token never follows a link from a response.
    /// Instances are returned as raw JSON values, so one malformed instance is reported by the
    /// caller instead of failing the whole page.
    pub async fn query_instances(
        &self,
        params: &[(&str, String)],
        continuation: Option<&str>,
    ) -> Result<InstancePage, AltinnError> {
        let what = "query instances".to_string();
        let mut url = self.platform.join("storage/api/v1/instances");
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(token) = continuation {
                query.append_pair("continuationToken", token);
            }
        }
        let response = self
            .send(Method::GET, url, &what, Duration::from_secs(60))
            .await?;
        let raw = body_bytes(response, &what).await?;
        InstancePage::parse(&raw).map_err(|detail| AltinnError::Decode { what, detail })
    }

    /// `POST {apps}{org}/{app}/instances/{partyId}/{guid}/complete` (idempotent in Altinn).
    pub async fn complete(&self, instance: &InstanceRef) -> Result<(), AltinnError> {
        let what = format!("confirm {instance}");
        let url = self.apps.join(&format!(
            "{}/instances/{}/complete",
            instance.app_id(),
            instance.instance_id()
        ));
        self.send(Method::POST, url, &what, Duration::from_secs(30))
            .await
            .map(drop)
    }

    /// Sends with the bearer token. A 401 invalidates the token and tries once more with a
    /// fresh one. 5xx, 408, 429 and connection errors are retried in place up to
    /// [`ATTEMPTS`] times with exponential backoff and jitter, honouring a `Retry-After` of up to
    /// [`MAX_RETRY_AFTER`]; a longer wait is left to the queue (the error is retryable).
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        what: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, AltinnError> {
        self.send_json(method, url, what, timeout, None).await
    }

    /// [`Self::send`] with an optional JSON request body (same token, 401 and retry rules).
    pub(crate) async fn send_json(
        &self,
        method: Method,
        url: url::Url,
        what: &str,
        timeout: Duration,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, AltinnError> {
        let mut refreshed = false;
        let mut attempt = 1;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.secret())
                .timeout(timeout);
            if let Some(body) = body {
                request = request.json(body);
            } else if method == Method::POST {
                request = request.header(reqwest::header::CONTENT_LENGTH, 0);
            }
            let error = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !refreshed => {
                    self.tokens.invalidate(&token);
                    refreshed = true;
                    continue;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = retry_after(&response);
                    let mut error = AltinnError::Status {
                        what: what.to_string(),
                        status,
                        retry_after,
                        detail: None,
                    };
                    if !error.is_retryable()
                        && let AltinnError::Status { detail, .. } = &mut error
                    {
                        *detail = refusal_detail(response).await;
                    }
                    error
                }
                Err(source) => AltinnError::Transport {
                    what: what.to_string(),
                    source,
                },
            };
            let wait = match &error {
                AltinnError::Status {
                    retry_after: Some(wait),
                    ..
                } if *wait > MAX_RETRY_AFTER => return Err(error),
                AltinnError::Status {
                    retry_after: Some(wait),
                    ..
                } => *wait,
                _ => backoff(attempt),
            };
            // A 401 with a fresh token is not retried in place: the token was refreshed once
            // already; the queue retries later.
            let unauthorized = matches!(error, AltinnError::Status { status: 401, .. });
            if !error.is_retryable() || unauthorized || attempt >= ATTEMPTS {
                return Err(error);
            }
            tracing::debug!(what, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Reads a whole (small) response body; a body that breaks off is a transport error, so the
/// call is retried like any other connection failure.
pub(crate) async fn body_bytes(
    response: reqwest::Response,
    what: &str,
) -> Result<Bytes, AltinnError> {
    response
        .bytes()
        .await
        .map_err(|source| AltinnError::Transport {
            what: what.to_string(),
            source,
        })
}

/// Tries per call before the error goes back to the queue (which retries again, later).
pub const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` waited for in place; a longer one fails the attempt instead of
/// holding the invocation.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// 200 ms, 400 ms, 800 ms … plus up to 100% jitter, so many instances retrying together spread
/// out instead of hammering Altinn in lockstep.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(200) * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    base + base.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_jittered() {
        for attempt in 1..=4 {
            let base = Duration::from_millis(200) * 2u32.pow(attempt - 1);
            let wait = backoff(attempt);
            assert!(
                wait >= base && wait <= base * 2,
                "attempt {attempt}: {wait:?}"
            );
        }
        let samples: std::collections::HashSet<u128> =
            (0..20).map(|_| backoff(2).as_micros()).collect();
        assert!(samples.len() > 1, "jitter varies the wait");
    }

    #[test]
    fn instance_pages_yield_the_continuation_token() {
        let page = InstancePage::parse(
            br#"{"count":1,"self":"x","next":"https://platform.example/storage/api/v1/instances?org=ttd&continuationToken=a%2Bb%3D","instances":[{"id":"1/x"}]}"#,
        )
        .unwrap();
        assert_eq!(page.instances.len(), 1);
        assert_eq!(page.continuation.as_deref(), Some("a+b="));
        let last = InstancePage::parse(br#"{"count":0,"instances":[]}"#).unwrap();
        assert!(last.continuation.is_none());
        let null_next = InstancePage::parse(br#"{"next":null,"instances":[]}"#).unwrap();
        assert!(null_next.continuation.is_none());
        assert!(InstancePage::parse(br#"{"count":0}"#).is_err());
        assert!(InstancePage::parse(br#"{"next":"https://x/?a=1","instances":[]}"#).is_err());
        assert!(InstancePage::parse(b"[]").is_err());
    }

    #[test]
    fn classification() {
        let status = |status| AltinnError::Status {
            what: String::new(),
            status,
            retry_after: None,
            detail: None,
        };
        for s in [500, 502, 503, 504, 429, 408, 401] {
            assert!(status(s).is_retryable(), "{s}");
        }
        for s in [400, 403, 404, 409, 410] {
            assert!(!status(s).is_retryable(), "{s}");
        }
    }
}
