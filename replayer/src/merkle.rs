//! Merkle trees: the tx root is built with `rs_merkle`; the account, withdrawal and deposit trees keep
//! their own incremental layers (so a batch rehashes only touched paths) and are proven equal to
//! `rs_merkle` by a property test. Leaves and inner nodes are domain-separated
//! (`sha256(0x00||leaf)`, `sha256(0x01||l||r)`); an odd last node is promoted unchanged, never paired
//! with itself, so there is no CVE-2012-2459 ambiguity. An empty tree's root is 32 zero bytes.

use crate::hash::{node_hash, Hash32, ZERO_HASH};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The `rs_merkle` hasher of the protocol: node = `sha256(0x01||l||r)`, odd node promoted.
#[derive(Clone)]
pub struct KrayHasher;

impl rs_merkle::Hasher for KrayHasher {
    type Hash = Hash32;
    fn hash(data: &[u8]) -> Hash32 {
        crate::hash::leaf_hash(data)
    }
    fn concat_and_hash(left: &Hash32, right: Option<&Hash32>) -> Hash32 {
        match right {
            Some(r) => node_hash(left, r),
            None => *left,
        }
    }
}

/// Root of a tree over already-hashed leaves, built with `rs_merkle`.
pub fn root_of(leaf_hashes: &[Hash32]) -> Hash32 {
    rs_merkle::MerkleTree::<KrayHasher>::from_leaves(leaf_hashes).root().unwrap_or(ZERO_HASH)
}

/// Why a Merkle proof does not produce a root.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// A node needed to compute the root is neither given nor derivable.
    #[error("proof is missing the node at layer {layer}, index {index}")]
    MissingNode {
        /// Layer (0 = leaves).
        layer: u8,
        /// Index within the layer.
        index: u64,
    },
    /// A proof node sits where a computed node already is, or twice at one place.
    #[error("proof node at layer {layer}, index {index} is redundant")]
    Redundant {
        /// Layer (0 = leaves).
        layer: u8,
        /// Index within the layer.
        index: u64,
    },
    /// A leaf index is beyond the tree.
    #[error("leaf index {index} is outside a tree of {count} leaves")]
    OutOfRange {
        /// The index.
        index: u64,
        /// The number of leaves.
        count: u64,
    },
    /// Proof nodes were left over after the root was computed.
    #[error("{0} proof nodes were not used")]
    Unused(usize),
}

/// One sibling node of a multi-proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofNode {
    /// Layer (0 = leaves).
    pub layer: u8,
    /// Index within the layer.
    pub index: u64,
    /// The node's hash.
    #[serde(with = "crate::hash::hexser")]
    pub hash: Hash32,
}

/// A proof that a set of leaves sits at given indices of a tree with `leaf_count` leaves. When the
/// proven set includes the last leaf, the same proof also computes the root after those leaves change
/// and new leaves are appended (every sibling it holds is a complete subtree left of the new leaves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MultiProof {
    /// Number of leaves of the tree the proof was made from.
    pub leaf_count: u64,
    /// Sibling nodes, ordered by layer then index.
    pub nodes: Vec<ProofNode>,
}

impl MultiProof {
    /// The root of a tree of `leaf_count` leaves given these `leaves` (index, hash) and the proof's
    /// sibling nodes. With `leaf_count == self.leaf_count` this verifies inclusion; with a larger count
    /// (and the appended leaves among `leaves`) it computes the root after an append.
    pub fn root(&self, leaves: &BTreeMap<u64, Hash32>, leaf_count: u64) -> Result<Hash32, ProofError> {
        if leaf_count == 0 {
            return match (leaves.is_empty(), self.nodes.len()) {
                (true, 0) => Ok(ZERO_HASH),
                (false, _) => Err(ProofError::OutOfRange { index: 0, count: 0 }),
                (true, n) => Err(ProofError::Unused(n)),
            };
        }
        if let Some((&i, _)) = leaves.iter().next_back() {
            if i >= leaf_count {
                return Err(ProofError::OutOfRange { index: i, count: leaf_count });
            }
        }
        let mut by_layer: BTreeMap<u8, BTreeMap<u64, Hash32>> = BTreeMap::new();
        for n in &self.nodes {
            if by_layer.entry(n.layer).or_default().insert(n.index, n.hash).is_some() {
                return Err(ProofError::Redundant { layer: n.layer, index: n.index });
            }
        }
        let mut known = leaves.clone();
        let mut len = leaf_count;
        let mut layer: u8 = 0;
        let mut used = 0usize;
        loop {
            if let Some(extra) = by_layer.remove(&layer) {
                for (index, hash) in extra {
                    if index >= len || known.insert(index, hash).is_some() {
                        return Err(ProofError::Redundant { layer, index });
                    }
                    used += 1;
                }
            }
            if len == 1 {
                break;
            }
            let mut next = BTreeMap::new();
            for &k in known.keys() {
                let q = k / 2;
                if next.contains_key(&q) {
                    continue;
                }
                let left = known.get(&(2 * q)).ok_or(ProofError::MissingNode { layer, index: 2 * q })?;
                let parent = if 2 * q + 1 < len {
                    let right = known.get(&(2 * q + 1)).ok_or(ProofError::MissingNode { layer, index: 2 * q + 1 })?;
                    node_hash(left, right)
                } else {
                    *left
                };
                next.insert(q, parent);
            }
            known = next;
            len = len.div_ceil(2);
            layer = layer.saturating_add(1);
        }
        if used != self.nodes.len() {
            return Err(ProofError::Unused(self.nodes.len() - used));
        }
        known.get(&0).copied().ok_or(ProofError::MissingNode { layer, index: 0 })
    }
}

