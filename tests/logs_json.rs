//! Logs of `kray-guardian run` as an operator's log pipeline sees them (stderr not a terminal): no ANSI
//! escapes, and in JSON format numbers are JSON numbers, not Rust `Debug` strings.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

/// A fake bitcoind answering every JSON-RPC request with a chain tip at height 5.
fn fake_bitcoind() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                read_request(&mut stream);
                let body = format!(
                    r#"{{"result":{{"blocks":5,"headers":5,"bestblockhash":"{}"}},"error":null,"id":1}}"#,
                    "00".repeat(32)
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// Reads one HTTP request (headers and `Content-Length` body), so closing never resets the connection.
fn read_request(stream: &mut std::net::TcpStream) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut buf) else { return };
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data);
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + len {
                return;
            }
        }
    }
}

fn config(dir: &Path, port: u16, format: &str) -> std::path::PathBuf {
    let bin = env!("CARGO_BIN_EXE_kray-guardian");
    let gen = dir.join("gen");
    let out = Command::new(bin)
        .args(["gen-workload", "--profile", "regtest", "--accounts", "2", "--txs", "1", "--batch-size", "1", "--out"])
        .arg(&gen)
        .output()
        .expect("gen-workload");
    assert!(out.status.success(), "{out:?}");
    let path = dir.join(format!("guardian-{format}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"mode = "watch"
data_dir = "data-{format}"
profile = "regtest"
genesis = "gen/genesis.json"

[bitcoind]
url = "http://127.0.0.1:{port}"
user = "u"
password = "p"

[[sources]]
name = "sequencer"
url = "http://127.0.0.1:9"

[http]
listen = "127.0.0.1:0"

[log]
level = "info"
format = "{format}"
"#
        ),
    )
    .expect("write config");
    path
}

/// Runs the guardian until a log line contains `needle`; returns all lines read.
fn lines_until(config: &Path, needle: &str) -> Vec<String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    // Never hang the suite if the line never comes: stop the guardian after two minutes.
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(120));
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    });
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let done = line.contains(needle);
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn json_logs_carry_numbers_and_no_colour_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = fake_bitcoind();
    let lines = lines_until(&config(dir.path(), port, "json"), "start_height is unset");
    let all = lines.join("\n");
    assert!(!all.contains('\u{1b}'), "ANSI escape in logs:\n{all}");
    let line = lines.iter().find(|l| l.contains("start_height is unset")).unwrap_or_else(|| panic!("no line:\n{all}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(v["fields"]["height"], serde_json::json!(5), "a number, not a string: {line}");
    for l in &lines {
        serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(!l.contains("\"Some(") && !l.contains(":\"None\""), "Debug of an Option: {l}");
    }
}

#[test]
fn text_logs_have_no_colour_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = fake_bitcoind();
    let lines = lines_until(&config(dir.path(), port, "text"), "start_height is unset");
    let all = lines.join("\n");
    assert!(all.contains("start_height is unset"), "{all}");
    assert!(!all.contains('\u{1b}'), "ANSI escape in logs:\n{all}");
}
