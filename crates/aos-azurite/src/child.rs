//! Child processes (Azurite, the `aos` processes of tests) that cannot outlive their parent.
//!
//! Three layers, because each covers a different way a test ends:
//! - `Drop` kills the child's whole process group and reaps it (normal end and panics);
//! - the child leads its own process group, so grandchildren die with it;
//! - on Linux the child gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies when the test process dies
//!   without unwinding (Ctrl-C, which no longer reaches a child in its own group, or SIGKILL).
//!   The kernel sends that signal when the *thread* that forked exits, so every child is
//!   spawned from one spawner thread that lives as long as the test process.

use std::io;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// A child process that leads its own process group.
pub struct GroupChild {
    child: Child,
    reaped: Option<ExitStatus>,
}

impl GroupChild {
    /// Spawns `command` in a new process group with the parent-death signal set.
    pub fn spawn(mut command: Command) -> anyhow::Result<GroupChild> {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        set_parent_death_signal(&mut command);
        let program = format!("{:?}", command.get_program());
        let child =
            spawn_from_spawner_thread(command).with_context(|| format!("starting {program}"))?;
        Ok(GroupChild {
            child,
            reaped: None,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Its piped stdout and stderr not yet taken, as readers to drain (a child whose pipes
    /// fill up blocks).
    pub fn take_output(&mut self) -> Vec<Box<dyn std::io::Read + Send>> {
        let stdout = self
            .take_stdout()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let stderr = self
            .take_stderr()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        stdout.into_iter().chain(stderr).collect()
    }

    /// The exit status once the child has exited; never blocks.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().context("checking a child process")?;
        }
        Ok(self.reaped)
    }

    /// Sends `signal` to the whole process group (no-op once the leader was reaped, so a
    /// recycled process id is never hit).
    fn signal_group(&self, signal: libc::c_int) {
        if self.reaped.is_some() {
            return;
        }
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill(2) takes plain integers; a negative pid addresses the process group.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }

    /// Asks the group to stop with SIGTERM (so e.g. Azurite flushes its database), waits up to
    /// `grace` for the leader to exit, then kills the group.
    pub async fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.kill()
    }

    /// Kills the group with SIGKILL and reaps the leader (blocks only for the kernel to deliver
    /// the signal).
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal_group(libc::SIGKILL);
        if let Some(status) = self.reaped {
            return Ok(status);
        }
        let status = self
            .child
            .wait()
            .context("reaping a killed child process")?;
        self.reaped = Some(status);
        Ok(status)
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        // Best effort: there is no one to report a failure to during drop.
        let _ = self.kill();
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: getpid, prctl and getppid are async-signal-safe syscalls; nothing is allocated
    // between fork and exec.
    let parent = unsafe { libc::getpid() };
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::other(
                    "parent exited while the child was starting",
                ));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}

/// Forks from the process-lifetime spawner thread (see the module docs for why).
fn spawn_from_spawner_thread(command: Command) -> anyhow::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<SpawnJob>();
        // If the thread cannot be started, `send` below fails and reports it.
        let _ = std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut command, reply) in receiver {
                    let _ = reply.send(command.spawn());
                }
            });
        Mutex::new(sender)
    });
    let (reply, result) = mpsc::channel();
    let sent = sender
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply));
    if sent.is_err() {
        bail!("the child-spawner thread is not running");
    }
    let child = result
        .recv()
        .context("the child-spawner thread did not answer")??;
    Ok(child)
}
