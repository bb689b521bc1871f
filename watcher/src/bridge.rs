//! KRAY rune tracking and bridge indexing: from each L1 block, the store effects for every outpoint
//! holding the tracked rune (any owner), the deposits into the bridge (with the L2 recipient of the
//! `KRAY D` tag), and every spend of a bridge outpoint (its path and the spending transaction's
//! outputs with the rune amounts they received).
//!
//! Allocation follows `ord` exactly through [`kray_replayer::runes::allocate_artifact`] (the same code
//! the devnet's ledger uses). Only the tracked rune's balances are fed to it: the allocation of one
//! rune never depends on another's.
//!
//! Pure apart from the store lookup: [`block_effects`] takes the block and the *stored* unspent rune
//! outputs its inputs spend ([`block_input_txids`] says which to load) and keeps an in-block overlay,
//! since an input may spend an output created earlier in the same block. The
//! [`StoreSink`](crate::l1_index::StoreSink) writes the effects with the block in one SQL transaction.
//!
//! Start: follow from the rune's etching height (the etching transaction is recognised by its id and
//! credited its premine), or from a checkpoint: a list of outputs and their amounts seeded with the
//! first indexed block ([`BridgeConfig::checkpoint`]).
//!
//! Not followed: mints of the tracked rune (a warning is logged; it would need the etching's terms and
//! the mint count), and named etchings' commitment checks (the configured id is trusted).

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use bitcoin::{Address, Amount, Block, Network, OutPoint, ScriptBuf, Transaction, Witness};
use kray_replayer::bridge::{BridgeDescriptor, BridgeError, InternalKey};
use kray_replayer::l1payload::{kray_payloads, KrayPayload};
use kray_replayer::profile::{InternalKeyKind, Profile};
use kray_replayer::runes::{allocate_artifact, ArtifactKind, Balances, TxContext};
use ordinals::{Artifact, RuneId, Runestone};

use crate::store::{Effect, Outpoint, PayoutOutput, RuneOutput, SpendPath};

/// The bridge descriptor the profile's `[bridge]` keys describe (`None` without `[bridge]`).
pub fn profile_descriptor(profile: &Profile) -> Result<Option<BridgeDescriptor>, BridgeConfigError> {
    let Some(keys) = profile.bridge.as_ref() else { return Ok(None) };
    let internal = match keys.internal_key {
        InternalKeyKind::Nums => InternalKey::Nums,
        InternalKeyKind::Legacy => InternalKey::Legacy,
    };
    Ok(Some(BridgeDescriptor::from_hex_keys(keys.pubkeys.as_slice(), internal)?))
}

/// Errors building a [`BridgeConfig`].
#[derive(Debug, thiserror::Error)]
pub enum BridgeConfigError {
    /// The profile's `rune_id` is empty or not `BLOCK:TX`.
    #[error("rune id {0:?} is not BLOCK:TX")]
    RuneId(String),
    /// The profile has no `[bridge]` section.
    #[error("the profile has no bridge keys")]
    NoBridge,
    /// The bridge keys do not make a descriptor.
    #[error("bridge: {0}")]
    Bridge(#[from] BridgeError),
}

/// An output seeded from a checkpoint: its script, value and tracked-rune amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOutput {
    /// The output.
    pub outpoint: OutPoint,
    /// Its `scriptPubKey`.
    pub script_pubkey: ScriptBuf,
    /// Its value.
    pub value: Amount,
    /// Tracked-rune amount it holds.
    pub amount: u128,
}

/// What to track: the rune, the bridge script, the network (for payout addresses), and an optional
/// checkpoint seeding the store with the first indexed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The tracked rune (KRAY•SPACE).
    pub rune: RuneId,
    /// The bridge's `scriptPubKey` ([`BridgeDescriptor::script_pubkey`]).
    pub bridge_script: ScriptBuf,
    /// The L1 network.
    pub network: Network,
    /// Unspent outputs holding the rune (and bridge outputs) when indexing starts above the etching
    /// height; empty when starting at the etching height. Seeded only into an empty store.
    pub checkpoint: Vec<CheckpointOutput>,
}

