//! Confirm: tell Altinn the instance is archived — only when that is true.
//!
//! Before calling *complete*, one listing of the instance's folder and one instance read must
//! show ([`super::freshness::archived`]): the manifest, written for exactly the element
//! versions the instance has now (its fingerprint), the instance JSON, and a current copy of
//! every element — names rebuilt from the instance's identity, never taken from the manifest —
//! and the process must have ended. Complete is idempotent in Altinn, so a repeated
//! confirmation is harmless.
//!
//! An archive that does not match (an element changed after archiving, a blob deleted or cut
//! short) fails the step *retryably*: the inbound step re-archives whatever is not current when
//! the instance's next event, a replay to `events-inbound`, or the next reconcile run reaches it,
//! and the confirmation then succeeds. It never confirms what it did not verify.
//!
//! Elements of the feedback data type (`XMLFeedbackDataType`) are left out of the comparison:
//! the feedback step adds one after archiving, and it is our own output, not the user's data.
//!
//! After *complete*, the downstream hand-off ([`super::handoff`]) gets its message, when
//! configured.

use anyhow::anyhow;

use crate::archive::InstancePaths;
use crate::domain::{CloudEvent, InstanceRef};

use super::Pipeline;
use super::error::StepError;
use super::freshness::{Current, archived};

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
        let listing = self.archive.list_instance(&paths).await?;
        if listing.get(&paths.manifest()).is_none() {
            return Err(StepError::retry(anyhow!(
                "instance {instance} has no manifest yet; not confirming"
            )));
        }
        let (fetched, elements) = self.read_checked(&instance).await?;
        if !fetched.instance.process_ended() {
            return Ok(ConfirmOutcome::NotEnded { instance });
        }
        let current = Current {
            elements: &elements,
            process_ended: fetched.instance.process_ended_at(),
            ignored: self.feedback_data_type(),
        };
        if let Err(reason) = archived(&listing, &paths, current) {
            return Err(StepError::retry(anyhow!(
                "instance {instance}: the archive does not hold it as Altinn has it now ({reason}); \
                 not confirming until it is archived again (its next event, a replay to \
                 events-inbound, or the next reconcile run does that)"
            )));
        }
        self.altinn.complete(&instance).await?;
        if let Some(handoff) = &self.handoff {
            handoff
                .send(&self.archive, &instance, &paths, &listing)
                .await?;
        }
        Ok(ConfirmOutcome::Confirmed { instance })
    }
}
