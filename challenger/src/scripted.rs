//! A scripted in-memory [`L1Client`] for tests: a UTXO set, a mempool with replacement, blocks mined
//! on demand, transactions that miners ignore ("stuck"), a broadcast that fails like a crash, and a log
//! of every broadcast.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use bitcoin::{FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid};

use crate::coins::Utxo;
use crate::l1::{ChainTxState, L1Client, L1Error};

/// The scripted chain's state (public so tests can arrange it).
#[derive(Debug, Default)]
pub struct ScriptedState {
    /// Tip height.
    pub tip: u64,
    /// What `estimatesmartfee` answers.
    pub estimate: Option<FeeRate>,
    /// The confirmed UTXO set.
    pub utxos: BTreeMap<OutPoint, Utxo>,
    /// The mempool.
    pub mempool: BTreeMap<Txid, Transaction>,
    /// Confirmed transactions and their heights.
    pub confirmed: BTreeMap<Txid, u64>,
    /// Transactions miners leave out.
    pub stuck: BTreeSet<Txid>,
    /// Broadcasts fail with a transport error while this is set (a crash before the send).
    pub fail_sends: bool,
    /// Every accepted broadcast, in order (re-broadcasts included).
    pub sent: Vec<Txid>,
    /// Confirmed transactions with the coins they spent (to undo them in a reorg).
    pub mined: BTreeMap<Txid, (Transaction, Vec<Utxo>)>,
}

/// A scripted [`L1Client`].
#[derive(Debug, Default)]
pub struct ScriptedL1 {
    state: Mutex<ScriptedState>,
}

impl ScriptedL1 {
    /// An empty chain at height `tip`.
    pub fn new(tip: u64) -> Self {
        Self { state: Mutex::new(ScriptedState { tip, ..ScriptedState::default() }) }
    }

    /// The state, to arrange or inspect.
    pub fn state(&self) -> MutexGuard<'_, ScriptedState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds a confirmed, non-coinbase coin.
    pub fn fund(&self, outpoint: OutPoint, txout: TxOut, height: u64) {
        self.state().utxos.insert(outpoint, Utxo { outpoint, txout, height, coinbase: false });
    }

    /// Mines one block with every mempool transaction that is not stuck; returns the mined txids.
    pub fn mine(&self) -> Vec<Txid> {
        let mut s = self.state();
        s.tip += 1;
        let height = s.tip;
        let take: Vec<Txid> = s.mempool.keys().filter(|t| !s.stuck.contains(*t)).copied().collect();
        for txid in &take {
            if let Some(tx) = s.mempool.remove(txid) {
                confirm(&mut s, &tx, height);
            }
        }
        take
    }

    /// Mines `tx` directly (e.g. another guardian's anchor, or a replaced tx a miner kept).
    pub fn mine_tx(&self, tx: &Transaction) {
        let mut s = self.state();
        s.tip += 1;
        let height = s.tip;
        let spent: BTreeSet<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        s.mempool.retain(|_, m| !m.input.iter().any(|i| spent.contains(&i.previous_output)));
        confirm(&mut s, tx, height);
    }

    /// A reorg (same tip height) whose new block lacks `txid`: its spent coins return, its outputs
    /// vanish, and the node does not hold it in the mempool. Returns whether it was confirmed.
    pub fn reorg_out(&self, txid: &Txid) -> bool {
        let mut s = self.state();
        let Some((tx, spent)) = s.mined.remove(txid) else { return false };
        s.confirmed.remove(txid);
        for vout in 0..tx.output.len() {
            s.utxos.remove(&OutPoint { txid: *txid, vout: vout as u32 });
        }
        for u in spent {
            s.utxos.insert(u.outpoint, u);
        }
        true
    }
}

fn confirm(s: &mut ScriptedState, tx: &Transaction, height: u64) {
    let txid = tx.compute_txid();
    let spent: Vec<Utxo> = tx.input.iter().filter_map(|i| s.utxos.remove(&i.previous_output)).collect();
    s.mined.insert(txid, (tx.clone(), spent));
    for (vout, out) in tx.output.iter().enumerate() {
        if !out.script_pubkey.is_op_return() {
            let outpoint = OutPoint { txid, vout: vout as u32 };
            s.utxos.insert(outpoint, Utxo { outpoint, txout: out.clone(), height, coinbase: false });
        }
    }
    s.confirmed.insert(txid, height);
}

impl L1Client for ScriptedL1 {
    async fn tip_height(&self) -> Result<u64, L1Error> {
        Ok(self.state().tip)
    }

    async fn estimate_fee_rate(&self, _conf_target: u16) -> Result<Option<FeeRate>, L1Error> {
        Ok(self.state().estimate)
    }

    async fn utxos(&self, script: &ScriptBuf) -> Result<Vec<Utxo>, L1Error> {
        Ok(self.state().utxos.values().filter(|u| u.txout.script_pubkey == *script).cloned().collect())
    }

    async fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, L1Error> {
        let mut s = self.state();
        if s.fail_sends {
            return Err(L1Error::Transport("scripted: connection reset".into()));
        }
        let txid = tx.compute_txid();
        if s.confirmed.contains_key(&txid) {
            return Err(L1Error::Rpc { code: -27, message: "Transaction already in block chain".into() });
        }
        if let Some(missing) = tx.input.iter().find(|i| !s.utxos.contains_key(&i.previous_output)) {
            return Err(L1Error::Rpc {
                code: -25,
                message: format!("bad-txns-inputs-missingorspent {}", missing.previous_output),
            });
        }
        // Replacement: drop mempool conflicts (the sender checks BIP-125 itself).
        let spent: BTreeSet<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        s.mempool.retain(|t, m| *t == txid || !m.input.iter().any(|i| spent.contains(&i.previous_output)));
        s.mempool.insert(txid, tx.clone());
        s.sent.push(txid);
        Ok(txid)
    }

    async fn tx_state(&self, txid: &Txid) -> Result<ChainTxState, L1Error> {
        let s = self.state();
        Ok(match s.confirmed.get(txid) {
            Some(h) => ChainTxState::Confirmed { height: *h },
            None if s.mempool.contains_key(txid) => ChainTxState::InMempool,
            None => ChainTxState::Unknown,
        })
    }
}
