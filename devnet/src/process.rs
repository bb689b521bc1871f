//! Child processes that never outlive their parent: a graceful stop (SIGTERM, a bounded wait, then
//! SIGKILL) and, on Linux, a parent-death signal so a child still stops when its parent is killed with
//! SIGKILL (which no handler can catch).

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// Makes the child spawned by `cmd` receive SIGTERM when the thread that spawns it exits (Linux
/// `prctl(PR_SET_PDEATHSIG)`), e.g. when the parent is killed with SIGKILL. Spawn from a thread that
/// lives as long as the child should (the main thread, or a runtime worker). A no-op elsewhere.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: `getpid` before the fork; in the child only async-signal-safe calls (`prctl`,
        // `getppid`) are made between fork and exec, and no memory is allocated.
        let parent = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before the prctl took effect: do not start an orphan.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("parent exited before the child started"));
                }
                Ok(())
            });
        }
    }
    cmd
}

/// Sends SIGTERM to `child` (on Unix; elsewhere it is killed at once), waits up to `grace` for it to
/// exit, then kills it; always reaps it. Returns its exit status.
pub fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    #[cfg(unix)]
    {
        match libc::pid_t::try_from(child.id()) {
            // SAFETY: `kill` has no memory-safety preconditions; the pid is our unreaped child, so it
            // cannot have been reused by another process.
            Ok(pid) if unsafe { libc::kill(pid, libc::SIGTERM) } == 0 => {
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    if let Some(status) = child.try_wait()? {
                        return Ok(status);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                tracing::warn!(pid = child.id(), ?grace, "child did not exit after SIGTERM; killing it");
            }
            _ => tracing::debug!(pid = child.id(), "SIGTERM not sent; killing the child"),
        }
    }
    #[cfg(not(unix))]
    let _ = grace;
    match child.kill() {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {} // already exited
        Err(e) => return Err(e),
    }
    child.wait()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn a_child_that_exits_on_sigterm_is_not_killed() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let status = terminate(&mut child, Duration::from_secs(10)).expect("terminate");
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        // A second call on the reaped child is harmless.
        assert_eq!(terminate(&mut child, Duration::from_secs(1)).expect("again").signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        // An ignored signal stays ignored across `exec`: the sleep ignores SIGTERM.
        let mut child = Command::new("sh")
            .args(["-c", "trap '' TERM; echo ready; exec sleep 30"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut out = child.stdout.take().expect("stdout");
        let mut buf = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut buf).expect("ready");
        let status = terminate(&mut child, Duration::from_millis(300)).expect("terminate");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_dies_with_the_thread_that_spawned_it() {
        let mut child =
            std::thread::spawn(|| die_with_parent(&mut Command::new("sleep")).arg("30").spawn().expect("sleep"))
                .join()
                .expect("thread");
        let pid = child.id();
        // The spawning thread is gone: the kernel sent SIGTERM; the child has exited (a zombie until
        // reaped), never still sleeping.
        let gone = (0..200).any(|_| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let running = state.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'));
            if running {
                std::thread::sleep(Duration::from_millis(50));
            }
            !running
        });
        assert!(gone, "child {pid} still runs after its parent thread exited");
        assert_eq!(child.wait().expect("reap").signal(), Some(libc::SIGTERM));
    }
}
