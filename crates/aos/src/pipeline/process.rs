//! Process: archive one instance — its JSON and every data element — then write the manifest.
//!
//! Resumable: an element already stored with the right size is not downloaded again, and an
//! instance whose manifest lists exactly its current elements is recognised as archived with
//! one instance read and one manifest read — and, when this org has already confirmed it, as
//! done, without passing anything on. Elements are archived concurrently up to
//! [`ELEMENT_CONCURRENCY`] per instance.

use std::collections::HashMap;

use anyhow::anyhow;
use futures::StreamExt;
use time::format_description::well_known::Rfc3339;

use crate::archive::{BlobInfo, InstancePaths, Manifest, ManifestElement, ascii_metadata_value};
use crate::domain::{CloudEvent, InstanceRef};

use super::Pipeline;
use super::error::StepError;
use super::identity::{CheckedElement, Scan};

/// Data elements of one instance downloaded at the same time.
pub const ELEMENT_CONCURRENCY: usize = 4;

#[derive(Debug, PartialEq)]
pub enum ProcessOutcome {
    /// Archived (or found archived): pass the event on to confirmation.
    Archived {
        instance: InstanceRef,
        elements: usize,
        bytes_written: u64,
        already_archived: bool,
    },
    /// Archived and confirmed before: a duplicate event, recognised with one instance read and
    /// one manifest read; nothing is passed on.
    AlreadyDone { instance: InstanceRef },
    /// Nothing to do for this event (validation ping, type not processed).
    Skipped { reason: String },
}

impl Pipeline {
    pub async fn process(&self, event: &CloudEvent) -> Result<ProcessOutcome, StepError> {
        if event.is_validation_ping() || !self.settings.processes_event_type(event.event_type()) {
            return Ok(ProcessOutcome::Skipped {
                reason: format!("event type `{}` is not processed", event.event_type()),
            });
        }
        let instance = event.instance(&self.settings.apps_base_url)?;
        let (fetched, elements) = self.read_checked(&instance).await?;
        if let Some(pending) = elements.iter().find(|e| e.scan == Scan::Pending) {
            return Err(StepError::retry(anyhow!(
                "data element {} of {instance} is waiting for its virus scan",
                pending.id
            )));
        }

        tracing::debug!(instance = %instance, elements = elements.len(), "instance read");
        let paths = InstancePaths::new(&instance);
        let last_changed = fetched.instance.last_changed.clone();
        if let Some(existing) = self.archive.manifest(&paths).await? {
            // Elements decide: Altinn changes `lastChanged` on later metadata updates (the
            // confirmation itself, substatus), which do not call for a new archive.
            if same_elements_except(&existing, &elements, self.feedback_data_type()) {
                if fetched.instance.confirmed_by(instance.org.as_str()) {
                    return Ok(ProcessOutcome::AlreadyDone { instance });
                }
                return Ok(ProcessOutcome::Archived {
                    elements: elements.len(),
                    instance,
                    bytes_written: 0,
                    already_archived: true,
                });
            }
        }

        let instance_id = instance.instance_id();
        // Every element runs to its end even when another fails, so whatever could be stored is
        // stored and a retry downloads only what is missing; then the first error is reported.
        let uploads: Vec<_> = elements
            .iter()
            .map(|element| self.archive_element(&instance, &paths, element, &instance_id))
            .collect();
        let results: Vec<Result<u64, StepError>> = futures::stream::iter(uploads)
            .buffer_unordered(ELEMENT_CONCURRENCY)
            .collect()
            .await;
        let mut bytes_written = 0u64;
        for result in results {
            bytes_written += result?;
        }

        let json_info = BlobInfo {
            content_type: "application/json".into(),
            metadata: HashMap::from([("instanceid".to_string(), instance_id.clone())]),
        };
        self.archive
            .put(&paths.instance_json(), fetched.raw.clone(), &json_info)
            .await?;

        let manifest = Manifest {
            instance_id,
            app_id: instance.app_id(),
            last_changed,
            archived_at: time::OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            instance_blob: paths.instance_json(),
            elements: elements
                .iter()
                .map(|e| manifest_element(&paths, e))
                .collect(),
        };
        self.archive.write_manifest(&paths, &manifest).await?;
        Ok(ProcessOutcome::Archived {
            elements: elements.len(),
            instance,
            bytes_written,
            already_archived: false,
        })
    }

    /// Stores one element unless it is already stored with the right size; returns bytes written.
    async fn archive_element(
        &self,
        instance: &InstanceRef,
        paths: &InstancePaths,
        element: &CheckedElement,
        instance_id: &str,
    ) -> Result<u64, StepError> {
        let blob_name = blob_name(paths, element);
        if self.archive.blob_size(&blob_name).await? == Some(element.size) {
            tracing::debug!(instance = %instance, element = %element.id, "element already stored");
            return Ok(0);
        }
        // Buffer memory first: a waiting element must not hold an open download.
        let buffers = self.archive.reserve_buffers(element.size).await;
        tracing::debug!(instance = %instance, element = %element.id, size = element.size, "downloading element");
        let response = self.altinn.open_data(instance, element.id).await?;
        if let Some(length) = response.content_length()
            && length != element.size
        {
            return Err(StepError::retry(anyhow!(
                "data element {} of {instance}: Altinn sent Content-Length {length}, the instance says size {}",
                element.id,
                element.size
            )));
        }
        let mut metadata = HashMap::from([
            (
                "datatype".to_string(),
                ascii_metadata_value(&element.data_type),
            ),
            ("size".to_string(), element.size.to_string()),
            ("instanceid".to_string(), instance_id.to_string()),
        ]);
        if let Some(filename) = &element.filename {
            metadata.insert("filename".to_string(), ascii_metadata_value(filename));
        }
        let info = BlobInfo {
            content_type: element.content_type.clone(),
            metadata,
        };
        let written = self
            .archive
            .upload_stream(
                &blob_name,
                response.bytes_stream(),
                element.size,
                &info,
                buffers,
            )
            .await?;
        Ok(written)
    }
}

/// Infected elements are kept apart, under `quarantine/`.
fn blob_name(paths: &InstancePaths, element: &CheckedElement) -> String {
    match element.scan {
        Scan::Infected => paths.quarantine(element.id),
        _ => paths.data(element.id),
    }
}

fn manifest_element(paths: &InstancePaths, element: &CheckedElement) -> ManifestElement {
    ManifestElement {
        id: element.id,
        data_type: element.data_type.clone(),
        size: element.size,
        content_type: element.content_type.clone(),
        blob_name: blob_name(paths, element),
        filename: element.filename.clone(),
        quarantined: element.scan == Scan::Infected,
        hard_deleted: element.hard_deleted,
    }
}

/// Whether the manifest lists exactly these elements with these sizes, leaving elements of
/// `ignored` (the feedback data type, added to the instance after it was archived) out on both
/// sides.
pub fn same_elements_except(
    manifest: &Manifest,
    elements: &[CheckedElement],
    ignored: Option<&str>,
) -> bool {
    let kept = |data_type: &str| ignored != Some(data_type);
    let listed: Vec<_> = manifest
        .elements
        .iter()
        .filter(|m| kept(&m.data_type))
        .collect();
    let current: Vec<_> = elements.iter().filter(|e| kept(&e.data_type)).collect();
    listed.len() == current.len()
        && current
            .iter()
            .all(|e| listed.iter().any(|m| m.id == e.id && m.size == e.size))
}
