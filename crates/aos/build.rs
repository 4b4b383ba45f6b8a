//! Build script: the commit `aos --version` names, so an operator can tell which build runs.
//!
//! `AOS_COMMIT` wins when set (a release pipeline building outside a git checkout); otherwise
//! `git rev-parse --short=12 HEAD`; `unknown` when neither is available (a source tarball).
//! Uncommitted changes are not marked: watching the index would rebuild the crate on every
//! `git add`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AOS_COMMIT");
    // Rebuild when HEAD moves: the file itself, and the branch it points at.
    let head = std::path::Path::new("../../.git/HEAD");
    if head.exists() {
        println!("cargo:rerun-if-changed=../../.git/HEAD");
        if let Ok(text) = std::fs::read_to_string(head)
            && let Some(branch) = text.trim().strip_prefix("ref: ")
        {
            let path = format!("../../.git/{branch}");
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let commit = std::env::var("AOS_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=AOS_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let run = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    run(&["rev-parse", "--short=12", "HEAD"])
}
