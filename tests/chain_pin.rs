//! Proofs bound to their chain (issue 9, items 2 and 3), through the binary:
//!
//! - `verify-account`: the file carries the chain identity; a forged `u64::MAX` balance signed by a key
//!   outside the chain's producers is not proven, an old (version 1) file is refused with its reason,
//!   and `--chain-id` / `--genesis --profile` pin the chain;
//! - `verify-proof`: a proof from a private chain (same profile, own producer key) is not proven when
//!   pinned to the real chain; unpinned it is, with a stderr notice naming the chain id it proved
//!   against; a proof of the real chain pinned by its genesis is proven.
//!
//! Workloads come from `gen-workload`; the honest account proof is built here from the replayer's state
//! after the workload's last batch, in the format `GET /v1/accounts/{address}` serves.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bitcoin::key::Keypair;
use kray_replayer::address::format_l2_address;
use kray_replayer::batch::{Batch, SignedHeader};
use kray_replayer::genesis::{Chain, Genesis};
use kray_replayer::hash::Hash32;
use kray_replayer::l1facts::{FileFacts, L1FactsFile};
use kray_replayer::replay::{Replayer, Verdict};
use kray_replayer::state::{Account, State};
use kray_replayer::Profile;
use serde_json::{json, Value};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kray-guardian")).args(args).output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `gen-workload` (regtest, 12 users, 3 batches) with `seed` into `dir`, with an optional fault.
fn gen(dir: &Path, seed: u64, fault: Option<&str>) {
    let seed = seed.to_string();
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
        &seed,
        "--out",
        dir.to_str().expect("utf-8 path"),
    ];
    if let Some(f) = fault {
        args.extend(["--fault", f]);
    }
    let o = run(&args);
    assert!(o.status.success(), "gen-workload: {}", text(&o));
}

/// Replays `dir` with `replay --proofs`; the one proof file written.
fn proof_of(dir: &Path) -> PathBuf {
    let proofs = dir.join("proofs");
    let o = run(&[
        "replay",
        "--profile",
        "regtest",
        "--genesis",
        dir.join("genesis.json").to_str().expect("path"),
        "--batches",
        dir.join("batches").to_str().expect("path"),
        "--proofs",
        proofs.to_str().expect("path"),
    ]);
    assert_eq!(o.status.code(), Some(3), "a fault: {}", text(&o));
    let files: Vec<PathBuf> = std::fs::read_dir(&proofs).expect("proofs").map(|e| e.expect("entry").path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

fn genesis_chain(dir: &Path) -> (Chain, State) {
    let text = std::fs::read_to_string(dir.join("genesis.json")).expect("genesis");
    let profile = Profile::load("regtest").expect("profile");
    Genesis::from_json(&text).expect("genesis").build(&profile).expect("builds")
}

fn chain_id_of(dir: &Path) -> Hash32 {
    genesis_chain(dir).0.chain_id()
}

/// Replays the honest workload in `dir`; the replayer after its last batch.
fn replayed(dir: &Path) -> Replayer {
    let (chain, state) = genesis_chain(dir);
    let max = chain.profile.max_batch_txs;
    let mut r = Replayer::new(chain, state).expect("replayer");
    let facts: L1FactsFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("l1-facts.json")).expect("facts")).expect("facts json");
    let facts = FileFacts::from(facts);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("batches")).expect("batches").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for f in files {
        let b = Batch::from_json(&std::fs::read_to_string(&f).expect("batch"), max).expect("batch json");
        assert!(matches!(r.replay(&b, &facts).expect("replays"), Verdict::Valid { .. }), "{}", f.display());
    }
    r
}

