//! The function app as the Functions host sees it: `host.json` plus one `<Function>/function.json`
//! per function folder. The fake host reads these files instead of hard-coding queue names,
//! bindings or retry settings, so a change to the app's configuration is exercised by the tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

/// Everything the fake host needs from the app's configuration files.
#[derive(Debug, Clone)]
pub struct FunctionApp {
    pub root: PathBuf,
    pub host: HostSettings,
    /// Sorted by name.
    pub functions: Vec<FunctionDef>,
}

/// The parts of `host.json` the host acts on.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `customHandler.description.defaultExecutablePath`.
    pub executable: String,
    /// `customHandler.description.arguments` (before `%NAME%` expansion).
    pub arguments: Vec<String>,
    /// `customHandler.description.workingDirectory`, relative to the app root; empty = app root.
    pub working_directory: String,
    /// `functionTimeout`; `None` when unset or `-1` (unbounded).
    pub function_timeout: Option<Duration>,
    /// `extensions.http.routePrefix` (default `api`).
    pub route_prefix: String,
    pub queues: QueueSettings,
}

/// `extensions.queues` with the Storage Queues extension's defaults (spec §7.1).
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub max_dequeue_count: u32,
    pub visibility_timeout: Duration,
    pub batch_size: u32,
    pub message_encoding: MessageEncoding,
}

/// How message text is stored in the queue (`messageEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageEncoding {
    Base64,
    None,
}

/// One function folder.
#[derive(Debug, Clone)]
pub struct FunctionDef {
    /// The folder name: also the invocation path `/<name>`.
    pub name: String,
    pub bindings: Vec<Binding>,
}

/// One entry of `function.json` `bindings`.
#[derive(Debug, Clone)]
pub struct Binding {
    /// `type`, e.g. `queueTrigger`, `queue`, `httpTrigger`, `http`.
    pub kind: String,
    pub direction: String,
    pub name: String,
    pub queue_name: Option<String>,
    /// A blob binding's `path`, e.g. `add-subscriptions/{name}.json`.
    pub path: Option<String>,
    /// The app setting naming the storage account (`connection`).
    pub connection: Option<String>,
    pub data_type: Option<String>,
    pub auth_level: Option<String>,
    pub methods: Option<Vec<String>>,
    pub route: Option<String>,
}

impl Binding {
    pub fn is_output(&self) -> bool {
        self.direction.eq_ignore_ascii_case("out")
    }

    /// `"dataType": "binary"` switches off the string handling of triggers and the base64
    /// quirk of outputs (spec §3.2, §4.3).
    pub fn is_binary(&self) -> bool {
        self.data_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("binary"))
    }

    fn is_kind(&self, kind: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind)
    }

    pub fn is_queue_output(&self) -> bool {
        self.is_kind("queue") && self.is_output()
    }

    pub fn is_http_output(&self) -> bool {
        self.is_kind("http") && self.is_output()
    }
}

impl FunctionDef {
    pub fn queue_trigger(&self) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.is_kind("queueTrigger"))
    }

    pub fn blob_trigger(&self) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.is_kind("blobTrigger"))
    }

    pub fn http_trigger(&self) -> Option<&Binding> {
        self.bindings.iter().find(|b| b.is_kind("httpTrigger"))
    }

    pub fn outputs(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.iter().filter(|b| b.is_output())
    }

    /// The binding named `$return`, fed from the response's `ReturnValue`.
    pub fn return_binding(&self) -> Option<&Binding> {
        self.outputs().find(|b| b.name == "$return")
    }
}

impl FunctionApp {
    /// Reads `host.json` and every `*/function.json` under `root`.
    pub fn load(root: &Path) -> anyhow::Result<FunctionApp> {
        let host_json = read_json(&root.join("host.json"))?;
        let host = HostSettings::from_json(&host_json).context("interpreting host.json")?;
        let functions = load_functions(root)?;
        if functions.is_empty() {
            bail!("no */function.json under {}", root.display());
        }
        Ok(FunctionApp {
            root: root.to_path_buf(),
            host,
            functions,
        })
    }

    pub fn function(&self, name: &str) -> anyhow::Result<&FunctionDef> {
        self.functions
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.functions.iter().map(|f| f.name.as_str()).collect();
                anyhow!(
                    "no function `{name}` in {} (known: {known:?})",
                    self.root.display()
                )
            })
    }

    /// Functions with a `blobTrigger`, each with its trigger binding.
    pub fn blob_triggered(&self) -> impl Iterator<Item = (&FunctionDef, &Binding)> {
        self.functions
            .iter()
            .filter_map(|f| f.blob_trigger().map(|t| (f, t)))
    }

    /// Functions with a `queueTrigger`, each with its trigger binding.
    pub fn queue_triggered(&self) -> impl Iterator<Item = (&FunctionDef, &Binding)> {
        self.functions
            .iter()
            .filter_map(|f| f.queue_trigger().map(|t| (f, t)))
    }
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn load_functions(root: &Path) -> anyhow::Result<Vec<FunctionDef>> {
    let mut functions = Vec::new();
    for entry in std::fs::read_dir(root).with_context(|| format!("listing {}", root.display()))? {
        let dir = entry?.path();
        let file = dir.join("function.json");
        if !file.is_file() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("function folder {} has no UTF-8 name", dir.display()))?
            .to_string();
        let json = read_json(&file)?;
        let bindings =
            parse_bindings(&json).with_context(|| format!("interpreting {}", file.display()))?;
        functions.push(FunctionDef { name, bindings });
    }
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(functions)
}

