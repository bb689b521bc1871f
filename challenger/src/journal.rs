//! The journal of our own L1 transactions: every signed transaction is written here, and fsync'd,
//! **before** it is broadcast, and every status change after. A restart reads it back, so the guardian
//! never spends an input twice, never re-sends a replaced transaction and re-broadcasts the live one.
//!
//! Format: JSON lines, append-only. Each line is the full current record of one transaction; the last
//! line for a txid wins. One `write` + `fsync` per change: a crash either leaves the whole line or a
//! torn last line, which the reader ignores (it was never acted on: the broadcast follows the fsync).
//! A torn line anywhere else is corruption and refuses to start. [`Journal::compact`] rewrites the file
//! with one line per transaction (temp file, fsync, rename, fsync of the directory).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, FeeRate, OutPoint, Transaction, Txid};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What a transaction is for (one settled transaction per purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Purpose {
    /// The anchor `OP_RETURN "KRAY" || batch_hash` of a batch.
    Anchor {
        /// The batch.
        batch_id: u64,
        /// Its batch hash.
        #[serde(with = "hex32")]
        batch_hash: [u8; 32],
    },
    /// The challenge marker `OP_RETURN "KRAY" "C" || batch_id || proof_hash`.
    Challenge {
        /// The challenged batch.
        batch_id: u64,
        /// The fraud proof's hash.
        #[serde(with = "hex32")]
        proof_hash: [u8; 32],
    },
}

impl Purpose {
    /// The `OP_RETURN` output script this purpose puts on L1.
    pub fn script(&self) -> bitcoin::ScriptBuf {
        match self {
            Purpose::Anchor { batch_hash, .. } => kray_replayer::l1payload::anchor_script(batch_hash),
            Purpose::Challenge { batch_id, proof_hash } => {
                kray_replayer::l1payload::challenge_script(*batch_id, proof_hash)
            }
        }
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Purpose::Anchor { batch_id, .. } => write!(f, "anchor of batch {batch_id}"),
            Purpose::Challenge { batch_id, .. } => write!(f, "challenge of batch {batch_id}"),
        }
    }
}

/// Where a transaction stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum TxStatus {
    /// Signed and persisted; the broadcast may not have happened (crash, node down).
    Signed,
    /// Accepted by our node at this tip height (re-broadcast on every block until it settles).
    Broadcast {
        /// Tip when it was (last) accepted.
        height: u64,
    },
    /// Mined in the block at this height: its purpose is settled.
    Confirmed {
        /// Block height.
        height: u64,
    },
    /// Replaced by an RBF bump; never re-sent (it may still confirm, which settles the purpose).
    Replaced {
        /// The replacement.
        by: Txid,
    },
    /// Given up (another guardian's anchor confirmed, rejected, a conflicting tx confirmed): never
    /// re-sent or bumped. Its inputs stay reserved while the node still has it (`released` false).
    Dropped {
        /// Why.
        reason: String,
        /// Whether the node no longer knows it, so its inputs may be spent again.
        released: bool,
    },
}

/// One of our transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    /// Its txid.
    pub txid: Txid,
    /// What it is for.
    pub purpose: Purpose,
    /// The signed transaction, consensus hex.
    pub raw: String,
    /// The outpoints it spends.
    pub inputs: Vec<OutPoint>,
    /// Its absolute fee in sat.
    pub fee_sat: u64,
    /// The target fee rate it was built at, in sat per 1000 weight units (its fee may be a little higher
    /// when change below dust went to the fee).
    pub fee_rate_sat_per_kwu: u64,
    /// Its vsize.
    pub vsize: u64,
    /// The transaction it replaces (RBF), if any.
    pub replaces: Option<Txid>,
    /// Tip height when it was signed.
    pub created_height: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub status: TxStatus,
}

