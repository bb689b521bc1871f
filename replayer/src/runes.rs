//! Rune allocation for one transaction, with the rules of `ord` (its `RuneUpdater::index_runes`).
//! Pure: the caller supplies the rune balances of the transaction's inputs and gets back what each
//! output receives, what burns and what was etched. Both the devnet's in-memory ledger and the
//! watcher's SQL index follow runes through [`allocate`], so the two cannot drift apart.
//!
//! The rules, in `ord`'s order:
//! 1. The inputs' balances are summed into the *unallocated* balances.
//! 2. A valid mint adds its amount (the caller decides validity and amount: [`TxContext::mint`]).
//! 3. A valid etching (see [`TxContext::named_etching_valid`]) adds its premine (runestones only).
//! 4. Edicts apply in order: rune id `0:0` names the rune etched by this transaction (skipped when
//!    none); an edict for a rune with no unallocated balance is skipped; `output == n` (the output
//!    count) splits among every non-`OP_RETURN` output (amount 0: the balance evenly, the first
//!    `balance % k` outputs getting one more; amount > 0: that amount to each while it lasts);
//!    otherwise amount 0 means "all of it", and more than the balance means "the balance".
//! 5. A cenotaph burns everything unallocated (edicts are not applied: a cenotaph has none).
//!    Otherwise the rest goes to the pointer, or the first non-`OP_RETURN` output, or burns when
//!    every output is an `OP_RETURN`.
//! 6. Whatever lands on an `OP_RETURN` output burns.
//!
//! [`ordinals::Runestone::decipher`] already turns an edict output above `n`, a pointer out of
//! range, an unknown even tag, etc. into a cenotaph.

use std::collections::BTreeMap;

use bitcoin::{Transaction, Txid};
use ordinals::{Artifact, Rune, RuneId, Runestone};

/// Amount per rune.
pub type Balances = BTreeMap<RuneId, u128>;

/// What the caller knows about a transaction that the transaction itself does not say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxContext {
    /// Height of the block holding the transaction (the etched rune's id block).
    pub height: u64,
    /// Position of the transaction in the block (the etched rune's id tx).
    pub tx_index: u32,
    /// Whether a *named* etching in this transaction is valid. `ord` checks the name against the
    /// minimum for the height, the names already etched and the commitment in a spent taproot
    /// input's tapscript, which needs an index; the caller decides (e.g. "this is the etching of the
    /// configured rune id"). Reserved names are always refused; unnamed etchings are always valid.
    pub named_etching_valid: bool,
    /// The amount a mint in this transaction yields, when the caller has checked it is valid (open
    /// terms, cap not reached). `None`: mints are ignored.
    pub mint: Option<u128>,
}

/// What kind of runes artifact the transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    /// No runestone output.
    None,
    /// A valid runestone.
    Runestone,
    /// A malformed runestone: every input rune burns.
    Cenotaph,
}

/// A rune etched by a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtchedRune {
    /// Its id: (block height, index of the etching tx in the block).
    pub id: RuneId,
    /// Its name (reserved, derived from the id, when none was given).
    pub rune: Rune,
    /// Divisibility (0 for a cenotaph's etching).
    pub divisibility: u8,
    /// Premined amount (0 for a cenotaph's etching: nothing is premined).
    pub premine: u128,
    /// Symbol, if any.
    pub symbol: Option<char>,
    /// The etching transaction.
    pub txid: Txid,
}

/// The result of [`allocate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// What the transaction carries.
    pub kind: ArtifactKind,
    /// Runes received by each non-`OP_RETURN` output (output index → balances); outputs that receive
    /// nothing are absent, and so are zero amounts.
    pub outputs: BTreeMap<u32, Balances>,
    /// Runes burned (cenotaph, `OP_RETURN` outputs, no eligible output).
    pub burned: Balances,
    /// The rune etched, if the transaction validly etches one.
    pub etched: Option<EtchedRune>,
    /// The rune minted and the amount, if [`TxContext::mint`] was given and the artifact mints.
    pub minted: Option<(RuneId, u128)>,
}

