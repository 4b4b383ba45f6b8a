//! Queue steps as adapters run them: message text in, a report (and maybe a message for the
//! next queue) out. The Functions routes and the standalone workers both call these, so the
//! two runtimes treat a message identically.

use crate::config::Settings;
use crate::domain::CloudEvent;

use super::Pipeline;
use super::confirm::ConfirmOutcome;
use super::error::{ErrorKind, StepError};
use super::feedback::FeedbackOutcome;
use super::process::ProcessOutcome;

/// The result of one successful step: a log line, and the event to pass on, if any.
#[derive(Debug)]
pub struct StepReport {
    pub line: String,
    pub forward: Option<CloudEvent>,
}

/// A queue message that is not a CloudEvent can never succeed.
pub fn parse_message(text: &str) -> Result<CloudEvent, StepError> {
    CloudEvent::parse(text.as_bytes()).map_err(|e| StepError::permanent(e).context("queue message"))
}

/// Who and what a log line is about: event id and source.
pub fn describe(event: &CloudEvent) -> String {
    format!("event {} source {}", event.id(), event.source())
}

/// Which attempt at a message this is, as the runtime counts them (the queue's dequeue count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    /// The runtime moves the message to poison if this attempt fails (`maxDequeueCount`).
    pub last: bool,
}

impl Attempt {
    /// Attempt `number` of at most `max`.
    pub fn of(number: u32, max: u32) -> Self {
        Attempt {
            number,
            last: number >= max,
        }
    }
}

/// The queue-triggered steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueStep {
    /// `events-inbound` → archive → `events-confirmation`.
    Process,
    /// `events-confirmation` → complete.
    Confirm,
    /// `events-feedback` → upload feedback (when configured) → `events-confirmation`.
    Feedback,
}

impl QueueStep {
    /// Every queue step, in the order a message goes through them.
    pub const ALL: [QueueStep; 3] = [QueueStep::Process, QueueStep::Feedback, QueueStep::Confirm];

    /// The step whose queue this step passes its event on to; `None` for the last one. The
    /// processor passes an archived instance to feedback when feedback is configured, and
    /// otherwise straight to confirmation (no extra hop when it is off). Both runtimes route
    /// by this, the Functions handler to an output binding and the standalone workers to a
    /// queue.
    /// The step's name in metrics (`aos.step.duration`, `aos.instances.failed`).
    pub fn label(self) -> &'static str {
        match self {
            QueueStep::Process => "process",
            QueueStep::Confirm => "confirm",
            QueueStep::Feedback => "feedback",
        }
    }

    pub fn next(self, settings: &Settings) -> Option<QueueStep> {
        match self {
            QueueStep::Process if settings.feedback.is_some() => Some(QueueStep::Feedback),
            QueueStep::Process | QueueStep::Feedback => Some(QueueStep::Confirm),
            QueueStep::Confirm => None,
        }
    }
}

impl Pipeline {
    /// The queue a step reads from.
    pub fn queue_of(&self, step: QueueStep) -> &str {
        match step {
            QueueStep::Process => &self.settings.queues.inbound,
            QueueStep::Confirm => &self.settings.queues.confirmation,
            QueueStep::Feedback => &self.settings.queues.feedback,
        }
    }

    /// Runs `step` and, if it fails, records the failure for `aos poison list`. A permanent
    /// failure of the last attempt — the message is going to poison — also holds the instance
    /// out of reconciliation and catch-up (`crate::holds`); an earlier one may be a race (an
    /// element replaced while it downloaded) that the next attempt does not meet, and a hold
    /// written then would outlive the attempt that succeeds.
    pub async fn run_step_recorded(
        &self,
        step: QueueStep,
        event: &CloudEvent,
        attempt: Attempt,
    ) -> Result<StepReport, StepError> {
        let result = crate::metrics::timed(step.label(), self.run_step(step, event)).await;
        if let Err(e) = &result {
            crate::metrics::step_failed(
                step.label(),
                e.kind().label(),
                e.kind() == ErrorKind::Permanent,
            );
            let queue = self.queue_of(step);
            let error = e.to_string();
            self.failures
                .record(queue, event, attempt.number, e.kind().label(), &error)
                .await;
            if e.kind() == ErrorKind::Permanent
                && attempt.last
                && let Ok(instance) = event.instance(&self.settings.apps_base_url)
            {
                self.holds.record(&instance, queue, event, &error).await;
            }
        }
        result
    }

