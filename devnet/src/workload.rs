//! Deterministic workloads: a signed genesis, L1 facts and batch files, honest or with one injected
//! fault of any class, for tests and benchmarks (`kray-guardian gen-workload`).

use bitcoin::key::Keypair;
use bitcoin::secp256k1::SecretKey;
use kray_replayer::address::{address_of_pubkey, secp, AccountKey};
use kray_replayer::batch::Batch;
use kray_replayer::execute::Semantics;
use kray_replayer::fault::FaultClass;
use kray_replayer::genesis::{Genesis, GenesisAccount};
use kray_replayer::hash::sha256_parts;
use kray_replayer::l1facts::{DepositFact, FileFacts, L1FactsFile};
use kray_replayer::profile::Profile;
use kray_replayer::seal::Sealer;
use kray_replayer::tx::{OutPointRef, Tx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Starting balance of every workload user, in credits (1,000,000 KRAY at 3 decimals).
pub const USER_BALANCE: u64 = 1_000_000_000;
/// Rune units each synthetic deposit carries.
pub const DEPOSIT_UNITS: u64 = 5_000;

/// What to generate.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// Users in the genesis.
    pub accounts: usize,
    /// User txs in total.
    pub txs: usize,
    /// User txs per batch.
    pub batch_size: usize,
    /// Seed of every key and choice.
    pub seed: u64,
    /// One fault to inject: class and batch id (1-based).
    pub fault: Option<(FaultClass, u64)>,
}

/// Why a workload cannot be generated.
#[derive(Debug, Error)]
pub enum WorkloadError {
    /// Spec out of range.
    #[error("{0}")]
    Spec(String),
    /// Genesis failed.
    #[error("genesis: {0}")]
    Genesis(String),
    /// Fault injection impossible for this spec.
    #[error("cannot inject {0} in batch {1}: {2}")]
    Inject(FaultClass, u64, String),
}

/// The injected fault, as written to `workload.json` for tests to check against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    /// Class.
    pub class: FaultClass,
    /// Batch id.
    pub batch_id: u64,
}

/// A generated workload.
pub struct Workload {
    /// Genesis.
    pub genesis: Genesis,
    /// L1 facts.
    pub facts: L1FactsFile,
    /// Batch files: (file name, batch).
    pub batches: Vec<(String, Batch)>,
    /// The fault injected, if any.
    pub injected: Option<Injected>,
}

fn secret(seed: u64, label: &str, i: u64) -> Keypair {
    let mut ctr = 0u32;
    loop {
        let h = sha256_parts(&[
            b"kray-workload",
            &seed.to_be_bytes(),
            label.as_bytes(),
            &i.to_be_bytes(),
            &ctr.to_be_bytes(),
        ]);
        if let Ok(sk) = SecretKey::from_slice(&h) {
            return Keypair::from_secret_key(secp(), &sk);
        }
        ctr += 1;
    }
}

/// The producer key of a workload seed.
pub fn producer_key(seed: u64) -> Keypair {
    secret(seed, "producer", 0)
}

/// The key of user `i` (indices beyond the genesis users are fresh recipients).
pub fn user_key(seed: u64, i: u64) -> Keypair {
    secret(seed, "user", i)
}

struct Users {
    keys: Vec<Keypair>,
    addrs: Vec<String>,
    nonces: Vec<u64>,
}

impl Users {
    fn new(seed: u64, n: usize, profile: &Profile) -> Self {
        let keys: Vec<Keypair> = (0..n as u64).into_par_iter().map(|i| user_key(seed, i)).collect();
        let addrs = keys.par_iter().map(|k| address_of_pubkey(&k.x_only_public_key().0, profile.network)).collect();
        Self { nonces: vec![0; n], keys, addrs }
    }
}