impl Allocation {
    /// The amount of `rune` received by output `vout`.
    pub fn amount(&self, vout: u32, rune: RuneId) -> u128 {
        self.outputs.get(&vout).and_then(|b| b.get(&rune)).copied().unwrap_or(0)
    }

    /// The amount of `rune` burned.
    pub fn burned(&self, rune: RuneId) -> u128 {
        self.burned.get(&rune).copied().unwrap_or(0)
    }
}

fn add(map: &mut Balances, id: RuneId, amount: u128) {
    if amount > 0 {
        let slot = map.entry(id).or_default();
        *slot = slot.saturating_add(amount);
    }
}

/// The rune `artifact` validly etches in the transaction `txid` at `ctx`, if any.
fn etched(artifact: &Artifact, ctx: &TxContext, txid: Txid) -> Option<EtchedRune> {
    let (name, etching) = match artifact {
        Artifact::Runestone(stone) => {
            let etching = stone.etching?;
            (etching.rune, Some(etching))
        }
        Artifact::Cenotaph(c) => (Some(c.etching?), None),
    };
    let rune = match name {
        Some(rune) if rune.is_reserved() || !ctx.named_etching_valid => return None,
        Some(rune) => rune,
        None => Rune::reserved(ctx.height, ctx.tx_index),
    };
    Some(EtchedRune {
        id: RuneId { block: ctx.height, tx: ctx.tx_index },
        rune,
        divisibility: etching.and_then(|e| e.divisibility).unwrap_or(0),
        premine: etching.and_then(|e| e.premine).unwrap_or(0),
        symbol: etching.and_then(|e| e.symbol),
        txid,
    })
}

/// Allocates the runes of `tx`'s inputs (`inputs[i]`: the balances held by the output input `i`
/// spends; missing entries and empty maps hold nothing) to its outputs, as `ord` does.
pub fn allocate(tx: &Transaction, inputs: &[Balances], ctx: &TxContext) -> Allocation {
    let artifact = Runestone::decipher(tx);
    allocate_artifact(tx, artifact.as_ref(), inputs, ctx)
}

