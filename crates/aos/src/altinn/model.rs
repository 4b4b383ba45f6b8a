//! The parts of Altinn's Instance and DataElement JSON that this system reads.
//!
//! Storage (Newtonsoft, nulls omitted) and the app API (System.Text.Json, nulls written,
//! `readStatus` as a number) serialise differently, so every field is optional and unknown
//! fields are ignored. The archive stores the raw bytes Altinn returned, never a
//! re-serialisation of these structs.

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Instance {
    pub id: Option<String>,
    pub app_id: Option<String>,
    pub org: Option<String>,
    pub last_changed: Option<String>,
    pub self_links: Option<SelfLinks>,
    pub process: Option<ProcessState>,
    #[serde(deserialize_with = "null_as_default")]
    pub data: Vec<DataElement>,
    #[serde(deserialize_with = "null_as_default")]
    pub complete_confirmations: Vec<CompleteConfirmation>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CompleteConfirmation {
    pub stakeholder_id: Option<String>,
}

impl Instance {
    /// Whether `org` has already confirmed the instance complete.
    pub fn confirmed_by(&self, org: &str) -> bool {
        self.complete_confirmations
            .iter()
            .any(|c| c.stakeholder_id.as_deref() == Some(org))
    }

    /// Altinn's rule: the process is complete exactly when `process.ended` is set.
    pub fn process_ended(&self) -> bool {
        self.process_ended_at().is_some()
    }

    /// `process.ended` when set.
    pub fn process_ended_at(&self) -> Option<&str> {
        self.process
            .as_ref()
            .and_then(|p| p.ended.as_deref())
            .filter(|e| !e.is_empty())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessState {
    pub ended: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SelfLinks {
    pub apps: Option<String>,
    pub platform: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DataElement {
    pub id: Option<String>,
    pub instance_guid: Option<String>,
    pub data_type: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub blob_storage_path: Option<String>,
    pub self_links: Option<SelfLinks>,
    pub size: Option<i64>,
    /// Which version of the element this is: with `size` (and `contentHash` when present),
    /// what makes an archived copy current.
    pub last_changed: Option<String>,
    pub content_hash: Option<String>,
    pub file_scan_result: Option<String>,
    pub delete_status: Option<DeleteStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeleteStatus {
    pub is_hard_deleted: bool,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_fixtures::altinn as fixture;

    #[test]
    fn reads_storage_and_app_api_shapes() {
        let guide: Instance = serde_json::from_slice(&fixture(
            "instance-with-data-element.receivingdata-guide.json",
        ))
        .unwrap();
        assert_eq!(guide.data.len(), 1);
        assert_eq!(guide.data[0].size, Some(401));
        assert!(!guide.process_ended());
        let app: Instance =
            serde_json::from_slice(&fixture("instance-confirmed.app-api.tt02.json")).unwrap();
        assert!(app.id.is_some());
    }

    #[test]
    fn null_data_is_empty() {
        let i: Instance =
            serde_json::from_str(r#"{"data":null,"process":{"ended":"2024-01-01T00:00:00Z"}}"#)
                .unwrap();
        assert!(i.data.is_empty());
        assert!(i.process_ended());
    }
}
