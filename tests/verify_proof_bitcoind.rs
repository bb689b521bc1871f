//! `kray-guardian verify-proof FILE --bitcoind URL` against a real `bitcoind -regtest`: a `bad-deposit`
//! proof is judged by the node's view of the deposit outpoint.
//!
//! - an outpoint that does not exist on the node → exit 0 (proven); without `--bitcoind` → exit 5;
//! - an outpoint that exists, pays the etched rune to the bridge with the claimed amount, names the
//!   credited account in its `KRAY D` tag and has the profile's confirmations → exit 4 (not proven).
//!
//! Needs the bitcoind built by `scripts/install-bitcoind.sh` (or `BITCOIND_EXE`). Skips, with a message,
//! only when `KRAY_SKIP_BITCOIND=1`; otherwise a missing binary fails it.

use bitcoin::{Network, Transaction, Txid};
use kray_devnet::bitcoind::BitcoindProcess;
use kray_devnet::rpc::RpcClient;
use kray_devnet::runes::{self, DepositSpec, RuneLedger};
use kray_devnet::wallet::{Wallet, DEFAULT_FEE_RATE};
use kray_devnet::workload::{producer_key, user_key};
use kray_replayer::address::{account_key_of, address_of_pubkey};
use kray_replayer::bridge::{BridgeDescriptor, InternalKey};
use kray_replayer::execute::Semantics;
use kray_replayer::genesis::{Genesis, GenesisAccount};
use kray_replayer::hash::sha256_parts;
use kray_replayer::l1facts::{DepositFact, FileFacts, L1FactsFile};
use kray_replayer::replay::{Replayer, Verdict};
use kray_replayer::seal::Sealer;
use kray_replayer::tx::{OutPointRef, Tx};
use kray_replayer::{FaultClass, Profile};
use std::path::{Path, PathBuf};
use std::process::Output;

const SEED: u64 = 77;
/// Rune units deposited (divisibility 0): 7,000 credits on L2.
const UNITS: u64 = 7;

/// A node, a funded wallet and the rune ledger, kept in step block by block.
struct L1 {
    node: BitcoindProcess,
    rpc: RpcClient,
    wallet: Wallet,
    ledger: RuneLedger,
    scanned: u32,
}

impl L1 {
    async fn mine(&mut self, n: u64) {
        self.rpc.generate_to_address(n, self.wallet.address()).await.expect("generatetoaddress");
        let tip = self.rpc.get_block_count().await.expect("getblockcount") as u32;
        for height in self.scanned + 1..=tip {
            let hash = self.rpc.get_block_hash(height.into()).await.expect("getblockhash");
            let block = self.rpc.get_block(&hash).await.expect("getblock");
            self.wallet.scan_block(&block, height);
            self.ledger.apply_block(&block, height.into());
        }
        self.scanned = tip;
    }

    /// Broadcast, mine one block; the height that confirmed it.
    async fn confirm(&mut self, tx: &Transaction) -> u32 {
        let accept = self.rpc.test_mempool_accept(std::slice::from_ref(tx)).await.expect("testmempoolaccept");
        assert_eq!(accept[0].allowed, Some(true), "rejected: {:?}", accept[0].reject_reason);
        let txid = self.rpc.send_raw_transaction(tx).await.expect("sendrawtransaction");
        assert_eq!(txid, tx.compute_txid());
        self.wallet.apply_unconfirmed(tx);
        self.mine(1).await;
        self.scanned
    }

    fn url(&self) -> String {
        format!("http://{}:{}@127.0.0.1:{}", self.node.rpc_user(), self.node.rpc_password(), self.node.rpc_port())
    }
}

fn verify(file: &Path, bitcoind: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kray-guardian"));
    cmd.arg("verify-proof").arg(file);
    if let Some(url) = bitcoind {
        cmd.args(["--bitcoind", url]);
    }
    cmd.output().expect("the binary runs")
}

