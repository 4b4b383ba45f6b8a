//! Where setting values come from, and one typed getter per kind of value.
//!
//! The environment is the one source, unless the operator names a `local.settings.json`-shaped
//! file (`aos --settings FILE`): nothing is read from a file nobody named, so the development
//! file of a checkout can never fill in settings a production shell lacks. Each name is looked
//! up as given (`__`), then with `:` as the separator, in the environment and then in the file.
//! The source remembers which settings it found where ([`SettingSource::found`]), so `aos
//! check-config` can show each one's origin. The getters turn a value into its type or a
//! [`SettingsError`] naming the setting, so the area files never format an error about a
//! malformed value themselves.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::SettingsError;
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

/// Where a setting's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Environment,
    /// The file `--settings` named, as it was named.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Environment => f.write_str("environment"),
            Origin::File(path) => write!(f, "settings file {}", path.display()),
        }
    }
}

/// A settings file that cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("settings file {}: {problem}", path.display())]
pub struct SettingsFileError {
    pub path: PathBuf,
    pub problem: String,
}

/// Where setting values come from: the environment, then the `Values` of the file the operator
/// named, if any.
#[derive(Clone, Default)]
pub struct SettingSource {
    env: HashMap<String, String>,
    file: Option<(PathBuf, HashMap<String, String>)>,
    /// Each setting found, under the name as it was written there, and its origin. Shared by
    /// clones: they read the same settings.
    found: Arc<Mutex<BTreeMap<String, Origin>>>,
}

/// Names only: the values include secrets.
impl fmt::Debug for SettingSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut env: Vec<&String> = self.env.keys().collect();
        env.sort();
        f.debug_struct("SettingSource")
            .field("env", &env)
            .field("file", &self.file.as_ref().map(|(path, _)| path))
            .finish_non_exhaustive()
    }
}

impl SettingSource {
    /// The process environment, and nothing else. (A variable whose name or value is not
    /// UTF-8 cannot be a setting and is skipped.)
    pub fn from_environment() -> Self {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        SettingSource {
            env,
            ..SettingSource::default()
        }
    }

    /// The same source, with the `Values` of the `local.settings.json`-shaped file at `path`
    /// for names the environment does not set (the environment wins, as under `func start`).
    pub fn with_file(mut self, path: &Path) -> Result<Self, SettingsFileError> {
        let values = read_settings_file(path).map_err(|problem| SettingsFileError {
            path: path.to_path_buf(),
            problem,
        })?;
        self.file = Some((path.to_path_buf(), values));
        Ok(self)
    }

    /// A source from explicit pairs (tests, tools), as if they were the environment.
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
            ..SettingSource::default()
        }
    }

    /// The value of `name` (written with `__`), also accepted with `:`; empty counts as unset.
    pub fn get(&self, name: &str) -> Option<String> {
        let colon = name.replace("__", ":");
        let env = [name, colon.as_str()].map(|key| (key, &self.env, Origin::Environment));
        let file = self.file.iter().flat_map(|(path, values)| {
            [name, colon.as_str()].map(|key| (key, values, Origin::File(path.clone())))
        });
        let (key, value, origin) = env
            .into_iter()
            .chain(file)
            .filter_map(|(key, map, origin)| {
                let value = map.get(key)?.trim();
                (!value.is_empty()).then(|| (key, value.to_string(), origin))
            })
            .next()?;
        self.found
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key.to_string(), origin);
        Some(value)
    }

    /// Every setting read so far that had a value, by the name as written where it was found,
    /// with its origin; sorted by name. Never the values: some are secrets.
    pub fn found(&self) -> Vec<(String, Origin)> {
        self.found
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, origin)| (name.clone(), origin.clone()))
            .collect()
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

    /// A whole number from `range`; `default` when unset.
    pub fn number(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, SettingsError> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(SettingsError::new(
                name,
                format!(
                    "`{v}` is not a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
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

/// The `Values` of a `local.settings.json`-shaped file; a value that is not a string (a number,
/// a boolean) is taken as its JSON text.
fn read_settings_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read: {e}"))?;
    #[derive(serde::Deserialize)]
    struct LocalSettings {
        #[serde(rename = "Values")]
        values: Option<HashMap<String, serde_json::Value>>,
    }
    let parsed: LocalSettings =
        serde_json::from_str(&text).map_err(|e| format!("is not valid JSON: {e}"))?;
    let values = parsed
        .values
        .ok_or("has no `Values` object (the shape of local.settings.json)")?;
    Ok(values
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
        assert!(!format!("{src:?}").contains("hunter2"));
    }

    #[test]
    fn a_file_is_read_only_when_named_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            r#"{"IsEncrypted": false, "Values": {"A__B": "file", "C:D": "file", "N": 7}}"#,
        )
        .unwrap();
        let src = SettingSource::from_pairs([("A__B", "env")])
            .with_file(&path)
            .unwrap();
        assert_eq!(src.get("A__B").as_deref(), Some("env"));
        assert_eq!(src.get("C__D").as_deref(), Some("file"));
        assert_eq!(src.get("N").as_deref(), Some("7"));
        assert_eq!(src.get("Unset"), None);
        assert_eq!(
            src.found(),
            [
                ("A__B".to_string(), Origin::Environment),
                ("C:D".to_string(), Origin::File(path.clone())),
                ("N".to_string(), Origin::File(path.clone())),
            ]
        );
        assert_eq!(
            Origin::File(path.clone()).to_string(),
            format!("settings file {}", path.display())
        );

        std::fs::write(&path, r#"{"values": {}}"#).unwrap();
        let err = SettingSource::default().with_file(&path).unwrap_err();
        assert!(err.to_string().contains("has no `Values` object"), "{err}");
        let err = SettingSource::default()
            .with_file(&dir.path().join("missing.json"))
            .unwrap_err();
        assert!(err.to_string().starts_with("settings file "), "{err}");
        assert!(err.to_string().contains("cannot be read"), "{err}");
    }
}
