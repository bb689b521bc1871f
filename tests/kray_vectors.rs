//! The KRAY protocol test vectors in `docs/vectors/kray/*.json` (format: `docs/vectors/kray/README.md`).
//!
//! `every_vector_replays_and_proves_as_stated` replays every file with the reference replayer and checks
//! each batch's verdict, fault class and tx index against the file; verifies the stored fraud proof from
//! the file alone (with the file's L1 facts for `bad-deposit`); and checks that the proof the replayer
//! builds now is byte for byte the stored one, so any protocol drift fails here.
//!
//! The vectors are written by the `#[ignore]`d `regenerate_vectors`:
//!
//! ```sh
//! KRAY_REGEN_VECTORS=1 cargo test -j2 -p kray-guardian --test kray_vectors -- --ignored   # rewrite the files
//! cargo test -j2 -p kray-guardian --test kray_vectors -- --ignored                        # check they are current
//! ```

use bitcoin::key::Keypair;
use kray_devnet::workload::{generate, producer_key, user_key, Workload, WorkloadSpec, DEPOSIT_UNITS};
use kray_replayer::address::{account_key_of, address_of_pubkey};
use kray_replayer::batch::{Batch, BatchFile, SignedHeader};
use kray_replayer::execute::Semantics;
use kray_replayer::genesis::Genesis;
use kray_replayer::hash::sha256_parts;
use kray_replayer::l1facts::{DepositFact, FileFacts, L1Facts, L1FactsFile};
use kray_replayer::merkle::root_of;
use kray_replayer::proof::{verify_proof, FraudProof, VerifyError};
use kray_replayer::replay::{ReplayError, Replayer, Verdict};
use kray_replayer::seal::Sealer;
use kray_replayer::tx::{tx_leaf, OutPointRef, Tx};
use kray_replayer::{FaultClass, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Workload seed of every vector.
const SEED: u64 = 2026;
/// Users in every genesis (plus the Treasury).
const ACCOUNTS: usize = 6;
/// User txs per workload (two batches of ten; batch 1 also credits two deposits).
const TXS: usize = 20;
const BATCH_SIZE: usize = 10;
/// The fewest vector files the suite accepts.
const MIN_VECTORS: usize = 20;

/// One vector file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    description: String,
    profile: Profile,
    genesis: Genesis,
    l1_facts: L1FactsFile,
    batches: Vec<BatchFile>,
    expected: Vec<Expected>,
    proof: Option<FraudProof>,
}

/// The outcome of replaying one batch file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    batch_id: u64,
    /// `valid`, `fault`, `cannot-verify` or `not-replayed` (after a fault, a gap or a duplicate).
    verdict: String,
    fault: Option<FaultClass>,
    tx_index: Option<u32>,
}

impl Expected {
    fn valid(batch_id: u64) -> Self {
        Self { batch_id, verdict: "valid".into(), fault: None, tx_index: None }
    }
    fn fault(batch_id: u64, class: FaultClass, tx_index: Option<u32>) -> Self {
        Self { batch_id, verdict: "fault".into(), fault: Some(class), tx_index }
    }
}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs").join("vectors").join("kray")
}

fn facts_of(v: &Vector) -> FileFacts {
    FileFacts::from(v.l1_facts.clone())
}

/// Replay every batch of `v` in order: the outcome of each, and the proof of the first fault.
fn replay_vector(v: &Vector) -> (Vec<Expected>, Option<FraudProof>) {
    let (chain, state) = v.genesis.build(&v.profile).expect("genesis builds");
    let mut r = Replayer::new(chain, state).expect("replayer");
    let facts = facts_of(v);
    let mut out = Vec::new();
    let mut proof = None;
    for bf in &v.batches {
        let batch = Batch::from_file(bf.clone()).expect("batch file");
        let id = batch.signed.header.batch_id;
        let e = match r.replay(&batch, &facts) {
            Ok(Verdict::Valid { .. }) => Expected::valid(id),
            Ok(Verdict::Fault(f)) => {
                if proof.is_none() {
                    proof = Some(r.build_proof(&batch, &f).expect("proof builds"));
                }
                Expected::fault(id, f.class, f.tx_index)
            }
            Ok(Verdict::CannotVerify { .. }) => {
                Expected { batch_id: id, verdict: "cannot-verify".into(), fault: None, tx_index: None }
            }
            Err(ReplayError::AfterFault { .. } | ReplayError::Gap { .. } | ReplayError::Duplicate(_)) => {
                Expected { batch_id: id, verdict: "not-replayed".into(), fault: None, tx_index: None }
            }
            Err(e) => panic!("batch {id}: {e}"),
        };
        out.push(e);
    }
    (out, proof)
}