impl TxRecord {
    /// A new `Signed` record for `tx`, built at the target fee rate `rate` and paying `fee`.
    pub fn signed(
        tx: &Transaction,
        purpose: Purpose,
        fee: Amount,
        rate: FeeRate,
        replaces: Option<Txid>,
        created_height: u64,
    ) -> Self {
        let vsize = tx.vsize() as u64;
        Self {
            txid: tx.compute_txid(),
            purpose,
            raw: serialize_hex(tx),
            inputs: tx.input.iter().map(|i| i.previous_output).collect(),
            fee_sat: fee.to_sat(),
            fee_rate_sat_per_kwu: rate.to_sat_per_kwu(),
            vsize,
            replaces,
            created_height,
            status: TxStatus::Signed,
        }
    }

    /// The signed transaction.
    pub fn tx(&self) -> Result<Transaction, JournalError> {
        deserialize_hex(&self.raw).map_err(|e| JournalError::BadRecord { txid: self.txid, reason: e.to_string() })
    }

    /// The absolute fee.
    pub fn fee(&self) -> Amount {
        Amount::from_sat(self.fee_sat)
    }

    /// The target fee rate it was built at.
    pub fn fee_rate(&self) -> FeeRate {
        FeeRate::from_sat_per_kwu(self.fee_rate_sat_per_kwu)
    }

    /// Whether it is the one to (re-)broadcast and bump: signed or broadcast, not replaced or dropped.
    pub fn is_live(&self) -> bool {
        matches!(self.status, TxStatus::Signed | TxStatus::Broadcast { .. })
    }
}

/// Journal errors.
#[derive(Debug, Error)]
pub enum JournalError {
    /// File I/O failed.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A line other than the last is not a record.
    #[error("journal {path} line {line} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Parser message.
        reason: String,
    },
    /// A record's raw transaction does not decode or match its txid.
    #[error("journal record {txid} is invalid: {reason}")]
    BadRecord {
        /// The record.
        txid: Txid,
        /// Why.
        reason: String,
    },
    /// A status change names a txid the journal does not hold.
    #[error("journal has no transaction {0}")]
    Unknown(Txid),
}

/// The journal: an append-only JSON-lines file and its records in memory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    records: BTreeMap<Txid, TxRecord>,
    /// Txids in the order they were first written.
    order: Vec<Txid>,
}

