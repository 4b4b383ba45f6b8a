//! Confirm: tell Altinn the instance is archived — only when that is true.
//!
//! Before calling *complete*: the manifest must exist, the instance's process must have ended,
//! and every data element the instance lists now must be in the manifest and stored with its
//! size. Complete is idempotent in Altinn, so a repeated confirmation is harmless.
//!
//! Elements of the feedback data type (`XMLFeedbackDataType`) are left out of the comparison:
//! the feedback step adds one after archiving, and it is our own output, not the user's data.
//! Every other element added or changed after archiving still blocks the confirmation.

use anyhow::anyhow;

use crate::archive::InstancePaths;
use crate::domain::{CloudEvent, InstanceRef};

use super::Pipeline;
use super::error::StepError;
use super::process::same_elements_except;

#[derive(Debug, PartialEq)]
pub enum ConfirmOutcome {
    Confirmed {
        instance: InstanceRef,
    },
    /// The process has not ended (an event type other than completed was archived): nothing to
    /// confirm yet.
    NotEnded {
        instance: InstanceRef,
    },
    Skipped {
        reason: String,
    },
}

impl Pipeline {
    pub async fn confirm(&self, event: &CloudEvent) -> Result<ConfirmOutcome, StepError> {
        if event.is_validation_ping() {
            return Ok(ConfirmOutcome::Skipped {
                reason: "validation ping".into(),
            });
        }
        let instance = event.instance(&self.settings.apps_base_url)?;
        let paths = InstancePaths::new(&instance);
        let Some(manifest) = self.archive.manifest(&paths).await? else {
            return Err(StepError::retry(anyhow!(
                "instance {instance} has no manifest yet; not confirming"
            )));
        };
        let (fetched, elements) = self.read_checked(&instance).await?;
        if !fetched.instance.process_ended() {
            return Ok(ConfirmOutcome::NotEnded { instance });
        }
        if !same_elements_except(&manifest, &elements, self.feedback_data_type()) {
            return Err(StepError::permanent(anyhow!(
                "instance {instance} changed after it was archived (manifest has {} elements, instance has {}); replay it to events-inbound to re-archive",
                manifest.elements.len(),
                elements.len()
            )));
        }
        for element in &manifest.elements {
            let stored = self.archive.blob_size(&element.blob_name).await?;
            if stored != Some(element.size) {
                return Err(StepError::permanent(anyhow!(
                    "instance {instance}: {} is {stored:?} bytes in the archive, expected {}; replay to events-inbound to re-archive",
                    element.blob_name,
                    element.size
                )));
            }
        }
        self.altinn.complete(&instance).await?;
        Ok(ConfirmOutcome::Confirmed { instance })
    }
}
