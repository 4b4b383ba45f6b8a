//! Queue operations the fake host and the tests need, on top of the app's own
//! `StorageEndpoint` (so the harness authenticates exactly like the app) with SDK retries off:
//! a stopped Azurite must surface as an error at once, and the harness loops itself.

use std::collections::HashSet;
use std::sync::Mutex;

use altinn_aos::storage::StorageEndpoint;
use anyhow::Context;
use azure_core::http::{RetryOptions, StatusCode};
use azure_storage_queue::QueueClient;
use azure_storage_queue::models::{
    QueueClientGetPropertiesResultHeaders, QueueClientPeekMessagesOptions,
    QueueClientReceiveMessagesOptions, QueueMessage, ReceivedMessage,
};

use crate::app::MessageEncoding;
use crate::invocation::{decode_message, encode_message};

/// The most messages one peek or receive returns (a service limit).
pub const MAX_BATCH: i32 = 32;

/// Queue access for one storage account.
pub struct Queues {
    endpoint: StorageEndpoint,
    /// Queues this process has already created, so output writes do not `PUT` every time.
    created: Mutex<HashSet<String>>,
}

impl Queues {
    pub fn new(connection_string: &str) -> anyhow::Result<Queues> {
        let endpoint = StorageEndpoint::for_queues(connection_string)
            .map_err(|e| anyhow::anyhow!("queue connection string: {e}"))?
            .with_retry(RetryOptions::none());
        Ok(Queues {
            endpoint,
            created: Mutex::new(HashSet::new()),
        })
    }

    pub fn client(&self, queue: &str) -> anyhow::Result<QueueClient> {
        self.endpoint
            .queue(queue)
            .with_context(|| format!("queue client for `{queue}`"))
    }

    /// Creates `queue` unless this process already did (creating an existing queue succeeds).
    pub async fn ensure(&self, queue: &str) -> anyhow::Result<()> {
        if self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(queue)
        {
            return Ok(());
        }
        self.client(queue)?
            .create(None)
            .await
            .with_context(|| format!("creating queue `{queue}`"))?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_string());
        Ok(())
    }

    /// Forgets which queues were created, e.g. after the storage emulator lost its data.
    pub fn forget_created(&self) {
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Stores `text` verbatim as the message text (no encoding), creating the queue if needed.
    pub async fn send_raw(&self, queue: &str, text: &str) -> anyhow::Result<()> {
        self.ensure(queue).await?;
        let message = QueueMessage {
            message_text: Some(text.to_string()),
        };
        self.client(queue)?
            .send_message(message.try_into()?, None)
            .await
            .with_context(|| format!("sending a message to `{queue}`"))?;
        Ok(())
    }

    /// Enqueues message bytes the way the host's queue output does: encoded per
    /// `messageEncoding`, queue created on demand.
    pub async fn send(
        &self,
        queue: &str,
        message: &[u8],
        encoding: MessageEncoding,
    ) -> anyhow::Result<()> {
        let text = encode_message(message, encoding).map_err(anyhow::Error::msg)?;
        self.send_raw(queue, &text).await
    }

    /// The stored texts of up to 32 visible messages, oldest first; empty for a missing queue.
    pub async fn peek_raw(&self, queue: &str) -> anyhow::Result<Vec<String>> {
        let options = QueueClientPeekMessagesOptions {
            number_of_messages: Some(MAX_BATCH),
            ..Default::default()
        };
        let response = match self.client(queue)?.peek_messages(Some(options)).await {
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(Vec::new()),
            other => other.with_context(|| format!("peeking `{queue}`"))?,
        };
        let items = response
            .into_model()
            .with_context(|| format!("reading peeked messages of `{queue}`"))?
            .items;
        Ok(items
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.message_text.unwrap_or_default())
            .collect())
    }

    /// Peeked message texts decoded from `encoding` as UTF-8 (lossily); a text that is not
    /// valid base64 is returned as stored, so a badly encoded message stays visible in tests.
    pub async fn peek_texts(
        &self,
        queue: &str,
        encoding: MessageEncoding,
    ) -> anyhow::Result<Vec<String>> {
        let raw = self.peek_raw(queue).await?;
        Ok(raw
            .into_iter()
            .map(|stored| match decode_message(&stored, encoding) {
                Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                None => stored,
            })
            .collect())
    }

    /// The queue's approximate message count, invisible messages included; 0 for a missing queue.
    pub async fn approximate_count(&self, queue: &str) -> anyhow::Result<i64> {
        let response = match self.client(queue)?.get_properties(None).await {
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(0),
            other => other.with_context(|| format!("reading properties of `{queue}`"))?,
        };
        Ok(response.approximate_messages_count()?.unwrap_or(0))
    }

    /// Receives up to `max` messages and hides them for `lease_seconds`; empty for a missing queue.
    pub async fn receive(
        &self,
        queue: &str,
        max: i32,
        lease_seconds: i32,
    ) -> anyhow::Result<Vec<ReceivedMessage>> {
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(max.clamp(1, MAX_BATCH)),
            visibility_timeout: Some(lease_seconds),
            ..Default::default()
        };
        let response = match self.client(queue)?.receive_messages(Some(options)).await {
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(Vec::new()),
            other => other.with_context(|| format!("receiving from `{queue}`"))?,
        };
        let items = response
            .into_model()
            .with_context(|| format!("reading received messages of `{queue}`"))?
            .items;
        Ok(items.unwrap_or_default())
    }

    pub async fn delete(&self, queue: &str, id: &str, pop_receipt: &str) -> anyhow::Result<()> {
        self.client(queue)?
            .delete_message(id, pop_receipt, None)
            .await
            .with_context(|| format!("deleting message {id} from `{queue}`"))?;
        Ok(())
    }

    /// Hides a received message for `seconds` more (0 = visible now) and returns its new pop
    /// receipt, which later deletes/updates must use.
    pub async fn set_visibility(
        &self,
        queue: &str,
        id: &str,
        pop_receipt: &str,
        seconds: i32,
    ) -> anyhow::Result<String> {
        let response = self
            .client(queue)?
            .update_message(id, pop_receipt, seconds, None)
            .await
            .with_context(|| format!("updating visibility of message {id} in `{queue}`"))?;
        let name = azure_core::http::headers::HeaderName::from_static("x-ms-popreceipt");
        response
            .headers()
            .get_optional_string(&name)
            .with_context(|| format!("update of message {id} in `{queue}` returned no pop receipt"))
    }
}