/// A Merkle tree that keeps every layer, so updating or appending k leaves rehashes O(k log n) nodes.
#[derive(Debug, Clone)]
pub struct IncrementalTree {
    layers: Vec<Vec<Hash32>>,
}

impl Default for IncrementalTree {
    fn default() -> Self {
        Self { layers: vec![Vec::new()] }
    }
}

impl IncrementalTree {
    /// A tree over already-hashed leaves.
    pub fn from_leaves(leaves: Vec<Hash32>) -> Self {
        let mut layers = vec![leaves];
        while layers.last().is_some_and(|l| l.len() > 1) {
            let prev = &layers[layers.len() - 1];
            let next: Vec<Hash32> =
                prev.chunks(2).map(|c| if c.len() == 2 { node_hash(&c[0], &c[1]) } else { c[0] }).collect();
            layers.push(next);
        }
        Self { layers }
    }

    /// [`IncrementalTree::from_leaves`] with each layer hashed in parallel (the same tree).
    pub fn from_leaves_par(leaves: Vec<Hash32>) -> Self {
        use rayon::prelude::*;
        let mut layers = vec![leaves];
        while layers.last().is_some_and(|l| l.len() > 1) {
            let prev = &layers[layers.len() - 1];
            let next: Vec<Hash32> =
                prev.par_chunks(2).map(|c| if c.len() == 2 { node_hash(&c[0], &c[1]) } else { c[0] }).collect();
            layers.push(next);
        }
        Self { layers }
    }

    /// Number of leaves.
    pub fn len(&self) -> u64 {
        self.layers[0].len() as u64
    }