/// An account proof file (format of `GET /v1/accounts/{address}`) of account `index` of `state` after
/// the batch `signed`, of chain `chain`, anchored (as the file claims) at height 100.
fn account_file(chain: &Chain, state: &State, index: u64, signed: &SignedHeader) -> Value {
    let roots = state.roots();
    let account = state.accounts()[index as usize];
    json!({
        "format": "kray-account-proof",
        "version": 2,
        "chain": chain,
        "network": chain.profile.network,
        "address": format_l2_address(&account.key, chain.profile.network),
        "account": account,
        "index": index,
        "account_count": roots.accounts.1,
        "account_proof": state.trees().0.prove(&[index]),
        "withdrawals": {"root": hex::encode(roots.withdrawals.0), "count": roots.withdrawals.1},
        "deposits": {"root": hex::encode(roots.deposits.0), "count": roots.deposits.1},
        "batch": signed,
        "anchor": {
            "batch_hash": hex::encode(signed.header.hash()),
            "txid": "aa".repeat(32),
            "vout": 0,
            "height": 100,
            "confirmations": 6,
        },
    })
}

/// `verify-account FILE extra…` on `file` holding `v`.
fn verify_account(file: &Path, v: &Value, extra: &[&str]) -> Output {
    std::fs::write(file, serde_json::to_string_pretty(v).expect("json")).expect("write");
    let mut args = vec!["verify-account", file.to_str().expect("path")];
    args.extend(extra);
    run(&args)
}

/// A key outside every workload's producers.
fn outsider() -> Keypair {
    let sk = bitcoin::secp256k1::SecretKey::from_slice(&[42; 32]).expect("key");
    Keypair::from_secret_key(kray_replayer::address::secp(), &sk)
}

/// A one-account state where `key` holds `u64::MAX`, in a header like `like` (its chain id kept)
/// signed by the outsider.
fn forged_state(
    key: kray_replayer::address::AccountKey,
    like: &SignedHeader,
    chain_id: Hash32,
) -> (State, SignedHeader) {
    let state = State::from_accounts(vec![Account { key, balance: u64::MAX, nonce: 0 }]).expect("state");
    let mut h = like.header.clone();
    h.chain_id = chain_id;
    h.new_state_root = state.state_root();
    h.producer = outsider().x_only_public_key().0.serialize();
    (state, SignedHeader::sign(h, &outsider()))
}