impl BridgeConfig {
    /// Tracks `rune` into `bridge` on `network`, starting at the etching height (no checkpoint).
    pub fn new(rune: RuneId, bridge: &BridgeDescriptor, network: Network) -> Self {
        Self { rune, bridge_script: bridge.script_pubkey(), network, checkpoint: Vec::new() }
    }

    /// The profile's rune id and bridge keys.
    pub fn from_profile(profile: &Profile) -> Result<Self, BridgeConfigError> {
        let rune =
            RuneId::from_str(&profile.rune_id).map_err(|_| BridgeConfigError::RuneId(profile.rune_id.clone()))?;
        let bridge = profile_descriptor(profile)?.ok_or(BridgeConfigError::NoBridge)?;
        Ok(Self::new(rune, &bridge, profile.network.to_bitcoin()))
    }

    /// With `checkpoint` seeded into an empty store.
    pub fn with_checkpoint(mut self, checkpoint: Vec<CheckpointOutput>) -> Self {
        self.checkpoint = checkpoint;
        self
    }

    /// The effects seeding the checkpoint (rune outputs, and deposits for bridge outputs), applied
    /// with the first indexed block.
    pub fn checkpoint_effects(&self) -> Vec<Effect> {
        let mut effects = Vec::new();
        for c in &self.checkpoint {
            let outpoint = outpoint(c.outpoint);
            effects.push(Effect::RuneOutput {
                outpoint: outpoint.clone(),
                script_pubkey: hex::encode(c.script_pubkey.as_bytes()),
                value: c.value.to_sat(),
                amount: c.amount,
            });
            if c.script_pubkey == self.bridge_script {
                effects.push(Effect::Deposit { outpoint, amount: c.amount, recipient: None, from_bridge: false });
            }
        }
        effects
    }
}

fn outpoint(op: OutPoint) -> Outpoint {
    Outpoint { txid: op.txid.to_string(), vout: op.vout }
}

/// A known unspent output: its script and tracked-rune amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Its `scriptPubKey`.
    pub script_pubkey: ScriptBuf,
    /// Tracked-rune amount.
    pub amount: u128,
}

/// The stored rune outputs as the lookup [`block_effects`] takes (rows with a bad txid or script hex
/// are skipped with a warning: they cannot be spent by a valid transaction anyway).
pub fn held_from_rows(rows: &[RuneOutput]) -> HashMap<OutPoint, Held> {
    let mut map = HashMap::with_capacity(rows.len());
    for r in rows {
        let (Ok(txid), Ok(script)) = (r.outpoint.txid.parse(), hex::decode(&r.script_pubkey)) else {
            tracing::warn!(outpoint = %r.outpoint, "stored rune output with bad txid or script: ignored");
            continue;
        };
        map.insert(
            OutPoint { txid, vout: r.outpoint.vout },
            Held { script_pubkey: ScriptBuf::from_bytes(script), amount: r.amount },
        );
    }
    map
}

/// The txids whose stored unspent rune outputs [`block_effects`] may need: those spent by the block's
/// inputs (deduplicated, sorted). Load them with
/// [`Store::unspent_rune_outputs_of_txids`](crate::store::Store::unspent_rune_outputs_of_txids).
pub fn block_input_txids(block: &Block) -> Vec<String> {
    let set: BTreeSet<String> = block
        .txdata
        .iter()
        .filter(|tx| !tx.is_coinbase())
        .flat_map(|tx| tx.input.iter().map(|i| i.previous_output.txid.to_string()))
        .collect();
    set.into_iter().collect()
}

