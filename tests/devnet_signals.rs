//! End to end, on real processes: `kray-guardian devnet --guardian watch` stops its regtest bitcoind
//! and its guardian when it gets SIGTERM (what systemd, Docker and test harnesses send) or SIGINT
//! (Ctrl-C), and — through the Linux parent-death signal — even when it is killed with SIGKILL.
//!
//! Most need the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips
//! them. The startup ones use a stand-in bitcoind that never answers (a signal while the devnet waits
//! for its node) and need nothing.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `kray-guardian devnet` and the pids it printed; everything is SIGKILLed on drop, so a
/// failing test leaves nothing behind.
struct DevnetProcess {
    child: Child,
    bitcoind: u32,
    guardian: u32,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        for pid in [self.guardian, self.bitcoind] {
            if running(pid) {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `pid` is a live process (a zombie is not: it has exited and waits to be reaped).
fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// The parent pid of `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split_whitespace().nth(1)?.parse().ok()
}

fn pid_after(line: &str, label: &str) -> Option<u32> {
    line.trim().strip_prefix(label)?.trim().parse().ok()
}

impl DevnetProcess {
    /// Starts the devnet with a guardian and waits until the guardian's API accepts connections.
    fn start(dir: &Path) -> DevnetProcess {
        let port = kray_devnet::bitcoind::free_port().expect("free port");
        let stderr = std::fs::File::create(dir.join("devnet.stderr")).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
            .arg("devnet")
            .arg("--data")
            .arg(dir.join("devnet"))
            .args(["--users", "2", "--guardian", "watch", "--guardian-port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn kray-guardian devnet");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = DevnetProcess { child, bitcoind: 0, guardian: 0, lines, seen: Vec::new() };
        while d.bitcoind == 0 || d.guardian == 0 {
            let line = d.next_line(Duration::from_secs(300));
            if let Some(pid) = pid_after(&line, "bitcoind pid:") {
                d.bitcoind = pid;
            }
            if let Some(pid) = pid_after(&line, "guardian pid:") {
                d.guardian = pid;
            }
        }
        let me = d.child.id();
        assert_eq!(parent(d.bitcoind), Some(me), "bitcoind is the devnet's child");
        assert_eq!(parent(d.guardian), Some(me), "the guardian is the devnet's child");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(running(d.guardian), "the guardian exited at start: {}", d.guardian_log(dir));
            assert!(Instant::now() < deadline, "the guardian never listened: {}", d.guardian_log(dir));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(running(d.bitcoind) && running(d.guardian));
        d
    }

    fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!("no devnet output ({e}); so far:\n{}", self.seen.join("\n")),
        }
    }

    fn guardian_log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join("devnet").join("guardian").join("guardian.log")).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success(), "kill {sig} failed");
    }

    /// Waits (bounded) for the devnet to exit; returns whether it exited with status 0.
    fn wait_exit(&mut self, dir: &Path) -> bool {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            let stderr = std::fs::read_to_string(dir.join("devnet.stderr")).unwrap_or_default();
            assert!(Instant::now() < deadline, "the devnet did not exit; stderr:\n{stderr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Reads the rest of stdout (the pipe closes when the devnet exits).
    fn rest_of_output(&mut self) -> String {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }
}

fn signal_stops_every_child(sig: &str, name: &str) {
    if support::skip("the devnet signal test") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut d = DevnetProcess::start(dir.path());
    d.signal(sig);
    assert!(d.wait_exit(dir.path()), "the devnet exits cleanly on {name}");
    let out = d.rest_of_output();
    assert!(out.contains(&format!("devnet stopping ({name})")), "{out}");
    // The devnet waited for both: they have exited and been reaped, not orphaned.
    assert!(!running(d.bitcoind), "bitcoind {} still runs after {name} to the devnet", d.bitcoind);
    assert!(!running(d.guardian), "guardian {} still runs after {name} to the devnet", d.guardian);
    let log = d.guardian_log(dir.path());
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn sigterm_to_the_devnet_stops_its_bitcoind_and_guardian() {
    signal_stops_every_child("-TERM", "SIGTERM");
}

#[test]
fn sigint_to_the_devnet_stops_its_bitcoind_and_guardian() {
    signal_stops_every_child("-INT", "SIGINT");
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_of_the_devnet_still_stops_its_bitcoind_and_guardian() {
    if support::skip("the devnet signal test") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let mut d = DevnetProcess::start(dir.path());
    d.signal("-KILL");
    assert!(!d.wait_exit(dir.path()), "killed, not a clean exit");
    // No handler runs on SIGKILL: the kernel's parent-death signal (SIGTERM) stops the children, which
    // are re-parented and reaped by init (or left as zombies by a container's init: not running).
    let deadline = Instant::now() + Duration::from_secs(60);
    while running(d.bitcoind) || running(d.guardian) {
        assert!(
            Instant::now() < deadline,
            "children outlived a kill -9 of the devnet: bitcoind {} running {}, guardian {} running {}",
            d.bitcoind,
            running(d.bitcoind),
            d.guardian,
            running(d.guardian)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pids whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter(|c| parent(*c) == Some(pid)).collect()
}

/// Starts the devnet with a stand-in bitcoind (a script that sleeps and never answers RPC), waits
/// until the devnet has started it, and returns the devnet and the stand-in's pid.
// The devnet is returned to the caller, which waits for it.
#[allow(clippy::zombie_processes)]
fn start_with_silent_bitcoind(dir: &Path) -> (Child, u32) {
    use std::os::unix::fs::PermissionsExt;
    let fake = dir.join("bitcoind");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 300\n").expect("script");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
        .arg("devnet")
        .arg("--data")
        .arg(dir.join("devnet"))
        .env("BITCOIND_EXE", &fake)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kray-guardian devnet");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The stand-in runs `sleep` once it has exec'd: wait for that, so the signal finds it started.
        let started = children_of(child.id())
            .into_iter()
            .find(|c| std::fs::read_to_string(format!("/proc/{c}/comm")).is_ok_and(|comm| comm.trim() == "sleep"));
        if let Some(pid) = started {
            return (child, pid);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the devnet never started its bitcoind");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(pid) {
        assert!(Instant::now() < deadline, "{what}: bitcoind {pid} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_while_the_devnet_starts_stops_its_bitcoind() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, node) = start_with_silent_bitcoind(dir.path());
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(ok.success());
    let status = child.wait().expect("wait");
    let leftover = running(node);
    if leftover {
        let _ = Command::new("kill").args(["-KILL", &node.to_string()]).status();
    }
    assert!(status.success(), "a clean exit on SIGTERM during startup: {status}");
    assert!(!leftover, "bitcoind {node} outlived SIGTERM to the starting devnet");
}

#[cfg(target_os = "linux")]
#[test]
fn sigkill_while_the_devnet_starts_still_stops_its_bitcoind() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut child, node) = start_with_silent_bitcoind(dir.path());
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    wait_gone(node, "kill -9 of the starting devnet");
}