#[test]
fn account_proofs_are_bound_to_the_chains_producers_and_pinned() {
    let t = tempfile::tempdir().expect("tmp");
    let real = t.path().join("real");
    let other = t.path().join("other");
    gen(&real, 9, None);
    gen(&other, 10, None);
    let real_id = hex::encode(chain_id_of(&real));
    let other_id = hex::encode(chain_id_of(&other));
    let r = replayed(&real);
    let tip = r.tip().batch_id;
    let header = r.header(tip).expect("tip header").clone();
    let file = t.path().join("account.json");
    let genesis = real.join("genesis.json");
    let genesis = genesis.to_str().expect("path");

    // (b) The honest proof: proven unpinned (with the notice), pinned right; not proven pinned wrong.
    let honest = account_file(r.chain(), r.state(), 3, &header);
    let o = verify_account(&file, &honest, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("PROVEN"), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not pinned") && err.contains(&real_id), "{}", text(&o));
    let o = verify_account(&file, &honest, &["--chain-id", &real_id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not pinned"), "{}", text(&o));
    let o = verify_account(&file, &honest, &["--chain-id", &real_id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["pinned"], true);
    assert_eq!(j["proven"]["chain_id"], real_id.as_str());
    let o = verify_account(&file, &honest, &["--chain-id", &other_id]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("not the pinned chain"), "{}", text(&o));
    // (d) pinned by the genesis and profile.
    let o = verify_account(&file, &honest, &["--genesis", genesis, "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let other_genesis = other.join("genesis.json");
    let o =
        verify_account(&file, &honest, &["--genesis", other_genesis.to_str().expect("path"), "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // (a) A forged u64::MAX balance for the same account, signed by an outside key, under the real
    // chain's identity: not proven, pinned or not.
    let key = r.state().accounts()[3].key;
    let (state, signed) = forged_state(key, &header, r.chain().chain_id());
    let forged = account_file(r.chain(), &state, 0, &signed);
    for extra in [&[][..], &["--chain-id", &real_id][..]] {
        let o = verify_account(&file, &forged, extra);
        assert_eq!(o.status.code(), Some(4), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains("not a producer"), "{}", text(&o));
    }
    // The same forgery in the version 1 format (no chain identity, only the header's chain id field):
    // refused with its reason.
    let mut v1 = forged.clone();
    v1["version"] = 1.into();
    v1.as_object_mut().expect("object").remove("chain");
    let o = verify_account(&file, &v1, &["--chain-id", &real_id]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("version 1"), "{}", text(&o));
    // The forger describes a chain of its own (its key the producer): self-consistent, so only a pin
    // rejects it — and unpinned the notice names that other chain.
    let mut own = r.chain().clone();
    own.producers = vec![hex::encode(outsider().x_only_public_key().0.serialize())];
    let (state, signed) = forged_state(key, &header, own.chain_id());
    let forged_own = account_file(&own, &state, 0, &signed);
    let o = verify_account(&file, &forged_own, &["--chain-id", &real_id]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let o = verify_account(&file, &forged_own, &["--genesis", genesis, "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let o = verify_account(&file, &forged_own, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not pinned") && err.contains(&hex::encode(own.chain_id())), "{}", text(&o));
    assert!(!err.contains(&real_id), "{}", text(&o));
    // The forger's chain id written into the real chain's identity: the recomputed id differs.
    let mut mixed = forged_own.clone();
    mixed["chain"] = serde_json::to_value(r.chain()).expect("chain");
    let o = verify_account(&file, &mixed, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    // Pins that cannot be read are errors (exit 1), not verdicts.
    let o = verify_account(&file, &honest, &["--chain-id", "zz"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = verify_account(&file, &honest, &["--chain-id", &other_id, "--genesis", genesis, "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(1), "two pins that disagree: {}", text(&o));
}

#[test]
fn fraud_proofs_can_be_pinned_to_their_chain() {
    let t = tempfile::tempdir().expect("tmp");
    let real = t.path().join("real");
    let private = t.path().join("private");
    // The real chain and a private one with the same profile and the same fault, under its own
    // producer key (another workload seed).
    gen(&real, 9, Some("bad-nonce@2"));
    gen(&private, 11, Some("bad-nonce@2"));
    let real_id = hex::encode(chain_id_of(&real));
    let private_id = hex::encode(chain_id_of(&private));
    assert_ne!(real_id, private_id);
    let real_proof = proof_of(&real);
    let private_proof = proof_of(&private);
    let p = private_proof.to_str().expect("path");
    let genesis = real.join("genesis.json");
    let genesis = genesis.to_str().expect("path");

    // (c) The private chain's proof, pinned to the real chain: not proven.
    let o = run(&["verify-proof", p, "--chain-id", &real_id]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("not the pinned chain"), "{}", text(&o));
    let o = run(&["verify-proof", p, "--genesis", genesis, "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Unpinned it proves its fault, and says on stderr that the chain was not pinned and which it is.
    let o = run(&["verify-proof", p]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not pinned") && err.contains(&private_id), "{}", text(&o));

    // (d) The real chain's proof, pinned by its genesis and profile, or by its id: proven, no notice.
    let rp = real_proof.to_str().expect("path");
    let o = run(&["verify-proof", rp, "--genesis", genesis, "--profile", "regtest"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(", pinned)"), "{}", text(&o));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("not pinned"), "{}", text(&o));
    let o = run(&["verify-proof", rp, "--chain-id", &real_id.to_uppercase(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["pinned"], true);
    assert_eq!(j["proven"]["chain_id"], real_id.as_str());

    // `--genesis` needs `--profile` (a usage error), an unreadable chain id is an error.
    let o = run(&["verify-proof", rp, "--genesis", genesis]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = run(&["verify-proof", rp, "--chain-id", "abc"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}
