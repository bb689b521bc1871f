//! The journal of our own L1 transactions: every signed transaction is written here, and fsync'd,
//! **before** it is broadcast, and every status change after. A restart reads it back, so the guardian
//! never spends an input twice, never re-sends a replaced transaction and re-broadcasts the live one.
//!
//! Format: JSON lines, append-only. Each line is the full current record of one transaction; the last
//! line for a txid wins. One `write` + `fsync` per change: a crash either leaves the whole line or a
//! torn last line (no final newline). A torn last line was never acted on (the broadcast follows the
//! fsync), so [`Journal::open`] truncates the file back to the end of its last complete line (fsync,
//! logged with the byte count): the next append can never turn it into a torn *middle* line. A line
//! that ends with its newline but does not parse is corruption and refuses to start, naming the line.
//!
//! [`Journal::compact`] rewrites the file with one line per transaction (temp file, fsync, rename,
//! fsync of the directory; a crash at any point leaves either the old or the new file, and a stale temp
//! file is removed at the next open). [`Journal::compact_settled`] also folds every purpose whose
//! confirmation is deeper than the finality depth into one short `{"settled": …}` line (purpose, txid,
//! height): all the sender needs from a settled purpose is that it is settled (so it is never sent
//! again); the inputs of a deep confirmed transaction are spent for good and need no reservation.

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

/// A purpose settled by one of our transactions deeper than the finality depth, as kept by
/// [`Journal::compact_settled`] in place of its full records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// What was settled.
    pub purpose: Purpose,
    /// The confirmed transaction.
    pub txid: Txid,
    /// Its block height.
    pub height: u64,
}

/// The line that holds a [`Settlement`]: `{"settled": {...}}` (a [`TxRecord`] line never has that key).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettledLine {
    settled: Settlement,
}

/// What one journal line holds.
enum Line {
    Record(TxRecord),
    Settled(Settlement),
}

impl Line {
    fn parse(bytes: &[u8]) -> Result<Line, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if value.get("settled").is_some() {
            serde_json::from_value::<SettledLine>(value).map(|l| Line::Settled(l.settled)).map_err(|e| e.to_string())
        } else {
            serde_json::from_value::<TxRecord>(value).map(Line::Record).map_err(|e| e.to_string())
        }
    }
}

/// Lines of the file that a compaction would remove, above which [`Journal::needs_compaction`] says so.
pub const COMPACT_REDUNDANT_LINES: usize = 256;

/// The journal: an append-only JSON-lines file and its records in memory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    records: BTreeMap<Txid, TxRecord>,
    /// Txids in the order they were first written.
    order: Vec<Txid>,
    /// Purposes folded by [`Journal::compact_settled`].
    settled: BTreeMap<Purpose, Settlement>,
    /// Complete lines in the file.
    lines: usize,
}

