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
use crate::config::BaseUrl;
use crate::event::InstanceRef;

use super::model::Instance;

/// An Altinn call that failed, classified once as retryable or permanent.
#[derive(Debug, thiserror::Error)]
pub enum AltinnError {
    #[error("{what}: Altinn answered HTTP {status}")]
    Status { what: String, status: u16, retry_after: Option<Duration> },
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

impl AltinnClient {
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
        AltinnClient { http, apps, platform, tokens }
    }

    fn storage_instance_url(&self, instance: &InstanceRef) -> url::Url {
        self.platform.join(&format!("storage/api/v1/instances/{}", instance.instance_id()))
    }

    /// `GET {platform}storage/api/v1/instances/{partyId}/{guid}`.
    pub async fn get_instance(&self, instance: &InstanceRef) -> Result<FetchedInstance, AltinnError> {
        let what = format!("read instance {instance}");
        let url = self.storage_instance_url(instance);
        let response = self.send(Method::GET, url, &what, Duration::from_secs(30)).await?;
        let raw = response
            .bytes()
            .await
            .map_err(|source| AltinnError::Transport { what: what.clone(), source })?;
        let parsed = serde_json::from_slice(&raw)
            .map_err(|e| AltinnError::Decode { what, detail: e.to_string() })?;
        Ok(FetchedInstance { raw, instance: parsed })
    }

    /// `GET {platform}storage/api/v1/instances/{partyId}/{guid}/data/{dataId}`: the response with
    /// its body not yet read, so the caller can stream it.
    pub async fn open_data(&self, instance: &InstanceRef, data_id: Uuid) -> Result<reqwest::Response, AltinnError> {
        let what = format!("download data element {data_id} of {instance}");
        let url = self.platform.join(&format!(
            "storage/api/v1/instances/{}/data/{data_id}",
            instance.instance_id()
        ));
        // No total timeout: elements can be gigabytes; the read timeout catches stalls.
        self.send(Method::GET, url, &what, Duration::from_secs(24 * 3600)).await
    }

    /// `POST {apps}{org}/{app}/instances/{partyId}/{guid}/complete` (idempotent in Altinn).
    pub async fn complete(&self, instance: &InstanceRef) -> Result<(), AltinnError> {
        let what = format!("confirm {instance}");
        let url = self.apps.join(&format!("{}/instances/{}/complete", instance.app_id(), instance.instance_id()));
        self.send(Method::POST, url, &what, Duration::from_secs(30)).await.map(drop)
    }

    /// Sends with the bearer token; on 401 invalidates it and tries once more.
    async fn send(&self, method: Method, url: url::Url, what: &str, timeout: Duration) -> Result<reqwest::Response, AltinnError> {
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let mut request = self.http.request(method.clone(), url.clone()).bearer_auth(token.secret()).timeout(timeout);
            if method == Method::POST {
                request = request.header(reqwest::header::CONTENT_LENGTH, 0);
            }
            let response = request
                .send()
                .await
                .map_err(|source| AltinnError::Transport { what: what.to_string(), source })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                self.tokens.invalidate(&token);
                refreshed = true;
                continue;
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(AltinnError::Status { what: what.to_string(), status: status.as_u16(), retry_after });
        }
    }
}
