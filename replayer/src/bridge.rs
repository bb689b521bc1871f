//! The KRAY bridge descriptor: a 2-of-3 Taproot output with one tapscript leaf.
//!
//! The federation's three compressed public keys are sorted bytewise (so `02`-prefixed keys come
//! first) and their x-only forms go, in that order, into the single leaf
//! `<x1> OP_CHECKSIG <x2> OP_CHECKSIGADD <x3> OP_CHECKSIGADD OP_2 OP_GREATERTHANOREQUAL`
//! (leaf version `0xc0`).
//!
//! The internal key decides whether the key path can be used at all:
//! - [`InternalKey::Nums`] (the default) is the BIP-341 point `H`, whose discrete logarithm nobody
//!   knows, so the bridge can only be spent by the script path (two of three signatures);
//! - [`InternalKey::Legacy`] is the x coordinate of the first sorted key, as the public KRAY
//!   JavaScript builds it: that one signer can spend the whole bridge alone by the key path. The
//!   guardian reproduces it in order to recognise and audit it, never to recommend it;
//! - [`InternalKey::Custom`] is any other x-only key.
//!
//! Everything here is pure: no I/O, no randomness.

use bitcoin::hashes::Hash;
use bitcoin::key::{Parity, TweakedPublicKey, XOnlyPublicKey};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CHECKSIGADD, OP_GREATERTHANOREQUAL, OP_PUSHNUM_2};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{PublicKey, Secp256k1, Verification};
use bitcoin::taproot::{
    ControlBlock, LeafVersion, Signature, TapLeafHash, TapNodeHash, TapTweakHash, TaprootMerkleBranch,
};
use bitcoin::{Address, Network, Script, ScriptBuf, Witness};
use serde::{Deserialize, Serialize};

/// Number of federation signers of the bridge.
pub const SIGNERS: usize = 3;

/// Number of signatures the leaf script requires.
pub const THRESHOLD: usize = 2;

/// The BIP-341 "nothing up my sleeve" point `H` (x coordinate): `lift_x(sha256(G))`, a key with no
/// known private key. Used as the internal key of a bridge that must not be key-path spendable.
pub const NUMS_H: [u8; 32] = [
    0x50, 0x92, 0x9b, 0x74, 0xc1, 0xa0, 0x49, 0x54, 0xb7, 0x8b, 0x4b, 0x60, 0x35, 0xe9, 0x7a, 0x5e, 0x07, 0x8a, 0x5a,
    0x0f, 0x28, 0xec, 0x96, 0xd5, 0x47, 0xbf, 0xee, 0x9a, 0xce, 0x80, 0x3a, 0xc0,
];

/// Errors building or using a [`BridgeDescriptor`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// The bridge needs exactly three federation keys.
    #[error("a KRAY bridge needs exactly {SIGNERS} federation keys, got {0}")]
    WrongKeyCount(usize),
    /// Two federation keys are equal, or have the same x coordinate (`P` and `-P`).
    #[error("federation keys {0} and {1} (sorted order) share the same x-only key")]
    DuplicateKey(usize, usize),
    /// A key given as hex did not parse as a compressed secp256k1 public key.
    #[error("invalid federation public key {index}: {reason}")]
    InvalidPubkey {
        /// Position of the key in the input.
        index: usize,
        /// Why it was rejected.
        reason: String,
    },
    /// The Taproot tweak of the internal key failed (probability ~2^-128 for honest keys).
    #[error("taproot tweak of the internal key failed")]
    Tweak,
    /// Fewer than [`THRESHOLD`] signatures were given for a script-path spend.
    #[error("a script-path spend needs at least {THRESHOLD} signatures, got {0}")]
    NotEnoughSignatures(usize),
}

/// Which internal key a bridge uses (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalKey {
    /// The unspendable BIP-341 point [`NUMS_H`]: script path only. The guardian's default.
    Nums,
    /// The x coordinate of the first sorted federation key, as the KRAY JavaScript does: that
    /// signer alone can spend the bridge by the key path.
    Legacy,
    /// Any other x-only internal key.
    Custom(XOnlyPublicKey),
}

