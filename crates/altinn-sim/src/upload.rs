//! Data element upload, as the feedback step uses it:
//! `POST storage/api/v1/instances/{partyId}/{guid}/data?dataType=…` with the bytes as the body.
//! The element is added to the instance's data list (served like every other element, its
//! content generated from a seed of the uploaded size) and the upload is recorded with its
//! bytes for tests ([`SimulatorHandle::uploads`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use uuid::Uuid;

use super::SimulatorHandle;
use super::spec::CreatedElement;
use super::state::{SimState, lock};

/// One accepted upload.
#[derive(Clone, Debug)]
pub struct DataUpload {
    /// `"{partyId}/{instanceGuid}"`.
    pub instance_id: String,
    pub data_id: Uuid,
    pub data_type: String,
    pub content_type: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct Uploads(Mutex<Vec<DataUpload>>);

impl SimulatorHandle {
    /// Every accepted data element upload, in arrival order.
    pub fn uploads(&self) -> Vec<DataUpload> {
        lock(&self.state().uploads.0).clone()
    }
}

pub(crate) async fn storage_upload(
    State(state): State<Arc<SimState>>,
    Path((party, guid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (Ok(party), Ok(guid)) = (party.parse::<u64>(), Uuid::try_parse(&guid)) else {
        return (StatusCode::BAD_REQUEST, "invalid instance id").into_response();
    };
    let Some(data_type) = query.get("dataType").filter(|t| !t.is_empty()).cloned() else {
        return (StatusCode::BAD_REQUEST, "dataType is required").into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let data_id = Uuid::new_v4();
    let element = CreatedElement {
        id: data_id,
        size: body.len() as u64,
        content_type: content_type.clone(),
        data_type: data_type.clone(),
        filename: None,
        seed: data_id.as_u128() as u64,
    };
    let Some(instance_id) = state.add_element(party, guid, element) else {
        return (StatusCode::NOT_FOUND, "instance not found").into_response();
    };
    lock(&state.uploads.0).push(DataUpload {
        instance_id,
        data_id,
        data_type: data_type.clone(),
        content_type: content_type.clone(),
        body: body.to_vec(),
    });
    (
        StatusCode::CREATED,
        Json(json!({
            "id": data_id,
            "instanceGuid": guid,
            "dataType": data_type,
            "contentType": content_type,
            "size": body.len(),
        })),
    )
        .into_response()
}
