//! The protocol fixtures of the repository's `fixtures/` folder (sources in
//! `fixtures/README.md`), for unit tests.

/// `fixtures/altinn/{name}`: what Altinn sends.
pub(crate) fn altinn(name: &str) -> Vec<u8> {
    read(&format!("altinn/{name}"))
}

/// `fixtures/functions-host/{name}`: what the Functions host sends and reads.
pub(crate) fn functions_host(name: &str) -> Vec<u8> {
    read(&format!("functions-host/{name}"))
}

fn read(path: &str) -> Vec<u8> {
    let path = format!("{}/../../fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
