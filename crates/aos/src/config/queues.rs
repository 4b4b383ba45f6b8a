//! The storage queues: their names and the connection that reaches them.

use super::error::{InvalidSettings, Problems, SettingsError};
use super::source::{SettingSource, base_url, queue_storage};
use crate::domain::{BaseUrl, Secret};

/// Queue names (and the connection used by the standalone runtime and tools).
#[derive(Clone)]
pub struct QueueSettings {
    pub connection: Option<QueueConnection>,
    /// The blob service of the same connection when it is identity-based
    /// (`QueueStorageSettings__ConnectionString__blobServiceUri`, or `__accountName`): the
    /// account the blob-triggered subscription functions watch. A connection string names
    /// its blob endpoint itself.
    pub blob_service_uri: Option<BaseUrl>,
    pub inbound: String,
    pub feedback: String,
    pub confirmation: String,
    /// `ArchivedQueueName`: the downstream hand-off queue that receives one message per
    /// confirmed instance with its manifest (`crate::pipeline::handoff`); `None` = off.
    pub archived: Option<String>,
}

impl std::fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSettings")
            .field("connection", &self.connection)
            .field(
                "blob_service_uri",
                &self.blob_service_uri.as_ref().map(ToString::to_string),
            )
            .field("inbound", &self.inbound)
            .field("feedback", &self.feedback)
            .field("confirmation", &self.confirmation)
            .field("archived", &self.archived)
            .finish()
    }
}

impl QueueSettings {
    /// The connection, then `InboundQueueName`, `FeedbackQueueName`, `ConfirmationQueueName`,
    /// `ArchivedQueueName`; every problem among them, not only the first. The hand-off queue
    /// needs the connection: this product sends to it itself (under Functions too).
    pub(super) fn from_source(src: &SettingSource) -> Result<Self, InvalidSettings> {
        let queue =
            |key: &str, default: &str| src.storage_name(&queue_storage(key), default, "queue");
        let mut problems = Problems::default();
        let connection = problems.check(queue_connection(src));
        let blob_service_uri = problems.check(connection_blob_service_uri(src));
        let inbound = problems.check(queue("InboundQueueName", "events-inbound"));
        let feedback = problems.check(queue("FeedbackQueueName", "events-feedback"));
        let confirmation = problems.check(queue("ConfirmationQueueName", "events-confirmation"));
        let archived = problems.check(archived_queue(src, connection.as_ref()));
        let (
            Some(connection),
            Some(blob_service_uri),
            Some(inbound),
            Some(feedback),
            Some(confirmation),
            Some(archived),
        ) = (
            connection,
            blob_service_uri,
            inbound,
            feedback,
            confirmation,
            archived,
        )
        else {
            return Err(problems.into_error());
        };
        Ok(QueueSettings {
            connection,
            blob_service_uri,
            inbound,
            feedback,
            confirmation,
            archived,
        })
    }
}

/// `ArchivedQueueName`, when set (empty = off): a checked queue name, on the queue connection.
fn archived_queue(
    src: &SettingSource,
    connection: Option<&Option<QueueConnection>>,
) -> Result<Option<String>, SettingsError> {
    let name = queue_storage("ArchivedQueueName");
    if src.get(&name).is_none_or(|v| v.trim().is_empty()) {
        return Ok(None);
    }
    if connection.is_some_and(Option::is_none) {
        return Err(SettingsError::new(
            &name,
            "needs QueueStorageSettings__ConnectionString (the hand-off queue is on that account)",
        ));
    }
    src.storage_name(&name, "", "queue").map(Some)
}

/// How the queue account is reached: the two shapes the Functions host accepts for the
/// binding connection `QueueStorageSettings:ConnectionString`, so one set of app settings
/// serves the host, `aos run` and `aos poison`.
#[derive(Clone, PartialEq, Eq)]
pub enum QueueConnection {
    /// `QueueStorageSettings__ConnectionString`: a storage connection string (may hold a key).
    ConnectionString(Secret),
    /// Identity-based: `QueueStorageSettings__ConnectionString__queueServiceUri` (or
    /// `__accountName`), with `__credential=managedidentity` and, for a user-assigned identity,
    /// `__clientId`. No secret is involved. `managed_identity` records an explicit
    /// `__credential=managedidentity` (managed identity even where nothing else says so, as on a
    /// VM with IMDS only).
    Identity {
        service_uri: BaseUrl,
        client_id: Option<String>,
        managed_identity: bool,
    },
}

impl std::fmt::Debug for QueueConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueueConnection::ConnectionString(_) => f.write_str("ConnectionString(<redacted>)"),
            QueueConnection::Identity {
                service_uri,
                client_id,
                managed_identity,
            } => f
                .debug_struct("Identity")
                .field("service_uri", &service_uri.to_string())
                .field("client_id", client_id)
                .field("managed_identity", managed_identity)
                .finish(),
        }
    }
}

