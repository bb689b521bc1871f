//! Batches: the signed header, its canonical bytes and hash (the 32 bytes anchored on L1), the tx
//! root, and the two published forms (canonical JSON and raw canonical bytes).

use crate::encoding::{DecodeError, Reader, Writer};
use crate::hash::{hexser, sha256_parts, Hash32, TAG_BATCH, TAG_DATA};
use crate::merkle::root_of;
use crate::tx::{tx_leaf, TxJson};
use bitcoin::key::Keypair;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Version byte of the header encoding.
pub const HEADER_VERSION: u8 = 1;
/// Length of the canonical header encoding.
pub const HEADER_LEN: usize = 217;
/// Largest tx encoding accepted in a raw batch.
pub const MAX_TX_BYTES: usize = 8192;

/// A batch header, signed by its producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchHeader {
    /// The chain's id (commits to profile, producers and genesis state).
    #[serde(with = "hexser")]
    pub chain_id: Hash32,
    /// Sequence number, 1 for the first batch after genesis.
    pub batch_id: u64,
    /// Hash of the previous batch (the chain id for batch 1).
    #[serde(with = "hexser")]
    pub prev_batch_hash: Hash32,
    /// State root before the batch.
    #[serde(with = "hexser")]
    pub prev_state_root: Hash32,
    /// State root after the batch.
    #[serde(with = "hexser")]
    pub new_state_root: Hash32,
    /// Merkle root over the txs' canonical bytes.
    #[serde(with = "hexser")]
    pub tx_root: Hash32,
    /// Number of txs.
    pub tx_count: u32,
    /// Sum of the txs' gas.
    #[serde(with = "hexser::u64str")]
    pub total_gas: u64,
    /// The L1 height whose view the batch was built on (deposit confirmations are judged there).
    pub l1_height: u32,
    /// The producer's x-only pubkey.
    #[serde(with = "hexser")]
    pub producer: [u8; 32],
}

impl BatchHeader {
    /// Canonical bytes (217).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        w.u8(HEADER_VERSION)
            .raw(&self.chain_id)
            .u64(self.batch_id)
            .raw(&self.prev_batch_hash)
            .raw(&self.prev_state_root)
            .raw(&self.new_state_root)
            .raw(&self.tx_root)
            .u32(self.tx_count)
            .u64(self.total_gas)
            .u32(self.l1_height)
            .raw(&self.producer);
        w.finish()
    }

    /// Decode from a reader.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u8("header version")?;
        if v != HEADER_VERSION {
            return Err(r.error(format!("header version {v}, expected {HEADER_VERSION}")));
        }
        Ok(Self {
            chain_id: r.array("chain_id")?,
            batch_id: r.u64("batch_id")?,
            prev_batch_hash: r.array("prev_batch_hash")?,
            prev_state_root: r.array("prev_state_root")?,
            new_state_root: r.array("new_state_root")?,
            tx_root: r.array("tx_root")?,
            tx_count: r.u32("tx_count")?,
            total_gas: r.u64("total_gas")?,
            l1_height: r.u32("l1_height")?,
            producer: r.array("producer")?,
        })
    }

    /// The batch hash `sha256(0x02 || header bytes)`: what the producer signs, what the next header
    /// names as `prev_batch_hash`, and the 32 bytes anchored on L1 as `OP_RETURN "KRAY" || hash`.
    /// It commits to every tx through `tx_root`.
    pub fn hash(&self) -> Hash32 {
        sha256_parts(&[&[TAG_BATCH], &self.encode()])
    }
}

/// A header with the producer's BIP-340 signature over its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedHeader {
    /// The header.
    pub header: BatchHeader,
    /// BIP-340 signature by `header.producer` over `header.hash()`.
    #[serde(with = "hexser")]
    pub signature: [u8; 64],
}

impl SignedHeader {
    /// Sign a header with the producer's keypair (deterministic: zero aux randomness).
    pub fn sign(header: BatchHeader, keypair: &Keypair) -> Self {
        let signature = crate::signature::sign(keypair, &header.hash());
        Self { header, signature }
    }

    /// True when the signature verifies under `header.producer`.
    pub fn signature_valid(&self) -> bool {
        crate::address::parse_xonly(&self.header.producer)
            .map(|pk| crate::signature::verify(&pk, &self.header.hash(), &self.signature))
            .unwrap_or(false)
    }
}

