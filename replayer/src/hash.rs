//! SHA-256 helpers and the domain-separation prefixes used by every hash in the protocol.

use sha2::{Digest, Sha256};

/// A 32-byte hash (SHA-256 output, tx id, Merkle node, state root, batch hash).
pub type Hash32 = [u8; 32];

/// The all-zero hash: the root of an empty tree.
pub const ZERO_HASH: Hash32 = [0u8; 32];

/// Domain prefix of a Merkle leaf: `sha256(0x00 || leaf bytes)`.
pub const TAG_LEAF: u8 = 0x00;
/// Domain prefix of a Merkle inner node: `sha256(0x01 || left || right)`.
pub const TAG_NODE: u8 = 0x01;
/// Domain prefix of a batch hash: `sha256(0x02 || header bytes)`.
pub const TAG_BATCH: u8 = 0x02;
/// Domain prefix of a state root: `sha256(0x03 || accounts root || count || ...)`.
pub const TAG_STATE: u8 = 0x03;
/// Domain prefix of a batch's data commitment: `sha256(0x05 || batch hash || u32 n || n × (u32 len || tx))`.
pub const TAG_DATA: u8 = 0x05;
/// Domain prefix of the chain id: `sha256(0x04 || profile JSON || producers || genesis state root)`.
pub const TAG_GENESIS: u8 = 0x04;

/// Plain SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash32 {
    Sha256::digest(data).into()
}

/// SHA-256 of the concatenation of `parts`.
pub fn sha256_parts(parts: &[&[u8]]) -> Hash32 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Merkle leaf hash of `bytes` (domain-separated from inner nodes).
pub fn leaf_hash(bytes: &[u8]) -> Hash32 {
    sha256_parts(&[&[TAG_LEAF], bytes])
}

/// Merkle inner node hash of two children.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    sha256_parts(&[&[TAG_NODE], left, right])
}

/// Serde helpers that write fixed-size byte arrays and byte vectors as lowercase hex strings.
pub mod hexser {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Serialize any byte slice as lowercase hex.
    pub fn serialize<S: Serializer, T: AsRef<[u8]>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v.as_ref()))
    }

    /// Deserialize a fixed-size array from hex, naming the expected length on error.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(d: D) -> Result<[u8; N], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(|e| D::Error::custom(format!("invalid hex: {e}")))?;
        v.try_into().map_err(|v: Vec<u8>| D::Error::custom(format!("expected {N} bytes of hex, got {}", v.len())))
    }

    /// Serde for `Vec<u8>` as hex.
    pub mod vec {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};
        /// Serialize bytes as lowercase hex.
        pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&hex::encode(v))
        }
        /// Deserialize hex into bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let s = String::deserialize(d)?;
            hex::decode(&s).map_err(|e| D::Error::custom(format!("invalid hex: {e}")))
        }
    }

    /// Serde for `u64` as a decimal string (JSON numbers lose precision above 2^53).
    pub mod u64str {
        use serde::{de::Error, Deserialize, Deserializer, Serializer};
        /// Serialize as a decimal string.
        pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&v.to_string())
        }
        /// Deserialize from a canonical decimal string (no sign, no leading zeros).
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
            let s = String::deserialize(d)?;
            super::super::parse_canonical_u64(&s)
                .ok_or_else(|| D::Error::custom(format!("expected a canonical decimal integer string, got {s:?}")))
        }
    }
}

/// Parse a canonical decimal u64: digits only, no leading zeros (except "0"), no overflow.
pub fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

/// Decode exactly 32 bytes of hex.
pub fn hex32(s: &str) -> Option<Hash32> {
    hex::decode(s).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_note_vector() {
        let msg = "kray_bc11ec6ee659d2364a91e60e7d485dfa:kray_0d735c11a128792366fba42861b69777:10000:0:transfer";
        assert_eq!(
            hex::encode(sha256(msg.as_bytes())),
            "9caa06196bc2df95f2b95c65880966dc3a9c6ba12a2a40d9844eebab6d432620"
        );
    }

    #[test]
    fn leaf_and_node_are_domain_separated() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut cat = a.to_vec();
        cat.extend_from_slice(&b);
        assert_ne!(leaf_hash(&cat), node_hash(&a, &b));
    }

    #[test]
    fn canonical_u64() {
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_canonical_u64("18446744073709551616"), None);
        assert_eq!(parse_canonical_u64("01"), None);
        assert_eq!(parse_canonical_u64("+1"), None);
        assert_eq!(parse_canonical_u64(""), None);
    }
}
