//! End-to-end tests of the command line: gen-workload → replay → verify-proof, for every fault class,
//! with the documented exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kray-guardian"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("binary runs")
}

fn gen(dir: &Path, fault: Option<&str>) {
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "gen-workload",
        "--profile",
        "regtest",
        "--accounts",
        "12",
        "--txs",
        "300",
        "--batch-size",
        "100",
        "--seed",
        "9",
        "--out",
        out,
    ];
    if let Some(f) = fault {
        args.extend(["--fault", f]);
    }
    let o = run(&args);
    assert!(o.status.success(), "gen-workload failed: {}", String::from_utf8_lossy(&o.stderr));
}

fn replay(dir: &Path, proofs: Option<&Path>) -> Output {
    let g = dir.join("genesis.json");
    let b = dir.join("batches");
    let mut args = vec![
        "replay",
        "--profile",
        "regtest",
        "--genesis",
        g.to_str().unwrap(),
        "--batches",
        b.to_str().unwrap(),
        "--json",
    ];
    if let Some(p) = proofs {
        args.extend(["--proofs", p.to_str().unwrap()]);
    }
    run(&args)
}

fn lines(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

#[test]
fn honest_workload_is_valid_exit_0() {
    let t = tempfile::tempdir().unwrap();
    gen(t.path(), None);
    let o = replay(t.path(), None);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let v = lines(&o);
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|l| l["verdict"] == "valid"));
}

#[test]
fn every_fault_class_is_reported_proven_and_tamper_rejected() {
    for class in kray_replayer::FaultClass::ALL {
        let t = tempfile::tempdir().unwrap();
        gen(t.path(), Some(&format!("{class}@2")));
        let proofs = t.path().join("proofs");
        let o = replay(t.path(), Some(&proofs));
        assert_eq!(o.status.code(), Some(3), "{class}: {}", String::from_utf8_lossy(&o.stdout));
        let v = lines(&o);
        let faults: Vec<_> = v.iter().filter(|l| l["verdict"] == "fault").collect();
        assert_eq!(faults.len(), 1, "{class}: {v:?}");
        assert_eq!(faults[0]["fault"], class.as_str());
        assert_eq!(faults[0]["batch_id"], 2);
        let proof = PathBuf::from(faults[0]["proof"].as_str().unwrap());
        let p = proof.to_str().unwrap();
        let facts = t.path().join("l1-facts.json");
        let o = run(&["verify-proof", p]);
        if class == kray_replayer::FaultClass::BadDeposit {
            assert_eq!(o.status.code(), Some(5), "{class}: {}", String::from_utf8_lossy(&o.stdout));
            let o = run(&["verify-proof", p, "--l1-facts", facts.to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(0), "{class}: {}", String::from_utf8_lossy(&o.stdout));
        } else {
            assert_eq!(o.status.code(), Some(0), "{class}: {}", String::from_utf8_lossy(&o.stdout));
            assert!(String::from_utf8_lossy(&o.stdout).starts_with(&format!("PROVEN: {class} in batch 2")));
        }
        // Tamper with the header's signature: the proof must not prove anything.
        let text = std::fs::read_to_string(&proof).unwrap();
        let mut j: serde_json::Value = serde_json::from_str(&text).unwrap();
        let sig = j["batch"]["signature"].as_str().unwrap().to_string();
        let flipped = format!("{}{}", &sig[..127], if sig.ends_with('0') { "1" } else { "0" });
        j["batch"]["signature"] = serde_json::Value::String(flipped);
        std::fs::write(&proof, j.to_string()).unwrap();
        let o = run(&["verify-proof", p, "--l1-facts", facts.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(4), "{class}: tampered proof: {}", String::from_utf8_lossy(&o.stdout));
    }
}

#[test]
fn bad_input_is_named_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let o = run(&["gen-workload", "--out", t.path().to_str().unwrap(), "--fault", "nope@1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown fault class"));
    gen(t.path(), None);
    std::fs::write(t.path().join("batches/batch-000002.json"), "{not json").unwrap();
    let o = replay(t.path(), None);
    assert_eq!(o.status.code(), Some(1));
    let v = lines(&o);
    assert!(v.iter().any(|l| l["verdict"] == "error" && l["detail"].as_str().unwrap().contains("batch-000002.json")));
    assert!(v.iter().any(|l| l["batch_id"] == 3 && l["verdict"] == "not-replayed"));
    let junk = t.path().join("junk.json");
    std::fs::write(&junk, "[]").unwrap();
    let o = run(&["verify-proof", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4));
    let o = run(&["replay", "--profile", "nosuch", "--genesis", "x", "--batches", "y"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown profile"));
}
