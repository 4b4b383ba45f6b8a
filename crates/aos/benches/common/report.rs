//! A benchmark's record: the machine, the command, the date, then sections of tables and
//! notes. Printed to stdout and written to `docs/benchmarks/<name>.md`, where
//! `docs/benchmarks.md` links it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use super::BenchArgs;

pub struct Report {
    name: String,
    args: BenchArgs,
    body: String,
}

impl Report {
    /// Starts the record for bench `name` with the facts of this machine.
    pub fn new(name: &str, title: &str, args: &BenchArgs) -> Report {
        let mut body = String::new();
        let _ = writeln!(body, "# {title}\n");
        let flags: Vec<&str> = [(args.quick, "--quick"), (args.pin, "--pin")]
            .into_iter()
            .filter_map(|(on, flag)| on.then_some(flag))
            .collect();
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" -- {}", flags.join(" "))
        };
        let _ = writeln!(body, "- Command: `cargo bench --bench {name}{flags}`");
        let _ = writeln!(body, "- Date: {}", now_utc());
        let _ = writeln!(body, "- Commit: {}", git_commit());
        let _ = writeln!(body, "- Machine: {}", machine());
        let _ = writeln!(
            body,
            "- Toolchain: {}",
            command_line("rustc", &["--version"])
        );
        if args.quick {
            let _ = writeln!(
                body,
                "- **Quick run** (reduced sizes): a smoke check, not a figure for the record."
            );
        }
        body.push('\n');
        Report {
            name: name.to_string(),
            args: args.clone(),
            body,
        }
    }

    pub fn section(&mut self, heading: &str) {
        let _ = writeln!(self.body, "## {heading}\n");
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = writeln!(self.body, "{text}\n");
    }

    /// A Markdown table; every row must have as many cells as `header`.
    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        let _ = writeln!(self.body, "| {} |", header.join(" | "));
        let _ = writeln!(
            self.body,
            "|{}",
            header.iter().map(|_| "---|").collect::<String>()
        );
        for row in rows {
            let _ = writeln!(self.body, "| {} |", row.join(" | "));
        }
        self.body.push('\n');
    }

    /// Links an image written next to the report (see [`Report::asset_path`]).
    pub fn image(&mut self, alt: &str, file_name: &str) {
        let _ = writeln!(self.body, "![{alt}]({file_name})\n");
    }

    /// Where a file belonging to this report goes (`docs/benchmarks/<file_name>`).
    pub fn asset_path(&self, file_name: &str) -> PathBuf {
        let dir = out_dir();
        let _ = std::fs::create_dir_all(&dir);
        dir.join(file_name)
    }

    /// Prints the report and, unless `--no-write`, writes `docs/benchmarks/<name>.md`.
    pub fn finish(self) -> anyhow::Result<()> {
        println!("\n{}", self.body);
        if !self.args.no_write {
            let path = self.asset_path(&format!("{}.md", self.name));
            std::fs::write(&path, &self.body)?;
            println!("written to {}", path.display());
        }
        Ok(())
    }
}

fn out_dir() -> PathBuf {
    aos_testkit::app_root().join("docs/benchmarks")
}

fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn git_commit() -> String {
    let commit = command_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = Command::new("git")
        // The records of earlier benches in the same session are not changes to what is measured.
        .args([
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!docs/benchmarks",
        ])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{commit} (with uncommitted changes)")
    } else {
        commit
    }
}

/// CPU model, logical CPUs, memory and kernel, from `/proc`.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let kernel = command_line("uname", &["-r"]);
    format!(
        "{model}, {cpus} logical CPUs, {:.1} GiB RAM, Linux {kernel}",
        mem_kib as f64 / (1024.0 * 1024.0)
    )
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
