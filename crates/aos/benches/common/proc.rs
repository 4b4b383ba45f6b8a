//! Readings of a running process from Linux `/proc`: resident memory and CPU time. Used to
//! watch the `aos` child (and Azurite) while a benchmark drives it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Current resident set size of `pid`, in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// Peak resident set size of `pid` since it started, in bytes (`VmHWM`).
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// User + system CPU time `pid` has used so far (fields 14 and 15 of `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// Total CPU time of `pid` and all its descendants that are still running (Azurite is a node
/// process that may fork helpers).
pub fn tree_cpu_time(pid: u32) -> Duration {
    descendants(pid)
        .into_iter()
        .chain(std::iter::once(pid))
        .filter_map(cpu_time)
        .sum()
}

fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    let parents: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, _) in parents.iter().filter(|(_, pp)| *pp == parent) {
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Samples a process's RSS on a background thread until dropped or stopped.
pub struct RssSampler {
    samples: Arc<Mutex<Vec<(Duration, u64)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match rss_bytes(pid) {
                        Some(rss) => samples.lock().unwrap().push((started.elapsed(), rss)),
                        None => break,
                    }
                    std::thread::sleep(every);
                }
            })
        };
        RssSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns (time since start, RSS bytes) pairs.
    pub fn finish(mut self) -> Vec<(Duration, u64)> {
        self.halt();
        std::mem::take(&mut *self.samples.lock().unwrap())
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.halt();
    }
}
