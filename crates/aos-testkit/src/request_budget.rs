//! The request budget per instance (issue 18): storage requests by operation as the
//! [`crate::storage_proxy`] counted them and Altinn requests by kind as the simulator recorded
//! them, divided by the number of instances — what the archive bench prints for a first pass
//! and a duplicate pass.

use std::collections::BTreeMap;

use altinn_sim::RecordedCall;

use crate::storage_proxy::Operation;

/// What one pass cost: requests by storage operation and by Altinn call kind.
#[derive(Clone, Debug, Default)]
pub struct Requests {
    pub instances: usize,
    pub storage: BTreeMap<Operation, u64>,
    pub altinn: BTreeMap<&'static str, u64>,
}

/// The Altinn call kinds, in table order.
pub const ALTINN_KINDS: [&str; 5] = [
    "instance GET",
    "data GET",
    "complete",
    "token (grant, exchange)",
    "other",
];

impl Requests {
    pub fn new(
        instances: usize,
        storage: BTreeMap<Operation, u64>,
        calls: &[RecordedCall],
    ) -> Requests {
        let mut altinn = BTreeMap::new();
        for call in calls {
            *altinn
                .entry(altinn_kind(&call.method, &call.path))
                .or_default() += 1;
        }
        Requests {
            instances,
            storage,
            altinn,
        }
    }

    pub fn storage_total(&self) -> u64 {
        self.storage.values().sum()
    }

    pub fn altinn_total(&self) -> u64 {
        self.altinn.values().sum()
    }

    /// Storage and Altinn requests per instance.
    pub fn per_instance(&self) -> f64 {
        self.per(self.storage_total() + self.altinn_total())
    }

    pub fn per(&self, count: u64) -> f64 {
        count as f64 / self.instances.max(1) as f64
    }
}

/// The kind of one recorded simulator call: Storage or app API instance reads, data reads,
/// complete, the token exchange and Maskinporten.
pub fn altinn_kind(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if path.contains("/maskinporten") || path.contains("/exchange/") {
        return "token (grant, exchange)";
    }
    let Some(at) = segments.iter().position(|s| *s == "instances") else {
        return "other";
    };
    match (method, &segments[at + 1..]) {
        ("GET", [_party, _guid]) => "instance GET",
        ("GET", [_party, _guid, "data", _id]) => "data GET",
        ("POST", [_party, _guid, "complete"]) => "complete",
        _ => "other",
    }
}

/// Rows of the per-instance table for passes side by side: one row per storage operation and
/// Altinn kind seen in any pass, then the totals.
pub fn table_rows(passes: &[&Requests]) -> Vec<Vec<String>> {
    let per = |pass: &Requests, count: u64| format!("{:.2}", pass.per(count));
    let mut rows = Vec::new();
    for op in Operation::ALL {
        if passes
            .iter()
            .all(|p| p.storage.get(&op).copied().unwrap_or(0) == 0)
        {
            continue;
        }
        let mut row = vec!["storage".to_string(), op.name().to_string()];
        row.extend(
            passes
                .iter()
                .map(|p| per(p, p.storage.get(&op).copied().unwrap_or(0))),
        );
        rows.push(row);
    }
    for kind in ALTINN_KINDS {
        if passes
            .iter()
            .all(|p| p.altinn.get(kind).copied().unwrap_or(0) == 0)
        {
            continue;
        }
        let mut row = vec!["Altinn".to_string(), kind.to_string()];
        row.extend(
            passes
                .iter()
                .map(|p| per(p, p.altinn.get(kind).copied().unwrap_or(0))),
        );
        rows.push(row);
    }
    for (side, label, total) in [
        (
            "storage",
            "total",
            Requests::storage_total as fn(&Requests) -> u64,
        ),
        ("Altinn", "total", Requests::altinn_total),
    ] {
        let mut row = vec![format!("**{side}**"), format!("**{label}**")];
        row.extend(passes.iter().map(|p| format!("**{}**", per(p, total(p)))));
        rows.push(row);
    }
    let mut row = vec!["**all**".to_string(), "**total**".to_string()];
    row.extend(
        passes
            .iter()
            .map(|p| format!("**{:.2}**", p.per_instance())),
    );
    rows.push(row);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn altinn_calls_are_classified_by_path() {
        let guid = "6b33c4f0-0000-4000-8000-000000000000";
        let cases = [
            (
                "GET",
                format!("/storage/api/v1/instances/50001/{guid}"),
                "instance GET",
            ),
            (
                "GET",
                format!("/ttd/test-app/instances/50001/{guid}"),
                "instance GET",
            ),
            (
                "GET",
                format!("/storage/api/v1/instances/50001/{guid}/data/{guid}"),
                "data GET",
            ),
            (
                "POST",
                format!("/storage/api/v1/instances/50001/{guid}/complete"),
                "complete",
            ),
            (
                "GET",
                "/authentication/api/v1/exchange/maskinporten".to_string(),
                "token (grant, exchange)",
            ),
            (
                "POST",
                "/maskinporten/token".to_string(),
                "token (grant, exchange)",
            ),
            ("GET", "/storage/api/v1/instances".to_string(), "other"),
        ];
        for (method, path, expected) in cases {
            assert_eq!(altinn_kind(method, &path), expected, "{method} {path}");
        }
    }
}