fn load_vectors() -> Vec<(String, serde_json::Value, Vector)> {
    let dir = vectors_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            let raw: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let v: Vector = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, raw, v)
        })
        .collect()
}

#[test]
fn every_vector_replays_and_proves_as_stated() {
    let vectors = load_vectors();
    assert!(vectors.len() >= MIN_VECTORS, "{} vector files, want at least {MIN_VECTORS}", vectors.len());
    let mut classes = BTreeSet::new();
    let mut valid_only = 0;
    for (name, raw, v) in &vectors {
        assert!(!v.description.is_empty(), "{name}: no description");
        v.profile.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.batches.len(), v.expected.len(), "{name}: one expected entry per batch");
        // Files are canonical: each batch re-serializes to exactly what is stored.
        for (i, bf) in v.batches.iter().enumerate() {
            let batch = Batch::from_file(bf.clone()).unwrap();
            assert_eq!(serde_json::to_value(batch.to_file()).unwrap(), raw["batches"][i], "{name}: batch {i}");
        }

        let (got, built) = replay_vector(v);
        assert_eq!(got, v.expected, "{name}: verdicts");
        let faults: Vec<&Expected> = v.expected.iter().filter(|e| e.verdict == "fault").collect();
        classes.extend(faults.iter().filter_map(|e| e.fault));
        let Some(first) = faults.first() else {
            assert!(v.proof.is_none() && built.is_none(), "{name}: a proof without a fault");
            valid_only += 1;
            continue;
        };
        let class = first.fault.unwrap();
        let stored = v.proof.as_ref().unwrap_or_else(|| panic!("{name}: a fault without a proof"));
        let built = built.unwrap();
        assert_eq!(stored.fault, class, "{name}");

        // The stored proof verifies from the file alone (plus the file's L1 facts for a deposit).
        let facts = facts_of(v);
        let proven = if class == FaultClass::BadDeposit {
            assert!(matches!(verify_proof(stored, None), Err(VerifyError::NeedsL1(_))), "{name}: needs L1");
            verify_proof(stored, Some(&facts as &dyn L1Facts))
        } else {
            verify_proof(stored, None)
        }
        .unwrap_or_else(|e| panic!("{name}: stored proof: {e}"));
        assert_eq!((proven.fault, proven.batch_id, proven.tx_index), (class, first.batch_id, first.tx_index), "{name}");

        // Byte for byte what the replayer builds today (canonical JSON, §17.6), and stored canonically.
        assert_eq!(serde_json::to_string(&built).unwrap(), serde_json::to_string(stored).unwrap(), "{name}: drift");
        assert_eq!(serde_json::to_value(&built).unwrap(), raw["proof"], "{name}: stored proof is not canonical");
        assert_eq!(built.proof_hash(), stored.proof_hash(), "{name}");
    }
    let missing: Vec<_> = FaultClass::ALL.iter().filter(|c| !classes.contains(c)).collect();
    assert!(missing.is_empty(), "fault classes without a vector: {missing:?}");
    assert!(valid_only >= 2, "want at least two all-valid vectors, found {valid_only}");
}

// ---------------------------------------------------------------------------------------------
// The generator.
// ---------------------------------------------------------------------------------------------

fn profile() -> Profile {
    Profile::load("regtest").unwrap()
}

fn spec(txs: usize, fault: Option<(FaultClass, u64)>) -> WorkloadSpec {
    WorkloadSpec { accounts: ACCOUNTS, txs, batch_size: BATCH_SIZE, seed: SEED, fault }
}

fn workload(txs: usize, fault: Option<(FaultClass, u64)>) -> Workload {
    generate(&profile(), &spec(txs, fault)).unwrap()
}

