//! BIP-340 signatures: verification (one, or a batch in parallel on rayon), deterministic signing, and
//! a cache that parses each signing pubkey and derives its account key once.

use crate::address::{account_key_of, secp, AccountKey};
use crate::hash::Hash32;
use bitcoin::key::{Keypair, XOnlyPublicKey};
use bitcoin::secp256k1::{schnorr, Message};
use rayon::prelude::*;
use std::collections::HashMap;

/// Verify a BIP-340 signature over a 32-byte message.
pub fn verify(pk: &XOnlyPublicKey, msg: &Hash32, sig: &[u8; 64]) -> bool {
    match schnorr::Signature::from_slice(sig) {
        Ok(s) => secp().verify_schnorr(&s, &Message::from_digest(*msg), pk).is_ok(),
        Err(_) => false,
    }
}

/// Sign a 32-byte message (BIP-340, zero aux randomness: deterministic, as test vectors need).
pub fn sign(kp: &Keypair, msg: &Hash32) -> [u8; 64] {
    secp().sign_schnorr_with_aux_rand(&Message::from_digest(*msg), kp, &[0u8; 32]).serialize()
}

/// Verify many signatures in parallel; `None` pubkeys count as invalid.
pub fn verify_all(items: &[(Option<XOnlyPublicKey>, Hash32, [u8; 64])]) -> Vec<bool> {
    items.par_iter().map(|(pk, m, s)| pk.as_ref().is_some_and(|pk| verify(pk, m, s))).collect()
}

/// Most pubkeys the cache holds before it starts over (bounds memory on huge workloads).
pub const KEY_CACHE_LIMIT: usize = 1 << 18;

/// Parsed pubkeys and their account keys; `None` marks bytes that are not a curve point.
#[derive(Default)]
pub struct KeyCache {
    map: HashMap<[u8; 32], Option<(XOnlyPublicKey, AccountKey)>>,
}

impl KeyCache {
    /// Parse and tweak every pubkey not yet cached, in parallel.
    pub fn resolve<'a>(&mut self, pubkeys: impl Iterator<Item = &'a [u8; 32]>) {
        let mut fresh: Vec<[u8; 32]> = pubkeys.filter(|k| !self.map.contains_key(*k)).copied().collect();
        fresh.sort_unstable();
        fresh.dedup();
        if self.map.len() + fresh.len() > KEY_CACHE_LIMIT {
            self.map.clear();
        }
        let parsed: Vec<_> = fresh
            .par_iter()
            .map(|k| (*k, XOnlyPublicKey::from_slice(k).ok().map(|pk| (pk, account_key_of(&pk)))))
            .collect();
        self.map.extend(parsed);
    }

    /// A resolved pubkey (call [`KeyCache::resolve`] first); `None` when not a curve point or unresolved.
    pub fn get(&self, pubkey: &[u8; 32]) -> Option<(XOnlyPublicKey, AccountKey)> {
        self.map.get(pubkey).copied().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bip340_official_vectors() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/bip340-test-vectors.csv"))
                .unwrap();
        let mut n = 0;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let pk_bytes: [u8; 32] = hex::decode(f[2]).unwrap().try_into().unwrap();
            let msg = hex::decode(f[4]).unwrap();
            let sig: [u8; 64] = hex::decode(f[5]).unwrap().try_into().unwrap();
            let expect = f[6] == "TRUE";
            // Only 32-byte messages are used by the protocol.
            if msg.len() != 32 {
                continue;
            }
            let msg: [u8; 32] = msg.try_into().unwrap();
            let ok = XOnlyPublicKey::from_slice(&pk_bytes).map(|pk| verify(&pk, &msg, &sig)).unwrap_or(false);
            assert_eq!(ok, expect, "vector {}", f[0]);
            if !f[1].is_empty() && expect {
                let sk = bitcoin::secp256k1::SecretKey::from_slice(&hex::decode(f[1]).unwrap()).unwrap();
                let kp = Keypair::from_secret_key(secp(), &sk);
                let aux: [u8; 32] = hex::decode(f[3]).unwrap().try_into().unwrap();
                let s = secp().sign_schnorr_with_aux_rand(&Message::from_digest(msg), &kp, &aux);
                assert_eq!(s.serialize(), sig, "signing vector {}", f[0]);
            }
            n += 1;
        }
        assert!(n >= 15, "only {n} vectors read");
    }
}
