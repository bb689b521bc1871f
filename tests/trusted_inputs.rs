//! Inputs a command takes on trust are named when used (issue 9, item 4, docs/security.md): an L1 facts
//! file is not checked against Bitcoin, so `replay` and `verify-proof` say on stderr that they use one.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kray-guardian")).args(args).output().expect("binary runs")
}

#[test]
fn an_l1_facts_file_is_named_as_trusted_input() {
    let t = tempfile::tempdir().expect("tmp");
    let out = t.path().to_str().expect("path");
    let o = run(&[
        "gen-workload",
        "--accounts",
        "12",
        "--txs",
        "300",
        "--batch-size",
        "100",
        "--seed",
        "9",
        "--fault",
        "bad-deposit@2",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let genesis = t.path().join("genesis.json");
    let batches = t.path().join("batches");
    let facts = t.path().join("l1-facts.json");
    let proofs = t.path().join("proofs");
    // replay uses l1-facts.json beside the genesis by default: named.
    let o = run(&[
        "replay",
        "--profile",
        "regtest",
        "--genesis",
        genesis.to_str().expect("path"),
        "--batches",
        batches.to_str().expect("path"),
        "--proofs",
        proofs.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("trusted input") && err.contains("l1-facts.json"), "{err}");
    let proof = std::fs::read_dir(&proofs).expect("proofs").next().expect("a proof").expect("entry").path();
    let proof = proof.to_str().expect("path");
    // verify-proof without an L1 source: no facts used, no notice (and it needs L1).
    let o = run(&["verify-proof", proof]);
    assert_eq!(o.status.code(), Some(5));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("trusted input"));
    // with --l1-facts: proven, and the file is named as trusted input.
    let o = run(&["verify-proof", proof, "--l1-facts", facts.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("trusted input") && err.contains("l1-facts.json"), "{err}");
}