/// [`allocate`] with the artifact already deciphered (`Runestone::decipher(tx)`).
pub fn allocate_artifact(
    tx: &Transaction,
    artifact: Option<&Artifact>,
    inputs: &[Balances],
    ctx: &TxContext,
) -> Allocation {
    let txid = tx.compute_txid();
    let n = tx.output.len();
    let is_op_return = |vout: usize| tx.output.get(vout).is_some_and(|o| o.script_pubkey.is_op_return());

    let mut unallocated = Balances::new();
    for balances in inputs {
        for (id, amount) in balances {
            add(&mut unallocated, *id, *amount);
        }
    }
    let mut allocated: Vec<Balances> = vec![Balances::new(); n];
    let mut burned = Balances::new();
    let mut minted = None;
    let mut etched_rune = None;

    if let Some(artifact) = artifact {
        if let (Some(id), Some(amount)) = (artifact.mint(), ctx.mint) {
            add(&mut unallocated, id, amount);
            minted = Some((id, amount));
        }
        etched_rune = etched(artifact, ctx, txid);
        if let Artifact::Runestone(stone) = artifact {
            if let (Some(e), Some(etching)) = (&etched_rune, stone.etching) {
                add(&mut unallocated, e.id, etching.premine.unwrap_or_default());
            }
            for edict in &stone.edicts {
                let id = if edict.id == RuneId::default() {
                    match &etched_rune {
                        Some(e) => e.id,
                        None => continue,
                    }
                } else {
                    edict.id
                };
                let Some(balance) = unallocated.get_mut(&id) else {
                    continue;
                };
                let mut give = |balance: &mut u128, amount: u128, vout: usize| {
                    if amount > 0 {
                        *balance -= amount;
                        if let Some(slot) = allocated.get_mut(vout) {
                            add(slot, id, amount);
                        }
                    }
                };
                let output = usize::try_from(edict.output).unwrap_or(usize::MAX);
                if output == n {
                    let dests: Vec<usize> = (0..n).filter(|&v| !is_op_return(v)).collect();
                    if dests.is_empty() {
                        continue;
                    }
                    let count = dests.len() as u128;
                    if edict.amount == 0 {
                        let each = *balance / count;
                        let remainder = *balance % count;
                        for (i, vout) in dests.into_iter().enumerate() {
                            let extra = u128::from((i as u128) < remainder);
                            give(balance, each + extra, vout);
                        }
                    } else {
                        for vout in dests {
                            let amount = edict.amount.min(*balance);
                            give(balance, amount, vout);
                        }
                    }
                } else if output < n {
                    let amount = if edict.amount == 0 { *balance } else { edict.amount.min(*balance) };
                    give(balance, amount, output);
                }
                // `output > n` cannot come out of `decipher` (it makes a cenotaph); ignored.
            }
        }
    }

    let kind = match artifact {
        None => ArtifactKind::None,
        Some(Artifact::Runestone(_)) => ArtifactKind::Runestone,
        Some(Artifact::Cenotaph(_)) => ArtifactKind::Cenotaph,
    };
    if kind == ArtifactKind::Cenotaph {
        for (id, amount) in unallocated {
            add(&mut burned, id, amount);
        }
    } else {
        let pointer = match artifact {
            Some(Artifact::Runestone(stone)) => stone.pointer,
            _ => None,
        };
        let target = pointer
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p < n)
            .or_else(|| (0..n).find(|&v| !is_op_return(v)));
        for (id, amount) in unallocated {
            match target.and_then(|vout| allocated.get_mut(vout)) {
                Some(slot) => add(slot, id, amount),
                None => add(&mut burned, id, amount),
            }
        }
    }

    let mut outputs = BTreeMap::new();
    for (vout, balances) in allocated.into_iter().enumerate() {
        if balances.is_empty() {
            continue;
        }
        if is_op_return(vout) {
            for (id, amount) in balances {
                add(&mut burned, id, amount);
            }
            continue;
        }
        // A transaction cannot have 2^32 outputs (it would exceed the block size).
        if let Ok(vout) = u32::try_from(vout) {
            outputs.insert(vout, balances);
        }
    }
    Allocation { kind, outputs, burned, etched: etched_rune, minted }
}