/// The queue connection from the settings; a plain connection string wins (as in the host,
/// where a setting with the exact connection name is a connection string).
fn queue_connection(src: &SettingSource) -> Result<Option<QueueConnection>, SettingsError> {
    let base = queue_storage("ConnectionString");
    if let Some(text) = src.secret(&base) {
        return Ok(Some(QueueConnection::ConnectionString(text)));
    }
    let uri_name = format!("{base}__queueServiceUri");
    let account_name = format!("{base}__accountName");
    let service_uri = match (src.url(&uri_name)?, src.get(&account_name)) {
        (Some(uri), _) => uri,
        (None, Some(account)) => {
            let valid = (3..=24).contains(&account.len())
                && account
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !valid {
                return Err(SettingsError::new(
                    &account_name,
                    format!("`{account}` is not a storage account name"),
                ));
            }
            base_url(
                &account_name,
                &format!("https://{account}.queue.core.windows.net/"),
            )?
        }
        (None, None) => return Ok(None),
    };
    // The host knows one credential kind for these connections; refuse anything else rather
    // than silently using a different identity than the host does.
    let credential_name = format!("{base}__credential");
    let credential = src.get(&credential_name);
    if let Some(kind) = &credential
        && !kind.eq_ignore_ascii_case("managedidentity")
    {
        return Err(SettingsError::new(
            &credential_name,
            format!("`{kind}` is not supported (only `managedidentity`)"),
        ));
    }
    Ok(Some(QueueConnection::Identity {
        service_uri,
        client_id: src.get(&format!("{base}__clientId")),
        managed_identity: credential.is_some(),
    }))
}

/// The blob service of an identity-based `QueueStorageSettings:ConnectionString`: the
/// host's blob trigger reads `__blobServiceUri` (or derives it from `__accountName`), so the
/// handler uses the same account for the subscription containers.
fn connection_blob_service_uri(src: &SettingSource) -> Result<Option<BaseUrl>, SettingsError> {
    let base = queue_storage("ConnectionString");
    let uri_name = format!("{base}__blobServiceUri");
    if let Some(uri) = src.url(&uri_name)? {
        return Ok(Some(uri));
    }
    let account_name = format!("{base}__accountName");
    match src.get(&account_name) {
        // Validated by `queue_connection` (a second problem about it would be dropped).
        Some(account) => base_url(
            &account_name,
            &format!("https://{account}.blob.core.windows.net/"),
        )
        .map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Settings, minimal};
    use super::*;

    #[test]
    fn bad_queue_name_is_refused() {
        let mut pairs = minimal();
        pairs.push(("QueueStorageSettings__InboundQueueName", "Bad_Name"));
        let err = Settings::from_source(&SettingSource::from_pairs(pairs)).unwrap_err();
        assert_eq!(err.names(), ["QueueStorageSettings__InboundQueueName"]);
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<Settings, InvalidSettings> {
        let mut pairs = minimal();
        pairs.extend_from_slice(extra);
        Settings::from_source(&SettingSource::from_pairs(pairs))
    }

    #[test]
    fn queue_connection_string_is_used_as_given() {
        let s = with(&[(
            "QueueStorageSettings__ConnectionString",
            "UseDevelopmentStorage=true",
        )])
        .unwrap();
        assert_eq!(
            s.queues.connection,
            Some(QueueConnection::ConnectionString(Secret::new(
                "UseDevelopmentStorage=true"
            )))
        );
        assert!(!format!("{s:?}").contains("UseDevelopmentStorage"));
        assert_eq!(with(&[]).unwrap().queues.connection, None);
    }

    #[test]
    fn identity_based_queue_connection() {
        // The app settings infra/main.bicep writes (user-assigned identity).
        let s = with(&[
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
            (
                "QueueStorageSettings__ConnectionString__credential",
                "managedidentity",
            ),
            (
                "QueueStorageSettings__ConnectionString__clientId",
                "11111111-2222-3333-4444-555555555555",
            ),
        ])
        .unwrap();
        let Some(QueueConnection::Identity {
            service_uri,
            client_id,
            managed_identity,
        }) = &s.queues.connection
        else {
            panic!("identity connection expected: {:?}", s.queues.connection)
        };
        assert_eq!(
            service_uri.to_string(),
            "https://aosacct.queue.core.windows.net/"
        );
        assert_eq!(
            client_id.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert!(managed_identity);

        // `:` separators and the account-name shape; system-assigned when no client id.
        let s = with(&[(
            "QueueStorageSettings:ConnectionString:accountName",
            "aosacct",
        )])
        .unwrap();
        assert_eq!(
            s.queues.connection,
            Some(QueueConnection::Identity {
                service_uri: BaseUrl::parse("https://aosacct.queue.core.windows.net/").unwrap(),
                client_id: None,
                managed_identity: false,
            })
        );
    }

    #[test]
    fn connection_string_wins_over_identity_settings() {
        let s = with(&[
            (
                "QueueStorageSettings__ConnectionString",
                "UseDevelopmentStorage=true",
            ),
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
        ])
        .unwrap();
        assert!(matches!(
            s.queues.connection,
            Some(QueueConnection::ConnectionString(_))
        ));
    }

    #[test]
    fn bad_identity_queue_settings_are_named() {
        let err = with(&[(
            "QueueStorageSettings__ConnectionString__queueServiceUri",
            "http://aosacct.queue.core.windows.net",
        )])
        .unwrap_err();
        assert_eq!(
            err.names(),
            ["QueueStorageSettings__ConnectionString__queueServiceUri"]
        );
        let err = with(&[(
            "QueueStorageSettings__ConnectionString__accountName",
            "Not_An_Account",
        )])
        .unwrap_err();
        assert_eq!(
            err.names(),
            ["QueueStorageSettings__ConnectionString__accountName"]
        );
        let err = with(&[
            (
                "QueueStorageSettings__ConnectionString__queueServiceUri",
                "https://aosacct.queue.core.windows.net",
            ),
            (
                "QueueStorageSettings__ConnectionString__credential",
                "secret",
            ),
        ])
        .unwrap_err();
        assert_eq!(
            err.names(),
            ["QueueStorageSettings__ConnectionString__credential"]
        );
    }
}
