//! Shared simulator state: the instances, and everything recorded about the
//! traffic (calls, confirmations, guard violations) that tests assert on.
//!
//! All locks are `std::sync::Mutex` held only for short, non-async sections,
//! because `SimulatorHandle`'s methods are synchronous and are called from
//! test code running on the same runtime as the server.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use futures::future::BoxFuture;
use time::OffsetDateTime;
use url::Url;
use uuid::Uuid;

use super::altinn_token::AltinnTokens;
use super::content::seed_for;
use super::events::Events;
use super::faults::FaultTable;
use super::maskinporten::MaskinportenState;
use super::spec::{CreatedElement, CreatedInstance, InstanceSpec};

/// One HTTP request as the simulator saw it, recorded after its handler
/// answered (for streamed bodies: when the headers were produced).
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub method: String,
    /// Request path without query string.
    pub path: String,
    /// Whether the request carried credentials its endpoint accepts: the
    /// configured bearer token or a live Altinn JWT from the exchange, or for
    /// the exchange a live Maskinporten token issued here.
    /// Computed for every request, also for endpoints that need none.
    pub authorized: bool,
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

/// A successful complete call (repeated calls for the same instance are each
/// recorded, even though Altinn stores the confirmation only once).
#[derive(Clone, Debug)]
pub struct Confirmation {
    /// `"{partyId}/{instanceGuid}"`.
    pub instance_id: String,
    pub at: Instant,
}

/// Runs on every complete call for a known instance, before the confirmation
/// is stored. Tests use it to assert invariants at the moment of confirmation
/// (e.g. "the archive blob is already committed"); an `Err` is recorded in
/// `guard_violations()` but does not change the answer.
pub type ConfirmGuard =
    Arc<dyn Fn(CreatedInstance) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A stored instance: the identity handed to the test plus the mutable parts
/// of the Altinn model.
#[derive(Clone)]
pub(crate) struct StoredInstance {
    pub created: CreatedInstance,
    pub process_ended: bool,
    pub created_at: OffsetDateTime,
    pub last_changed: OffsetDateTime,
    /// When the process ended (the creation time for an instance created ended; the time of
    /// [`SimState::end_process`] otherwise). Meaningful only when `process_ended`.
    pub ended_at: OffsetDateTime,
    /// `lastChanged` of elements whose content was replaced ([`SimState::replace_content`]);
    /// the others report the instance's creation time.
    pub element_changed: HashMap<Uuid, OffsetDateTime>,
    /// `(stakeholderId, confirmedOn)`, at most one per stakeholder.
    pub complete_confirmations: Vec<(String, OffsetDateTime)>,
    /// Fields of the served JSON replaced by tests (`(JSON pointer, value)`), to simulate
    /// anomalous metadata.
    pub overrides: Vec<(String, serde_json::Value)>,
}

pub(crate) struct SimState {
    pub token: String,
    pub maskinporten: MaskinportenState,
    pub altinn_tokens: AltinnTokens,
    /// `http://host:port/`, always with a trailing slash.
    pub base: Url,
    pub faults: FaultTable,
    pub events: Events,
    /// The instance query's fault hook (`query.rs`).
    pub query: super::query::QueryState,
    instances: Mutex<HashMap<Uuid, StoredInstance>>,
    calls: Mutex<Vec<RecordedCall>>,
    confirmations: Mutex<Vec<Confirmation>>,
    guard: Mutex<Option<ConfirmGuard>>,
    violations: Mutex<Vec<String>>,
    /// Data element uploads (`upload.rs`).
    pub(crate) uploads: super::upload::Uploads,
}

/// Adds `stakeholder`'s complete confirmation unless it already has one (Altinn's idempotent
/// behaviour); a new one also changes the instance's `lastChanged`.
fn add_confirmation(inst: &mut StoredInstance, stakeholder: &str) {
    if !inst
        .complete_confirmations
        .iter()
        .any(|(who, _)| who == stakeholder)
    {
        let at = now();
        inst.complete_confirmations
            .push((stakeholder.to_owned(), at));
        inst.last_changed = at;
    }
}

/// Locks ignoring poisoning: a panicking test thread must not turn every later
/// request into a panic too.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Current UTC time at .NET precision (100 ns), so timestamps look like the
/// 7-fractional-digit ones Altinn emits.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    let ns = t.nanosecond() / 100 * 100;
    t.replace_nanosecond(ns).unwrap_or(t)
}

impl SimState {
    pub(crate) fn new(token: String, base: Url) -> Self {
        Self {
            token,
            // Before `base`, which moves: the events need the base URL too.
            events: Events::new(base.clone()),
            maskinporten: MaskinportenState::default(),
            altinn_tokens: AltinnTokens::default(),
            base,
            faults: FaultTable::default(),
            query: Default::default(),
            instances: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            confirmations: Mutex::new(Vec::new()),
            guard: Mutex::new(None),
            violations: Mutex::new(Vec::new()),
            uploads: Default::default(),
        }
    }

    /// Adds an uploaded element to an instance; its instance id, or `None` if unknown.
    pub(crate) fn add_element(
        &self,
        party_id: u64,
        guid: Uuid,
        element: CreatedElement,
    ) -> Option<String> {
        let mut instances = lock(&self.instances);
        let inst = instances
            .get_mut(&guid)
            .filter(|i| i.created.party_id == party_id)?;
        inst.created.elements.push(element);
        inst.last_changed = now();
        Some(inst.created.instance_id())
    }