#[cfg(test)]
mod tests {
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, TxIn, TxOut};
    use ordinals::{Edict, Etching};

    use super::*;

    const R: RuneId = RuneId { block: 840, tx: 7 };
    const OTHER: RuneId = RuneId { block: 900, tx: 1 };

    fn spk(n: u8) -> ScriptBuf {
        ScriptBuf::from_bytes([0x51, 0x20].into_iter().chain([n; 32]).collect())
    }

    fn out(n: u8) -> TxOut {
        TxOut { value: Amount::from_sat(546), script_pubkey: spk(n) }
    }

    fn stone_out(stone: &Runestone) -> TxOut {
        TxOut { value: Amount::ZERO, script_pubkey: stone.encipher() }
    }

    fn op_return() -> TxOut {
        TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::new_op_return([1u8, 2]) }
    }

    fn tx(inputs: usize, outputs: Vec<TxOut>) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: (0..inputs)
                .map(|i| TxIn {
                    previous_output: OutPoint { txid: Txid::from_byte_array([i as u8 + 1; 32]), vout: 0 },
                    ..TxIn::default()
                })
                .collect(),
            output: outputs,
        }
    }

    fn bal(pairs: &[(RuneId, u128)]) -> Balances {
        pairs.iter().copied().collect()
    }

    fn ctx() -> TxContext {
        TxContext { height: 1000, tx_index: 3, ..TxContext::default() }
    }

    #[test]
    fn edicts_apply_in_order_and_the_rest_goes_to_the_pointer() {
        let stone = Runestone {
            edicts: vec![Edict { id: R, amount: 100, output: 0 }, Edict { id: R, amount: 50, output: 1 }],
            pointer: Some(2),
            ..Runestone::default()
        };
        let t = tx(2, vec![out(1), out(2), out(3), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 600)]), bal(&[(R, 400), (OTHER, 9)])], &ctx());
        assert_eq!(a.kind, ArtifactKind::Runestone);
        assert_eq!((a.amount(0, R), a.amount(1, R), a.amount(2, R)), (100, 50, 850));
        assert_eq!(a.amount(2, OTHER), 9, "runes without an edict follow the pointer");
        assert!(a.burned.is_empty());
        assert_eq!(a.outputs.len(), 3);
    }

    #[test]
    fn an_edict_asking_more_than_the_balance_gets_the_balance_and_zero_means_all() {
        let stone = Runestone {
            edicts: vec![Edict { id: R, amount: 70, output: 1 }, Edict { id: R, amount: 70, output: 0 }],
            ..Runestone::default()
        };
        let t = tx(1, vec![out(1), out(2), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 100)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(1, R)), (30, 70));
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 0, output: 1 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), out(2), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 100)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(1, R)), (0, 100));
        // An edict for a rune the inputs do not hold is skipped.
        let stone = Runestone { edicts: vec![Edict { id: OTHER, amount: 5, output: 1 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), out(2), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 100)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(1, R), a.amount(1, OTHER)), (100, 0, 0));
    }

    #[test]
    fn output_n_splits_among_non_op_return_outputs() {
        // 4 outputs, the runestone at 1: output 4 == n splits among 0, 2, 3.
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 0, output: 4 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone), out(2), out(3)]);
        let a = allocate(&t, &[bal(&[(R, 11)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(2, R), a.amount(3, R)), (4, 4, 3));
        assert!(!a.outputs.contains_key(&1));
        // A fixed amount to each while the balance lasts; the rest to the first non-OP_RETURN output.
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 4, output: 4 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone), out(2), out(3)]);
        let a = allocate(&t, &[bal(&[(R, 10)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(2, R), a.amount(3, R)), (4, 4, 2));
        let a = allocate(&t, &[bal(&[(R, 20)])], &ctx());
        assert_eq!((a.amount(0, R), a.amount(2, R), a.amount(3, R)), (4 + 8, 4, 4));
    }

    #[test]
    fn without_pointer_the_rest_goes_to_the_first_non_op_return_output() {
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 1, output: 2 }], ..Runestone::default() };
        let t = tx(1, vec![stone_out(&stone), op_return(), out(1), out(2)]);
        let a = allocate(&t, &[bal(&[(R, 10)])], &ctx());
        assert_eq!((a.amount(2, R), a.amount(3, R)), (10, 0));
    }

    #[test]
    fn an_edict_to_an_op_return_output_burns() {
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 30, output: 1 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 100)])], &ctx());
        assert_eq!(a.burned(R), 30);
        assert_eq!(a.amount(0, R), 70);
    }

    #[test]
    fn all_op_return_outputs_burn_everything() {
        let t = tx(1, vec![op_return()]);
        let a = allocate(&t, &[bal(&[(R, 100)])], &ctx());
        assert_eq!(a.kind, ArtifactKind::None);
        assert_eq!(a.burned(R), 100);
        assert!(a.outputs.is_empty());
    }

    #[test]
    fn no_runestone_sends_everything_to_the_first_non_op_return_output() {
        let t = tx(3, vec![op_return(), out(1), out(2)]);
        let a = allocate(&t, &[bal(&[(R, 5)]), Balances::new(), bal(&[(R, 6), (OTHER, 1)])], &ctx());
        assert_eq!(a.kind, ArtifactKind::None);
        assert_eq!(a.outputs, BTreeMap::from([(1, bal(&[(R, 11), (OTHER, 1)]))]));
        assert!(a.burned.is_empty());
    }

    #[test]
    fn an_unrecognized_even_tag_is_a_cenotaph_burning_all_inputs() {
        // Tag 126 (even, unknown) with value 1.
        let bad =
            TxOut { value: Amount::ZERO, script_pubkey: ScriptBuf::from_bytes(vec![0x6a, 0x5d, 0x02, 0x7e, 0x01]) };
        let t = tx(2, vec![out(1), bad]);
        assert!(matches!(Runestone::decipher(&t), Some(Artifact::Cenotaph(_))));
        let a = allocate(&t, &[bal(&[(R, 5)]), bal(&[(R, 7), (OTHER, 2)])], &ctx());
        assert_eq!(a.kind, ArtifactKind::Cenotaph);
        assert!(a.outputs.is_empty());
        assert_eq!(a.burned, bal(&[(R, 12), (OTHER, 2)]));
    }

    #[test]
    fn an_edict_output_past_n_plus_one_is_a_cenotaph() {
        // Built with the crate: an edict to output 9 of a 2-output tx.
        let stone = Runestone { edicts: vec![Edict { id: R, amount: 1, output: 9 }], ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone)]);
        assert!(matches!(Runestone::decipher(&t), Some(Artifact::Cenotaph(_))));
        let a = allocate(&t, &[bal(&[(R, 40)])], &ctx());
        assert_eq!((a.kind, a.burned(R), a.amount(0, R)), (ArtifactKind::Cenotaph, 40, 0));
        // A pointer out of range too.
        let stone = Runestone { pointer: Some(5), ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone)]);
        let a = allocate(&t, &[bal(&[(R, 40)])], &ctx());
        assert_eq!((a.kind, a.burned(R)), (ArtifactKind::Cenotaph, 40));
    }

    #[test]
    fn an_unnamed_etching_premines_to_the_edicts_and_pointer() {
        let stone = Runestone {
            edicts: vec![Edict { id: RuneId::default(), amount: 100, output: 1 }],
            etching: Some(Etching {
                divisibility: Some(2),
                premine: Some(1_000),
                symbol: Some('K'),
                ..Etching::default()
            }),
            pointer: Some(0),
            ..Runestone::default()
        };
        let t = tx(1, vec![out(1), out(2), stone_out(&stone)]);
        let a = allocate(&t, &[Balances::new()], &ctx());
        let id = RuneId { block: 1000, tx: 3 };
        let e = a.etched.clone().expect("etched");
        assert_eq!(
            (e.id, e.rune, e.premine, e.divisibility, e.symbol),
            (id, Rune::reserved(1000, 3), 1_000, 2, Some('K'))
        );
        assert_eq!(e.txid, t.compute_txid());
        assert_eq!((a.amount(0, id), a.amount(1, id)), (900, 100));
    }

    #[test]
    fn a_named_etching_counts_only_when_the_caller_accepts_it() {
        let stone = Runestone {
            etching: Some(Etching { rune: Some(Rune(99_999_999_999)), premine: Some(50), ..Etching::default() }),
            ..Runestone::default()
        };
        let t = tx(1, vec![out(1), stone_out(&stone)]);
        let id = RuneId { block: 1000, tx: 3 };
        let refused = allocate(&t, &[Balances::new()], &ctx());
        assert_eq!((refused.etched.is_none(), refused.amount(0, id)), (true, 0));
        let accepted = allocate(&t, &[Balances::new()], &TxContext { named_etching_valid: true, ..ctx() });
        assert_eq!(accepted.etched.as_ref().map(|e| e.rune), Some(Rune(99_999_999_999)));
        assert_eq!(accepted.amount(0, id), 50);
    }

    #[test]
    fn a_mint_adds_only_the_amount_the_caller_validated() {
        let stone = Runestone { mint: Some(R), ..Runestone::default() };
        let t = tx(1, vec![out(1), stone_out(&stone)]);
        assert_eq!(allocate(&t, &[Balances::new()], &ctx()).amount(0, R), 0);
        let a = allocate(&t, &[bal(&[(R, 1)])], &TxContext { mint: Some(25), ..ctx() });
        assert_eq!((a.amount(0, R), a.minted), (26, Some((R, 25))));
    }
}
