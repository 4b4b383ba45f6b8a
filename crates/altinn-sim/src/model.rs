//! Rendering of instances and events as Altinn sends them.
//!
//! Instances are rendered in Storage style (spec §3.3): camelCase, null fields
//! omitted, `readStatus` as a string. The same rendering is served on the App
//! API path too; the archiver must tolerate both styles anyway, and one style
//! keeps the simulator's answers comparable across the two paths.

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::Url;
use uuid::Uuid;

use super::spec::CreatedInstance;
use super::state::{StoredInstance, now};

/// RFC 3339 with `Z` for UTC (time's formatter writes `Z` for a zero offset).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceJson {
    id: String,
    instance_owner: InstanceOwner,
    app_id: String,
    org: String,
    self_links: SelfLinks,
    process: Process,
    status: Status,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    complete_confirmations: Vec<CompleteConfirmation>,
    data: Vec<DataElementJson>,
    created: String,
    created_by: String,
    last_changed: String,
    last_changed_by: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstanceOwner {
    /// A string in Altinn's model, although it is numeric.
    party_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SelfLinks {
    #[serde(skip_serializing_if = "Option::is_none")]
    apps: Option<String>,
    platform: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    started: String,
    start_event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    current_task: Option<CurrentTask>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end_event: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CurrentTask {
    flow: u32,
    started: String,
    element_id: &'static str,
    name: &'static str,
    altinn_task_type: &'static str,
    flow_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    is_archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    archived: Option<String>,
    is_soft_deleted: bool,
    is_hard_deleted: bool,
    read_status: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompleteConfirmation {
    stakeholder_id: String,
    confirmed_on: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataElementJson {
    id: Uuid,
    instance_guid: Uuid,
    data_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    filename: Option<String>,
    content_type: String,
    blob_storage_path: String,
    self_links: DataSelfLinks,
    size: u64,
    locked: bool,
    is_read: bool,
    tags: Vec<String>,
    file_scan_result: &'static str,
    created: String,
    created_by: String,
    last_changed: String,
    last_changed_by: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataSelfLinks {
    platform: String,
}

/// `{base}storage/api/v1/instances/{partyId}/{guid}` (base ends with `/`).
pub(crate) fn platform_instance_url(base: &Url, party_id: u64, guid: Uuid) -> String {
    format!("{base}storage/api/v1/instances/{party_id}/{guid}")
}

/// `{base}{org}/{app}/instances/{partyId}/{guid}`: the app-host instance URL,
/// which is also the CloudEvent `source`.
pub(crate) fn app_instance_url(base: &Url, inst: &CreatedInstance) -> String {
    format!(
        "{base}{}/{}/instances/{}/{}",
        inst.org, inst.app, inst.party_id, inst.instance_guid
    )
}

/// The instance JSON as Storage would return it.
pub(crate) fn instance_json(base: &Url, stored: &StoredInstance) -> Value {
    let inst = &stored.created;
    let (p, g) = (inst.party_id, inst.instance_guid);
    let created = rfc3339(stored.created_at);
    let last_changed = rfc3339(stored.last_changed);
    // The process ends (and the instance is archived) right after creation:
    // the simulator models only the final state the archiver sees.
    let ended = stored.process_ended.then(|| rfc3339(stored.ended_at));
    let creator = p.to_string();
    let platform_instance = platform_instance_url(base, p, g);

    let data = inst
        .elements
        .iter()
        .map(|e| DataElementJson {
            id: e.id,
            instance_guid: g,
            data_type: e.data_type.clone(),
            filename: e.filename.clone(),
            content_type: e.content_type.clone(),
            blob_storage_path: format!("{}/{}/{g}/data/{}", inst.org, inst.app, e.id),
            self_links: DataSelfLinks {
                platform: format!("{platform_instance}/data/{}", e.id),
            },
            size: e.size,
            locked: true,
            is_read: true,
            tags: Vec::new(),
            file_scan_result: "NotApplicable",
            created: created.clone(),
            created_by: creator.clone(),
            last_changed: stored
                .element_changed
                .get(&e.id)
                .map_or_else(|| created.clone(), |at| rfc3339(*at)),
            last_changed_by: creator.clone(),
        })
        .collect();

    let json = InstanceJson {
        id: inst.instance_id(),
        instance_owner: InstanceOwner {
            party_id: p.to_string(),
        },
        app_id: format!("{}/{}", inst.org, inst.app),
        org: inst.org.clone(),
        self_links: SelfLinks {
            apps: Some(app_instance_url(base, inst)),
            platform: platform_instance,
        },
        process: Process {
            started: created.clone(),
            start_event: "StartEvent_1",
            current_task: (!stored.process_ended).then(|| CurrentTask {
                flow: 2,
                started: created.clone(),
                element_id: "Task_1",
                name: "Utfylling",
                altinn_task_type: "data",
                flow_type: "CompleteCurrentMoveToNext",
            }),
            ended: ended.clone(),
            end_event: stored.process_ended.then_some("EndEvent_1"),
        },
        status: Status {
            is_archived: stored.process_ended,
            archived: ended,
            is_soft_deleted: false,
            is_hard_deleted: false,
            read_status: "Read",
        },
        complete_confirmations: stored
            .complete_confirmations
            .iter()
            .map(|(who, at)| CompleteConfirmation {
                stakeholder_id: who.clone(),
                confirmed_on: rfc3339(*at),
            })
            .collect(),
        data,
        created,
        created_by: creator.clone(),
        last_changed,
        last_changed_by: creator,
    };
    // Serialising these plain structs cannot fail; Null is a harmless fallback.
    let mut value = serde_json::to_value(json).unwrap_or_default();
    for (pointer, replacement) in &stored.overrides {
        set_pointer(&mut value, pointer, replacement.clone());
    }
    value
}

/// Sets the value at a JSON pointer, creating the last key if its parent object exists.
fn set_pointer(root: &mut Value, pointer: &str, value: Value) {
    if let Some(slot) = root.pointer_mut(pointer) {
        *slot = value;
        return;
    }
    let Some((parent, key)) = pointer.rsplit_once('/') else {
        return;
    };
    if let Some(Value::Object(map)) = root.pointer_mut(parent) {
        map.insert(key.replace("~1", "/").replace("~0", "~"), value);
    }
}

/// The `app.instance.process.completed` CloudEvent Altinn Events would push
/// for `inst` (spec §2.2), with a fresh id each call, like a new event.
pub(crate) fn completed_event(base: &Url, inst: &CreatedInstance) -> Value {
    json!({
        "id": Uuid::new_v4().to_string(),
        "specversion": "1.0",
        "type": "app.instance.process.completed",
        "source": app_instance_url(base, inst),
        "subject": format!("/party/{}", inst.party_id),
        "time": rfc3339(now()),
        "resource": format!("urn:altinn:resource:app_{}_{}", inst.org, inst.app),
        "resourceinstance": inst.instance_id(),
    })
}