    /// Creates an instance with fresh random ids. Element seeds derive from
    /// the element ids so content is reproducible from the instance JSON.
    pub(crate) fn add_instance(&self, spec: InstanceSpec) -> CreatedInstance {
        let elements = spec
            .elements
            .into_iter()
            .map(|e| {
                let id = Uuid::new_v4();
                CreatedElement {
                    id,
                    size: e.size,
                    content_type: e.content_type,
                    data_type: e.data_type,
                    filename: e.filename,
                    seed: seed_for(id),
                }
            })
            .collect();
        let created = CreatedInstance {
            org: spec.org,
            app: spec.app,
            party_id: spec.party_id,
            instance_guid: Uuid::new_v4(),
            elements,
        };
        let at = now();
        let stored = StoredInstance {
            created: created.clone(),
            process_ended: spec.process_ended,
            created_at: at,
            last_changed: at,
            ended_at: at,
            element_changed: HashMap::new(),
            complete_confirmations: Vec::new(),
            overrides: Vec::new(),
        };
        lock(&self.instances).insert(created.instance_guid, stored);
        created
    }

    /// Makes the served instance JSON carry `value` at `pointer` (e.g. `/data/0/blobStoragePath`).
    pub(crate) fn tamper(&self, guid: Uuid, pointer: &str, value: serde_json::Value) -> bool {
        match lock(&self.instances).get_mut(&guid) {
            Some(inst) => {
                inst.overrides.push((pointer.to_string(), value));
                true
            }
            None => false,
        }
    }

    /// Gives element `element` of instance `guid` new content of the same length (a new seed)
    /// and a new `lastChanged`, as when a user replaces a file or the app regenerates a PDF.
    /// Returns the element as it is now, or `None` for an unknown instance or element.
    pub(crate) fn replace_content(&self, guid: Uuid, element: Uuid) -> Option<CreatedElement> {
        let mut instances = lock(&self.instances);
        let inst = instances.get_mut(&guid)?;
        let at = now();
        let stored = inst.created.elements.iter_mut().find(|e| e.id == element)?;
        stored.seed = stored
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let updated = stored.clone();
        inst.element_changed.insert(element, at);
        inst.last_changed = at;
        Some(updated)
    }

    /// Ends the process of instance `guid` now (`process.ended` = now). False when unknown.
    pub(crate) fn end_process(&self, guid: Uuid) -> bool {
        let mut instances = lock(&self.instances);
        let Some(inst) = instances.get_mut(&guid) else {
            return false;
        };
        let at = now();
        inst.process_ended = true;
        inst.ended_at = at;
        inst.last_changed = at;
        true
    }

    /// Records `stakeholder`'s complete confirmation without a complete call (as if another
    /// system confirmed it earlier, e.g. the system this one replaces). False when unknown.
    pub(crate) fn mark_confirmed(&self, guid: Uuid, stakeholder: &str) -> bool {
        let mut instances = lock(&self.instances);
        let Some(inst) = instances.get_mut(&guid) else {
            return false;
        };
        add_confirmation(inst, stakeholder);
        true
    }

    /// Every instance, in no particular order (the instance query filters and sorts).
    pub(crate) fn all_instances(&self) -> Vec<StoredInstance> {
        lock(&self.instances).values().cloned().collect()
    }

    /// Looks up an instance by owner party and guid; a guid under another
    /// party is "not found", as in Storage.
    pub(crate) fn instance(&self, party_id: u64, guid: Uuid) -> Option<StoredInstance> {
        lock(&self.instances)
            .get(&guid)
            .filter(|i| i.created.party_id == party_id)
            .cloned()
    }

    /// Adds `stakeholder`'s complete confirmation unless it already exists
    /// (Altinn's idempotent behaviour), records the call, and returns the
    /// instance as it is afterwards. `None` if the instance is unknown.
    pub(crate) fn confirm(
        &self,
        party_id: u64,
        guid: Uuid,
        stakeholder: &str,
    ) -> Option<StoredInstance> {
        let updated = {
            let mut instances = lock(&self.instances);
            let inst = instances
                .get_mut(&guid)
                .filter(|i| i.created.party_id == party_id)?;
            add_confirmation(inst, stakeholder);
            inst.clone()
        };
        lock(&self.confirmations).push(Confirmation {
            instance_id: updated.created.instance_id(),
            at: Instant::now(),
        });
        Some(updated)
    }

    pub(crate) fn record_call(&self, call: RecordedCall) {
        lock(&self.calls).push(call);
    }

    pub(crate) fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.calls).clone()
    }

    pub(crate) fn confirmations(&self) -> Vec<Confirmation> {
        lock(&self.confirmations).clone()
    }

    pub(crate) fn set_guard(&self, guard: ConfirmGuard) {
        *lock(&self.guard) = Some(guard);
    }

    pub(crate) fn guard(&self) -> Option<ConfirmGuard> {
        lock(&self.guard).clone()
    }

    pub(crate) fn add_violation(&self, msg: String) {
        lock(&self.violations).push(msg);
    }

    pub(crate) fn violations(&self) -> Vec<String> {
        lock(&self.violations).clone()
    }
}