fn parse_bindings(json: &Value) -> anyhow::Result<Vec<Binding>> {
    let list = get_ci(json, "bindings")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("no `bindings` array"))?;
    list.iter().map(parse_binding).collect()
}

fn parse_binding(b: &Value) -> anyhow::Result<Binding> {
    let text = |key: &str| get_ci(b, key).and_then(Value::as_str).map(str::to_string);
    let required = |key: &str| text(key).ok_or_else(|| anyhow!("binding {b} has no `{key}`"));
    let methods = get_ci(b, "methods").and_then(Value::as_array).map(|m| {
        m.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    });
    Ok(Binding {
        kind: required("type")?,
        direction: required("direction")?,
        name: required("name")?,
        queue_name: text("queueName"),
        path: text("path"),
        connection: text("connection"),
        data_type: text("dataType"),
        auth_level: text("authLevel"),
        methods,
        route: text("route"),
    })
}

impl HostSettings {
    fn from_json(json: &Value) -> anyhow::Result<HostSettings> {
        let description = get_ci(json, "customHandler")
            .and_then(|c| get_ci(c, "description"))
            .ok_or_else(|| anyhow!("no customHandler.description"))?;
        let executable = get_ci(description, "defaultExecutablePath")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("no customHandler.description.defaultExecutablePath"))?
            .to_string();
        let arguments = match get_ci(description, "arguments") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("argument {a} is not a string"))
                })
                .collect::<anyhow::Result<_>>()?,
            Some(other) => {
                bail!("customHandler.description.arguments is {other}, expected an array")
            }
        };
        let working_directory = get_ci(description, "workingDirectory")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let function_timeout = match get_ci(json, "functionTimeout").and_then(Value::as_str) {
            None | Some("-1") => None,
            Some(t) => Some(parse_timespan(t)?),
        };
        let extensions = get_ci(json, "extensions");
        let route_prefix = extensions
            .and_then(|e| get_ci(e, "http"))
            .and_then(|h| get_ci(h, "routePrefix"))
            .and_then(Value::as_str)
            .unwrap_or("api")
            .to_string();
        let queues = QueueSettings::from_json(extensions.and_then(|e| get_ci(e, "queues")))?;
        Ok(HostSettings {
            executable,
            arguments,
            working_directory,
            function_timeout,
            route_prefix,
            queues,
        })
    }
}

impl QueueSettings {
    fn from_json(queues: Option<&Value>) -> anyhow::Result<QueueSettings> {
        let get = |key: &str| queues.and_then(|q| get_ci(q, key));
        let number = |key: &str, default: u32| -> anyhow::Result<u32> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| anyhow!("extensions.queues.{key} is {v}, expected a count")),
            }
        };
        let visibility_timeout = match get("visibilityTimeout").and_then(Value::as_str) {
            None => Duration::ZERO,
            Some(t) => parse_timespan(t)?,
        };
        let message_encoding = match get("messageEncoding").and_then(Value::as_str) {
            None => MessageEncoding::Base64,
            Some(e) if e.eq_ignore_ascii_case("base64") => MessageEncoding::Base64,
            Some(e) if e.eq_ignore_ascii_case("none") => MessageEncoding::None,
            Some(e) => bail!("extensions.queues.messageEncoding `{e}` is neither base64 nor none"),
        };
        Ok(QueueSettings {
            max_dequeue_count: number("maxDequeueCount", 5)?,
            visibility_timeout,
            batch_size: number("batchSize", 16)?,
            message_encoding,
        })
    }
}

/// Parses a .NET `TimeSpan` as written in host.json: `[d.]hh:mm:ss[.fraction]`.
pub fn parse_timespan(text: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow!("`{text}` is not a TimeSpan ([d.]hh:mm:ss[.fff])");
    let parts: Vec<&str> = text.trim().split(':').collect();
    let [hours, minutes, seconds] = parts.as_slice() else {
        return Err(bad());
    };
    let (days, hours) = match hours.split_once('.') {
        Some((d, h)) => (d.parse::<u64>().map_err(|_| bad())?, h),
        None => (0, *hours),
    };
    let hours: u64 = hours.parse().map_err(|_| bad())?;
    let minutes: u64 = minutes.parse().map_err(|_| bad())?;
    let seconds: f64 = seconds.parse().map_err(|_| bad())?;
    if minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return Err(bad());
    }
    Ok(
        Duration::from_secs((days * 24 + hours) * 3600 + minutes * 60)
            + Duration::from_secs_f64(seconds),
    )
}

/// Case-insensitive member lookup: the host binds its configuration with .NET's case-insensitive
/// configuration system, so `FunctionTimeout` and `functionTimeout` mean the same.
pub fn get_ci<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    let map: &Map<String, Value> = value.as_object()?;
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}
