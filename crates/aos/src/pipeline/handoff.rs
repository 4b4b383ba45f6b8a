//! Downstream hand-off: after each confirmation, one message per instance on an optional queue
//! (`QueueStorageSettings__ArchivedQueueName`), so an agency's case-handling system reacts to
//! archived submissions instead of polling the container.
//!
//! The message is JSON (base64 on the queue, like every message here):
//!
//! ```json
//! {"type": "aos.instance.archived", "instanceId": "50019855/6b33…", "appId": "ttd/app",
//!  "container": "inbound", "manifestBlob": "ttd/app/6b33…/manifest.json",
//!  "confirmedAt": "2026-12-01T10:00:00Z", "manifest": { …the manifest… }}
//! ```
//!
//! `manifest` lists every element with its blob name, size, `lastChanged` and SHA-256, so the
//! consumer can verify each file it reads. A manifest too large for one queue message (an
//! instance with hundreds of elements) is left out (`"manifest": null`): the consumer reads
//! `manifestBlob` instead.
//!
//! Delivery is at least once: the message is sent after *complete* succeeded, and a failed
//! send fails the confirmation step retryably, whose retry confirms again (idempotent in
//! Altinn) and sends again. Consumers deduplicate by `instanceId`.

use anyhow::Context as _;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::sync::OnceCell;

use crate::archive::{Archive, InstancePaths};
use crate::config::{Settings, SettingsError, queue_storage};
use crate::domain::InstanceRef;
use crate::queue::{Queue, QueueAccount};

use super::error::StepError;

/// The `type` of every hand-off message.
pub const MESSAGE_TYPE: &str = "aos.instance.archived";

/// Message text that still fits a storage queue message (64 KiB) once base64-encoded.
const MAX_MESSAGE_TEXT: usize = 48 * 1024;

/// The hand-off queue.
#[derive(Clone)]
pub struct Handoff {
    queue: Queue,
    created: std::sync::Arc<OnceCell<()>>,
}

impl Handoff {
    /// The queue of `ArchivedQueueName` on the queue connection; `None` when the setting is off.
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, SettingsError> {
        let Some(name) = &settings.queues.archived else {
            return Ok(None);
        };
        let setting = queue_storage("ArchivedQueueName");
        let account = QueueAccount::from_settings(&settings.queues, &setting)?;
        let queue = account
            .queue(name)
            .map_err(|e| SettingsError::new(&setting, format!("queue `{name}`: {e}")))?;
        Ok(Some(Handoff {
            queue,
            created: Default::default(),
        }))
    }

    /// Sends the hand-off message for a confirmed instance, with its manifest read from the
    /// archive.
    pub async fn send(
        &self,
        archive: &Archive,
        instance: &InstanceRef,
        paths: &InstancePaths,
    ) -> Result<(), StepError> {
        let manifest = archive
            .read_small(&paths.manifest())
            .await?
            .map(|bytes| serde_json::from_slice::<Value>(&bytes))
            .transpose()
            .map_err(|e| StepError::retry(e).context("hand-off: the manifest is not JSON"))?
            .unwrap_or(Value::Null);
        let text = message_text(instance, paths, archive.container_name(), manifest);
        self.created
            .get_or_try_init(|| self.queue.ensure_exists())
            .await
            .with_context(|| format!("hand-off queue {}", self.queue.name()))
            .map_err(StepError::retry)?;
        self.queue
            .send(&text)
            .await
            .with_context(|| format!("hand-off queue {}", self.queue.name()))
            .map_err(StepError::retry)
    }
}

/// The message for `instance`; without the manifest when it would not fit one queue message.
fn message_text(
    instance: &InstanceRef,
    paths: &InstancePaths,
    container: &str,
    manifest: Value,
) -> String {
    let mut message = json!({
        "type": MESSAGE_TYPE,
        "instanceId": instance.instance_id(),
        "appId": instance.app_id(),
        "container": container,
        "manifestBlob": paths.manifest(),
        "confirmedAt": time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "manifest": manifest,
    });
    let text = message.to_string();
    if text.len() <= MAX_MESSAGE_TEXT {
        return text;
    }
    message["manifest"] = Value::Null;
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::BaseUrl;

    fn instance() -> InstanceRef {
        let apps = BaseUrl::parse("https://ttd.apps.tt02.altinn.no/").unwrap();
        InstanceRef::from_source(
            "https://ttd.apps.tt02.altinn.no/ttd/a1/instances/5/bd9edd59-b18c-4726-aa9e-6b150eade814",
            &apps,
        )
        .unwrap()
    }

    #[test]
    fn the_message_names_the_instance_and_carries_its_manifest() {
        let i = instance();
        let p = InstancePaths::new(&i);
        let text = message_text(&i, &p, "inbound", json!({"elements": []}));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], MESSAGE_TYPE);
        assert_eq!(v["instanceId"], "5/bd9edd59-b18c-4726-aa9e-6b150eade814");
        assert_eq!(v["appId"], "ttd/a1");
        assert_eq!(v["manifestBlob"], p.manifest());
        assert_eq!(v["manifest"], json!({"elements": []}));
    }

    #[test]
    fn a_manifest_too_large_for_one_message_is_left_to_the_blob() {
        let i = instance();
        let p = InstancePaths::new(&i);
        let big = json!({"elements": vec!["x".repeat(100); 1000]});
        let text = message_text(&i, &p, "inbound", big);
        assert!(text.len() <= MAX_MESSAGE_TEXT, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["manifest"], Value::Null);
        assert_eq!(v["manifestBlob"], p.manifest());
    }
}