/// The data commitment of a batch: binds the published tx bytes to the header, so that publishing
/// txs that do not match `tx_root` is provable (`wrong-tx-root`).
///
/// `sha256(0x05 || batch hash || u32 n || n × (u32 len || tx bytes))`, integers big-endian, streamed
/// into SHA-256 without first copying the txs into one buffer.
pub fn data_hash(batch_hash: &Hash32, txs: &[Vec<u8>]) -> Hash32 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([TAG_DATA]);
    h.update(batch_hash);
    h.update((txs.len() as u32).to_be_bytes());
    for t in txs {
        h.update((t.len() as u32).to_be_bytes());
        h.update(t);
    }
    h.finalize().into()
}

/// A batch: signed header, the txs' canonical bytes, and the producer's signature over the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Signed header.
    pub signed: SignedHeader,
    /// Canonical bytes of each tx, in execution order.
    pub txs: Vec<Vec<u8>>,
    /// BIP-340 signature by the producer over [`data_hash`].
    pub data_signature: [u8; 64],
}

/// A batch as a JSON file (and as served by the publication API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchFile {
    /// Header.
    pub header: BatchHeader,
    /// Producer signature over the batch hash.
    #[serde(with = "hexser")]
    pub signature: [u8; 64],
    /// Producer signature over the data commitment.
    #[serde(with = "hexser")]
    pub data_signature: [u8; 64],
    /// Txs.
    pub txs: Vec<TxJson>,
}

/// Why a batch file or raw batch is unusable.
#[derive(Debug, Error)]
pub enum BatchError {
    /// JSON is invalid.
    #[error("batch JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// Raw bytes are invalid.
    #[error("raw batch is invalid: {0}")]
    Raw(#[from] DecodeError),
    /// A JSON tx has fields that cannot be canonically encoded.
    #[error("tx {index} cannot be encoded: {message}")]
    Encode {
        /// Position.
        index: usize,
        /// Reason.
        message: String,
    },
    /// More txs than the profile allows.
    #[error("batch has {count} txs, the profile allows at most {max}")]
    TooManyTxs {
        /// Count.
        count: usize,
        /// Limit.
        max: u32,
    },
}

impl Batch {
    /// Build a batch, signing the data commitment with the producer key.
    pub fn new(signed: SignedHeader, txs: Vec<Vec<u8>>, keypair: &Keypair) -> Self {
        let data_signature = crate::signature::sign(keypair, &data_hash(&signed.header.hash(), &txs));
        Self { signed, txs, data_signature }
    }

    /// True when the data signature verifies under the header's producer.
    pub fn data_signature_valid(&self) -> bool {
        crate::address::parse_xonly(&self.signed.header.producer)
            .map(|pk| {
                crate::signature::verify(&pk, &data_hash(&self.signed.header.hash(), &self.txs), &self.data_signature)
            })
            .unwrap_or(false)
    }

    /// Leaf hashes of the txs.
    pub fn tx_leaves(&self) -> Vec<Hash32> {
        use rayon::prelude::*;
        self.txs.par_iter().map(|t| tx_leaf(t)).collect()
    }

    /// The tx root computed from the txs (with `rs_merkle`).
    pub fn compute_tx_root(&self) -> Hash32 {
        root_of(&self.tx_leaves())
    }

    /// The JSON file form.
    pub fn to_file(&self) -> BatchFile {
        BatchFile {
            header: self.signed.header.clone(),
            signature: self.signed.signature,
            data_signature: self.data_signature,
            txs: self.txs.iter().map(|t| TxJson::from_bytes(t)).collect(),
        }
    }

    /// From the JSON file form.
    pub fn from_file(f: BatchFile) -> Result<Self, BatchError> {
        let txs = f
            .txs
            .iter()
            .enumerate()
            .map(|(index, t)| t.to_bytes().map_err(|e| BatchError::Encode { index, message: e.to_string() }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            signed: SignedHeader { header: f.header, signature: f.signature },
            txs,
            data_signature: f.data_signature,
        })
    }

    /// Parse JSON text, refusing more than `max_txs` txs.
    pub fn from_json(text: &str, max_txs: u32) -> Result<Self, BatchError> {
        let f: BatchFile = serde_json::from_str(text)?;
        if f.txs.len() > max_txs as usize {
            return Err(BatchError::TooManyTxs { count: f.txs.len(), max: max_txs });
        }
        Self::from_file(f)
    }