    pub async fn run_step(
        &self,
        step: QueueStep,
        event: &CloudEvent,
    ) -> Result<StepReport, StepError> {
        match step {
            QueueStep::Process => self.process_message(event).await,
            QueueStep::Confirm => self.confirm_message(event).await,
            QueueStep::Feedback => self.feedback_message(event).await,
        }
    }

    /// `events-inbound`: archive, then forward the event to confirmation.
    pub async fn process_message(&self, event: &CloudEvent) -> Result<StepReport, StepError> {
        let context = describe(event);
        Ok(match self.process(event).await? {
            ProcessOutcome::Archived {
                instance,
                elements,
                bytes_written,
                already_archived,
            } => {
                tracing::info!(event_id = event.id(), instance = %instance, elements, bytes_written, already_archived, "instance archived");
                if !already_archived {
                    crate::metrics::instance_archived(bytes_written);
                }
                let line = if already_archived {
                    format!(
                        "instance {instance} was already archived; passing on to confirmation ({context})"
                    )
                } else {
                    format!(
                        "archived instance {instance}: {elements} elements, {bytes_written} bytes written ({context})"
                    )
                };
                StepReport {
                    line,
                    forward: Some(event.clone()),
                }
            }
            ProcessOutcome::AlreadyDone { instance } => StepReport {
                line: format!(
                    "instance {instance} is already archived and confirmed; nothing to do ({context})"
                ),
                forward: None,
            },
            ProcessOutcome::Skipped { reason } => StepReport {
                line: format!("skipped: {reason} ({context})"),
                forward: None,
            },
        })
    }

    /// `events-confirmation`: confirm when the archive is complete and the process has ended.
    pub async fn confirm_message(&self, event: &CloudEvent) -> Result<StepReport, StepError> {
        let context = describe(event);
        let line = match self.confirm(event).await? {
            ConfirmOutcome::Confirmed { instance } => {
                tracing::info!(event_id = event.id(), instance = %instance, "instance confirmed");
                crate::metrics::instance_confirmed();
                format!("confirmed instance {instance} ({context})")
            }
            ConfirmOutcome::NotEnded { instance } => {
                tracing::info!(event_id = event.id(), instance = %instance, "process not ended; not confirmed");
                format!("instance {instance}: process has not ended; not confirmed ({context})")
            }
            ConfirmOutcome::Skipped { reason } => format!("skipped: {reason} ({context})"),
        };
        Ok(StepReport {
            line,
            forward: None,
        })
    }

    /// `events-feedback`: upload feedback when configured, then forward to confirmation.
    pub async fn feedback_message(&self, event: &CloudEvent) -> Result<StepReport, StepError> {
        let context = describe(event);
        let line = match self.feedback(event).await? {
            FeedbackOutcome::NotConfigured => {
                format!("feedback is off; passing on to confirmation ({context})")
            }
            FeedbackOutcome::NotForThisEvent => {
                format!("no feedback for this event type; passing on to confirmation ({context})")
            }
            FeedbackOutcome::AlreadyGiven { instance } => format!(
                "instance {instance} already has its feedback element; passing on to confirmation ({context})"
            ),
            FeedbackOutcome::Uploaded { instance, bytes } => {
                tracing::info!(event_id = event.id(), instance = %instance, bytes, "feedback uploaded");
                format!("uploaded feedback ({bytes} bytes) to instance {instance} ({context})")
            }
        };
        Ok(StepReport {
            line,
            forward: Some(event.clone()),
        })
    }
}