/// What the [`BridgeAudit`] could establish about the internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InternalKeyKind {
    /// The BIP-341 NUMS point `H`: nobody can use the key path.
    Nums,
    /// The internal key is the x-only key of the federation signer at this index (sorted order):
    /// that signer can spend the whole bridge alone.
    KeyOfSigner(usize),
    /// Neither: the key path may or may not be spendable, and by whom is not known.
    Unknown,
}

/// The result of auditing a [`BridgeDescriptor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeAudit {
    /// What the internal key is.
    pub internal_key_kind: InternalKeyKind,
    /// True when one federation signer can spend the bridge alone by the key path (the KRAY
    /// JavaScript's bridge): the guardian's highest-severity finding.
    pub key_path_spendable_by_single_party: bool,
    /// True unless the internal key is provably unspendable (NUMS): the key path exists for
    /// whoever holds the internal key's private key.
    pub key_path_possibly_spendable: bool,
    /// Signatures the script path requires.
    pub threshold: usize,
    /// Number of federation signers.
    pub signers: usize,
    /// The internal key (x-only, hex).
    pub internal_key: String,
    /// The Taproot output key (x-only, hex).
    pub output_key: String,
    /// The tapleaf hash of the 2-of-3 leaf (hex, display order as in BIP-341 vectors).
    pub leaf_hash: String,
}

/// The KRAY bridge: three sorted federation keys, one 2-of-3 tapscript leaf, an internal key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeDescriptor {
    keys: [PublicKey; SIGNERS],
    internal: InternalKey,
    internal_key: XOnlyPublicKey,
    leaf_script: ScriptBuf,
    leaf_hash: TapLeafHash,
    output_key: TweakedPublicKey,
    output_parity: Parity,
}

impl BridgeDescriptor {
    /// Builds the bridge from three federation keys (any order: they are sorted bytewise by their
    /// 33-byte compressed form) and the choice of internal key.
    pub fn new(keys: &[PublicKey], internal: InternalKey) -> Result<Self, BridgeError> {
        let keys: [PublicKey; SIGNERS] = keys.try_into().map_err(|_| BridgeError::WrongKeyCount(keys.len()))?;
        let mut keys = keys;
        keys.sort_by_key(|k| k.serialize());
        let xonly = keys.map(|k| k.x_only_public_key().0);
        for i in 0..SIGNERS {
            for j in i + 1..SIGNERS {
                if xonly[i] == xonly[j] {
                    return Err(BridgeError::DuplicateKey(i, j));
                }
            }
        }
        let leaf_script = leaf_script_for(&xonly);
        let internal_key = match internal {
            InternalKey::Nums => nums_point(),
            InternalKey::Legacy => xonly[0],
            InternalKey::Custom(k) => k,
        };
        let secp = Secp256k1::verification_only();
        let (leaf_hash, output_key, output_parity) = single_leaf_commitment(&secp, internal_key, &leaf_script)?;
        Ok(Self { keys, internal, internal_key, leaf_script, leaf_hash, output_key, output_parity })
    }

