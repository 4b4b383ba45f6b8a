//! The simulator's Altinn Events: the subscription registry, the validation
//! push after every subscription POST (spec §2.4), and publishing events to
//! every matching subscription (spec §2.5, §2.6). HTTP lives in
//! `events_routes`, delivery in `push`, request rules in `subscription`.
//!
//! Deviations from Altinn, chosen for deterministic tests:
//! - no subscription cache: a new or deleted subscription takes effect at
//!   once (Altinn may lag up to an hour);
//! - deleting a subscription also cancels its pending retries (Altinn's
//!   queued messages carry the endpoint and keep retrying);
//! - no authorization step at push time (the simulator has one identity).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

use super::events_feed::Feed;
use super::push::{Job, Pusher};
use super::state::{lock, now};
use super::subscription::{EventKeys, Problem, Subscription, validate};

const VALIDATE_TYPE: &str = "platform.events.validatesubscription";

/// The stored subscriptions. Shared (`Arc`) with the delivery tasks, which
/// check existence before each attempt and set the validated flag.
#[derive(Default)]
struct Registry {
    inner: Mutex<Subscriptions>,
}

#[derive(Default)]
struct Subscriptions {
    /// Ids start at 1 and are never reused.
    last_id: u64,
    by_id: BTreeMap<u64, Subscription>,
}

impl Registry {
    fn exists(&self, id: u64) -> bool {
        lock(&self.inner).by_id.contains_key(&id)
    }

    fn set_validated(&self, id: u64) {
        if let Some(sub) = lock(&self.inner).by_id.get_mut(&id) {
            sub.validated = true;
        }
    }
}

pub(crate) struct Events {
    /// `{base}events/api/v1/subscriptions/{id}` is the validation event source.
    base: Url,
    registry: Arc<Registry>,
    pusher: Pusher,
    /// Every published event, for the pull API (`events_feed`).
    feed: Feed,
}

impl Events {
    /// Call on the simulator's runtime (see [`Pusher::new`]).
    pub(crate) fn new(base: Url) -> Self {
        Self {
            base,
            registry: Arc::default(),
            pusher: Pusher::new(),
            feed: Feed::default(),
        }
    }

    pub(crate) fn pusher(&self) -> &Pusher {
        &self.pusher
    }

    pub(crate) fn feed(&self) -> &Feed {
        &self.feed
    }

    /// `POST /subscriptions`: validates, returns the existing subscription if
    /// an identical one exists (Altinn's idempotency), else creates one; in
    /// both cases queues a fresh validation push.
    pub(crate) fn subscribe(&self, body: &Value) -> Result<Subscription, Problem> {
        let spec = validate(&self.base, body)?;
        let sub = {
            let mut subs = lock(&self.registry.inner);
            match subs.by_id.values().find(|s| s.spec == spec) {
                Some(existing) => existing.clone(),
                None => {
                    subs.last_id += 1;
                    let sub = Subscription {
                        id: subs.last_id,
                        spec,
                        created: now(),
                        validated: false,
                    };
                    subs.by_id.insert(sub.id, sub.clone());
                    sub
                }
            }
        };
        self.queue_validation(&sub);
        Ok(sub)
    }

    /// The validation event of spec §2.4; a 2xx answer validates.
    fn queue_validation(&self, sub: &Subscription) {
        let event_id = Uuid::new_v4().to_string();
        let event = json!({
            "id": event_id,
            "source": format!("{}events/api/v1/subscriptions/{}", self.base, sub.id),
            "type": VALIDATE_TYPE,
            "specversion": "1.0",
        });
        let registry = self.registry.clone();
        let id = sub.id;
        self.queue(
            sub,
            &event,
            event_id,
            VALIDATE_TYPE.to_owned(),
            Some(Box::new(move || registry.set_validated(id))),
        );
    }

    pub(crate) fn get(&self, id: u64) -> Option<Subscription> {
        lock(&self.registry.inner).by_id.get(&id).cloned()
    }

    /// All subscriptions, by id (the simulator has a single identity, so
    /// "the caller's subscriptions" are all of them).
    pub(crate) fn list(&self) -> Vec<Subscription> {
        lock(&self.registry.inner).by_id.values().cloned().collect()
    }

    /// `false` if there was no such subscription.
    pub(crate) fn delete(&self, id: u64) -> bool {
        lock(&self.registry.inner).by_id.remove(&id).is_some()
    }

    /// Registers `event` in the pull feed, then queues it for every matching
    /// validated subscription and returns how many that is. Events without
    /// string `id`, `type` and `source` are not published (Altinn would
    /// refuse to register them).
    pub(crate) fn publish(&self, event: &Value) -> usize {
        if EventKeys::of(event).is_none() {
            tracing::warn!("simulator publish ignored: event lacks id, type or source");
            return 0;
        }
        // Registered first, whatever becomes of the pushes (spec §2.7: the feed
        // has every event, delivered or dead-lettered).
        let event = &self.feed.register(event);
        let Some(keys) = EventKeys::of(event) else {
            return 0;
        };
        let targets: Vec<Subscription> = lock(&self.registry.inner)
            .by_id
            .values()
            .filter(|s| s.matches(&keys))
            .cloned()
            .collect();
        for sub in &targets {
            self.queue(sub, event, keys.id.to_owned(), keys.kind.to_owned(), None);
        }
        targets.len()
    }

    fn queue(
        &self,
        sub: &Subscription,
        event: &Value,
        event_id: String,
        event_type: String,
        on_delivered: Option<Box<dyn FnOnce() + Send + Sync>>,
    ) {
        let registry = self.registry.clone();
        let id = sub.id;
        self.pusher.queue(Job {
            subscription_id: id,
            endpoint: sub.spec.end_point.clone(),
            // Serialising a Value cannot fail; an empty body is a harmless fallback.
            body: serde_json::to_vec(event)
                .map(Bytes::from)
                .unwrap_or_default(),
            event_id,
            event_type,
            wanted: Box::new(move || registry.exists(id)),
            on_delivered,
        });
    }
}
