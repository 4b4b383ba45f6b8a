//! Azurite for one test: the launcher from `aos-azurite`, plus the blob and queue helpers tests
//! use to arrange and inspect storage.

use std::ops::{Deref, DerefMut};

use altinn_aos::storage::StorageEndpoint;
use anyhow::{Context, anyhow};
use azure_core::http::{RetryOptions, StatusCode};

use crate::app::MessageEncoding;
use crate::queue::Queues;

/// A running (or stopped) Azurite instance owned by one test. Derefs to the launcher for
/// endpoints, `stop()` and `restart()`.
pub struct Azurite {
    process: aos_azurite::Azurite,
    queues: Queues,
}

impl Azurite {
    /// Starts Azurite on free ports and waits until the blob and queue services accept
    /// connections.
    pub async fn start() -> anyhow::Result<Azurite> {
        let process = aos_azurite::Azurite::start(&crate::app_root()).await?;
        let queues = Queues::new(&process.connection_string())?;
        Ok(Azurite { process, queues })
    }

    /// Queue helpers bound to this instance.
    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    /// Creates a blob container (an existing one is fine).
    pub async fn create_container(&self, name: &str) -> anyhow::Result<()> {
        let blobs = StorageEndpoint::blobs_from_connection_string(&self.connection_string())
            .map_err(|e| anyhow!("blob connection string: {e}"))?
            .with_retry(RetryOptions::none());
        match blobs.container(name)?.create(None).await {
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            other => other
                .map(drop)
                .with_context(|| format!("creating container `{name}`")),
        }
    }

    /// The texts of up to 32 visible messages in `queue` (peeked, so they stay), decoded from
    /// base64 as the Functions host stores them; empty for a missing queue.
    pub async fn queue_texts(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        self.queues.peek_texts(queue, MessageEncoding::Base64).await
    }

    /// Enqueues `text` base64-encoded, as the queue trigger expects (`messageEncoding: base64`);
    /// creates the queue if needed.
    pub async fn put_message(&self, queue: &str, text: &str) -> anyhow::Result<()> {
        self.queues
            .send(queue, text.as_bytes(), MessageEncoding::Base64)
            .await
    }

    /// Enqueues `text` exactly as given (e.g. deliberately not base64).
    pub async fn put_raw_message(&self, queue: &str, text: &str) -> anyhow::Result<()> {
        self.queues.send_raw(queue, text).await
    }
}

impl Deref for Azurite {
    type Target = aos_azurite::Azurite;
    fn deref(&self) -> &Self::Target {
        &self.process
    }
}

impl DerefMut for Azurite {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.process
    }
}