    /// True when the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.layers[0].is_empty()
    }

    /// The leaf hash at `index`, if any.
    pub fn leaf(&self, index: u64) -> Option<&Hash32> {
        self.layers[0].get(usize::try_from(index).ok()?)
    }

    /// The root (zero hash when empty).
    pub fn root(&self) -> Hash32 {
        match self.layers.last() {
            Some(top) if top.len() == 1 => top[0],
            _ => ZERO_HASH,
        }
    }

    /// Replace leaves at existing indices and append new ones, then rehash only the dirty paths.
    /// Returns `false` (and changes nothing) when a change names an index beyond the tree.
    pub fn update(&mut self, changes: &[(u64, Hash32)], appends: &[Hash32]) -> bool {
        let n0 = self.layers[0].len();
        if changes.iter().any(|(i, _)| usize::try_from(*i).map_or(true, |i| i >= n0)) {
            return false;
        }
        let mut dirty: Vec<usize> = Vec::with_capacity(changes.len() + appends.len());
        for &(i, h) in changes {
            self.layers[0][i as usize] = h;
            dirty.push(i as usize);
        }
        for (k, h) in appends.iter().enumerate() {
            self.layers[0].push(*h);
            dirty.push(n0 + k);
        }
        self.rehash(dirty);
        true
    }

    /// Drop every leaf from index `n` on (used to undo appends).
    pub fn truncate(&mut self, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX).min(self.layers[0].len());
        self.layers[0].truncate(n);
        self.rehash(n.checked_sub(1).into_iter().collect());
    }

    fn rehash(&mut self, mut dirty: Vec<usize>) {
        dirty.sort_unstable();
        dirty.dedup();
        let mut layer = 0;
        while self.layers[layer].len() > 1 {
            let len = self.layers[layer].len();
            if self.layers.len() == layer + 1 {
                self.layers.push(Vec::new());
            }
            let parent_len = len.div_ceil(2);
            self.layers[layer + 1].resize(parent_len, ZERO_HASH);
            let mut parents: Vec<usize> = dirty.iter().map(|i| i / 2).collect();
            parents.dedup();
            let (lower, upper) = self.layers.split_at_mut(layer + 1);
            let cur = &lower[layer];
            for &q in &parents {
                upper[0][q] = if 2 * q + 1 < len { node_hash(&cur[2 * q], &cur[2 * q + 1]) } else { cur[2 * q] };
            }
            dirty = parents;
            layer += 1;
        }
        self.layers.truncate(layer + 1);
    }

    /// A multi-proof for the given leaf indices (ascending, in range).
    pub fn prove(&self, indices: &[u64]) -> MultiProof {
        let mut known: Vec<u64> = indices.iter().copied().filter(|i| *i < self.len()).collect();
        known.sort_unstable();
        known.dedup();
        let mut nodes = Vec::new();
        for (layer, cur) in self.layers.iter().enumerate() {
            if cur.len() <= 1 {
                break;
            }
            let len = cur.len() as u64;
            let set: std::collections::BTreeSet<u64> = known.iter().copied().collect();
            for &k in &known {
                let s = k ^ 1;
                if s < len && !set.contains(&s) {
                    nodes.push(ProofNode { layer: layer as u8, index: s, hash: cur[s as usize] });
                }
            }
            known = known.iter().map(|k| k / 2).collect();
            known.dedup();
        }
        nodes.sort_by_key(|n| (n.layer, n.index));
        nodes.dedup_by_key(|n| (n.layer, n.index));
        MultiProof { leaf_count: self.len(), nodes }
    }

    /// Approximate heap bytes held by the layers (for memory benchmarks).
    pub fn heap_bytes(&self) -> usize {
        self.layers.iter().map(|l| l.capacity() * 32).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use proptest::prelude::*;

    fn leaves(n: usize, salt: u8) -> Vec<Hash32> {
        (0..n).map(|i| leaf_hash(&[salt, (i % 256) as u8, (i / 256) as u8])).collect()
    }

    #[test]
    fn small_trees_match_rs_merkle() {
        for n in 0..40 {
            let l = leaves(n, 0);
            assert_eq!(IncrementalTree::from_leaves(l.clone()).root(), root_of(&l), "n={n}");
        }
    }

    #[test]
    fn parallel_build_is_the_same_tree() {
        for n in [0, 1, 2, 3, 7, 64, 1000, 4097] {
            let l = leaves(n, 6);
            let (a, b) = (IncrementalTree::from_leaves(l.clone()), IncrementalTree::from_leaves_par(l));
            assert_eq!(a.layers, b.layers, "n={n}");
        }
    }

    #[test]
    fn proof_detects_tampering() {
        let l = leaves(13, 1);
        let t = IncrementalTree::from_leaves(l.clone());
        let p = t.prove(&[3, 12]);
        let known: BTreeMap<u64, Hash32> = [(3, l[3]), (12, l[12])].into();
        assert_eq!(p.root(&known, 13).unwrap(), t.root());
        let mut bad = known.clone();
        bad.insert(3, l[4]);
        assert_ne!(p.root(&bad, 13).unwrap(), t.root());
        let mut p2 = p.clone();
        p2.nodes.pop();
        assert!(p2.root(&known, 13).is_err());
        let mut p3 = p.clone();
        p3.nodes.push(ProofNode { layer: 9, index: 0, hash: [0; 32] });
        assert!(p3.root(&known, 13).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn incremental_updates_equal_rs_merkle(
            n in 0usize..300,
            changes in proptest::collection::vec((0usize..300, any::<u8>()), 0..20),
            appends in 0usize..40,
        ) {
            let mut l = leaves(n, 2);
            let mut t = IncrementalTree::from_leaves(l.clone());
            let ch: Vec<(u64, Hash32)> = changes.iter().filter(|(i, _)| *i < n)
                .map(|(i, s)| (*i as u64, leaf_hash(&[*s, 9]))).collect();
            for (i, h) in &ch { l[*i as usize] = *h; }
            let ap = leaves(appends, 3);
            l.extend_from_slice(&ap);
            prop_assert!(t.update(&ch, &ap));
            prop_assert_eq!(t.root(), root_of(&l));
            t.truncate(n as u64);
            prop_assert_eq!(t.root(), root_of(&l[..n]));
        }

        #[test]
        fn multiproof_computes_root_after_updates_and_appends(
            n in 1usize..200,
            picks in proptest::collection::vec(0usize..200, 0..12),
            appends in 0usize..20,
        ) {
            let l = leaves(n, 4);
            let t = IncrementalTree::from_leaves(l.clone());
            let mut idx: Vec<u64> = picks.iter().filter(|i| **i < n).map(|i| *i as u64).collect();
            idx.push(n as u64 - 1);
            let proof = t.prove(&idx);
            let mut known: BTreeMap<u64, Hash32> = idx.iter().map(|i| (*i, l[*i as usize])).collect();
            prop_assert_eq!(proof.root(&known, n as u64).unwrap(), t.root());
            // change every proven leaf and append
            let mut t2 = t.clone();
            let ch: Vec<(u64, Hash32)> = idx.iter().map(|i| (*i, leaf_hash(&[7, *i as u8]))).collect();
            let ap = leaves(appends, 5);
            t2.update(&ch, &ap);
            for (i, h) in &ch { known.insert(*i, *h); }
            for (k, h) in ap.iter().enumerate() { known.insert((n + k) as u64, *h); }
            prop_assert_eq!(proof.root(&known, (n + appends) as u64).unwrap(), t2.root());
        }
    }
}