/// The spend path of a taproot input's witness (BIP 341): the annex (last element starting `0x50`,
/// with at least two elements) removed, one 64/65-byte element is the key path; a leaf script and a
/// well-formed control block (33 + 32·k bytes, k ≤ 128) are the script path (the leaf script is
/// returned); anything else is [`SpendPath::Other`].
pub fn spend_path(witness: &Witness) -> (SpendPath, Option<ScriptBuf>) {
    let mut elements: Vec<&[u8]> = witness.iter().collect();
    if elements.len() >= 2 && elements.last().is_some_and(|e| e.first() == Some(&0x50)) {
        elements.pop();
    }
    match elements.as_slice() {
        [sig] if sig.len() == 64 || sig.len() == 65 => (SpendPath::KeyPath, None),
        [.., script, control]
            if control.len() >= 33 && (control.len() - 33) % 32 == 0 && control.len() <= 33 + 32 * 128 =>
        {
            (SpendPath::ScriptPath, Some(ScriptBuf::from_bytes(script.to_vec())))
        }
        _ => (SpendPath::Other, None),
    }
}

/// The L2 recipient named by the transaction's `KRAY D` tag (hex), if it has exactly one distinct one.
fn deposit_recipient(tx: &Transaction) -> Option<String> {
    let tags: BTreeSet<[u8; 32]> = kray_payloads(tx)
        .into_iter()
        .filter_map(|(_, p)| match p {
            KrayPayload::Deposit(key) => Some(key),
            _ => None,
        })
        .collect();
    if tags.len() > 1 {
        tracing::warn!(txid = %tx.compute_txid(), tags = tags.len(), "several KRAY D tags: no recipient");
        return None;
    }
    tags.into_iter().next().map(hex::encode)
}

/// The rune and bridge effects of `block` at `height`, in block order. `stored` holds the stored
/// unspent rune outputs its inputs may spend (see [`block_input_txids`]); outputs created earlier in
/// the block are found in an in-block overlay.
pub fn block_effects(
    config: &BridgeConfig,
    block: &Block,
    height: u32,
    stored: &HashMap<OutPoint, Held>,
) -> Vec<Effect> {
    let mut stored = stored.clone();
    let mut overlay: HashMap<OutPoint, Held> = HashMap::new();
    let mut effects = Vec::new();
    for (index, tx) in block.txdata.iter().enumerate() {
        let Ok(tx_index) = u32::try_from(index) else {
            tracing::warn!(height, "block has more than 2^32 transactions");
            break;
        };
        tx_effects(config, tx, u64::from(height), tx_index, &mut stored, &mut overlay, &mut effects);
    }
    effects
}

