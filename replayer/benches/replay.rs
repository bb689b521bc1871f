//! Criterion micro-benchmarks of the replay hot paths, small enough for a 2-core machine:
//! one BIP-340 verification and one Merkle node hash (the unit costs), `prepare_txs` and
//! `Replayer::replay` over sealed 1,000-tx batches, `State::apply` + `state_root` on a 100,000-account
//! state, and an incremental Merkle update. The full-size figures (1,000,000 accounts, 1,000,000 txs)
//! come from `kray-guardian bench`; see docs/benchmarks.md.
//!
//! Run: `cargo bench -j2 -p kray-replayer --bench replay` (add `-- <filter>` to pick one).

use bitcoin::key::Keypair;
use bitcoin::secp256k1::SecretKey;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kray_replayer::address::{address_of_pubkey, parse_xonly, secp, AccountKey};
use kray_replayer::execute::Semantics;
use kray_replayer::genesis::{Genesis, GenesisAccount};
use kray_replayer::hash::{leaf_hash, node_hash, sha256_parts, Hash32};
use kray_replayer::l1facts::{FileFacts, L1FactsFile};
use kray_replayer::merkle::IncrementalTree;
use kray_replayer::replay::{prepare_txs, Replayer};
use kray_replayer::seal::Sealer;
use kray_replayer::signature::{verify, KeyCache};
use kray_replayer::state::{Account, Overlay, State};
use kray_replayer::{Batch, Chain, Profile, Tx, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// Genesis users of the signed fixture.
const USERS: usize = 200;
/// Txs per sealed batch.
const BATCH: usize = 1_000;
/// Sealed batches replayed in turn (one replayer, warm pubkey cache, as a running guardian).
const BATCHES: usize = 8;
/// Accounts of the state-update benchmark.
const STATE_ACCOUNTS: u64 = 100_000;

struct Fixture {
    profile: Profile,
    chain: Chain,
    state: State,
    batches: Vec<Batch>,
    facts: FileFacts,
}

fn keypair(label: &str, i: u64) -> Keypair {
    let mut ctr = 0u32;
    loop {
        let h = sha256_parts(&[b"kray-bench", label.as_bytes(), &i.to_be_bytes(), &ctr.to_be_bytes()]);
        if let Ok(sk) = SecretKey::from_slice(&h) {
            return Keypair::from_secret_key(secp(), &sk);
        }
        ctr += 1;
    }
}

/// A genesis of `USERS` funded users and `BATCHES` honest sealed batches of `BATCH` transfers.
fn fixture() -> Fixture {
    let profile = Profile::load("regtest").expect("shipped profile");
    let users: Vec<Keypair> = (0..USERS as u64).map(|i| keypair("user", i)).collect();
    let addrs: Vec<String> =
        users.iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
    let producer = keypair("producer", 0);
    let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
    accounts.extend(addrs.iter().map(|a| GenesisAccount { address: a.clone(), balance: 1_000_000_000 }));
    let genesis =
        Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
    let (chain, state) = genesis.build(&profile).expect("genesis");
    let facts = FileFacts::from(L1FactsFile { tip_height: 1_000, deposits: vec![] });
    let mut sealer = Sealer::new(chain.clone(), state.clone(), None, producer).expect("sealer");
    let mut rng = StdRng::seed_from_u64(7);
    let mut nonces = vec![0u64; USERS];
    let mut batches = Vec::with_capacity(BATCHES);
    for b in 0..BATCHES {
        let candidates: Vec<Tx> = (0..BATCH)
            .map(|_| {
                let from = rng.gen_range(0..USERS);
                let mut to = rng.gen_range(0..USERS);
                if to == from {
                    to = (to + 1) % USERS;
                }
                let mut tx = Tx::unsigned(
                    "transfer",
                    addrs[from].clone(),
                    addrs[to].clone(),
                    rng.gen_range(1..=10_000),
                    nonces[from],
                );
                nonces[from] += 1;
                tx.sign(&users[from]);
                tx
            })
            .collect();
        let (batch, rejected) = sealer.seal(candidates, 100 + b as u32, &facts, Semantics::Reference);
        assert!(rejected.is_empty(), "fixture batch {b} refused {rejected:?}");
        batches.push(batch);
    }
    Fixture { profile, chain, state, batches, facts }
}

/// Unit costs: one BIP-340 verification, one Merkle node hash.
fn unit_costs(c: &mut Criterion, f: &Fixture) {
    let tx = Tx::decode(&f.batches[0].txs[0]).expect("fixture tx");
    let pk = parse_xonly(&tx.pubkey).expect("fixture pubkey");
    let msg = tx.signing_hash();
    let mut g = c.benchmark_group("unit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bip340_verify", |b| b.iter(|| verify(black_box(&pk), black_box(&msg), black_box(&tx.signature))));
    let (l, r) = (leaf_hash(b"left"), leaf_hash(b"right"));
    g.bench_function("merkle_node_hash", |b| b.iter(|| node_hash(black_box(&l), black_box(&r))));
    g.finish();
}

/// `prepare_txs` (decode, static checks, parallel verification) and whole-batch `Replayer::replay`.
fn replay(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut keys = KeyCache::default();
    g.bench_function("prepare_txs_1000", |b| {
        b.iter(|| prepare_txs(black_box(&f.batches[0].txs), &f.profile, &mut keys))
    });
    // Batches are replayed in chain order on one replayer; after the last, a fresh replayer starts
    // over (built outside the timing). Only `replay` itself is timed.
    let fresh = || Replayer::new(f.chain.clone(), f.state.clone()).expect("replayer");
    let mut r = fresh();
    let mut next = 0usize;
    g.bench_function("replay_batch_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if next == f.batches.len() {
                    r = fresh();
                    next = 0;
                }
                let t = Instant::now();
                let v = r.replay(&f.batches[next], &f.facts);
                total += t.elapsed();
                assert!(matches!(v, Ok(Verdict::Valid { .. })), "{v:?}");
                next += 1;
            }
            total
        })
    });
    g.finish();
}