fn producer() -> Keypair {
    producer_key(SEED)
}

fn user_addr(i: u64) -> String {
    address_of_pubkey(&user_key(SEED, i).x_only_public_key().0, profile().network)
}

fn user_of(addr: &str) -> Keypair {
    (0..ACCOUNTS as u64).map(|i| user_key(SEED, i)).find(|k| user_addr_of(k) == addr).expect("a genesis user")
}

fn user_addr_of(k: &Keypair) -> String {
    address_of_pubkey(&k.x_only_public_key().0, profile().network)
}

/// Re-sign header and data after the header changed.
fn resign(batch: &mut Batch) {
    let kp = producer();
    let signed = SignedHeader::sign(batch.signed.header.clone(), &kp);
    *batch = Batch::new(signed, std::mem::take(&mut batch.txs), &kp);
}

/// Recompute the tx root, count and gas total after the txs changed, and re-sign: the producer
/// publishes exactly what it signed, so only the tampered tx is wrong.
fn reseal(batch: &mut Batch) {
    let leaves: Vec<_> = batch.txs.iter().map(|t| tx_leaf(t)).collect();
    let h = &mut batch.signed.header;
    h.tx_root = root_of(&leaves);
    h.tx_count = batch.txs.len() as u32;
    h.total_gas = batch.txs.iter().map(|b| Tx::decode(b).map(|t| t.gas_fee).unwrap_or(0)).sum();
    resign(batch);
}

fn decoded(batch: &Batch) -> Vec<Tx> {
    batch.txs.iter().map(|b| Tx::decode(b).unwrap()).collect()
}

/// A sealer standing after batch 1 of the honest workload `w` (to seal a different batch 2).
fn sealer_after_batch_1(w: &Workload) -> Sealer {
    let profile = profile();
    let (chain, state) = w.genesis.build(&profile).unwrap();
    let mut r = Replayer::new(chain.clone(), state).unwrap();
    let v = r.replay(&w.batches[0].1, &FileFacts::from(w.facts.clone())).unwrap();
    assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
    Sealer::new(chain, r.state().clone(), Some(r.tip()), producer()).unwrap()
}

/// Seal batch 2 of the honest workload again from `candidates`, under `semantics`, with `facts`.
fn reseal_batch_2(w: &Workload, candidates: Vec<Tx>, semantics: Semantics, facts: &L1FactsFile) -> Batch {
    let mut sealer = sealer_after_batch_1(w);
    let l1_height = w.batches[1].1.signed.header.l1_height;
    let (batch, rejected) = sealer.seal(candidates, l1_height, &FileFacts::from(facts.clone()), semantics);
    assert!(rejected.is_empty(), "{rejected:?}");
    batch
}

fn vector(description: &str, w: Workload, batches: Vec<Batch>, facts: L1FactsFile, expected: Vec<Expected>) -> Vector {
    let mut v = Vector {
        description: description.into(),
        profile: profile(),
        genesis: w.genesis,
        l1_facts: facts,
        batches: batches.iter().map(Batch::to_file).collect(),
        expected,
        proof: None,
    };
    // The replayer must agree with what the case was built to be; the proof is the replayer's.
    let (got, proof) = replay_vector(&v);
    assert_eq!(got, v.expected, "{description}");
    v.proof = proof;
    v
}

fn batches_of(w: &Workload) -> Vec<Batch> {
    w.batches.iter().map(|(_, b)| b.clone()).collect()
}

