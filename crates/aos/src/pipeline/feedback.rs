//! Feedback (parity with the reference system's `EventsFeedback`): after an instance is
//! archived and before it is confirmed, upload a feedback data element to the instance.
//!
//! Configured by `AltinnApplicationOwnerSystemSettings__XMLFeedbackDataType` (the data type of
//! the uploaded element) and `__XMLFeedbackEventType` (the event type that gets feedback); both
//! empty or unset means off, and the step passes every event straight on with no Altinn call.
//! The content comes from a template (`__XMLFeedbackTemplatePath`, default
//! [`crate::config::DEFAULT_TEMPLATE`]) whose placeholders are replaced with XML-escaped values:
//! `{instanceId}`, `{org}`, `{app}`, `{eventId}`, `{eventType}`, `{archivedAt}` (the manifest's
//! time) and `{now}`. `__XMLFeedbackContentType` sets its content type (default
//! `application/xml`).
//!
//! Idempotent: the instance's data list is read first, and when it already holds an element of
//! the feedback data type nothing is uploaded (the data type is the application owner's
//! feedback; a repeated event or a retry after a lost answer must not add a second one).
//!
//! The feedback element is added after the archive was written, so the archive checks
//! (`process` recognising an archived instance, `confirm` verifying it) leave elements of the
//! feedback data type out of the comparison between manifest and instance.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use time::format_description::well_known::Rfc3339;

use crate::archive::InstancePaths;

use crate::config::FeedbackSettings;
use crate::domain::{CloudEvent, InstanceRef};

use super::Pipeline;
use super::error::StepError;

/// How long one term of an instance's feedback lease lasts (Storage allows 15–60 s): a holder
/// that dies blocks the other copies no longer than this. A live holder renews it.
const FEEDBACK_LEASE_SECONDS: i32 = 60;

/// The lease term: [`FEEDBACK_LEASE_SECONDS`], or for tests only `AOS_TEST_FEEDBACK_LEASE_SECS`
/// (15–60), so a test can outlast a term in seconds.
fn feedback_lease_seconds() -> i32 {
    std::env::var("AOS_TEST_FEEDBACK_LEASE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| (15..=60).contains(s))
        .unwrap_or(FEEDBACK_LEASE_SECONDS)
}

#[derive(Debug, PartialEq)]
pub enum FeedbackOutcome {
    /// Feedback is off, or not for this event type: passed on unchanged.
    NotConfigured,
    NotForThisEvent,
    /// The instance already has a feedback element: not uploaded again.
    AlreadyGiven {
        instance: String,
    },
    Uploaded {
        instance: String,
        bytes: usize,
    },
}

impl Pipeline {
    /// The data type whose elements the archive checks ignore (the feedback element).
    pub fn feedback_data_type(&self) -> Option<&str> {
        self.settings
            .feedback
            .as_ref()
            .map(|f| f.data_type.as_str())
    }

    pub async fn feedback(&self, event: &CloudEvent) -> Result<FeedbackOutcome, StepError> {
        let Some(feedback) = &self.settings.feedback else {
            return Ok(FeedbackOutcome::NotConfigured);
        };
        if event.is_validation_ping() || event.event_type() != feedback.event_type {
            return Ok(FeedbackOutcome::NotForThisEvent);
        }
        let instance = event.instance(&self.settings.apps_base_url)?;
        let paths = InstancePaths::new(&instance);
        let Some(manifest) = self.archive.manifest(&paths).await? else {
            return Err(StepError::retry(anyhow!(
                "instance {instance} has no manifest yet; no feedback before it is archived"
            )));
        };
        // Two copies of the message at once (Altinn delivers at least once) would both find no
        // feedback element and both upload one: the check and the upload run under a lease on
        // a marker blob per instance. A copy that finds it taken retries later, and then finds
        // the element. A holder that dies frees it when the lease ends.
        let lock = format!(
            "feedback/{}/{}/{}.lock",
            instance.org.as_str(),
            instance.app.as_str(),
            instance.instance_id()
        );
        let state = self.failures.state();
        let Some(lease) = state.try_lease(&lock, feedback_lease_seconds()).await? else {
            return Err(StepError::retry(anyhow!(
                "feedback for {instance} is being given by another invocation"
            )));
        };
        // The lease is renewed at a third of its term while the work lasts (Altinn may be
        // slow: three tries of a 60 s read), so no copy takes it meanwhile; each renewal may
        // take at most a third of the term. The upload starts only while the lease is surely
        // held (its last renewal plus the term, less a third), and once started it is never
        // cancelled: a lease that could not be renewed makes the work stop *before* the upload,
        // and is then left to run out rather than released, so no copy starts while an upload
        // may still be in flight. The next attempt finds the element or gives it.
        let term = Duration::from_secs(feedback_lease_seconds() as u64);
        let held_until = Mutex::new(Instant::now() + term);
        let lost = std::sync::atomic::AtomicBool::new(false);
        let renewing = async {
            loop {
                tokio::time::sleep(term / 3).await;
                let asked = Instant::now();
                match tokio::time::timeout(term / 3, state.renew(&lease)).await {
                    Ok(Ok(())) => *lock_held(&held_until) = asked + term,
                    _ => {
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                }
            }
        };
        let still_held = || Instant::now() + term / 3 < *lock_held(&held_until);
        let work = self.give_feedback(
            feedback,
            event,
            &instance,
            &manifest.archived_at,
            &still_held,
        );
        let outcome = tokio::select! {
            outcome = work => outcome,
            () = renewing => unreachable!("renewing never ends"),
        };
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            tracing::warn!(
                lock,
                "the feedback lease could not be renewed; it ends by itself"
            );
        } else if let Err(e) = state.release(lease).await {
            tracing::warn!(lock, error = %e, "could not release the feedback lease; it ends by itself");
        }
        outcome
    }

    /// The check and the upload, under the instance's feedback lease.
    async fn give_feedback(
        &self,
        feedback: &FeedbackSettings,
        event: &CloudEvent,
        instance: &InstanceRef,
        archived_at: &str,
        still_held: &(dyn Fn() -> bool + Sync),
    ) -> Result<FeedbackOutcome, StepError> {
        let fetched = self.altinn.get_instance(instance).await?;
        let instance_id = instance.instance_id();
        if fetched
            .instance
            .data
            .iter()
            .any(|d| d.data_type.as_deref() == Some(feedback.data_type.as_str()))
        {
            return Ok(FeedbackOutcome::AlreadyGiven {
                instance: instance_id,
            });
        }
        let now = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let body = feedback.render(&[
            ("instanceId", &instance_id),
            ("org", instance.org.as_str()),
            ("app", instance.app.as_str()),
            ("eventId", event.id()),
            ("eventType", event.event_type()),
            ("archivedAt", archived_at),
            ("now", &now),
        ]);
        let bytes = body.len();
        if !still_held() {
            return Err(StepError::retry(anyhow!(
                "the feedback lease on {instance} may have run out; stopped before the upload"
            )));
        }
        self.altinn
            .upload_data(
                instance,
                &feedback.data_type,
                &feedback.content_type,
                body.into_bytes(),
            )
            .await?;
        Ok(FeedbackOutcome::Uploaded {
            instance: instance_id,
            bytes,
        })
    }
}

/// The lock's value even if a holder panicked (it is a plain instant).
fn lock_held(held: &Mutex<Instant>) -> MutexGuard<'_, Instant> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}
