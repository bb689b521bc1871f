//! The mirror's in-memory index of stored batch copies: per batch id, each distinct copy's content
//! hash, header hash and the sources that served it. Rebuilt from the store at start-up
//! ([`BatchIndex::load`]); the bytes stay in the store.

use std::collections::{BTreeMap, BTreeSet};

use kray_replayer::batch::HEADER_LEN;
use kray_replayer::hash::{sha256_parts, TAG_BATCH};

use crate::store::{BatchCopy, Store, StoreError};

/// One distinct copy of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyMeta {
    /// `sha256(raw)` (hex).
    pub content_hash: String,
    /// The header hash, the root anchored on L1 (hex).
    pub header_hash: String,
    /// Names of the sources that served this copy (after a restart: the first one the store kept).
    pub sources: BTreeSet<String>,
}

/// The header hash of a raw batch: `sha256(0x02 || first 217 bytes)`; `None` if it is shorter.
pub fn header_hash_of_raw(raw: &[u8]) -> Option<String> {
    raw.get(..HEADER_LEN).map(|h| hex::encode(sha256_parts(&[&[TAG_BATCH], h])))
}

/// Every stored copy, by batch id, in the order first received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchIndex {
    batches: BTreeMap<u64, Vec<CopyMeta>>,
}

impl BatchIndex {
    /// Loads the index from `store`: one query reading each copy's header bytes, never a whole body.
    pub async fn load(store: &Store) -> Result<BatchIndex, StoreError> {
        let mut index = BatchIndex::default();
        for c in store.copy_heads(HEADER_LEN as u64).await? {
            let header_hash = header_hash_of_raw(&c.head).unwrap_or_default();
            index.add(c.batch_id, &c.content_hash, &header_hash, &c.source);
        }
        Ok(index)
    }

    /// Records a stored copy (from the store or just inserted). Returns true when the content is new
    /// for its id; an identical copy only adds its source.
    pub fn add_copy(&mut self, copy: &BatchCopy) -> bool {
        let header_hash = header_hash_of_raw(&copy.raw).unwrap_or_default();
        self.add(copy.batch_id, &copy.content_hash, &header_hash, &copy.source)
    }

    /// Records that `source` served the copy `content_hash` of `batch_id`. Returns true when the
    /// content is new for that id.
    pub fn add(&mut self, batch_id: u64, content_hash: &str, header_hash: &str, source: &str) -> bool {
        let copies = self.batches.entry(batch_id).or_default();
        if let Some(c) = copies.iter_mut().find(|c| c.content_hash == content_hash) {
            c.sources.insert(source.to_string());
            return false;
        }
        copies.push(CopyMeta {
            content_hash: content_hash.to_string(),
            header_hash: header_hash.to_string(),
            sources: BTreeSet::from([source.to_string()]),
        });
        true
    }

    /// The copies of `batch_id` (empty if none).
    pub fn copies(&self, batch_id: u64) -> &[CopyMeta] {
        self.batches.get(&batch_id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// True if some copy of `batch_id` is stored.
    pub fn contains(&self, batch_id: u64) -> bool {
        self.batches.contains_key(&batch_id)
    }

    /// Stored batch ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.batches.keys().copied()
    }

    /// Stored batch ids `≥ from`, ascending.
    pub fn ids_from(&self, from: u64) -> impl Iterator<Item = u64> + '_ {
        self.batches.range(from..).map(|(id, _)| *id)
    }

    /// The highest stored batch id.
    pub fn max_id(&self) -> Option<u64> {
        self.batches.keys().next_back().copied()
    }

    /// Number of stored batch ids.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Every id with its copies, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[CopyMeta])> + '_ {
        self.batches.iter().map(|(id, c)| (*id, c.as_slice()))
    }

    /// Every header hash of a stored copy (the roots whose data the mirror holds).
    pub fn header_hashes(&self) -> BTreeSet<String> {
        self.batches.values().flatten().map(|c| c.header_hash.clone()).collect()
    }

    /// The first id `≥ 1` with no stored copy (where a fresh source cursor starts).
    pub fn first_missing(&self) -> u64 {
        let mut expect = 1;
        for id in self.batches.range(1..).map(|(id, _)| *id) {
            if id != expect {
                break;
            }
            expect = id.saturating_add(1);
        }
        expect
    }
}
