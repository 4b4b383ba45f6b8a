//! The Events part of [`SimulatorHandle`]: publish events, manage and inspect
//! subscriptions, tune and observe push delivery. Kept apart from `mod.rs`
//! so the Storage-facing handle API and this one can evolve independently.

use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

use super::SimulatorHandle;
use super::push::Delivery;
use super::spec::{CreatedInstance, InstanceSpec};

impl SimulatorHandle {
    /// Pushes `event` (as given, id included) to every validated
    /// subscription it matches, one independent delivery each, and returns
    /// how many deliveries were queued. Returns at once; see
    /// [`wait_for_deliveries_idle`](Self::wait_for_deliveries_idle). An event
    /// without string `id`, `type` and `source` is not published (0).
    pub fn publish(&self, event: Value) -> usize {
        self.state().events.publish(&event)
    }

    /// What an app does when an instance's process ends: creates the
    /// instance (as [`add_instance`](Self::add_instance)) and publishes its
    /// `app.instance.process.completed` event. The spec is used as given, so
    /// `process_ended: false` yields an event that Storage contradicts (for
    /// testing the receiver's checks).
    pub fn complete_instance(&self, spec: InstanceSpec) -> CreatedInstance {
        let created = self.add_instance(spec);
        self.publish(self.completed_event(&created));
        created
    }

    /// Creates (or finds, if identical) an app subscription through the same
    /// validation as `POST /events/api/v1/subscriptions`, queues its
    /// validation push, and returns its id. `source_filter` must be
    /// `{base_url}{org}/{app}`.
    pub fn add_subscription(
        &self,
        endpoint: &str,
        source_filter: &str,
        type_filter: Option<&str>,
    ) -> anyhow::Result<u64> {
        let body = json!({
            "endPoint": endpoint,
            "sourceFilter": source_filter,
            "typeFilter": type_filter,
        });
        self.state()
            .events
            .subscribe(&body)
            .map(|sub| sub.id)
            .map_err(|problem| anyhow!("subscription rejected: {}", problem.summary()))
    }

    /// Every subscription as the subscription API renders it, by id.
    pub fn subscriptions(&self) -> Vec<Value> {
        self.state()
            .events
            .list()
            .iter()
            .map(|s| s.to_json())
            .collect()
    }

    /// Every finished push attempt (validation pushes included), in order
    /// of completion.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().events.pusher().deliveries()
    }

    /// `(subscription_id, event_id)` of every delivery that used up its
    /// attempts (validation pushes included), in order.
    pub fn dead_letters(&self) -> Vec<(u64, String)> {
        self.state().events.pusher().dead_letters()
    }

    /// Sets the delays between attempts: a delivery makes at most
    /// `schedule.len() + 1` attempts, then is dead-lettered (at most 64
    /// delays are used). Applies to deliveries queued afterwards. The
    /// default is 100 ms, 500 ms, 1 s, 2 s, 5 s; Altinn's real one is
    /// [`altinn_retry_schedule`](super::altinn_retry_schedule).
    pub fn set_push_retry_schedule(&self, schedule: Vec<Duration>) {
        self.state().events.pusher().set_schedule(schedule)
    }

    /// Sets the per-attempt timeout (default 10 s; Altinn allows 45 s).
    /// Applies to deliveries queued afterwards.
    pub fn set_push_timeout(&self, timeout: Duration) {
        self.state().events.pusher().set_timeout(timeout)
    }

    /// Waits until no delivery is pending or in flight (everything queued
    /// so far was delivered, dead-lettered or cancelled). Returns `false` if
    /// `timeout` passed first. Queuing happens synchronously in `publish`,
    /// `add_subscription` and the HTTP handlers, so calling this right after
    /// them is race-free.
    pub async fn wait_for_deliveries_idle(&self, timeout: Duration) -> bool {
        self.state().events.pusher().wait_idle(timeout).await
    }
}
