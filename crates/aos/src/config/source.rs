//! Where setting values come from, and one typed getter per kind of value.
//!
//! Each name is looked up as given (`__`), then with `:` as the separator, first in the
//! environment and then in the `Values` of `local.settings.json` in the working directory. The
//! getters turn a value into its type or a [`SettingsError`] naming the setting, so the area
//! files never format an error about a malformed value themselves.

use std::collections::HashMap;
use std::path::Path;

use crate::domain::{BaseUrl, Secret};

/// The reference system's setting groups; a setting's full name is `{group}__{key}`. The one
/// place the prefixes are written.
const AOS: &str = "AltinnApplicationOwnerSystemSettings__";
const QUEUES: &str = "QueueStorageSettings__";
const KEY_VAULT: &str = "KeyVault__";

/// `AltinnApplicationOwnerSystemSettings__{key}`: most settings.
pub fn aos(key: &str) -> String {
    format!("{AOS}{key}")
}

/// `QueueStorageSettings__{key}`: queue names and the queue connection.
pub fn queue_storage(key: &str) -> String {
    format!("{QUEUES}{key}")
}

/// `KeyVault__{key}`: where the Maskinporten certificate is kept.
pub fn key_vault(key: &str) -> String {
    format!("{KEY_VAULT}{key}")
}

/// A setting that is missing or malformed; the message names the setting.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {problem}")]
pub struct SettingsError {
    pub name: String,
    pub problem: String,
}

impl SettingsError {
    pub fn new(name: &str, problem: impl Into<String>) -> Self {
        SettingsError {
            name: name.to_string(),
            problem: problem.into(),
        }
    }
}

/// `value` as a [`BaseUrl`], or an error naming `name`: for URLs that are derived from a
/// setting rather than read from one (an account name, a connection string's endpoint).
pub fn base_url(name: &str, value: &str) -> Result<BaseUrl, SettingsError> {
    BaseUrl::parse(value).map_err(|problem| SettingsError::new(name, problem))
}

/// An RFC 3339 time (`2024-05-01T00:00:00Z`) or a date (`2024-05-01`, midnight UTC).
pub fn parse_time(value: &str) -> Option<time::OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let value = value.trim();
    if let Ok(at) = time::OffsetDateTime::parse(value, &Rfc3339) {
        return Some(at);
    }
    time::Date::parse(
        value,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
    .map(|d| d.midnight().assume_utc())
}

/// Where setting values come from: the environment, then `local.settings.json` `Values`.
#[derive(Clone, Debug, Default)]
pub struct SettingSource {
    env: HashMap<String, String>,
    file: HashMap<String, String>,
}

