//! Data element upload (feedback): `POST {platform}storage/api/v1/instances/{partyId}/{guid}/data?dataType=…`
//! with the bytes as the body and their `Content-Type` (`docs/specs/altinn.md` §3).

use std::time::Duration;

use reqwest::{Method, StatusCode};

use super::{AltinnClient, AltinnError, retry_after};
use crate::domain::InstanceRef;

impl AltinnClient {
    /// Uploads one data element of `data_type`. Not retried in place (a lost answer would make
    /// a second element); the caller checks the instance's data list before uploading, and the
    /// queue retries. A 401 refreshes the token once.
    pub async fn upload_data(
        &self,
        instance: &InstanceRef,
        data_type: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), AltinnError> {
        let what = format!("upload a `{data_type}` data element to {instance}");
        let mut url = self.platform.join(&format!(
            "storage/api/v1/instances/{}/data",
            instance.instance_id()
        ));
        url.query_pairs_mut().append_pair("dataType", data_type);
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let result = self
                .http
                .request(Method::POST, url.clone())
                .bearer_auth(token.secret())
                .timeout(Duration::from_secs(60))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone())
                .send()
                .await;
            return match result {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED && !refreshed => {
                    self.tokens.invalidate(&token);
                    refreshed = true;
                    continue;
                }
                Ok(response) => Err(AltinnError::Status {
                    what,
                    status: response.status().as_u16(),
                    retry_after: retry_after(&response),
                    detail: None,
                }),
                Err(source) => Err(AltinnError::Transport { what, source }),
            };
        }
    }
}
