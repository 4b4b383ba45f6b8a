//! Downstream hand-off: after each confirmation, one message per instance on an optional queue
//! (`QueueStorageSettings__ArchivedQueueName`), so an agency's case-handling system reacts to
//! archived submissions instead of polling the container.
//!
//! The message is JSON (base64 on the queue, like every message here):
//!
//! ```json
//! {"type": "aos.instance.archived", "instanceId": "50019855/6b33…", "appId": "ttd/app",
//!  "container": "inbound", "manifestBlob": "ttd/app/6b33…/manifest.json",
//!  "elementsFingerprint": "3f1c…", "sentAt": "2026-12-01T10:00:00Z",
//!  "manifest": { …the manifest… }}
//! ```
//!
//! `manifest` lists every element with its blob name, size, `lastChanged` and SHA-256, so the
//! consumer can verify each file it reads. A manifest too large for one queue message (an
//! instance with hundreds of elements) is left out (`"manifest": null`): the consumer reads
//! `manifestBlob` instead.
//!
//! The manifest sent is the one the confirmation verified: its blob names (rebuilt from the
//! instance's identity), sizes and SHA-256s are checked against the listing the confirmation
//! used, and a manifest rewritten in between fails the step retryably instead of being sent.
//!
//! Delivery is at least once: the message is sent after *complete* succeeded, and a failed
//! send fails the confirmation step retryably, whose retry confirms again (idempotent in
//! Altinn) and sends again. Consumers deduplicate by `instanceId` and `elementsFingerprint`
//! (an instance re-archived after a change, rare, is handed off again with a new fingerprint).
//! When the send fails on every attempt, the confirmation message ends in
//! `events-confirmation-poison`; replaying it sends the hand-off.

use anyhow::Context as _;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use tokio::sync::OnceCell;

use crate::archive::{Archive, InstanceListing, InstancePaths, Manifest, meta};
use crate::config::{Settings, SettingsError, queue_storage};
use crate::domain::InstanceRef;
use crate::queue::{Queue, QueueAccount};

use super::error::StepError;

/// The `type` of every hand-off message.
pub const MESSAGE_TYPE: &str = "aos.instance.archived";

/// Message text that still fits a storage queue message once base64-encoded.
const MAX_MESSAGE_TEXT: usize = crate::queue::MAX_MESSAGE_TEXT_BYTES;

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
    /// archive and checked against `listing`, the one its confirmation verified.
    pub async fn send(
        &self,
        archive: &Archive,
        instance: &InstanceRef,
        paths: &InstancePaths,
        listing: &InstanceListing,
    ) -> Result<(), StepError> {
        let changed = |why: String| {
            StepError::retry(anyhow::anyhow!(
                "hand-off of {instance}: {why}; not sending a manifest that was not verified"
            ))
        };
        let bytes = archive
            .read_small(&paths.manifest())
            .await?
            .ok_or_else(|| changed("the manifest is gone".into()))?;
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| changed(format!("the manifest is unreadable: {e}")))?;
        verify(&manifest, paths, listing).map_err(changed)?;
        let fingerprint = listing
            .get(&paths.manifest())
            .and_then(|m| m.meta(meta::ELEMENTS))
            .unwrap_or_default();
        let raw: Value = serde_json::from_slice(&bytes)
            .map_err(|e| changed(format!("the manifest is unreadable: {e}")))?;
        let text = message_text(instance, paths, archive.container_name(), fingerprint, raw);
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

/// Every element the manifest records is in `listing` at its rebuilt name with the recorded
/// size and SHA-256.
fn verify(
    manifest: &Manifest,
    paths: &InstancePaths,
    listing: &InstanceListing,
) -> Result<(), String> {
    for element in &manifest.elements {
        let name = if element.quarantined {
            paths.quarantine(element.id)
        } else {
            paths.data(element.id)
        };
        match listing.get(&name) {
            Some(blob) if blob.size == element.size && blob.sha256() == Some(&element.sha256) => {}
            _ => {
                return Err(format!(
                    "the manifest changed since it was verified ({name})"
                ));
            }
        }
    }
    Ok(())
}

/// The message for `instance`; without the manifest when it would not fit one queue message.
fn message_text(
    instance: &InstanceRef,
    paths: &InstancePaths,
    container: &str,
    elements_fingerprint: &str,
    manifest: Value,
) -> String {
    let mut message = json!({
        "type": MESSAGE_TYPE,
        "instanceId": instance.instance_id(),
        "appId": instance.app_id(),
        "container": container,
        "manifestBlob": paths.manifest(),
        "elementsFingerprint": elements_fingerprint,
        "sentAt": time::OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
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
        let text = message_text(&i, &p, "inbound", "f1", json!({"elements": []}));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], MESSAGE_TYPE);
        assert_eq!(v["instanceId"], "5/bd9edd59-b18c-4726-aa9e-6b150eade814");
        assert_eq!(v["appId"], "ttd/a1");
        assert_eq!(v["manifestBlob"], p.manifest());
        assert_eq!(v["manifest"], json!({"elements": []}));
        assert_eq!(v["elementsFingerprint"], "f1");
    }

    #[test]
    fn a_manifest_too_large_for_one_message_is_left_to_the_blob() {
        let i = instance();
        let p = InstancePaths::new(&i);
        let big = json!({"elements": vec!["x".repeat(100); 1000]});
        let text = message_text(&i, &p, "inbound", "f1", big);
        assert!(text.len() <= MAX_MESSAGE_TEXT, "{}", text.len());
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["manifest"], Value::Null);
        assert_eq!(v["manifestBlob"], p.manifest());
    }
}