    /// Canonical JSON text.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_string(&self.to_file()).unwrap_or_default()
    }

    /// Raw canonical bytes: header (217) || signature (64) || data signature (64) || u32 n ||
    /// n × (u32 len || tx bytes).
    pub fn to_raw(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN + 132 + self.txs.iter().map(|t| t.len() + 4).sum::<usize>());
        w.raw(&self.signed.header.encode()).raw(&self.signed.signature).raw(&self.data_signature);
        w.u32(self.txs.len() as u32);
        for t in &self.txs {
            w.u32(t.len() as u32).raw(t);
        }
        w.finish()
    }

    /// Parse raw canonical bytes, refusing more than `max_txs` txs.
    pub fn from_raw(bytes: &[u8], max_txs: u32) -> Result<Self, BatchError> {
        let mut r = Reader::new(bytes);
        let header = BatchHeader::read(&mut r)?;
        let signature = r.array::<64>("signature")?;
        let data_signature = r.array::<64>("data signature")?;
        let n = r.u32("tx count")?;
        if n > max_txs {
            return Err(BatchError::TooManyTxs { count: n as usize, max: max_txs });
        }
        let mut txs = Vec::with_capacity(n as usize);
        for i in 0..n {
            let len = r.u32("tx length")? as usize;
            if len > MAX_TX_BYTES {
                return Err(r.error(format!("tx {i} is {len} bytes, at most {MAX_TX_BYTES}")).into());
            }
            txs.push(r.array_vec(len, "tx")?);
        }
        r.end()?;
        Ok(Self { signed: SignedHeader { header, signature }, txs, data_signature })
    }

    /// The content hash mirrors use to compare copies: `sha256(raw bytes)`.
    pub fn content_hash(&self) -> Hash32 {
        crate::hash::sha256(&self.to_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::tests_support::sample_tx;

    #[test]
    fn raw_and_json_forms_roundtrip() {
        let kp = Keypair::from_secret_key(
            crate::address::secp(),
            &bitcoin::secp256k1::SecretKey::from_slice(&[7u8; 32]).unwrap(),
        );
        let txs = vec![sample_tx().encode().unwrap(), vec![1, 2, 3]];
        let header = BatchHeader {
            chain_id: [1; 32],
            batch_id: 1,
            prev_batch_hash: [2; 32],
            prev_state_root: [3; 32],
            new_state_root: [4; 32],
            tx_root: root_of(&txs.iter().map(|t| tx_leaf(t)).collect::<Vec<_>>()),
            tx_count: 2,
            total_gas: 1000,
            l1_height: 5,
            producer: kp.x_only_public_key().0.serialize(),
        };
        assert_eq!(header.encode().len(), HEADER_LEN);
        let b = Batch::new(SignedHeader::sign(header, &kp), txs, &kp);
        assert!(b.signed.signature_valid() && b.data_signature_valid());
        let raw = b.to_raw();
        assert_eq!(Batch::from_raw(&raw, 10).unwrap(), b);
        assert_eq!(Batch::from_json(&b.to_json(), 10).unwrap(), b);
        assert!(matches!(Batch::from_raw(&raw, 1), Err(BatchError::TooManyTxs { .. })));
        assert!(Batch::from_raw(&raw[..raw.len() - 1], 10).is_err());
        let mut tampered = b.clone();
        tampered.txs[1] = vec![9];
        assert!(!tampered.data_signature_valid());
    }

    #[test]
    fn streamed_data_hash_is_the_buffered_one() {
        let buffered = |batch_hash: &Hash32, txs: &[Vec<u8>]| {
            let mut w = Writer::with_capacity(64);
            w.u8(TAG_DATA).raw(batch_hash).u32(txs.len() as u32);
            for t in txs {
                w.u32(t.len() as u32).raw(t);
            }
            crate::hash::sha256(&w.finish())
        };
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![],
            vec![vec![]],
            vec![sample_tx().encode().unwrap(), vec![1, 2, 3], vec![]],
            (0..300).map(|i| vec![i as u8; i * 7 % 150]).collect(),
        ];
        for (k, txs) in cases.iter().enumerate() {
            let bh = [k as u8; 32];
            assert_eq!(data_hash(&bh, txs), buffered(&bh, txs), "case {k}");
        }
    }
}