fn show(o: &Output) -> String {
    format!("stdout: {}stderr: {}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The profile TOML of the devnet: the shipped regtest profile with the etched rune's id.
fn write_profile(dir: &Path, rune: &str) -> PathBuf {
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/regtest.toml")).unwrap();
    assert!(shipped.contains("rune_id = \"\""), "the shipped regtest profile leaves rune_id to the devnet");
    let path = dir.join("regtest-devnet.toml");
    std::fs::write(&path, shipped.replace("rune_id = \"\"", &format!("rune_id = \"{rune}\""))).unwrap();
    path
}

/// A chain whose batch 1 credits a deposit of `UNITS` from `outpoint` to user 1, sealed on
/// `l1_height`; replayed by a guardian whose L1 facts know no deposit, it is a `bad-deposit` at tx 0,
/// and the guardian's proof of that is written to `dir/name`. Whether the proof holds is for L1 to say.
fn bad_deposit_proof(profile: &Profile, outpoint: OutPointRef, l1_height: u32, dir: &Path, name: &str) -> PathBuf {
    let producer = producer_key(SEED);
    let users: Vec<_> = (0..3).map(|i| user_key(SEED, i)).collect();
    let addr = |k: &bitcoin::key::Keypair| address_of_pubkey(&k.x_only_public_key().0, profile.network);
    let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
    accounts.extend(users.iter().map(|k| GenesisAccount { address: addr(k), balance: 1_000_000 }));
    let genesis =
        Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
    let (chain, state) = genesis.build(profile).unwrap();
    let recipient = &users[1];
    let claimed = DepositFact {
        outpoint,
        to_bridge: true,
        rune_amount: UNITS,
        recipient: Some(account_key_of(&recipient.x_only_public_key().0)),
        height: 1,
    };
    let sealed_on = FileFacts::from(L1FactsFile { tip_height: l1_height, deposits: vec![claimed] });
    let deposit =
        Tx::unsigned("deposit", outpoint.to_string(), addr(recipient), UNITS * profile.credits_per_rune_unit(), 0);
    let mut sealer = Sealer::new(chain.clone(), state.clone(), None, producer).unwrap();
    let (batch, rejected) = sealer.seal(vec![deposit], l1_height, &sealed_on, Semantics::Reference);
    assert!(rejected.is_empty(), "{rejected:?}");

    let knows_nothing = FileFacts::from(L1FactsFile { tip_height: l1_height, deposits: Vec::new() });
    let mut guardian = Replayer::new(chain, state).unwrap();
    let fault = match guardian.replay(&batch, &knows_nothing).unwrap() {
        Verdict::Fault(f) => f,
        other => panic!("expected bad-deposit, got {other:?}"),
    };
    assert_eq!((fault.class, fault.tx_index), (FaultClass::BadDeposit, Some(0)), "{fault}");
    let proof = guardian.build_proof(&batch, &fault).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, proof.to_json()).unwrap();
    path
}

fn outpoint_of(txid: Txid, vout: u32) -> OutPointRef {
    OutPointRef::parse(&format!("{txid}:{vout}")).expect("canonical outpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_proof_judges_bad_deposits_on_a_real_node() {
    if std::env::var("KRAY_SKIP_BITCOIND").as_deref() == Ok("1") {
        eprintln!("KRAY_SKIP_BITCOIND=1: skipping the regtest bitcoind test");
        return;
    }
    let node = BitcoindProcess::start().await.unwrap_or_else(|e| panic!("cannot start bitcoind: {e}"));
    let rpc = node.rpc_client();
    let wallet = Wallet::from_seed(b"verify-proof-bitcoind", Network::Regtest).expect("wallet");
    let mut l1 = L1 { node, rpc, wallet, ledger: RuneLedger::new(), scanned: 0 };
    l1.mine(101).await;

    // Etch the devnet rune; the profile names it.
    let etch = runes::build_etch_tx(&l1.wallet, &l1.ledger, 1_000_000, Some('K'), DEFAULT_FEE_RATE).expect("etch");
    l1.confirm(&etch).await;
    let rune = l1.ledger.etched_by(&etch.compute_txid()).expect("etched").id;
    let tmp = tempfile::tempdir().unwrap();
    let profile = Profile::load(write_profile(tmp.path(), &rune.to_string()).to_str().unwrap()).unwrap();
    assert_eq!(profile.rune_id, rune.to_string());
    let keys = profile.bridge.as_ref().expect("the regtest profile names the bridge");
    let bridge = BridgeDescriptor::from_hex_keys(&keys.pubkeys, InternalKey::Nums).expect("bridge");

    // A real deposit: UNITS of the rune to the bridge, tagged for user 1, then the profile's confirmations.
    let recipient = user_key(SEED, 1);
    let spec = DepositSpec {
        rune,
        amount: u128::from(UNITS),
        l2_account: account_key_of(&recipient.x_only_public_key().0).0,
        bridge_value: runes::RUNE_OUTPUT_VALUE,
    };
    let dep = runes::build_deposit_tx(&l1.wallet, &l1.ledger, &bridge, &spec, DEFAULT_FEE_RATE).expect("deposit");
    let h = l1.confirm(&dep).await;
    l1.mine(u64::from(profile.confirmations)).await;
    let tip = l1.scanned;
    assert!(tip - h + 1 >= profile.confirmations);
    let l1_height = h + profile.confirmations - 1;
    let url = l1.url();

    // 1. An outpoint the node has never seen: proven (exit 0), and without a node: exit 5.
    let nowhere = OutPointRef { txid: sha256_parts(&[b"verify-proof-bitcoind", b"no such tx"]), vout: 0 };
    let p = bad_deposit_proof(&profile, nowhere, l1_height, tmp.path(), "nowhere.json");
    let o = verify(&p, Some(&url));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("PROVEN: bad-deposit in batch 1 tx 0"), "{}", show(&o));
    let o = verify(&p, None);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));

    // 2. The real deposit's transaction, an output index it does not have: proven too.
    let p = bad_deposit_proof(&profile, outpoint_of(dep.compute_txid(), 9), l1_height, tmp.path(), "no-vout.json");
    let o = verify(&p, Some(&url));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));

    // 3. The real bridge output: right rune, amount, recipient and confirmations. The guardian that
    //    built this proof lacked the L1 fact; the node has it, so the proof does not prove: exit 4.
    let real = outpoint_of(dep.compute_txid(), runes::DEPOSIT_BRIDGE_VOUT);
    let p = bad_deposit_proof(&profile, real, l1_height, tmp.path(), "real.json");
    let o = verify(&p, Some(&url));
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("NOT-PROVEN"), "{}", show(&o));
    let o = verify(&p, None);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));

    // 4. The same output one block before it has the profile's confirmations: proven again.
    let p = bad_deposit_proof(&profile, real, l1_height - 1, tmp.path(), "early.json");
    let o = verify(&p, Some(&url));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("confirm"), "{}", show(&o));

    l1.node.stop().await.expect("bitcoind stops");
}