/// Generate a workload under `profile`.
pub fn generate(profile: &Profile, spec: &WorkloadSpec) -> Result<Workload, WorkloadError> {
    if spec.accounts < 2 {
        return Err(WorkloadError::Spec("--accounts must be at least 2".into()));
    }
    if spec.batch_size == 0 {
        return Err(WorkloadError::Spec("--batch-size must be at least 1".into()));
    }
    if spec.batch_size > profile.max_batch_txs as usize {
        return Err(WorkloadError::Spec(format!(
            "--batch-size exceeds the profile's max_batch_txs {}",
            profile.max_batch_txs
        )));
    }
    let nbatches = spec.txs.div_ceil(spec.batch_size).max(1) as u64;
    if let Some((class, b)) = spec.fault {
        if b == 0 || b > nbatches {
            return Err(WorkloadError::Inject(class, b, format!("the workload has batches 1..={nbatches}")));
        }
    }
    let mut rng = ChaCha20Rng::seed_from_u64(spec.seed);
    let mut users = Users::new(spec.seed, spec.accounts, profile);
    let producer = producer_key(spec.seed);
    let mut accounts = vec![GenesisAccount { address: profile.treasury.clone(), balance: 0 }];
    accounts.extend(users.addrs.iter().map(|a| GenesisAccount { address: a.clone(), balance: USER_BALANCE }));
    let genesis =
        Genesis::new(profile.network, vec![hex::encode(producer.x_only_public_key().0.serialize())], accounts);
    let (chain, state) = genesis.build(profile).map_err(|e| WorkloadError::Genesis(e.to_string()))?;
    let mut sealer = Sealer::new(chain, state, None, producer).map_err(|e| WorkloadError::Genesis(e.to_string()))?;

    // Two synthetic deposits credited in batch 1, confirmed long before the batches' L1 heights.
    let deposit_facts: Vec<DepositFact> = (0..2u64)
        .map(|j| DepositFact {
            outpoint: OutPointRef {
                txid: sha256_parts(&[b"deposit", &spec.seed.to_be_bytes(), &j.to_be_bytes()]),
                vout: 0,
            },
            to_bridge: true,
            rune_amount: DEPOSIT_UNITS,
            recipient: Some(AccountKey(
                kray_replayer::address::account_key_of(&users.keys[j as usize].x_only_public_key().0).0,
            )),
            height: 1,
        })
        .collect();
    let facts_file = L1FactsFile { tip_height: 100 + nbatches as u32 + 10, deposits: deposit_facts.clone() };
    let honest_facts = FileFacts::from(facts_file.clone());
    let unit = profile.credits_per_rune_unit();
    let deposit_tx = |j: usize, users: &Users| {
        Tx::unsigned("deposit", deposit_facts[j].outpoint.to_string(), users.addrs[j].clone(), DEPOSIT_UNITS * unit, 0)
    };

    let mut batches = Vec::new();
    let mut fresh = spec.accounts as u64;
    let mut remaining = spec.txs;
    let mut first_deposit: Option<Vec<u8>> = None;
    for b in 1..=nbatches {
        let n = remaining.min(spec.batch_size);
        remaining -= n;
        let fault = spec.fault.filter(|(_, fb)| *fb == b).map(|(c, _)| c);
        let mut candidates = Vec::with_capacity(n + 2);
        if b == 1 {
            candidates.push(deposit_tx(0, &users));
            candidates.push(deposit_tx(1, &users));
        }
        let mut unsigned: Vec<(Tx, usize)> = Vec::with_capacity(n + 1);
        for k in 0..n {
            let from = rng.gen_range(0..spec.accounts);
            let (tx_type, to) = if k % 100 == 99 {
                ("withdrawal", users.addrs[from].clone())
            } else if k % 97 == 96 {
                ("transfer", users.addrs[from].clone())
            } else if k % 50 == 49 {
                fresh += 1;
                let kp = user_key(spec.seed, fresh);
                ("transfer", address_of_pubkey(&kp.x_only_public_key().0, profile.network))
            } else {
                let mut to = rng.gen_range(0..spec.accounts);
                if to == from {
                    to = (to + 1) % spec.accounts;
                }
                ("transfer", users.addrs[to].clone())
            };
            let amount = if tx_type == "withdrawal" { unit } else { rng.gen_range(1..=10_000u64) };
            let tx = Tx::unsigned(tx_type, users.addrs[from].clone(), to, amount, users.nonces[from]);
            users.nonces[from] += 1;
            unsigned.push((tx, from));
        }
        // The semantic faults need a tx that exercises the bug.
        if matches!(fault, Some(FaultClass::SelfTransferInflation) | Some(FaultClass::WithdrawalNotBurned)) {
            let from = 0usize;
            let to = users.addrs[from].clone();
            let tx_type = if fault == Some(FaultClass::SelfTransferInflation) { "transfer" } else { "withdrawal" };
            let tx = Tx::unsigned(tx_type, users.addrs[from].clone(), to, unit, users.nonces[from]);
            users.nonces[from] += 1;
            unsigned.push((tx, from));
        }
        let keys = &users.keys;
        unsigned.par_iter_mut().for_each(|(tx, from)| tx.sign(&keys[*from]));
        candidates.extend(unsigned.into_iter().map(|(t, _)| t));
        let semantics = match fault {
            Some(FaultClass::SelfTransferInflation) => Semantics::SelfTransferMints,
            Some(FaultClass::WithdrawalNotBurned) => Semantics::WithdrawalNotDebited,
            _ => Semantics::Reference,
        };
        let (mut batch, rejected) = sealer.seal(candidates, 100 + b as u32, &honest_facts, semantics);
        if !rejected.is_empty() {
            return Err(WorkloadError::Spec(format!("generator bug: batch {b} refused {:?}", rejected[0])));
        }
        if b == 1 {
            first_deposit = batch.txs.first().cloned();
        }
        let mut extra = None;
        if let Some(class) = fault {
            extra =
                crate::faults::inject(class, &mut batch, &sealer, &users.keys, &users.addrs, first_deposit.as_deref())
                    .map_err(|e| WorkloadError::Inject(class, b, e))?;
            if !matches!(class, FaultClass::Equivocation) {
                sealer.adopt_tip(&batch.signed.header);
            }
        }
        batches.push((format!("batch-{b:06}.json"), batch));
        if let Some(e) = extra {
            batches.push((format!("batch-{b:06}~equivocation.json"), e));
        }
    }
    Ok(Workload {
        genesis,
        facts: facts_file,
        batches,
        injected: spec.fault.map(|(class, batch_id)| Injected { class, batch_id }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kray_replayer::replay::Replayer;
    use kray_replayer::Verdict;

    fn run(spec: &WorkloadSpec) -> Vec<Result<Verdict, kray_replayer::replay::ReplayError>> {
        let profile = Profile::load("regtest").unwrap();
        let w = generate(&profile, spec).unwrap();
        let (chain, state) = w.genesis.build(&profile).unwrap();
        let facts = FileFacts::from(w.facts.clone());
        let mut r = Replayer::new(chain, state).unwrap();
        w.batches.iter().map(|(_, b)| r.replay(b, &facts)).collect()
    }

    #[test]
    fn honest_workload_replays_valid_and_is_deterministic() {
        let spec = WorkloadSpec { accounts: 20, txs: 450, batch_size: 100, seed: 7, fault: None };
        let v = run(&spec);
        assert_eq!(v.len(), 5);
        assert!(v.iter().all(|r| matches!(r, Ok(Verdict::Valid { .. }))), "{v:?}");
        let p = Profile::load("regtest").unwrap();
        let a = generate(&p, &spec).unwrap();
        let b = generate(&p, &spec).unwrap();
        assert_eq!(a.batches.last().unwrap().1, b.batches.last().unwrap().1);
    }

    #[test]
    fn every_fault_class_is_detected_as_itself() {
        for class in FaultClass::ALL {
            let spec = WorkloadSpec { accounts: 12, txs: 300, batch_size: 100, seed: 3, fault: Some((class, 2)) };
            let v = run(&spec);
            let faults: Vec<_> = v
                .iter()
                .filter_map(|r| match r {
                    Ok(Verdict::Fault(f)) => Some(f.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(faults.len(), 1, "{class}: {v:?}");
            assert_eq!(faults[0].class, class, "{class}: {}", faults[0]);
            assert_eq!(faults[0].batch_id, 2);
            assert!(matches!(v[0], Ok(Verdict::Valid { .. })), "{class}: batch 1 {:?}", v[0]);
        }
    }
}
