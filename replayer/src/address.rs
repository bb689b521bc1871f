//! L2 addresses and their binding to signing keys. An L2 account is a Bitcoin Taproot address on the
//! profile's network: `P2TR(pubkey, no script tree)` per BIP-86. The account's identity in state is
//! the 32-byte Taproot output key (the witness program); the text form is lowercase bech32m.

use crate::profile::L1Network;
use bitcoin::address::{Address, NetworkUnchecked};
use bitcoin::key::{Secp256k1, TapTweak, XOnlyPublicKey};
use bitcoin::secp256k1::All;
use bitcoin::{WitnessProgram, WitnessVersion};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::sync::OnceLock;
use thiserror::Error;

/// The process-wide secp256k1 context (verification and signing tables).
pub fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}

/// An account's identity: the Taproot output key (x-only, 32 bytes) of its L2 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountKey(#[serde(with = "crate::hash::hexser")] pub [u8; 32]);

/// Why a string is not a usable address.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddressError {
    /// Not a Bitcoin address at all.
    #[error("{0:?} is not a Bitcoin address: {1}")]
    Unparseable(String, String),
    /// A Bitcoin address of another network.
    #[error("{0:?} is not an address of the {1} network")]
    WrongNetwork(String, L1Network),
    /// Not a Taproot (witness v1, 32-byte) address.
    #[error("{0:?} is not a Taproot (P2TR) address")]
    NotTaproot(String),
    /// Parseable but not in canonical form (e.g. uppercase).
    #[error("{0:?} is not in canonical form (expected {1:?})")]
    NotCanonical(String, String),
    /// A public key that is not a point on the curve.
    #[error("public key {0} is not a valid x-only secp256k1 point")]
    InvalidPubkey(String),
}

fn parse_any(s: &str, network: L1Network) -> Result<Address, AddressError> {
    let unchecked = Address::<NetworkUnchecked>::from_str(s)
        .map_err(|e| AddressError::Unparseable(s.to_string(), e.to_string()))?;
    let addr = unchecked
        .require_network(network.to_bitcoin())
        .map_err(|_| AddressError::WrongNetwork(s.to_string(), network))?;
    let canonical = addr.to_string();
    if canonical != s {
        return Err(AddressError::NotCanonical(s.to_string(), canonical));
    }
    Ok(addr)
}

/// Parse an L2 address (canonical lowercase P2TR on `network`) into its account key.
pub fn parse_l2_address(s: &str, network: L1Network) -> Result<AccountKey, AddressError> {
    let addr = parse_any(s, network)?;
    let wp = addr.witness_program().ok_or_else(|| AddressError::NotTaproot(s.to_string()))?;
    if wp.version() != WitnessVersion::V1 {
        return Err(AddressError::NotTaproot(s.to_string()));
    }
    let key: [u8; 32] = wp.program().as_bytes().try_into().map_err(|_| AddressError::NotTaproot(s.to_string()))?;
    Ok(AccountKey(key))
}

/// Check that `s` is a canonical Bitcoin address (any standard type) on `network`: an L1
/// withdrawal destination. Returns its scriptPubKey bytes.
pub fn parse_l1_address(s: &str, network: L1Network) -> Result<Vec<u8>, AddressError> {
    Ok(parse_any(s, network)?.script_pubkey().to_bytes())
}

/// The text form of an account key on `network`.
pub fn format_l2_address(key: &AccountKey, network: L1Network) -> String {
    match WitnessProgram::new(WitnessVersion::V1, &key.0) {
        Ok(wp) => Address::from_witness_program(wp, network.to_bitcoin()).to_string(),
        // A 32-byte v1 program is always valid; keep a readable fallback rather than panic.
        Err(_) => hex::encode(key.0),
    }
}

/// Parse a 32-byte x-only public key.
pub fn parse_xonly(bytes: &[u8; 32]) -> Result<XOnlyPublicKey, AddressError> {
    XOnlyPublicKey::from_slice(bytes).map_err(|_| AddressError::InvalidPubkey(hex::encode(bytes)))
}

/// The account key (BIP-86 output key) that a signing pubkey controls.
pub fn account_key_of(pubkey: &XOnlyPublicKey) -> AccountKey {
    let (tweaked, _parity) = pubkey.tap_tweak(secp(), None);
    AccountKey(tweaked.to_x_only_public_key().serialize())
}

/// The L2 address of a signing pubkey: `P2TR(pubkey, no script tree)` on `network`.
pub fn address_of_pubkey(pubkey: &XOnlyPublicKey, network: L1Network) -> String {
    format_l2_address(&account_key_of(pubkey), network)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<V>,
    }
    #[derive(Deserialize)]
    struct V {
        internal_key: String,
        output_key: String,
        address: String,
    }

    #[test]
    fn bip86_vectors() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/vectors/bip86-addresses.json"))
                .unwrap();
        let v: Vectors = serde_json::from_str(&text).unwrap();
        assert!(!v.vectors.is_empty());
        for t in v.vectors {
            let ik: [u8; 32] = hex::decode(&t.internal_key).unwrap().try_into().unwrap();
            let pk = parse_xonly(&ik).unwrap();
            assert_eq!(hex::encode(account_key_of(&pk).0), t.output_key);
            assert_eq!(address_of_pubkey(&pk, L1Network::Mainnet), t.address);
            let key = parse_l2_address(&t.address, L1Network::Mainnet).unwrap();
            assert_eq!(hex::encode(key.0), t.output_key);
        }
    }

    #[test]
    fn rejects_bad_addresses() {
        let a = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr";
        assert!(matches!(parse_l2_address(a, L1Network::Regtest), Err(AddressError::WrongNetwork(..))));
        assert!(matches!(parse_l2_address(&a.to_uppercase(), L1Network::Mainnet), Err(AddressError::NotCanonical(..))));
        assert!(matches!(
            parse_l2_address("kray_bc11ec6ee659d2364a91e60e7d485dfa", L1Network::Mainnet),
            Err(AddressError::Unparseable(..))
        ));
        // P2WPKH is a valid L1 destination but not an L2 account.
        let wpkh = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
        assert!(matches!(parse_l2_address(wpkh, L1Network::Mainnet), Err(AddressError::NotTaproot(..))));
        assert!(parse_l1_address(wpkh, L1Network::Mainnet).is_ok());
    }
}