impl Journal {
    /// Opens (creating if missing) the journal at `path` and reads every record back.
    ///
    /// A torn last line (no final newline) is cut off the file first (fsync'd, logged with the byte
    /// count); a stale compaction temp file is removed. A complete line that is not a record is
    /// [`JournalError::Corrupt`], naming its 1-based line number.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io { path: path.to_path_buf(), source };
        let tmp = temp_path(path);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {
                tracing::warn!(path = %tmp.display(), "journal: removed the temp file of an unfinished compaction")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut bytes = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let torn = bytes.len() - complete;
        if torn > 0 {
            let f = OpenOptions::new().write(true).open(path).map_err(io)?;
            f.set_len(complete as u64).and_then(|_| f.sync_all()).map_err(io)?;
            tracing::warn!(
                path = %path.display(),
                bytes_removed = torn,
                kept_bytes = complete,
                "journal: truncated a torn last line (a write cut short by a crash; it was never acted on)"
            );
            bytes.truncate(complete);
        }
        let mut journal = Self {
            path: path.to_path_buf(),
            file: OpenOptions::new().create(true).append(true).open(path).map_err(io)?,
            records: BTreeMap::new(),
            order: Vec::new(),
            settled: BTreeMap::new(),
            lines: 0,
        };
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            journal.lines += 1;
            let parsed = Line::parse(line).map_err(|reason| JournalError::Corrupt {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            })?;
            match parsed {
                Line::Record(rec) => {
                    let tx = rec.tx()?;
                    if tx.compute_txid() != rec.txid {
                        return Err(JournalError::BadRecord {
                            txid: rec.txid,
                            reason: "raw does not hash to txid".into(),
                        });
                    }
                    journal.insert(rec);
                }
                Line::Settled(s) => {
                    journal.settled.insert(s.purpose, s);
                }
            }
        }
        // A replacement that was persisted marks its original replaced even if the crash came before
        // the original's status line: the original is never re-sent.
        let replacements: Vec<(Txid, Txid)> = journal
            .records
            .values()
            .filter(|r| !matches!(r.status, TxStatus::Dropped { .. }))
            .filter_map(|r| r.replaces.map(|old| (old, r.txid)))
            .collect();
        for (old, by) in replacements {
            if let Some(o) = journal.records.get_mut(&old) {
                if o.is_live() {
                    o.status = TxStatus::Replaced { by };
                }
            }
        }
        tracing::info!(
            path = %path.display(),
            records = journal.records.len(),
            settled = journal.settled.len(),
            lines = journal.lines,
            "journal opened"
        );
        Ok(journal)
    }

    fn insert(&mut self, rec: TxRecord) {
        if !self.records.contains_key(&rec.txid) {
            self.order.push(rec.txid);
        }
        self.records.insert(rec.txid, rec);
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
        self.lines += 1;
        self.insert(rec);
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

    /// Every record, in the order first written (purposes folded by [`Journal::compact_settled`] have
    /// none: see [`Journal::settlements`]).
    pub fn records(&self) -> impl Iterator<Item = &TxRecord> {
        self.order.iter().filter_map(|t| self.records.get(t))
    }

    /// The purposes folded into a [`Settlement`] by [`Journal::compact_settled`].
    pub fn settlements(&self) -> impl Iterator<Item = &Settlement> {
        self.settled.values()
    }

    /// The records of `purpose`, oldest first.
    pub fn for_purpose(&self, purpose: &Purpose) -> Vec<&TxRecord> {
        self.records().filter(|r| r.purpose == *purpose).collect()
    }

    /// The live record of `purpose` (at most one by construction).
    pub fn live(&self, purpose: &Purpose) -> Option<&TxRecord> {
        self.records().filter(|r| r.purpose == *purpose && r.is_live()).last()
    }

    /// The confirmed record of `purpose`, if it is settled and not yet folded (see
    /// [`Journal::settlement`] for either).
    pub fn confirmed(&self, purpose: &Purpose) -> Option<&TxRecord> {
        self.records().find(|r| r.purpose == *purpose && matches!(r.status, TxStatus::Confirmed { .. }))
    }

    /// How `purpose` was settled: by a confirmed record, or by a folded [`Settlement`].
    pub fn settlement(&self, purpose: &Purpose) -> Option<Settlement> {
        if let Some(r) = self.confirmed(purpose) {
            if let TxStatus::Confirmed { height } = r.status {
                return Some(Settlement { purpose: *purpose, txid: r.txid, height });
            }
        }
        self.settled.get(purpose).cloned()
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

    /// Complete lines in the file.
    pub fn line_count(&self) -> usize {
        self.lines
    }

    /// Lines a compaction would remove (superseded status lines).
    pub fn redundant_lines(&self) -> usize {
        self.lines.saturating_sub(self.records.len() + self.settled.len())
    }

    /// Whether the file has grown [`COMPACT_REDUNDANT_LINES`] lines beyond one per entry.
    pub fn needs_compaction(&self) -> bool {
        self.redundant_lines() > COMPACT_REDUNDANT_LINES
    }

    /// Purposes whose confirmation at tip `tip` is deeper than `depth` blocks (`height + depth <= tip`,
    /// the blocks the sender no longer re-checks for reorgs) and which still have full records.
    pub fn foldable(&self, tip: u64, depth: u64) -> Vec<Purpose> {
        self.records()
            .filter_map(|r| match r.status {
                TxStatus::Confirmed { height } if height.saturating_add(depth) <= tip => Some(r.purpose),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Folds every purpose confirmed deeper than `depth` at tip `tip` into a [`Settlement`] and
    /// rewrites the file ([`Journal::compact`]). Records of a folded purpose are dropped, except
    /// dropped transactions the node may still hold (their inputs stay reserved). Returns the purposes
    /// folded.
    pub fn compact_settled(&mut self, tip: u64, depth: u64) -> Result<Vec<Purpose>, JournalError> {
        let fold = self.foldable(tip, depth);
        let mut records = self.records.clone();
        let mut settled = self.settled.clone();
        for purpose in &fold {
            let Some(s) = self.settlement(purpose) else { continue };
            records
                .retain(|_, r| r.purpose != *purpose || matches!(r.status, TxStatus::Dropped { released: false, .. }));
            settled.insert(*purpose, s);
        }
        let order: Vec<Txid> = self.order.iter().filter(|t| records.contains_key(*t)).copied().collect();
        self.rewrite(&records, &order, &settled)?;
        self.records = records;
        self.order = order;
        self.settled = settled;
        Ok(fold)
    }

    /// Rewrites the file with one line per transaction (temp file + fsync + rename + directory fsync).
    pub fn compact(&mut self) -> Result<(), JournalError> {
        let (records, order, settled) = (self.records.clone(), self.order.clone(), self.settled.clone());
        self.rewrite(&records, &order, &settled)
    }

    fn rewrite(
        &mut self,
        records: &BTreeMap<Txid, TxRecord>,
        order: &[Txid],
        settled: &BTreeMap<Purpose, Settlement>,
    ) -> Result<(), JournalError> {
        let io = |source| JournalError::Io { path: self.path.clone(), source };
        let tmp = temp_path(&self.path);
        let mut text = Vec::new();
        let mut lines = 0;
        for s in settled.values() {
            let line = serde_json::to_vec(&SettledLine { settled: s.clone() })
                .map_err(|e| JournalError::BadRecord { txid: s.txid, reason: e.to_string() })?;
            text.extend_from_slice(&line);
            text.push(b'\n');
            lines += 1;
        }
        for rec in order.iter().filter_map(|t| records.get(t)) {
            let line = serde_json::to_vec(rec)
                .map_err(|e| JournalError::BadRecord { txid: rec.txid, reason: e.to_string() })?;
            text.extend_from_slice(&line);
            text.push(b'\n');
            lines += 1;
        }
        // The append handle is opened on the temp file before the rename, so it follows the file to its
        // final name: nothing after this point can leave us appending to the replaced file.
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp).map_err(io)?;
        f.write_all(&text).and_then(|_| f.sync_all()).map_err(io)?;
        drop(f);
        let file = OpenOptions::new().append(true).open(&tmp).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        let before = self.lines;
        self.file = file;
        self.lines = lines;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        tracing::info!(path = %self.path.display(), lines_before = before, lines, "journal compacted");
        Ok(())
    }
}

/// The temp file of a compaction of the journal at `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
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

    fn signed(t: &Transaction, n: u64, height: u64) -> TxRecord {
        TxRecord::signed(t, purpose(n), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, height)
    }

    /// A journal of three transactions and five lines; returns its bytes and the byte offset where its
    /// last line starts.
    fn five_lines(path: &Path) -> (Vec<u8>, usize) {
        let mut j = Journal::open(path).expect("open");
        for n in 1..=3u8 {
            j.put(signed(&tx(n, 1000), u64::from(n), 10)).expect("put");
        }
        j.set_status(&tx(1, 1000).compute_txid(), TxStatus::Broadcast { height: 10 }).expect("status");
        j.set_status(&tx(2, 1000).compute_txid(), TxStatus::Confirmed { height: 11 }).expect("status");
        drop(j);
        let bytes = std::fs::read(path).expect("read");
        let last = bytes[..bytes.len() - 1].iter().rposition(|b| *b == b'\n').expect("lines") + 1;
        (bytes, last)
    }

    #[test]
    fn torn_last_line_is_truncated_and_survives_two_reopen_append_cycles() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.jsonl");
        {
            let mut j = Journal::open(&path).expect("open");
            j.put(signed(&tx(1, 1000), 1, 10)).expect("put");
        }
        let good = std::fs::read(&path).expect("read");
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(b"{\"txid\":\"ab").expect("torn write");
        drop(f);
        let mut j = Journal::open(&path).expect("torn tail tolerated");
        assert_eq!(std::fs::read(&path).expect("read"), good, "the torn bytes are cut off the file");
        assert_eq!(j.records().count(), 1);
        j.put(signed(&tx(2, 900), 2, 11)).expect("put");
        drop(j);
        // Second cycle: the torn line is gone, so it never becomes a torn middle line.
        let mut j = Journal::open(&path).expect("second reopen");
        assert_eq!(j.records().count(), 2);
        j.put(signed(&tx(3, 800), 3, 12)).expect("put");
        drop(j);
        let j = Journal::open(&path).expect("third reopen");
        assert_eq!(j.records().count(), 3);
        assert_eq!(j.line_count(), 3);
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 3);
    }

    #[test]
    fn a_torn_write_at_every_byte_of_the_last_line_reopens_and_appends() {
        let dir = tempfile::tempdir().expect("tmp");
        let (bytes, last) = five_lines(&dir.path().join("src.jsonl"));
        // Also a torn write that left a multi-byte character half written.
        let mut cases: Vec<Vec<u8>> = (last..=bytes.len()).map(|cut| bytes[..cut].to_vec()).collect();
        cases.push([&bytes[..], "{\"reason\":\"é".as_bytes()].concat()[..bytes.len() + 12].to_vec());
        for (i, case) in cases.iter().enumerate() {
            let path = dir.path().join(format!("case-{i}.jsonl"));
            std::fs::write(&path, case).expect("write");
            let mut j = Journal::open(&path).unwrap_or_else(|e| panic!("cut at {}: {e}", case.len()));
            let complete = case.len() >= bytes.len();
            let want = if complete { TxStatus::Confirmed { height: 11 } } else { TxStatus::Signed };
            assert_eq!(j.get(&tx(2, 1000).compute_txid()).map(|r| r.status.clone()), Some(want), "cut {}", case.len());
            assert_eq!(j.records().count(), 3);
            // Two reopen + append cycles after the torn write.
            j.put(signed(&tx(7, 700), 7, 12)).expect("put");
            drop(j);
            let mut j = Journal::open(&path).expect("reopen");
            j.set_status(&tx(7, 700).compute_txid(), TxStatus::Broadcast { height: 12 }).expect("status");
            drop(j);
            let j = Journal::open(&path).expect("reopen twice");
            assert_eq!(
                j.get(&tx(7, 700).compute_txid()).map(|r| r.status.clone()),
                Some(TxStatus::Broadcast { height: 12 })
            );
            assert_eq!(j.records().count(), 4);
        }
    }

    #[test]
    fn a_torn_middle_line_is_a_corruption_error_naming_the_line() {
        let dir = tempfile::tempdir().expect("tmp");
        let (bytes, _) = five_lines(&dir.path().join("src.jsonl"));
        let starts: Vec<usize> = std::iter::once(0)
            .chain(bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').map(|(i, _)| i + 1))
            .collect();
        // Line 3 (1-based) cut at every offset inside it, with lines 4 and 5 written after it.
        let (from, to) = (starts[2], starts[3] - 1);
        for cut in from + 1..to {
            let case = [&bytes[..cut], b"\n", &bytes[starts[3]..]].concat();
            let path = dir.path().join(format!("cut-{cut}.jsonl"));
            std::fs::write(&path, &case).expect("write");
            match Journal::open(&path) {
                Err(JournalError::Corrupt { line, .. }) => assert_eq!(line, 3, "cut at {cut}"),
                other => panic!("cut at {cut}: expected corruption of line 3, got {other:?}"),
            }
            let msg = Journal::open(&path).expect_err("corrupt").to_string();
            assert!(msg.contains("line 3 is corrupt"), "{msg}");
        }
    }

    #[test]
    fn compaction_folds_deep_confirmations_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.jsonl");
        let mut j = Journal::open(&path).expect("open");
        let (deep, old, recent, live, held) = (tx(1, 1000), tx(1, 900), tx(2, 1000), tx(3, 1000), tx(4, 1000));
        j.put(signed(&deep, 1, 10)).expect("put");
        // Purpose 1: the original was replaced by a bump that confirmed at 20; deep at tip 30.
        let bump = TxRecord::signed(
            &old,
            purpose(1),
            Amount::from_sat(500),
            FeeRate::from_sat_per_vb_u32(3),
            Some(deep.compute_txid()),
            12,
        );
        j.put(bump).expect("put");
        j.set_status(&deep.compute_txid(), TxStatus::Replaced { by: old.compute_txid() }).expect("status");
        j.set_status(&old.compute_txid(), TxStatus::Confirmed { height: 20 }).expect("status");
        // Purpose 2: confirmed 5 deep (inside the finality depth 6 at tip 30): kept in full.
        j.put(signed(&recent, 2, 20)).expect("put");
        j.set_status(&recent.compute_txid(), TxStatus::Confirmed { height: 26 }).expect("status");
        // Purpose 3: live.
        j.put(signed(&live, 3, 29)).expect("put");
        j.set_status(&live.compute_txid(), TxStatus::Broadcast { height: 29 }).expect("status");
        // Purpose 4: a dropped tx the node may still hold, of a purpose settled deep by another tx of ours.
        let other = tx(5, 1000);
        j.put(signed(&held, 4, 10)).expect("put");
        j.set_status(&held.compute_txid(), TxStatus::Dropped { reason: "x".into(), released: false }).expect("status");
        let settle4 =
            TxRecord::signed(&other, purpose(4), Amount::from_sat(300), FeeRate::from_sat_per_vb_u32(2), None, 11);
        j.put(settle4).expect("put");
        j.set_status(&other.compute_txid(), TxStatus::Confirmed { height: 12 }).expect("status");
        assert_eq!(j.foldable(30, 6), vec![purpose(1), purpose(4)]);
        assert_eq!(j.foldable(25, 6), vec![purpose(4)], "20 + 6 > 25: purpose 1 is not deep yet");
        assert_eq!(j.foldable(26, 6), vec![purpose(1), purpose(4)]);
        let folded = j.compact_settled(30, 6).expect("compact");
        assert_eq!(folded, vec![purpose(1), purpose(4)]);
        let check = |j: &Journal| {
            assert_eq!(
                j.settlement(&purpose(1)),
                Some(Settlement { purpose: purpose(1), txid: old.compute_txid(), height: 20 })
            );
            assert_eq!(j.for_purpose(&purpose(1)), Vec::<&TxRecord>::new(), "deep records folded");
            assert_eq!(j.settlement(&purpose(2)).map(|s| s.height), Some(26));
            assert!(j.get(&recent.compute_txid()).is_some(), "recent confirmation kept in full");
            assert_eq!(j.live(&purpose(3)).map(|r| r.txid), Some(live.compute_txid()));
            assert!(j.get(&held.compute_txid()).is_some(), "an unreleased drop keeps its inputs reserved");
            assert!(j.reserved_inputs().contains(&held.input[0].previous_output));
            assert!(!j.reserved_inputs().contains(&deep.input[0].previous_output), "spent for good");
            assert_eq!(j.settlement(&purpose(4)).map(|s| s.txid), Some(other.compute_txid()));
        };
        check(&j);
        assert_eq!(j.line_count(), 2 + 3, "two settlements, three records");
        drop(j);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().next().is_some_and(|l| l.starts_with("{\"settled\":")), "{text}");
        let mut j = Journal::open(&path).expect("reopen");
        check(&j);
        // Appends after the compaction land in the compacted file.
        j.set_status(&live.compute_txid(), TxStatus::Confirmed { height: 31 }).expect("status");
        drop(j);
        let j = Journal::open(&path).expect("reopen");
        assert_eq!(j.settlement(&purpose(3)).map(|s| s.height), Some(31));
        assert_eq!(j.line_count(), 6);
    }

    #[test]
    fn a_crash_between_the_temp_write_and_the_rename_leaves_a_usable_journal() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("l1-sends.jsonl");
        let (bytes, _) = five_lines(&path);
        // The crash: a temp file fully or partly written, never renamed.
        let tmp = dir.path().join("l1-sends.jsonl.tmp");
        for partial in [&bytes[..bytes.len() / 2], &bytes[..]] {
            std::fs::write(&tmp, partial).expect("tmp");
            let mut j = Journal::open(&path).expect("open after a crashed compaction");
            assert!(!tmp.exists(), "stale temp file removed");
            assert_eq!(std::fs::read(&path).expect("read"), bytes, "the journal itself untouched");
            assert_eq!(j.records().count(), 3);
            assert_eq!(j.line_count(), 5);
            j.compact().expect("compact");
            assert_eq!(j.line_count(), 3);
            drop(j);
            std::fs::write(&path, &bytes).expect("restore");
        }
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