    /// Like [`BridgeDescriptor::new`], from three hex-encoded 33-byte compressed public keys.
    pub fn from_hex_keys<S: AsRef<str>>(keys: &[S], internal: InternalKey) -> Result<Self, BridgeError> {
        let parsed = keys
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let bytes =
                    hex::decode(s.as_ref()).map_err(|e| BridgeError::InvalidPubkey { index, reason: e.to_string() })?;
                if bytes.len() != 33 {
                    return Err(BridgeError::InvalidPubkey {
                        index,
                        reason: format!("expected 33 bytes, got {}", bytes.len()),
                    });
                }
                PublicKey::from_slice(&bytes).map_err(|e| BridgeError::InvalidPubkey { index, reason: e.to_string() })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&parsed, internal)
    }

    /// Finds which internal key (NUMS, or the key of one of the signers) makes these three keys
    /// produce `script_pubkey`; `None` when none does (the bridge then uses an unknown internal
    /// key, or other keys, or another script).
    pub fn recognize(keys: &[PublicKey], script_pubkey: &Script) -> Result<Option<Self>, BridgeError> {
        let nums = Self::new(keys, InternalKey::Nums)?;
        if nums.script_pubkey().as_script() == script_pubkey {
            return Ok(Some(nums));
        }
        for key in nums.xonly_keys() {
            let candidate = Self::new(keys, InternalKey::Custom(key))?;
            if candidate.script_pubkey().as_script() == script_pubkey {
                let candidate =
                    if key == nums.xonly_keys()[0] { Self::new(keys, InternalKey::Legacy)? } else { candidate };
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    /// The three federation keys, sorted bytewise by their compressed form.
    pub fn keys(&self) -> &[PublicKey; SIGNERS] {
        &self.keys
    }

    /// The x-only forms of the sorted keys, in leaf-script order.
    pub fn xonly_keys(&self) -> [XOnlyPublicKey; SIGNERS] {
        self.keys.map(|k| k.x_only_public_key().0)
    }

    /// The internal-key choice the descriptor was built with.
    pub fn internal(&self) -> InternalKey {
        self.internal
    }

    /// The internal key actually used (x-only).
    pub fn internal_key(&self) -> XOnlyPublicKey {
        self.internal_key
    }

    /// The 2-of-3 leaf script.
    pub fn leaf_script(&self) -> &Script {
        self.leaf_script.as_script()
    }

    /// The leaf version: tapscript, `0xc0`.
    pub fn leaf_version(&self) -> LeafVersion {
        LeafVersion::TapScript
    }

    /// The BIP-341 tapleaf hash of the leaf (also the script tree's merkle root: one leaf).
    pub fn leaf_hash(&self) -> TapLeafHash {
        self.leaf_hash
    }

    /// The tweaked Taproot output key.
    pub fn output_key(&self) -> TweakedPublicKey {
        self.output_key
    }

    /// The parity of the output key's y coordinate (odd gives control byte `0xc1`).
    pub fn output_key_parity(&self) -> Parity {
        self.output_parity
    }

    /// The P2TR scriptPubKey `OP_1 <output key>`.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.output_key)
    }

    /// The bech32m address of the bridge on `network`.
    pub fn address(&self, network: Network) -> Address {
        Address::p2tr_tweaked(self.output_key, network)
    }

    /// The control block proving the leaf for a script-path spend: leaf version | parity, the
    /// internal key, and an empty merkle path (the tree has one leaf).
    pub fn control_block(&self) -> ControlBlock {
        ControlBlock {
            leaf_version: LeafVersion::TapScript,
            output_key_parity: self.output_parity,
            internal_key: self.internal_key,
            merkle_branch: TaprootMerkleBranch::default(),
        }
    }

    /// The script-path witness for a 2-of-3 spend. `signatures[i]` is the signature of sorted
    /// signer `i`, or `None` when that signer does not sign. BIP-342 `CHECKSIGADD` consumes the
    /// signature of `x1` first, so the stack lists them in reverse key order (signer 2's first),
    /// with an empty element for each missing signer, then the leaf script and the control block.
    pub fn script_path_witness(&self, signatures: &[Option<Signature>; SIGNERS]) -> Result<Witness, BridgeError> {
        let count = signatures.iter().flatten().count();
        if count < THRESHOLD {
            return Err(BridgeError::NotEnoughSignatures(count));
        }
        let mut witness = Witness::new();
        for sig in signatures.iter().rev() {
            match sig {
                Some(sig) => witness.push(sig.to_vec()),
                None => witness.push([]),
            }
        }
        witness.push(self.leaf_script.as_bytes());
        witness.push(self.control_block().serialize());
        Ok(witness)
    }

    /// Audits the internal key: NUMS, the key of one signer, or unknown.
    pub fn audit(&self) -> BridgeAudit {
        let internal_key_kind = if self.internal_key == nums_point() {
            InternalKeyKind::Nums
        } else if let Some(i) = self.xonly_keys().iter().position(|k| *k == self.internal_key) {
            InternalKeyKind::KeyOfSigner(i)
        } else {
            InternalKeyKind::Unknown
        };
        BridgeAudit {
            internal_key_kind,
            key_path_spendable_by_single_party: matches!(internal_key_kind, InternalKeyKind::KeyOfSigner(_)),
            key_path_possibly_spendable: internal_key_kind != InternalKeyKind::Nums,
            threshold: THRESHOLD,
            signers: SIGNERS,
            internal_key: self.internal_key.to_string(),
            output_key: self.output_key.to_string(),
            leaf_hash: self.leaf_hash.to_string(),
        }
    }
}

/// The BIP-341 NUMS point `H` as an x-only key.
pub fn nums_point() -> XOnlyPublicKey {
    // H is a fixed, valid curve point (pinned by `nums_constant_is_bip341_h`); parsing it cannot
    // fail at run time.
    match XOnlyPublicKey::from_slice(&NUMS_H) {
        Ok(k) => k,
        Err(_) => unreachable!("NUMS_H is a valid x-only key (pinned by tests)"),
    }
}

/// The 2-of-3 leaf script for three x-only keys, in the given order.
fn leaf_script_for(keys: &[XOnlyPublicKey; SIGNERS]) -> ScriptBuf {
    Builder::new()
        .push_x_only_key(&keys[0])
        .push_opcode(OP_CHECKSIG)
        .push_x_only_key(&keys[1])
        .push_opcode(OP_CHECKSIGADD)
        .push_x_only_key(&keys[2])
        .push_opcode(OP_CHECKSIGADD)
        .push_opcode(OP_PUSHNUM_2)
        .push_opcode(OP_GREATERTHANOREQUAL)
        .into_script()
}

/// Leaf hash, output key and parity of a Taproot output whose tree is the single tapscript leaf
/// `script` (BIP-341: merkle root = leaf hash; tweak = H_TapTweak(internal || root)).
fn single_leaf_commitment<C: Verification>(
    secp: &Secp256k1<C>,
    internal: XOnlyPublicKey,
    script: &Script,
) -> Result<(TapLeafHash, TweakedPublicKey, Parity), BridgeError> {
    let leaf_hash = TapLeafHash::from_script(script, LeafVersion::TapScript);
    let root = TapNodeHash::from_byte_array(leaf_hash.to_byte_array());
    let tweak = TapTweakHash::from_key_and_tweak(internal, Some(root)).to_scalar();
    let (output, parity) = internal.add_tweak(secp, &tweak).map_err(|_| BridgeError::Tweak)?;
    Ok((leaf_hash, TweakedPublicKey::dangerous_assume_tweaked(output), parity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;
    use serde_json::Value;

    const KRAY_VECTOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/kray-bridge.json");
    const BIP341_VECTORS: &str =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/bip341-wallet-test-vectors.json");

    fn load(path: &str) -> Value {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        serde_json::from_str(&text).expect("vector JSON")
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key].as_str().unwrap_or_else(|| panic!("missing {key}"))
    }

    fn key_from_int(i: u8) -> PublicKey {
        let mut b = [0u8; 32];
        b[31] = i;
        let sk = SecretKey::from_slice(&b).expect("valid scalar");
        PublicKey::from_secret_key(&Secp256k1::new(), &sk)
    }

    /// Keys 3, 1, 2: deliberately unsorted to exercise the bytewise sort.
    fn vector_keys() -> Vec<PublicKey> {
        vec![key_from_int(3), key_from_int(1), key_from_int(2)]
    }

    #[test]
    fn nums_constant_is_bip341_h() {
        assert_eq!(nums_point().to_string(), "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0");
    }

    #[test]
    fn kray_vector_every_field() {
        let v = load(KRAY_VECTOR);
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Legacy).expect("bridge");

        let sorted: Vec<String> = d.keys().iter().map(|k| k.to_string()).collect();
        let expected: Vec<String> = v["compressed_pubkeys_sorted"]
            .as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_str().expect("str").to_string())
            .collect();
        assert_eq!(sorted, expected);

        assert_eq!(hex::encode(d.leaf_script().as_bytes()), s(&v, "leaf_script"));
        assert_eq!(format!("{:02x}", d.leaf_version().to_consensus()), s(&v, "leaf_version"));
        assert_eq!(d.leaf_hash().to_string(), s(&v, "tap_leaf_hash"));
        assert_eq!(d.internal_key().to_string(), s(&v, "legacy_internal_key"));
        assert_eq!(hex::encode(d.script_pubkey().as_bytes()), s(&v, "legacy_script_pubkey"));
        assert_eq!(d.address(Network::Bitcoin).to_string(), s(&v, "legacy_address_mainnet"));
        assert_eq!(d.address(Network::Testnet).to_string(), s(&v, "legacy_address_testnet"));
        assert_eq!(format!("{:02x}", d.control_block().serialize()[0]), s(&v, "legacy_control_block_first_byte"));
        assert_eq!(d.control_block().serialize().len(), 33);
    }

    #[test]
    fn from_hex_keys_matches_vector() {
        let v = load(KRAY_VECTOR);
        let keys: Vec<&str> = v["compressed_pubkeys_sorted"]
            .as_array()
            .expect("array")
            .iter()
            .rev()
            .map(|x| x.as_str().expect("str"))
            .collect();
        let d = BridgeDescriptor::from_hex_keys(&keys, InternalKey::Legacy).expect("bridge");
        assert_eq!(d.address(Network::Bitcoin).to_string(), s(&v, "legacy_address_mainnet"));
        let bad = BridgeDescriptor::from_hex_keys(&["02zz", keys[1], keys[2]], InternalKey::Nums);
        assert!(matches!(bad, Err(BridgeError::InvalidPubkey { index: 0, .. })));
        let short = BridgeDescriptor::from_hex_keys(&[&keys[0][..64], keys[1], keys[2]], InternalKey::Nums);
        assert!(matches!(short, Err(BridgeError::InvalidPubkey { index: 0, .. })));
    }

    #[test]
    fn legacy_audit_flags_single_party_key_path() {
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Legacy).expect("bridge");
        let a = d.audit();
        assert_eq!(a.internal_key_kind, InternalKeyKind::KeyOfSigner(0));
        assert!(a.key_path_spendable_by_single_party);
        assert!(a.key_path_possibly_spendable);
        assert_eq!((a.threshold, a.signers), (2, 3));
    }

    #[test]
    fn nums_audit_is_clean_and_changes_address_not_leaf() {
        let legacy = BridgeDescriptor::new(&vector_keys(), InternalKey::Legacy).expect("legacy");
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Nums).expect("bridge");
        let a = d.audit();
        assert_eq!(a.internal_key_kind, InternalKeyKind::Nums);
        assert!(!a.key_path_spendable_by_single_party);
        assert!(!a.key_path_possibly_spendable);
        assert_eq!(d.leaf_hash(), legacy.leaf_hash());
        assert_ne!(d.script_pubkey(), legacy.script_pubkey());
        assert_eq!(d.internal_key(), nums_point());
        // The control block must verify the commitment to the leaf under the output key.
        assert!(d.control_block().verify_taproot_commitment(
            &Secp256k1::verification_only(),
            d.output_key().to_x_only_public_key(),
            d.leaf_script()
        ));
    }

    #[test]
    fn custom_keys_audit() {
        let signer2 = key_from_int(3).x_only_public_key().0;
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Custom(signer2)).expect("b");
        assert_eq!(d.audit().internal_key_kind, InternalKeyKind::KeyOfSigner(2));
        let other = key_from_int(7).x_only_public_key().0;
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Custom(other)).expect("b");
        let a = d.audit();
        assert_eq!(a.internal_key_kind, InternalKeyKind::Unknown);
        assert!(!a.key_path_spendable_by_single_party);
        assert!(a.key_path_possibly_spendable);
        let n = BridgeDescriptor::new(&vector_keys(), InternalKey::Custom(nums_point())).expect("b");
        assert_eq!(n.audit().internal_key_kind, InternalKeyKind::Nums);
    }

    #[test]
    fn recognize_finds_internal_key() {
        let keys = vector_keys();
        let legacy = BridgeDescriptor::new(&keys, InternalKey::Legacy).expect("b");
        let got = BridgeDescriptor::recognize(&keys, &legacy.script_pubkey()).expect("ok");
        assert_eq!(got.map(|d| d.internal()), Some(InternalKey::Legacy));
        let nums = BridgeDescriptor::new(&keys, InternalKey::Nums).expect("b");
        let got = BridgeDescriptor::recognize(&keys, &nums.script_pubkey()).expect("ok");
        assert_eq!(got.map(|d| d.internal()), Some(InternalKey::Nums));
        let k1 = legacy.xonly_keys()[1];
        let by1 = BridgeDescriptor::new(&keys, InternalKey::Custom(k1)).expect("b");
        let got = BridgeDescriptor::recognize(&keys, &by1.script_pubkey()).expect("ok");
        assert_eq!(got.map(|d| d.audit().internal_key_kind), Some(InternalKeyKind::KeyOfSigner(1)));
        let other = ScriptBuf::new_op_return([0u8; 4]);
        assert_eq!(BridgeDescriptor::recognize(&keys, &other).expect("ok"), None);
    }

    #[test]
    fn rejects_bad_key_sets() {
        let k = vector_keys();
        assert_eq!(BridgeDescriptor::new(&k[..2], InternalKey::Nums), Err(BridgeError::WrongKeyCount(2)));
        let four = vec![k[0], k[1], k[2], key_from_int(9)];
        assert_eq!(BridgeDescriptor::new(&four, InternalKey::Nums), Err(BridgeError::WrongKeyCount(4)));
        let dup = vec![k[0], k[1], k[1]];
        assert!(matches!(BridgeDescriptor::new(&dup, InternalKey::Nums), Err(BridgeError::DuplicateKey(_, _))));
        // P and -P share an x coordinate: a duplicate for an x-only script.
        let neg = k[1].negate(&Secp256k1::new());
        let pm = vec![k[0], k[1], neg];
        assert!(matches!(BridgeDescriptor::new(&pm, InternalKey::Nums), Err(BridgeError::DuplicateKey(_, _))));
    }

    #[test]
    fn witness_order_and_threshold() {
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Nums).expect("b");
        let sig = |byte: u8| {
            let mut raw = [byte; 64];
            raw[0] = byte;
            Signature::from_slice(&raw).expect("64-byte sig")
        };
        let w = d.script_path_witness(&[Some(sig(1)), None, Some(sig(3))]).expect("witness");
        assert_eq!(w.len(), 5);
        assert_eq!(w.nth(0), Some(&[3u8; 64][..]));
        assert_eq!(w.nth(1), Some(&[][..]));
        assert_eq!(w.nth(2), Some(&[1u8; 64][..]));
        assert_eq!(w.nth(3), Some(d.leaf_script().as_bytes()));
        assert_eq!(w.nth(4), Some(&d.control_block().serialize()[..]));
        assert_eq!(d.script_path_witness(&[Some(sig(1)), None, None]), Err(BridgeError::NotEnoughSignatures(1)));
    }

    /// Every single-leaf script-path vector of the official BIP-341 wallet vectors.
    #[test]
    fn bip341_single_leaf_vectors() {
        let v = load(BIP341_VECTORS);
        let secp = Secp256k1::verification_only();
        let mut checked = 0;
        for case in v["scriptPubKey"].as_array().expect("array") {
            let tree = &case["given"]["scriptTree"];
            if !tree.is_object() || tree["leafVersion"].as_u64() != Some(0xc0) {
                continue;
            }
            let internal: XOnlyPublicKey = s(&case["given"], "internalPubkey").parse().expect("internal key");
            let script = ScriptBuf::from_hex(s(tree, "script")).expect("script");
            let (leaf, out, parity) = single_leaf_commitment(&secp, internal, &script).expect("tweak");
            assert_eq!(leaf.to_string(), case["intermediary"]["leafHashes"][0].as_str().expect("leaf"));
            assert_eq!(out.to_string(), s(&case["intermediary"], "tweakedPubkey"));
            let cb = ControlBlock {
                leaf_version: LeafVersion::TapScript,
                output_key_parity: parity,
                internal_key: internal,
                merkle_branch: TaprootMerkleBranch::default(),
            };
            assert_eq!(
                hex::encode(cb.serialize()),
                case["expected"]["scriptPathControlBlocks"][0].as_str().expect("cb")
            );
            assert_eq!(Address::p2tr_tweaked(out, Network::Bitcoin).to_string(), s(&case["expected"], "bip350Address"));
            checked += 1;
        }
        assert!(checked >= 2, "expected at least two single-leaf vectors, got {checked}");
    }

    #[test]
    fn audit_serializes() {
        let d = BridgeDescriptor::new(&vector_keys(), InternalKey::Legacy).expect("b");
        let j = serde_json::to_value(d.audit()).expect("json");
        assert_eq!(j["internal_key_kind"]["key_of_signer"], 0);
        assert_eq!(j["key_path_spendable_by_single_party"], true);
    }
}