/// `State::apply` + `state_root` of a 1,000-tx batch's writes (2 accounts + Treasury per tx, 1 in 50
/// to a new account) on a 100,000-account state; and the bare incremental Merkle update.
fn state_update(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(11);
    let n = STATE_ACCOUNTS;
    let accounts: Vec<Account> = (0..n)
        .map(|i| Account { key: AccountKey(rng.gen()), balance: if i == 0 { 0 } else { 1_000_000_000 }, nonce: 0 })
        .collect();
    let state = State::from_accounts(accounts).expect("distinct random keys");
    let mut ov = Overlay::new(&state);
    for k in 0..BATCH {
        let from = rng.gen_range(1..n);
        let to = rng.gen_range(1..n);
        let mut a = ov.account(from).expect("in range");
        a.balance -= 2_000;
        a.nonce += 1;
        ov.set_account(from, a);
        if k % 50 == 49 {
            ov.push_account(Account { key: AccountKey(rng.gen()), balance: 1_000, nonce: 0 });
        } else {
            let mut b = ov.account(to).expect("in range");
            b.balance += 1_000;
            ov.set_account(to, b);
        }
        let mut t = ov.account(0).expect("treasury");
        t.balance += 1_000;
        ov.set_account(0, t);
    }
    let changes = ov.into_changes();
    let mut g = c.benchmark_group("state");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("apply_root_100k_accounts_1000_txs", |b| {
        b.iter_batched(
            || (state.clone(), changes.clone()),
            |(mut s, ch)| {
                let undo = s.apply(ch);
                black_box(s.state_root());
                (s, undo)
            },
            BatchSize::LargeInput,
        )
    });
    let leaves: Vec<Hash32> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let tree = IncrementalTree::from_leaves(leaves);
    let updates: Vec<(u64, Hash32)> =
        (0..2 * BATCH as u64).map(|i| (rng.gen_range(0..n), leaf_hash(&i.to_le_bytes()))).collect();
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.bench_function("merkle_update_2000_of_100k", |b| {
        b.iter_batched(
            || tree.clone(),
            |mut t| {
                t.update(&updates, &[]);
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let f = fixture();
    unit_costs(c, &f);
    replay(c, &f);
    state_update(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    targets = all
}
criterion_main!(benches);
