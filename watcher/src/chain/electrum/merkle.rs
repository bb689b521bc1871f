//! Merkle inclusion proofs as Electrum serves them (`blockchain.transaction.get_merkle`), checked
//! against a block header's merkle root computed here, never taken from the server.

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::{Transaction, TxMerkleNode, Txid};

/// The deepest branch a Bitcoin block can need (a block holds far fewer than 2^32 transactions).
const MAX_BRANCH_LEN: usize = 32;

/// A merkle branch from a transaction up to its block's merkle root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleProof {
    /// The height the server says the transaction is confirmed at.
    pub block_height: u32,
    /// The transaction's position in the block (0 is the coinbase).
    pub pos: u32,
    /// The sibling hashes from the leaf upwards, in internal byte order (as in
    /// [`TxMerkleNode::to_byte_array`], not the reversed hex Electrum writes them in).
    pub branch: Vec<TxMerkleNode>,
}

/// Why a proof does not prove inclusion.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    /// The branch is longer than any Bitcoin block can need.
    #[error("merkle branch of {0} hashes is too long")]
    TooLong(usize),
    /// The position does not fit a tree of the branch's depth.
    #[error("position {pos} does not fit a merkle branch of {len} hashes")]
    PositionOutOfRange {
        /// The claimed position.
        pos: u32,
        /// The branch length.
        len: usize,
    },
    /// The root computed from the transaction id and the branch is not the header's.
    #[error("computed merkle root {computed} is not the header's {expected}")]
    RootMismatch {
        /// The root computed from the branch.
        computed: TxMerkleNode,
        /// The header's merkle root.
        expected: TxMerkleNode,
    },
    /// A 64-byte transaction can pose as an inner node of the tree (CVE-2017-12842); refused.
    #[error("transaction {0} is 64 bytes without witness and could pose as an inner merkle node")]
    SixtyFourByteTx(Txid),
}

/// The merkle root implied by `txid` at `proof.pos` with `proof.branch`.
pub fn compute_root(txid: &Txid, proof: &MerkleProof) -> Result<TxMerkleNode, MerkleError> {
    let len = proof.branch.len();
    if len > MAX_BRANCH_LEN {
        return Err(MerkleError::TooLong(len));
    }
    // A tree of depth `len` has at most 2^len leaves.
    if len < 32 && u64::from(proof.pos) >= 1u64 << len {
        return Err(MerkleError::PositionOutOfRange { pos: proof.pos, len });
    }
    let mut index = proof.pos;
    let mut current = txid.to_raw_hash();
    for sibling in &proof.branch {
        let mut engine = sha256d::Hash::engine();
        if index.is_multiple_of(2) {
            engine.input(current.as_byte_array());
            engine.input(sibling.as_byte_array());
        } else {
            engine.input(sibling.as_byte_array());
            engine.input(current.as_byte_array());
        }
        current = sha256d::Hash::from_engine(engine);
        index /= 2;
    }
    Ok(TxMerkleNode::from_raw_hash(current))
}

/// Checks that `tx` is in the block whose header has merkle root `root`, at the proof's position.
pub fn verify_inclusion(tx: &Transaction, proof: &MerkleProof, root: &TxMerkleNode) -> Result<(), MerkleError> {
    let txid = tx.compute_txid();
    if tx.base_size() == 64 {
        return Err(MerkleError::SixtyFourByteTx(txid));
    }
    let computed = compute_root(&txid, proof)?;
    if computed != *root {
        return Err(MerkleError::RootMismatch { computed, expected: *root });
    }
    Ok(())
}

#[cfg(test)]
/// The branch for leaf `pos` among `leaves`, built the way Bitcoin builds the tree (the last
/// node of an odd level is paired with itself).
pub(crate) fn branch_for(leaves: &[Txid], pos: usize) -> Vec<TxMerkleNode> {
    let mut level: Vec<sha256d::Hash> = leaves.iter().map(|t| t.to_raw_hash()).collect();
    let mut index = pos;
    let mut branch = Vec::new();
    while level.len() > 1 {
        if level.len() % 2 == 1 {
            let last = level[level.len() - 1];
            level.push(last);
        }
        branch.push(TxMerkleNode::from_raw_hash(level[index ^ 1]));
        level = level
            .chunks(2)
            .map(|pair| {
                let mut engine = sha256d::Hash::engine();
                engine.input(pair[0].as_byte_array());
                engine.input(pair[1].as_byte_array());
                sha256d::Hash::from_engine(engine)
            })
            .collect();
        index /= 2;
    }
    branch
}

