//! Build script: the commit `aos --version` names, so an operator can tell which build runs.
//!
//! `AOS_COMMIT` wins when set (a release pipeline building outside a git checkout); otherwise
//! `git rev-parse --short=12 HEAD`; `unknown` when neither is available (a source tarball).
//! Uncommitted changes are not marked: watching the index would rebuild the crate on every
//! `git add`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AOS_COMMIT");
    // Rebuild when HEAD moves: HEAD itself, the branch it points at, and `packed-refs` (where
    // the branch lives after `git gc`). Git names the paths, so a linked worktree (whose `.git`
    // is a file; HEAD is per worktree, refs are shared) is followed as well as a plain clone.
    let git_path = |path: &str| git(&["rev-parse", "--path-format=absolute", "--git-path", path]);
    if let Some(head) = git_path("HEAD") {
        println!("cargo:rerun-if-changed={head}");
        if let Ok(text) = std::fs::read_to_string(&head)
            && let Some(branch) = text.trim().strip_prefix("ref: ")
        {
            for path in [branch, "packed-refs"] {
                if let Some(path) = git_path(path).filter(|p| std::path::Path::new(p).exists()) {
                    println!("cargo:rerun-if-changed={path}");
                }
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
    git(&["rev-parse", "--short=12", "HEAD"])
}

/// One line of git's output, if git runs and succeeds here.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|line| !line.is_empty())
}
