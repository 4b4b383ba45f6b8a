//! What a test asks the simulator to create (`InstanceSpec`) and what it gets
//! back (`CreatedInstance`).
//!
//! The specs are also the JSON body of the control API (`POST /_sim/instances`),
//! so they derive `Deserialize` with defaults that make a dev CLI call short.
//! Field names are accepted both in Rust's snake_case and in Altinn's camelCase.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An instance to create. `process_ended` decides whether the instance looks
/// like one that emitted `app.instance.process.completed` (the only kind the
/// archiver should archive and confirm).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub org: String,
    pub app: String,
    #[serde(alias = "partyId")]
    pub party_id: u64,
    #[serde(default)]
    pub elements: Vec<ElementSpec>,
    #[serde(default = "default_true", alias = "processEnded")]
    pub process_ended: bool,
}

/// One data element of an instance. The content is generated, not stored, so
/// only its size is given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ElementSpec {
    #[serde(default = "default_data_type", alias = "dataType")]
    pub data_type: String,
    #[serde(default = "default_content_type", alias = "contentType")]
    pub content_type: String,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub size: u64,
}

impl Default for ElementSpec {
    /// Same defaults as the control API applies to missing JSON fields.
    fn default() -> Self {
        Self {
            data_type: default_data_type(),
            content_type: default_content_type(),
            filename: None,
            size: 0,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_data_type() -> String {
    "attachment".to_owned()
}

fn default_content_type() -> String {
    "application/octet-stream".to_owned()
}

/// An instance as created by the simulator: the ids a test needs to drive and
/// check the archiver, plus each element's content seed.
#[derive(Clone, Debug)]
pub struct CreatedInstance {
    pub org: String,
    pub app: String,
    pub party_id: u64,
    pub instance_guid: Uuid,
    pub elements: Vec<CreatedElement>,
}

impl CreatedInstance {
    /// Altinn's instance id, `"{partyId}/{instanceGuid}"`.
    pub fn instance_id(&self) -> String {
        format!("{}/{}", self.party_id, self.instance_guid)
    }
}

/// A created data element. `seed` feeds `fill_content` / `content_sha256`, so a
/// test can compute the expected bytes or digest without downloading.
#[derive(Clone, Debug)]
pub struct CreatedElement {
    pub id: Uuid,
    pub size: u64,
    pub content_type: String,
    pub data_type: String,
    pub filename: Option<String>,
    pub seed: u64,
}

impl CreatedElement {
    /// SHA-256 of this element's content (streamed; cheap on memory).
    pub fn sha256(&self) -> [u8; 32] {
        super::content_sha256(self.seed, self.size)
    }
}