fn tx_effects(
    config: &BridgeConfig,
    tx: &Transaction,
    height: u64,
    tx_index: u32,
    stored: &mut HashMap<OutPoint, Held>,
    overlay: &mut HashMap<OutPoint, Held>,
    effects: &mut Vec<Effect>,
) {
    let rune = config.rune;
    let mut spent: Vec<(usize, OutPoint, Held)> = Vec::new();
    if !tx.is_coinbase() {
        for (i, input) in tx.input.iter().enumerate() {
            let prev = input.previous_output;
            if let Some(held) = overlay.remove(&prev).or_else(|| stored.remove(&prev)) {
                spent.push((i, prev, held));
            }
        }
    }
    let etches_tracked = RuneId { block: height, tx: tx_index } == rune;
    let spends_bridge = spent.iter().any(|(_, _, h)| h.script_pubkey == config.bridge_script);
    let pays_bridge = tx.output.iter().any(|o| o.script_pubkey == config.bridge_script);
    if spent.is_empty() && !etches_tracked && !pays_bridge {
        return;
    }
    let txid = tx.compute_txid();
    let spent_by = txid.to_string();

    let mut inputs: Vec<Balances> = vec![Balances::new(); tx.input.len()];
    for (i, _, held) in &spent {
        if held.amount > 0 {
            if let Some(slot) = inputs.get_mut(*i) {
                slot.insert(rune, held.amount);
            }
        }
    }
    let artifact = Runestone::decipher(tx);
    if artifact.as_ref().and_then(Artifact::mint) == Some(rune) {
        tracing::warn!(%txid, %rune, "mint of the tracked rune: not followed");
    }
    let ctx = TxContext { height, tx_index, named_etching_valid: etches_tracked, mint: None };
    let allocation = allocate_artifact(tx, artifact.as_ref(), &inputs, &ctx);
    if let Some(e) = allocation.etched.as_ref().filter(|e| e.id == rune) {
        tracing::info!(%txid, id = %e.id, premine = e.premine, "tracked rune etched");
    }
    let burned = allocation.burned(rune);
    if burned > 0 || allocation.kind == ArtifactKind::Cenotaph {
        tracing::warn!(%txid, burned, cenotaph = allocation.kind == ArtifactKind::Cenotaph, "tracked rune burned");
    }

    for (i, prev, held) in &spent {
        let op = outpoint(*prev);
        effects.push(Effect::RuneSpend { outpoint: op.clone(), spent_by: spent_by.clone() });
        if held.script_pubkey == config.bridge_script {
            let witness = tx.input.get(*i).map(|input| &input.witness);
            let (path, leaf) = witness.map(spend_path).unwrap_or((SpendPath::Other, None));
            tracing::info!(outpoint = %op, %txid, path = path.as_str(), amount = held.amount, "bridge outpoint spent");
            effects.push(Effect::Spend { outpoint: op.clone(), spent_by: spent_by.clone() });
            effects.push(Effect::BridgeSpend {
                outpoint: op,
                spent_by: spent_by.clone(),
                input_index: u32::try_from(*i).unwrap_or(u32::MAX),
                path,
                leaf_script: leaf.map(|s| hex::encode(s.as_bytes())),
            });
        }
    }

    let recipient = if pays_bridge { deposit_recipient(tx) } else { None };
    for (vout, out) in tx.output.iter().enumerate() {
        let Ok(vout) = u32::try_from(vout) else { break };
        let amount = allocation.amount(vout, rune);
        let is_bridge = out.script_pubkey == config.bridge_script;
        let op = Outpoint { txid: spent_by.clone(), vout };
        let script_hex = hex::encode(out.script_pubkey.as_bytes());
        if amount > 0 || is_bridge {
            effects.push(Effect::RuneOutput {
                outpoint: op.clone(),
                script_pubkey: script_hex.clone(),
                value: out.value.to_sat(),
                amount,
            });
            overlay.insert(OutPoint { txid, vout }, Held { script_pubkey: out.script_pubkey.clone(), amount });
        }
        if is_bridge {
            let from_bridge = spends_bridge;
            tracing::info!(outpoint = %op, amount, recipient = recipient.as_deref(), from_bridge, "bridge output");
            effects.push(Effect::Deposit {
                outpoint: op.clone(),
                amount,
                recipient: recipient.clone(),
                from_bridge: spends_bridge,
            });
        }
        if spends_bridge {
            let address = Address::from_script(&out.script_pubkey, config.network).ok().map(|a| a.to_string());
            effects.push(Effect::PayoutOutput(PayoutOutput {
                outpoint: op,
                script_pubkey: script_hex,
                address,
                value: out.value.to_sat(),
                amount,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::absolute::LockTime;
    use bitcoin::block::{Header, Version};
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
    use bitcoin::transaction::Version as TxVersion;
    use bitcoin::{BlockHash, CompactTarget, TxIn, TxMerkleNode, TxOut, Txid};
    use kray_replayer::l1payload::deposit_tag_script;
    use ordinals::{Edict, Etching};

    use super::*;

    const H: u32 = 300;

    fn bridge() -> BridgeDescriptor {
        let secp = Secp256k1::new();
        let keys: Vec<PublicKey> = (1u8..=3)
            .map(|i| {
                let mut b = [0u8; 32];
                b[31] = i;
                PublicKey::from_secret_key(&secp, &SecretKey::from_slice(&b).expect("sk"))
            })
            .collect();
        BridgeDescriptor::new(&keys, InternalKey::Nums).expect("bridge")
    }

    fn config() -> BridgeConfig {
        BridgeConfig::new(RuneId { block: u64::from(H), tx: 1 }, &bridge(), Network::Regtest)
    }

    fn spk(n: u8) -> ScriptBuf {
        ScriptBuf::from_bytes([0x51, 0x20].into_iter().chain([n; 32]).collect())
    }

    fn out(script: ScriptBuf) -> TxOut {
        TxOut { value: Amount::from_sat(546), script_pubkey: script }
    }

    fn stone(s: &Runestone) -> TxOut {
        TxOut { value: Amount::ZERO, script_pubkey: s.encipher() }
    }

    fn tx(inputs: Vec<(OutPoint, Witness)>, output: Vec<TxOut>) -> Transaction {
        Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: inputs
                .into_iter()
                .map(|(previous_output, witness)| TxIn { previous_output, witness, ..TxIn::default() })
                .collect(),
            output,
        }
    }

    fn block(txdata: Vec<Transaction>) -> Block {
        let header = Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: 0,
        };
        Block { header, txdata }
    }

    fn coinbase() -> Transaction {
        tx(vec![(OutPoint::null(), Witness::new())], vec![out(spk(0))])
    }

    fn funding(n: u8) -> OutPoint {
        OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 }
    }

    fn op(t: &Transaction, vout: u32) -> Outpoint {
        Outpoint { txid: t.compute_txid().to_string(), vout }
    }

    fn key_path_witness() -> Witness {
        let mut w = Witness::new();
        w.push([7u8; 64]);
        w
    }

    #[test]
    fn etching_deposit_and_key_path_sweep_in_one_block() {
        let cfg = config();
        let rune = cfg.rune;
        let etch = tx(
            vec![(funding(1), Witness::new())],
            vec![
                out(spk(1)),
                stone(&Runestone {
                    etching: Some(Etching { premine: Some(1_000), ..Etching::default() }),
                    pointer: Some(0),
                    ..Runestone::default()
                }),
            ],
        );
        let account = [0x42u8; 32];
        let deposit = tx(
            vec![(OutPoint { txid: etch.compute_txid(), vout: 0 }, Witness::new())],
            vec![
                out(cfg.bridge_script.clone()),
                TxOut { value: Amount::ZERO, script_pubkey: deposit_tag_script(&account) },
                stone(&Runestone {
                    edicts: vec![Edict { id: rune, amount: 300, output: 0 }],
                    pointer: Some(3),
                    ..Runestone::default()
                }),
                out(spk(1)),
            ],
        );
        let sweep = tx(
            vec![
                (OutPoint { txid: deposit.compute_txid(), vout: 0 }, key_path_witness()),
                (funding(2), Witness::new()),
            ],
            vec![out(spk(9)), TxOut { value: Amount::from_sat(5_000), script_pubkey: spk(8) }],
        );
        let b = block(vec![coinbase(), etch.clone(), deposit.clone(), sweep.clone()]);
        let effects = block_effects(&cfg, &b, H, &HashMap::new());
        let sweep_id = sweep.compute_txid().to_string();
        let dep_id = deposit.compute_txid().to_string();
        let bridge_hex = hex::encode(cfg.bridge_script.as_bytes());
        let expected = vec![
            Effect::RuneOutput {
                outpoint: op(&etch, 0),
                script_pubkey: hex::encode(spk(1).as_bytes()),
                value: 546,
                amount: 1_000,
            },
            Effect::RuneSpend { outpoint: op(&etch, 0), spent_by: dep_id.clone() },
            Effect::RuneOutput {
                outpoint: op(&deposit, 0),
                script_pubkey: bridge_hex.clone(),
                value: 546,
                amount: 300,
            },
            Effect::Deposit {
                outpoint: op(&deposit, 0),
                amount: 300,
                recipient: Some(hex::encode(account)),
                from_bridge: false,
            },
            Effect::RuneOutput {
                outpoint: op(&deposit, 3),
                script_pubkey: hex::encode(spk(1).as_bytes()),
                value: 546,
                amount: 700,
            },
            Effect::RuneSpend { outpoint: op(&deposit, 0), spent_by: sweep_id.clone() },
            Effect::Spend { outpoint: op(&deposit, 0), spent_by: sweep_id.clone() },
            Effect::BridgeSpend {
                outpoint: op(&deposit, 0),
                spent_by: sweep_id.clone(),
                input_index: 0,
                path: SpendPath::KeyPath,
                leaf_script: None,
            },
            Effect::RuneOutput {
                outpoint: op(&sweep, 0),
                script_pubkey: hex::encode(spk(9).as_bytes()),
                value: 546,
                amount: 300,
            },
            Effect::PayoutOutput(PayoutOutput {
                outpoint: op(&sweep, 0),
                script_pubkey: hex::encode(spk(9).as_bytes()),
                address: Address::from_script(&spk(9), Network::Regtest).ok().map(|a| a.to_string()),
                value: 546,
                amount: 300,
            }),
            Effect::PayoutOutput(PayoutOutput {
                outpoint: op(&sweep, 1),
                script_pubkey: hex::encode(spk(8).as_bytes()),
                address: Address::from_script(&spk(8), Network::Regtest).ok().map(|a| a.to_string()),
                value: 5_000,
                amount: 0,
            }),
        ];
        assert_eq!(effects, expected);
        let Effect::PayoutOutput(p) = &effects[9] else { panic!("not a payout output") };
        assert!(p.address.as_deref().is_some_and(|a| a.starts_with("bcrt1p")), "{p:?}");
    }

    #[test]
    fn an_etching_at_another_id_is_not_the_tracked_rune() {
        let cfg = config();
        let etch = tx(
            vec![(funding(1), Witness::new())],
            vec![
                out(spk(1)),
                stone(&Runestone {
                    etching: Some(Etching { premine: Some(5), ..Etching::default() }),
                    ..Runestone::default()
                }),
            ],
        );
        // Index 2, not 1: a different rune.
        let b = block(vec![coinbase(), tx(vec![(funding(3), Witness::new())], vec![out(spk(3))]), etch]);
        assert_eq!(block_effects(&cfg, &b, H, &HashMap::new()), vec![]);
    }

    #[test]
    fn stored_inputs_feed_the_allocation_and_a_cenotaph_burns_them() {
        let cfg = config();
        let held_op = funding(5);
        let stored = HashMap::from([(held_op, Held { script_pubkey: spk(1), amount: 40 })]);
        let bad =
            TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(vec![0x6a, 0x5d, 0x02, 0x7e, 0x01]) };
        let cenotaph = tx(vec![(held_op, Witness::new())], vec![out(spk(2)), bad]);
        let b = block(vec![coinbase(), cenotaph.clone()]);
        let effects = block_effects(&cfg, &b, H + 5, &stored);
        assert_eq!(
            effects,
            vec![Effect::RuneSpend { outpoint: outpoint(held_op), spent_by: cenotaph.compute_txid().to_string() }]
        );
        // Without a runestone, everything goes to the first non-OP_RETURN output.
        let plain = tx(
            vec![(held_op, Witness::new())],
            vec![TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_op_return([1u8]) }, out(spk(2))],
        );
        let effects = block_effects(&cfg, &block(vec![coinbase(), plain.clone()]), H + 5, &stored);
        assert_eq!(
            effects[1],
            Effect::RuneOutput {
                outpoint: op(&plain, 1),
                script_pubkey: hex::encode(spk(2).as_bytes()),
                value: 546,
                amount: 40
            }
        );
    }

    #[test]
    fn script_path_spends_and_bridge_change() {
        let cfg = config();
        let b = bridge();
        let dep_op = funding(6);
        let stored = HashMap::from([(dep_op, Held { script_pubkey: cfg.bridge_script.clone(), amount: 100 })]);
        let mut w = Witness::new();
        w.push([1u8; 64]);
        w.push(Vec::<u8>::new());
        w.push([2u8; 64]);
        w.push(b.leaf_script().as_bytes());
        w.push(b.control_block().serialize());
        let payout = tx(
            vec![(dep_op, w)],
            vec![
                out(spk(4)),
                out(cfg.bridge_script.clone()),
                stone(&Runestone {
                    edicts: vec![Edict { id: cfg.rune, amount: 30, output: 0 }],
                    pointer: Some(1),
                    ..Runestone::default()
                }),
            ],
        );
        let effects = block_effects(&cfg, &block(vec![coinbase(), payout.clone()]), H + 9, &stored);
        let path = effects.iter().find_map(|e| match e {
            Effect::BridgeSpend { path, leaf_script, .. } => Some((*path, leaf_script.clone())),
            _ => None,
        });
        assert_eq!(path, Some((SpendPath::ScriptPath, Some(hex::encode(b.leaf_script().as_bytes())))));
        assert!(effects.contains(&Effect::Deposit {
            outpoint: op(&payout, 1),
            amount: 70,
            recipient: None,
            from_bridge: true
        }));
        let payouts: Vec<(u32, u128)> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::PayoutOutput(p) => Some((p.outpoint.vout, p.amount)),
                _ => None,
            })
            .collect();
        assert_eq!(payouts, vec![(0, 30), (1, 70), (2, 0)]);
    }

    #[test]
    fn spend_paths_follow_the_witness_shape() {
        let w = |items: &[&[u8]]| {
            let mut w = Witness::new();
            for i in items {
                w.push(i);
            }
            w
        };
        assert_eq!(spend_path(&w(&[&[1; 64]])).0, SpendPath::KeyPath);
        assert_eq!(spend_path(&w(&[&[1; 65]])).0, SpendPath::KeyPath);
        assert_eq!(spend_path(&w(&[&[1; 64], &[0x50, 1]])).0, SpendPath::KeyPath, "annex removed");
        assert_eq!(spend_path(&w(&[&[1; 63]])).0, SpendPath::Other);
        assert_eq!(spend_path(&w(&[])).0, SpendPath::Other);
        assert_eq!(
            spend_path(&w(&[&[0x51], &[0xc0; 65]])),
            (SpendPath::ScriptPath, Some(ScriptBuf::from_bytes(vec![0x51])))
        );
        assert_eq!(spend_path(&w(&[&[0x51], &[0xc0; 34]])).0, SpendPath::Other, "bad control block length");
    }

    #[test]
    fn checkpoint_effects_seed_rune_and_bridge_outputs() {
        let cfg = config().with_checkpoint(vec![
            CheckpointOutput { outpoint: funding(1), script_pubkey: spk(1), value: Amount::from_sat(546), amount: 10 },
            CheckpointOutput {
                outpoint: funding(2),
                script_pubkey: config().bridge_script,
                value: Amount::from_sat(600),
                amount: 20,
            },
        ]);
        let effects = cfg.checkpoint_effects();
        assert_eq!(effects.len(), 3);
        assert_eq!(
            effects[2],
            Effect::Deposit { outpoint: outpoint(funding(2)), amount: 20, recipient: None, from_bridge: false }
        );
    }

    #[test]
    fn the_regtest_profile_needs_a_rune_id() {
        let mut profile = Profile::load("regtest").expect("profile");
        assert!(matches!(BridgeConfig::from_profile(&profile), Err(BridgeConfigError::RuneId(_))));
        profile.rune_id = "101:1".into();
        let cfg = BridgeConfig::from_profile(&profile).expect("config");
        assert_eq!(
            (cfg.rune, cfg.bridge_script, cfg.network),
            (RuneId { block: 101, tx: 1 }, bridge().script_pubkey(), Network::Regtest)
        );
    }
}