impl SettingSource {
    /// The process environment plus `local.settings.json` in the working directory, if any.
    ///
    /// Under the Functions host (`FUNCTIONS_CUSTOMHANDLER_PORT` set) the file is not read: the
    /// host is the authority for app settings (`func start` already puts the file's `Values`
    /// into the environment), and a stray file must not add settings the host did not give.
    pub fn from_process() -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = if env.contains_key("FUNCTIONS_CUSTOMHANDLER_PORT") {
            HashMap::new()
        } else {
            read_local_settings(Path::new("local.settings.json"))?
        };
        Ok(SettingSource { env, file })
    }

    /// A source from explicit pairs (tests, tools).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let env = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        SettingSource {
            env,
            file: HashMap::new(),
        }
    }

    /// The value of `name` (written with `__`), also accepted with `:`; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let colon = name.replace("__", ":");
        [&self.env, &self.file]
            .into_iter()
            .flat_map(|map| [map.get(name), map.get(&colon)])
            .flatten()
            .map(|v| v.trim().to_string())
            .find(|v| !v.is_empty())
    }

    /// The value of `name`, or `default` when unset.
    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }

    /// The value of `name`, which must be set.
    pub fn required(&self, name: &str) -> Result<String, SettingsError> {
        self.get(name)
            .ok_or_else(|| SettingsError::new(name, "is required but not set"))
    }

    /// `true` or `false` (any case); `default` when unset.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(SettingsError::new(
                name,
                format!("`{v}` is neither true nor false"),
            )),
        }
    }

    /// A [`BaseUrl`], when set.
    pub fn url(&self, name: &str) -> Result<Option<BaseUrl>, SettingsError> {
        self.get(name).map(|v| base_url(name, &v)).transpose()
    }

    /// A [`BaseUrl`] that must be set.
    pub fn required_url(&self, name: &str) -> Result<BaseUrl, SettingsError> {
        base_url(name, &self.required(name)?)
    }

    /// An Azure container or queue name (`what`), `default` when unset: 3–63 characters of
    /// lower-case letters, digits and single inner hyphens.
    pub fn storage_name(
        &self,
        name: &str,
        default: &str,
        what: &str,
    ) -> Result<String, SettingsError> {
        let value = self.string_or(name, default);
        let ok = (3..=63).contains(&value.len())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-')
            && !value.contains("--");
        if ok {
            Ok(value)
        } else {
            Err(SettingsError::new(
                name,
                format!("`{value}` is not a valid {what} name"),
            ))
        }
    }

    /// A value `Debug` never shows, when set.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// Comma-separated items, trimmed, empty items dropped; `None` when unset.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        self.get(name).map(|v| {
            v.split(',')
                .map(|item| item.trim().to_string())
                .filter(|item| !item.is_empty())
                .collect()
        })
    }

    /// A time as [`parse_time`] reads it, when set.
    pub fn time(&self, name: &str) -> Result<Option<time::OffsetDateTime>, SettingsError> {
        self.get(name)
            .map(|v| {
                parse_time(&v).ok_or_else(|| {
                    SettingsError::new(
                        name,
                        format!("`{v}` is neither an RFC 3339 time nor a YYYY-MM-DD date"),
                    )
                })
            })
            .transpose()
    }
}

fn read_local_settings(path: &Path) -> Result<HashMap<String, String>, SettingsError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(HashMap::new());
    };
    #[derive(serde::Deserialize)]
    struct LocalSettings {
        #[serde(rename = "Values", default)]
        values: HashMap<String, serde_json::Value>,
    }
    let parsed: LocalSettings = serde_json::from_str(&text).map_err(|e| {
        SettingsError::new("local.settings.json", format!("is not valid JSON: {e}"))
    })?;
    Ok(parsed
        .values
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_separator_is_accepted_and_empty_is_unset() {
        let src = SettingSource::from_pairs([("A:B", " x "), ("C__D", "  ")]);
        assert_eq!(src.get("A__B").as_deref(), Some("x"));
        assert_eq!(src.get("C__D"), None);
        assert_eq!(src.string_or("C__D", "d"), "d");
        assert_eq!(src.required("C__D").unwrap_err().name, "C__D");
    }

    #[test]
    fn typed_getters_parse_or_name_the_setting() {
        let src = SettingSource::from_pairs([
            ("Flag", "TRUE"),
            ("BadFlag", "yes"),
            ("List", " a, ,b ,"),
            ("Url", "http://example.com/"),
            ("When", "2024-05-01"),
            ("Queue", "Bad_Name"),
            ("Key", "hunter2"),
        ]);
        assert!(src.bool("Flag", false).unwrap());
        assert!(!src.bool("Unset", false).unwrap());
        assert_eq!(src.bool("BadFlag", false).unwrap_err().name, "BadFlag");
        assert_eq!(src.list("List").unwrap(), ["a", "b"]);
        assert_eq!(src.list("Unset"), None);
        assert_eq!(src.url("Url").unwrap_err().name, "Url");
        assert!(src.url("Unset").unwrap().is_none());
        assert_eq!(
            src.time("When").unwrap(),
            Some(time::macros::datetime!(2024-05-01 0:00 UTC))
        );
        let err = src.storage_name("Queue", "q", "queue").unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting Queue: `Bad_Name` is not a valid queue name"
        );
        assert_eq!(
            src.storage_name("Unset", "events-x", "queue").unwrap(),
            "events-x"
        );
        assert_eq!(format!("{:?}", src.secret("Key")), "Some(<redacted>)");
        assert_eq!(aos("X"), "AltinnApplicationOwnerSystemSettings__X");
    }
}