/// A `gen-workload` fault: the expected tx index is where the faulty batch first differs from the
/// honest one (independent of the replayer), for the tx-level classes.
fn injected(class: FaultClass, batch_id: u64, txs: usize, description: &str) -> Vector {
    let honest = workload(txs, None);
    let w = workload(txs, Some((class, batch_id)));
    let tx_level = matches!(
        class,
        FaultClass::InvalidSignature
            | FaultClass::PubkeyAddressMismatch
            | FaultClass::BadNonce
            | FaultClass::InsufficientBalance
            | FaultClass::Overflow
            | FaultClass::WrongGas
            | FaultClass::BadDeposit
            | FaultClass::DoubleDeposit
            | FaultClass::MalformedTx
    );
    let mut expected = Vec::new();
    for (i, (_, b)) in w.batches.iter().enumerate() {
        let id = b.signed.header.batch_id;
        let seen_before = w.batches[..i].iter().any(|(_, o)| o.signed.header.batch_id == id);
        // Before the faulty batch, and the first (honest) header of an equivocated id: valid.
        let equivocated_first = id == batch_id && class == FaultClass::Equivocation && !seen_before;
        if id < batch_id || equivocated_first {
            expected.push(Expected::valid(id));
        } else if id == batch_id {
            let tx_index = tx_level.then(|| {
                let good = &honest.batches[(batch_id - 1) as usize].1.txs;
                (0..b.txs.len()).find(|&k| good.get(k) != Some(&b.txs[k])).expect("a changed tx") as u32
            });
            expected.push(Expected::fault(id, class, tx_index));
        } else {
            expected.push(Expected { batch_id: id, verdict: "not-replayed".into(), fault: None, tx_index: None });
        }
    }
    let facts = w.facts.clone();
    let batches = batches_of(&w);
    vector(description, w, batches, facts, expected)
}

