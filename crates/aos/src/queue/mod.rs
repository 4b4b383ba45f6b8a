//! Storage queues the way the Functions host uses them, for the standalone runtime and tools.
//!
//! Message text is stored base64-encoded (the host's default `messageEncoding`), so a message
//! put by `aos run` is read by the Functions host and vice versa. A message whose text is not
//! valid base64 cannot have come from either; readers treat it as poison.

use std::sync::Arc;

use azure_core::http::{RequestContent, StatusCode};
use azure_storage_queue::QueueClient;
use azure_storage_queue::models::{QueueClientReceiveMessagesOptions, QueueMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::{QueueSettings, SettingsError};
use crate::storage::StorageEndpoint;

mod text;
pub use text::MessageText;

/// The account of `QueueStorageSettings__ConnectionString` (either form the Functions host
/// accepts): the one place where the queue setting becomes queue clients, for both runtimes and
/// every command.
#[derive(Clone)]
pub struct QueueAccount(StorageEndpoint);

impl QueueAccount {
    /// The account of the queue settings; `required_by` names who needs it (e.g. "`aos run`")
    /// in the error when the setting is missing.
    pub fn from_settings(
        settings: &QueueSettings,
        required_by: &str,
    ) -> Result<QueueAccount, SettingsError> {
        let connection = settings.connection.as_ref().ok_or_else(|| SettingsError {
            name: crate::config::queue_storage("ConnectionString"),
            problem: format!(
                "is required by {required_by} (a connection string, or the identity-based \
                 QueueStorageSettings__ConnectionString__queueServiceUri)"
            ),
        })?;
        Ok(QueueAccount(StorageEndpoint::for_queue_connection(
            connection,
        )?))
    }

    /// The queue `name` on this account.
    pub fn queue(&self, name: &str) -> azure_core::Result<Queue> {
        Queue::new(&self.0, name)
    }

    /// The queue `name` on this account, created when missing (what every writer does before
    /// its first message); the error names the queue.
    pub async fn existing_queue(&self, name: &str) -> anyhow::Result<Queue> {
        use anyhow::Context as _;
        let queue = self.queue(name).with_context(|| format!("queue {name}"))?;
        queue
            .ensure_exists()
            .await
            .with_context(|| format!("queue {name}"))?;
        Ok(queue)
    }
}

/// The most text one storage queue message holds: 64 KiB once base64-encoded (the encoding
/// both runtimes use), so 48 KiB. An event larger than this can never be queued: the webhook
/// answers 413 and catch-up refuses it, instead of failing at the queue write and making the
/// sender retry for days.
pub const MAX_MESSAGE_TEXT_BYTES: usize = 48 * 1024;

/// The queue a failed message ends in after its last attempt (the host's naming rule).
pub fn poison_queue_name(queue: &str) -> String {
    format!("{queue}-poison")
}

/// A received message, leased until its visibility timeout runs out.
#[derive(Clone, Debug)]
pub struct Leased {
    pub id: String,
    pub pop_receipt: String,
    pub dequeue_count: u32,
    /// The decoded text, or `None` when the stored text was not base64.
    pub text: Option<String>,
    /// The stored (encoded) text, for moving an undecodable message to poison unchanged.
    pub raw: String,
}

/// A message seen by [`Queue::peek`].
#[derive(Clone, Debug)]
pub struct Peeked {
    pub id: String,
    pub inserted: Option<time::OffsetDateTime>,
    /// The decoded text, or `None` when the stored text was not base64.
    pub text: Option<String>,
}

/// One named queue.
#[derive(Clone)]
pub struct Queue {
    client: Arc<QueueClient>,
    name: String,
    storage: StorageEndpoint,
}

impl Queue {
    pub fn new(storage: &StorageEndpoint, name: &str) -> azure_core::Result<Self> {
        Ok(Queue {
            client: Arc::new(storage.queue(name)?),
            name: name.to_string(),
            storage: storage.clone(),
        })
    }

    /// Another queue on the same account (e.g. the poison queue).
    pub fn sibling(&self, name: &str) -> azure_core::Result<Self> {
        Queue::new(&self.storage, name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the queue if it does not exist.
    pub async fn ensure_exists(&self) -> azure_core::Result<()> {
        match self.client.create(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends `text` base64-encoded; returns only once the service stored it.
    pub async fn send(&self, text: &str) -> azure_core::Result<()> {
        self.send_raw(BASE64.encode(text)).await
    }

    async fn send_raw(&self, stored: String) -> azure_core::Result<()> {
        let message = QueueMessage {
            message_text: Some(stored),
        };
        self.client
            .send_message(RequestContent::try_from(message)?, None)
            .await?;
        Ok(())
    }

    /// Receives up to `max` messages and hides them for `visibility_secs`.
    pub async fn receive(&self, max: u8, visibility_secs: u32) -> azure_core::Result<Vec<Leased>> {
        let options = QueueClientReceiveMessagesOptions {
            number_of_messages: Some(i32::from(max.clamp(1, 32))),
            visibility_timeout: Some(visibility_secs as i32),
            ..Default::default()
        };
        let received = self
            .client
            .receive_messages(Some(options))
            .await?
            .into_model()?;
        Ok(received
            .items
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let raw = m.message_text.unwrap_or_default();
                let text = BASE64
                    .decode(raw.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                Some(Leased {
                    id: m.message_id?,
                    pop_receipt: m.pop_receipt?,
                    dequeue_count: m.dequeue_count.unwrap_or(1).clamp(0, i64::from(u32::MAX))
                        as u32,
                    text,
                    raw,
                })
            })
            .collect())
    }

    /// The service's approximate message count (never lower than the true count; 0 for a
    /// missing queue).
    pub async fn approximate_count(&self) -> azure_core::Result<u64> {
        use azure_storage_queue::models::QueueClientGetPropertiesResultHeaders;
        match self.client.get_properties(None).await {
            Ok(response) => Ok(response.approximate_messages_count()?.unwrap_or(0).max(0) as u64),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Looks at up to 32 messages without leasing them (a missing queue has none).
    pub async fn peek(&self, max: u8) -> azure_core::Result<Vec<Peeked>> {
        let options = azure_storage_queue::models::QueueClientPeekMessagesOptions {
            number_of_messages: Some(i32::from(max.clamp(1, 32))),
            ..Default::default()
        };
        let peeked = match self.client.peek_messages(Some(options)).await {
            Ok(response) => response.into_model()?,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(peeked
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let raw = m.message_text.unwrap_or_default();
                Peeked {
                    id: m.message_id.unwrap_or_default(),
                    inserted: m.insertion_time,
                    text: BASE64
                        .decode(raw.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok()),
                }
            })
            .collect())
    }

    /// Extends (or, with 0, ends) the lease; the pop receipt changes on every update.
    pub async fn set_visibility(
        &self,
        message: &mut Leased,
        visibility_secs: u32,
    ) -> azure_core::Result<()> {
        let response = self
            .client
            .update_message(
                &message.id,
                &message.pop_receipt,
                visibility_secs as i32,
                None,
            )
            .await?;
        if let Some(receipt) = response.headers().get_optional_str(
            &azure_core::http::headers::HeaderName::from_static("x-ms-popreceipt"),
        ) {
            message.pop_receipt = receipt.to_string();
        }
        Ok(())
    }

    pub async fn delete(&self, message: &Leased) -> azure_core::Result<()> {
        match self
            .client
            .delete_message(&message.id, &message.pop_receipt, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Copies the message's stored text to `poison` unchanged, then deletes it here.
    pub async fn move_to(&self, message: &Leased, target: &Queue) -> azure_core::Result<()> {
        target.ensure_exists().await?;
        target.send_raw(message.raw.clone()).await?;
        self.delete(message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_queue_follows_the_host_rule() {
        assert_eq!(poison_queue_name("events-inbound"), "events-inbound-poison");
    }
}