impl Journal {
    /// Opens (creating if missing) the journal at `path` and reads every record back.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(e)),
        };
        let mut records = BTreeMap::new();
        let mut order = Vec::new();
        let lines: Vec<&str> = text.split('\n').collect();
        let torn_tail = !text.is_empty() && !text.ends_with('\n');
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let rec: TxRecord = match serde_json::from_str(line) {
                Ok(r) => r,
                Err(e) if torn_tail && i + 1 == lines.len() => {
                    tracing::warn!(path = %path.display(), error = %e, "journal: ignoring a torn last line");
                    continue;
                }
                Err(e) => {
                    return Err(JournalError::Corrupt { path: path.to_path_buf(), line: i + 1, reason: e.to_string() })
                }
            };
            let tx = rec.tx()?;
            if tx.compute_txid() != rec.txid {
                return Err(JournalError::BadRecord { txid: rec.txid, reason: "raw does not hash to txid".into() });
            }
            if !records.contains_key(&rec.txid) {
                order.push(rec.txid);
            }
            records.insert(rec.txid, rec);
        }
        // A replacement that was persisted marks its original replaced even if the crash came before
        // the original's status line: the original is never re-sent.
        let replacements: Vec<(Txid, Txid)> = records
            .values()
            .filter(|r| !matches!(r.status, TxStatus::Dropped { .. }))
            .filter_map(|r| r.replaces.map(|old| (old, r.txid)))
            .collect();
        for (old, by) in replacements {
            if let Some(o) = records.get_mut(&old) {
                if o.is_live() {
                    o.status = TxStatus::Replaced { by };
                }
            }
        }
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        if torn_tail {
            // Terminate the torn line so the next record starts on its own line.
            file.write_all(b"\n").and_then(|_| file.sync_data()).map_err(io)?;
        }
        tracing::info!(path = %path.display(), records = records.len(), "journal opened");
        Ok(Self { path: path.to_path_buf(), file, records, order })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes (and fsyncs) `rec` as the current record of its txid.
    pub fn put(&mut self, rec: TxRecord) -> Result<(), JournalError> {
        let mut line =
            serde_json::to_vec(&rec).map_err(|e| JournalError::BadRecord { txid: rec.txid, reason: e.to_string() })?;
        line.push(b'\n');
        let io = |source| JournalError::Io { path: self.path.clone(), source };
        self.file.write_all(&line).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        if !self.records.contains_key(&rec.txid) {
            self.order.push(rec.txid);
        }
        self.records.insert(rec.txid, rec);
        Ok(())
    }

    /// Changes the status of `txid` (persisted first).
    pub fn set_status(&mut self, txid: &Txid, status: TxStatus) -> Result<(), JournalError> {
        let mut rec = self.records.get(txid).cloned().ok_or(JournalError::Unknown(*txid))?;
        if rec.status == status {
            return Ok(());
        }
        rec.status = status;
        self.put(rec)
    }

    /// The record of `txid`.
    pub fn get(&self, txid: &Txid) -> Option<&TxRecord> {
        self.records.get(txid)
    }

    /// Every record, in the order first written.
    pub fn records(&self) -> impl Iterator<Item = &TxRecord> {
        self.order.iter().filter_map(|t| self.records.get(t))
    }

    /// The records of `purpose`, oldest first.
    pub fn for_purpose(&self, purpose: &Purpose) -> Vec<&TxRecord> {
        self.records().filter(|r| r.purpose == *purpose).collect()
    }

    /// The live record of `purpose` (at most one by construction).
    pub fn live(&self, purpose: &Purpose) -> Option<&TxRecord> {
        self.records().filter(|r| r.purpose == *purpose && r.is_live()).last()
    }

    /// The confirmed record of `purpose`, if it is settled.
    pub fn confirmed(&self, purpose: &Purpose) -> Option<&TxRecord> {
        self.records().find(|r| r.purpose == *purpose && matches!(r.status, TxStatus::Confirmed { .. }))
    }

    /// Outpoints that must not be spent by a new transaction: inputs of live and replaced records and of
    /// dropped ones the node may still hold. (Inputs of confirmed ones are gone from the UTXO set.)
    pub fn reserved_inputs(&self) -> BTreeSet<OutPoint> {
        self.records
            .values()
            .filter(|r| match &r.status {
                TxStatus::Signed | TxStatus::Broadcast { .. } | TxStatus::Replaced { .. } => true,
                TxStatus::Dropped { released, .. } => !released,
                TxStatus::Confirmed { .. } => true,
            })
            .flat_map(|r| r.inputs.iter().copied())
            .collect()
    }

    /// Rewrites the file with one line per transaction (temp file + fsync + rename + directory fsync).
    pub fn compact(&mut self) -> Result<(), JournalError> {
        let io = |source| JournalError::Io { path: self.path.clone(), source };
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp).map_err(io)?;
            for rec in self.records() {
                let mut line = serde_json::to_vec(rec)
                    .map_err(|e| JournalError::BadRecord { txid: rec.txid, reason: e.to_string() })?;
                line.push(b'\n');
                f.write_all(&line).map_err(io)?;
            }
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(io)?;
        Ok(())
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::hashes::Hash;
    use bitcoin::transaction::Version;
    use bitcoin::{ScriptBuf, Sequence, TxIn, TxOut, Witness};

    fn purpose(n: u64) -> Purpose {
        Purpose::Anchor { batch_id: n, batch_hash: [n as u8; 32] }
    }

    fn tx(input: u8, change: u64) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint { txid: Txid::from_byte_array([input; 32]), vout: 1 },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            }],
            output: vec![
                TxOut { value: Amount::ZERO, script_pubkey: purpose(1).script() },
                TxOut { value: Amount::from_sat(change), script_pubkey: ScriptBuf::new() },
            ],
        }
    }

    #[test]
    fn records_survive_reopen_and_last_line_wins() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.jsonl");
        let t = tx(1, 1000);
        let txid = t.compute_txid();
        {
            let mut j = Journal::open(&path).expect("open");
            j.put(TxRecord::signed(&t, purpose(1), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 10))
                .expect("put");
            j.set_status(&txid, TxStatus::Broadcast { height: 10 }).expect("status");
        }
        let j = Journal::open(&path).expect("reopen");
        let r = j.get(&txid).expect("record");
        assert_eq!(r.status, TxStatus::Broadcast { height: 10 });
        assert_eq!(r.tx().expect("tx"), t);
        assert_eq!(r.fee(), Amount::from_sat(300));
        assert_eq!(j.live(&purpose(1)).map(|r| r.txid), Some(txid));
        assert!(j.reserved_inputs().contains(&t.input[0].previous_output));
        assert_eq!(j.live(&purpose(2)), None);
    }

    #[test]
    fn torn_last_line_is_ignored_but_torn_middle_is_corrupt() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.jsonl");
        let t = tx(1, 1000);
        {
            let mut j = Journal::open(&path).expect("open");
            j.put(TxRecord::signed(&t, purpose(1), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 10))
                .expect("put");
        }
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(b"{\"txid\":\"ab").expect("torn write");
        drop(f);
        let mut j = Journal::open(&path).expect("torn tail tolerated");
        assert_eq!(j.records().count(), 1);
        // Writing after a torn tail starts a fresh line, and the file reads back.
        let t2 = tx(2, 900);
        j.put(TxRecord::signed(&t2, purpose(2), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 11))
            .expect("put");
        drop(j);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 3);
        // Now the torn line is in the middle: corruption.
        let err = Journal::open(&path).expect_err("corrupt middle line");
        assert!(matches!(err, JournalError::Corrupt { line: 2, .. }), "{err}");
    }

    #[test]
    fn persisted_replacement_marks_original_replaced_on_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.jsonl");
        let old = tx(1, 1000);
        let new = tx(1, 800);
        {
            let mut j = Journal::open(&path).expect("open");
            j.put(TxRecord::signed(&old, purpose(1), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 10))
                .expect("put");
            j.set_status(&old.compute_txid(), TxStatus::Broadcast { height: 10 }).expect("status");
            // Crash after persisting the bump, before marking the original.
            j.put(TxRecord::signed(
                &new,
                purpose(1),
                Amount::from_sat(500),
                FeeRate::from_sat_per_vb_u32(2),
                Some(old.compute_txid()),
                12,
            ))
            .expect("put");
        }
        let mut j = Journal::open(&path).expect("reopen");
        assert_eq!(
            j.get(&old.compute_txid()).map(|r| r.status.clone()),
            Some(TxStatus::Replaced { by: new.compute_txid() })
        );
        assert_eq!(j.live(&purpose(1)).map(|r| r.txid), Some(new.compute_txid()));
        // Compaction keeps exactly one line per tx and the same state.
        j.compact().expect("compact");
        j.set_status(&new.compute_txid(), TxStatus::Confirmed { height: 13 }).expect("status");
        drop(j);
        let j = Journal::open(&path).expect("reopen");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 3);
        assert_eq!(j.confirmed(&purpose(1)).map(|r| r.txid), Some(new.compute_txid()));
        assert_eq!(j.live(&purpose(1)), None);
    }

    #[test]
    fn dropped_inputs_are_released_only_when_the_node_forgot_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut j = Journal::open(&dir.path().join("j.jsonl")).expect("open");
        let t = tx(5, 1000);
        let op = t.input[0].previous_output;
        j.put(TxRecord::signed(&t, purpose(5), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 10))
            .expect("put");
        j.set_status(&t.compute_txid(), TxStatus::Dropped { reason: "other guardian".into(), released: false })
            .expect("drop");
        assert!(j.reserved_inputs().contains(&op));
        assert_eq!(j.live(&purpose(5)), None);
        j.set_status(&t.compute_txid(), TxStatus::Dropped { reason: "other guardian".into(), released: true })
            .expect("release");
        assert!(!j.reserved_inputs().contains(&op));
        assert!(matches!(j.set_status(&Txid::all_zeros(), TxStatus::Signed), Err(JournalError::Unknown(_))));
    }
}