/// Every vector, by file name.
fn build_all() -> Vec<(String, Vector)> {
    use FaultClass::*;
    let mut out: Vec<(String, Vector)> = Vec::new();
    let mut add = |name: &str, v: Vector| out.push((format!("{name}.json"), v));

    // Valid: the honest workload.
    let honest = workload(TXS, None);
    let facts = honest.facts.clone();
    add(
        "valid-honest",
        vector(
            "An honest two-batch workload: batch 1 credits two bridge deposits and carries ten transfers, \
             batch 2 ten more; both valid.",
            workload(TXS, None),
            batches_of(&honest),
            facts.clone(),
            vec![Expected::valid(1), Expected::valid(2)],
        ),
    );

    // Valid: a self-transfer costs the sender only the gas (and creates nothing).
    {
        let w = workload(TXS, None);
        let mut candidates = decoded(&w.batches[1].1);
        let from = user_addr(0);
        let nonce =
            w.batches.iter().flat_map(|(_, b)| decoded(b)).filter(|t| t.tx_type != "deposit" && t.from == from).count()
                as u64;
        let mut st =
            Tx { tx_type: "transfer".into(), from: from.clone(), to: from, amount: 5_000, nonce, ..sample_tx() };
        st.sign(&user_key(SEED, 0));
        candidates.push(st);
        let b2 = reseal_batch_2(&w, candidates, Semantics::Reference, &w.facts);
        let batches = vec![w.batches[0].1.clone(), b2];
        let facts = w.facts.clone();
        add(
            "valid-self-transfer",
            vector(
                "Batch 2 ends with a self-transfer of 5,000 credits by user 0: it costs the sender only the 1,000 \
                 gas (credited to the Treasury) and mints nothing; both batches valid.",
                w,
                batches,
                facts,
                vec![Expected::valid(1), Expected::valid(2)],
            ),
        );
    }

    // One gen-workload injection per class, in batch 2 (the last).
    let described: [(FaultClass, &str, &str); 15] = [
        (InvalidSignature, "invalid-signature", "batch 2 carries a user transfer whose signature has one bit flipped"),
        (
            PubkeyAddressMismatch,
            "pubkey-address-mismatch",
            "batch 2 carries a transfer signed by another user's key (valid signature, wrong key)",
        ),
        (
            BadNonce,
            "bad-nonce",
            "batch 2 carries a transfer whose nonce is one ahead of the sender's, re-signed by the sender",
        ),
        (
            InsufficientBalance,
            "insufficient-balance",
            "batch 2 carries a transfer of more than the sender holds, re-signed by the sender",
        ),
        (Overflow, "overflow", "batch 2 carries a transfer whose amount + gas exceeds 2^64-1, re-signed by the sender"),
        (
            WrongGas,
            "wrong-gas-tx",
            "batch 2 carries a transfer declaring 0 gas instead of the profile's 1,000 (tx level)",
        ),
        (
            SelfTransferInflation,
            "self-transfer-inflation",
            "batch 2 ends with a self-transfer and is sealed with the bug that mints its amount",
        ),
        (
            BadDeposit,
            "bad-deposit-unknown-outpoint",
            "batch 2 ends with a deposit for an outpoint that does not exist on L1 (not in the L1 facts)",
        ),
        (DoubleDeposit, "double-deposit", "batch 2 ends with batch 1's first deposit, credited a second time"),
        (
            WithdrawalNotBurned,
            "withdrawal-not-burned",
            "batch 2 ends with a withdrawal and is sealed with the bug that burns only its gas",
        ),
        (WrongStateRoot, "wrong-state-root", "batch 2's header has one bit of new_state_root flipped"),
        (WrongTxRoot, "wrong-tx-root", "batch 2's header has one bit of tx_root flipped"),
        (BrokenChain, "broken-chain-later", "batch 2's header has one bit of prev_batch_hash flipped"),
        (
            Equivocation,
            "equivocation",
            "after the honest batch 2 comes a second signed header for batch 2 (another l1_height)",
        ),
        (
            MalformedTx,
            "malformed-tx-undecodable",
            "batch 2 carries a transfer whose bytes lost their last byte (undecodable, published raw)",
        ),
    ];
    for (class, name, what) in described {
        let d = format!(
            "gen-workload --accounts {ACCOUNTS} --txs {TXS} --batch-size {BATCH_SIZE} --seed {SEED} --fault {class}@2: \
             {what}; every header is signed by the producer."
        );
        add(name, injected(class, 2, TXS, &d));
    }

    // Broken chain at batch 1: its predecessor is the genesis (evidence `previous: null`).
    add(
        "broken-chain-batch-1",
        injected(
            BrokenChain,
            1,
            BATCH_SIZE,
            &format!(
                "gen-workload --accounts {ACCOUNTS} --txs {BATCH_SIZE} --batch-size {BATCH_SIZE} --seed {SEED} \
                 --fault broken-chain@1: batch 1's prev_batch_hash is not the chain id."
            ),
        ),
    );

    // Wrong gas, header total: every tx right, total_gas one credit too high.
    {
        let w = workload(TXS, None);
        let mut b2 = w.batches[1].1.clone();
        b2.signed.header.total_gas += 1;
        resign(&mut b2);
        let batches = vec![w.batches[0].1.clone(), b2];
        let facts = w.facts.clone();
        add(
            "wrong-gas-header-total",
            vector(
                "Batch 2's header declares total_gas one credit above the sum of its txs' gas (re-signed): \
                 wrong-gas at batch level, proven with all txs and the data signature.",
                w,
                batches,
                facts,
                vec![Expected::valid(1), Expected::fault(2, WrongGas, None)],
            ),
        );
    }

    // Wrong gas, Treasury not credited: sealed with the bug, so the claimed root is the bug's.
    {
        let w = workload(TXS, None);
        let b2 = reseal_batch_2(&w, decoded(&w.batches[1].1), Semantics::TreasuryNotCredited, &w.facts);
        let batches = vec![w.batches[0].1.clone(), b2];
        let facts = w.facts.clone();
        add(
            "wrong-gas-treasury-not-credited",
            vector(
                "Batch 2 is sealed by a producer that takes each tx's gas from the sender but never credits \
                 the Treasury: the claimed new_state_root is the bug's, so wrong-gas at batch level.",
                w,
                batches,
                facts,
                vec![Expected::valid(1), Expected::fault(2, WrongGas, None)],
            ),
        );
    }

    // Malformed: an unsupported tx type (seed 002's nft_mint), signed by its sender.
    {
        let w = workload(TXS, None);
        let mut b2 = w.batches[1].1.clone();
        let k = 4;
        let mut tx = Tx::decode(&b2.txs[k]).unwrap();
        tx.tx_type = "nft_mint".into();
        let sender = user_of(&tx.from);
        tx.sign(&sender);
        b2.txs[k] = tx.encode().unwrap();
        reseal(&mut b2);
        let batches = vec![w.batches[0].1.clone(), b2];
        let facts = w.facts.clone();
        add(
            "malformed-tx-unsupported-type",
            vector(
                "Batch 2's tx 4 has tx_type nft_mint (seed 002; not executed by protocol version 1), correctly \
                 signed: malformed-tx (unsupported), proven by the tx alone.",
                w,
                batches,
                facts,
                vec![Expected::valid(1), Expected::fault(2, MalformedTx, Some(k as u32))],
            ),
        );
    }

    // Malformed: a from_index annotation that names another existing account.
    {
        let w = workload(TXS, None);
        let mut b2 = w.batches[1].1.clone();
        let k = 3;
        let mut tx = Tx::decode(&b2.txs[k]).unwrap();
        let from = tx.from_index.unwrap();
        tx.from_index = Some(if from == 1 { 2 } else { 1 });
        b2.txs[k] = tx.encode().unwrap();
        reseal(&mut b2);
        let batches = vec![w.batches[0].1.clone(), b2];
        let facts = w.facts.clone();
        add(
            "malformed-tx-wrong-account-index",
            vector(
                "Batch 2's tx 3 (a correctly signed transfer) is annotated with a from_index naming another \
                 existing account: malformed-tx, proven by execution over a state witness.",
                w,
                batches,
                facts,
                vec![Expected::valid(1), Expected::fault(2, MalformedTx, Some(k as u32))],
            ),
        );
    }

    // Bad deposit: the outpoint exists and pays the bridge, but is unconfirmed at the batch's L1 height.
    {
        let w = workload(TXS, None);
        let unit = profile().credits_per_rune_unit();
        let outpoint = OutPointRef { txid: sha256_parts(&[b"kray-vectors", b"unconfirmed deposit"]), vout: 1 };
        let recipient = user_key(SEED, 2);
        let fact = DepositFact {
            outpoint,
            to_bridge: true,
            rune_amount: DEPOSIT_UNITS,
            recipient: Some(account_key_of(&recipient.x_only_public_key().0)),
            height: 1,
        };
        let mut sealed_facts = w.facts.clone();
        sealed_facts.deposits.push(fact.clone());
        let mut vector_facts = w.facts.clone();
        vector_facts.deposits.push(DepositFact { height: 0, ..fact });
        let mut candidates = decoded(&w.batches[1].1);
        let k = candidates.len() as u32;
        candidates.push(Tx {
            tx_type: "deposit".into(),
            from: outpoint.to_string(),
            to: user_addr_of(&recipient),
            amount: DEPOSIT_UNITS * unit,
            ..sample_tx()
        });
        let b2 = reseal_batch_2(&w, candidates, Semantics::Reference, &sealed_facts);
        let batches = vec![w.batches[0].1.clone(), b2];
        add(
            "bad-deposit-unconfirmed",
            vector(
                "Batch 2 ends with a deposit whose outpoint pays the rune to the bridge for the right recipient \
                 and amount, but is unconfirmed (height 0) in the L1 facts: bad-deposit; the proof needs L1.",
                w,
                batches,
                vector_facts,
                vec![Expected::valid(1), Expected::fault(2, BadDeposit, Some(k))],
            ),
        );
    }
    out
}

/// An empty deposit-shaped tx to fill the remaining fields from.
fn sample_tx() -> Tx {
    Tx::unsigned("", "", "", 0, 0)
}

fn render(v: &Vector) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap();
    s.push('\n');
    s
}

/// Regenerate the vectors (`KRAY_REGEN_VECTORS=1`), or check the stored ones are what the generator
/// writes now.
#[test]
#[ignore = "generator: KRAY_REGEN_VECTORS=1 cargo test -p kray-guardian --test kray_vectors -- --ignored"]
fn regenerate_vectors() {
    let all = build_all();
    let again = build_all();
    let dir = vectors_dir();
    let write = std::env::var("KRAY_REGEN_VECTORS").as_deref() == Ok("1");
    let mut stale = Vec::new();
    for ((name, v), (_, w)) in all.iter().zip(&again) {
        let text = render(v);
        assert_eq!(text, render(w), "{name}: the generator is not deterministic");
        let path = dir.join(name);
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
    }
    assert!(stale.is_empty(), "stale vectors (rerun with KRAY_REGEN_VECTORS=1): {stale:?}");
}