#[cfg(test)]
mod tests {
    use bitcoin::absolute::LockTime;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, ScriptBuf, TxOut};

    use super::*;

    fn tx(n: u8) -> Transaction {
        Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: vec![TxOut { value: Amount::from_sat(u64::from(n) + 1_000), script_pubkey: ScriptBuf::new() }],
        }
    }

    fn root_of(txs: &[Transaction]) -> TxMerkleNode {
        bitcoin::merkle_tree::calculate_root(txs.iter().map(|t| t.compute_txid().to_raw_hash()))
            .map(TxMerkleNode::from_raw_hash)
            .expect("non-empty")
    }

    #[test]
    fn every_position_of_every_tree_size_verifies() {
        for n in 1..=9u8 {
            let txs: Vec<Transaction> = (0..n).map(tx).collect();
            let ids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
            let root = root_of(&txs);
            for (pos, t) in txs.iter().enumerate() {
                let proof = MerkleProof { block_height: 1, pos: pos as u32, branch: branch_for(&ids, pos) };
                assert_eq!(verify_inclusion(t, &proof, &root), Ok(()), "n={n} pos={pos}");
            }
        }
    }

    #[test]
    fn a_tampered_branch_is_rejected() {
        let txs: Vec<Transaction> = (0..5).map(tx).collect();
        let ids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        let root = root_of(&txs);
        let mut proof = MerkleProof { block_height: 1, pos: 2, branch: branch_for(&ids, 2) };
        let mut bytes = proof.branch[1].to_byte_array();
        bytes[0] ^= 1;
        proof.branch[1] = TxMerkleNode::from_byte_array(bytes);
        assert!(matches!(verify_inclusion(&txs[2], &proof, &root), Err(MerkleError::RootMismatch { .. })));
        // A missing level.
        let short = MerkleProof { block_height: 1, pos: 0, branch: branch_for(&ids, 0)[..2].to_vec() };
        assert!(matches!(verify_inclusion(&txs[0], &short, &root), Err(MerkleError::RootMismatch { .. })));
        // The right branch for a transaction that is not in the block.
        let proof = MerkleProof { block_height: 1, pos: 2, branch: branch_for(&ids, 2) };
        assert!(matches!(verify_inclusion(&tx(77), &proof, &root), Err(MerkleError::RootMismatch { .. })));
    }

    #[test]
    fn a_wrong_position_is_rejected() {
        let txs: Vec<Transaction> = (0..4).map(tx).collect();
        let ids: Vec<Txid> = txs.iter().map(Transaction::compute_txid).collect();
        let root = root_of(&txs);
        let branch = branch_for(&ids, 1);
        // Left and right swapped at the first level.
        let swapped = MerkleProof { block_height: 1, pos: 0, branch: branch.clone() };
        assert!(matches!(verify_inclusion(&txs[1], &swapped, &root), Err(MerkleError::RootMismatch { .. })));
        // The other subtree.
        let other = MerkleProof { block_height: 1, pos: 3, branch: branch.clone() };
        assert!(matches!(verify_inclusion(&txs[1], &other, &root), Err(MerkleError::RootMismatch { .. })));
        // A position beyond the tree: the high bit would be ignored by a naive fold.
        let beyond = MerkleProof { block_height: 1, pos: 1 + 4, branch };
        assert_eq!(verify_inclusion(&txs[1], &beyond, &root), Err(MerkleError::PositionOutOfRange { pos: 5, len: 2 }));
    }

    #[test]
    fn a_lone_coinbase_has_an_empty_branch_and_overlong_branches_are_refused() {
        let only = tx(1);
        let root = TxMerkleNode::from_raw_hash(only.compute_txid().to_raw_hash());
        let proof = MerkleProof { block_height: 1, pos: 0, branch: vec![] };
        assert_eq!(verify_inclusion(&only, &proof, &root), Ok(()));
        let long = MerkleProof { block_height: 1, pos: 0, branch: vec![root; 33] };
        assert_eq!(verify_inclusion(&only, &long, &root), Err(MerkleError::TooLong(33)));
    }

    #[test]
    fn sixty_four_byte_transactions_are_refused() {
        // version 4 + 1 input count (0) + 1 output count + (8 value + 1 len + 46 script) + 4 locktime = 65;
        // a 45-byte script makes it 64.
        let mut t = tx(0);
        t.output[0].script_pubkey = ScriptBuf::from_bytes(vec![0x51; 45]);
        assert_eq!(t.base_size(), 64);
        let root = TxMerkleNode::from_raw_hash(t.compute_txid().to_raw_hash());
        let proof = MerkleProof { block_height: 1, pos: 0, branch: vec![] };
        assert_eq!(verify_inclusion(&t, &proof, &root), Err(MerkleError::SixtyFourByteTx(t.compute_txid())));
    }
}
