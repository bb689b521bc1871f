//! Profiles: the protocol parameters on which the seeds disagree or which differ per network
//! (network, decimals, gas, Treasury, rune, confirmations, challenge window, bridge keys). Shipped
//! profiles: `mainnet` and `regtest` (see `profiles/*.toml` at the repository root).

use crate::address::{parse_l2_address, AccountKey, AddressError};
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The Bitcoin network a profile runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L1Network {
    /// Bitcoin mainnet.
    Mainnet,
    /// Testnet3.
    Testnet,
    /// Signet.
    Signet,
    /// Local regtest.
    Regtest,
}

impl L1Network {
    /// The `bitcoin` crate's network.
    pub fn to_bitcoin(self) -> bitcoin::Network {
        match self {
            L1Network::Mainnet => bitcoin::Network::Bitcoin,
            L1Network::Testnet => bitcoin::Network::Testnet,
            L1Network::Signet => bitcoin::Network::Signet,
            L1Network::Regtest => bitcoin::Network::Regtest,
        }
    }
}

impl fmt::Display for L1Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L1Network::Mainnet => "mainnet",
            L1Network::Testnet => "testnet",
            L1Network::Signet => "signet",
            L1Network::Regtest => "regtest",
        })
    }
}

/// How the bridge's Taproot internal key is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InternalKeyKind {
    /// The BIP-341 unspendable NUMS point: only the 2-of-3 script path can spend.
    Nums,
    /// The JavaScript's choice: the first sorted signer key, which can spend alone by key path.
    Legacy,
}

/// The bridge's federation keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeKeys {
    /// The three compressed (33-byte) signer public keys, hex.
    pub pubkeys: Vec<String>,
    /// Internal key choice.
    pub internal_key: InternalKeyKind,
}

/// A profile: every protocol value that is a setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Profile name.
    pub name: String,
    /// Bitcoin network; L2 addresses are P2TR addresses of this network.
    pub network: L1Network,
    /// Decimals of the L2 unit: 1 KRAY = 10^decimals credits.
    pub decimals: u8,
    /// Divisibility of the rune on L1.
    pub rune_divisibility: u8,
    /// Rune id `block:tx` of KRAY•SPACE (empty until etched on a devnet).
    #[serde(default)]
    pub rune_id: String,
    /// Gas in credits that every user tx pays to the Treasury.
    pub gas_per_tx: u64,
    /// The Treasury's L2 address.
    pub treasury: String,
    /// L1 confirmations a deposit needs before it may be credited.
    pub confirmations: u32,
    /// Challenge window in L1 blocks, counted from the anchor's confirmation.
    pub challenge_window_blocks: u32,
    /// Blocks after sealing within which a batch must be anchored.
    pub anchor_grace_blocks: u32,
    /// Blocks after a deposit confirms within which it must be credited.
    pub deposit_grace_blocks: u32,
    /// Upper bound on txs per batch (bounds memory when reading untrusted batches).
    pub max_batch_txs: u32,
    /// Bridge federation keys, when known.
    #[serde(default)]
    pub bridge: Option<BridgeKeys>,
}

/// Why a profile is unusable.
#[derive(Debug, Error)]
pub enum ProfileError {
    /// Unknown shipped profile name.
    #[error("unknown profile {0:?} (shipped: mainnet, regtest; or give a path to a .toml file)")]
    Unknown(String),
    /// File could not be read.
    #[error("cannot read profile {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// TOML is invalid.
    #[error("profile {path} is not valid: {message}")]
    Parse {
        /// Path or name.
        path: String,
        /// Parser message.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("profile {name}: {message}")]
    Invalid {
        /// Profile name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

const MAINNET: &str = include_str!("../../profiles/mainnet.toml");
const REGTEST: &str = include_str!("../../profiles/regtest.toml");

impl Profile {
    /// Load a shipped profile by name, or a TOML file by path.
    pub fn load(name_or_path: &str) -> Result<Self, ProfileError> {
        let (text, origin) = match name_or_path {
            "mainnet" => (MAINNET.to_string(), "mainnet".to_string()),
            "regtest" => (REGTEST.to_string(), "regtest".to_string()),
            p if p.ends_with(".toml") || std::path::Path::new(p).exists() => (
                std::fs::read_to_string(p).map_err(|source| ProfileError::Io { path: p.to_string(), source })?,
                p.to_string(),
            ),
            other => return Err(ProfileError::Unknown(other.to_string())),
        };
        Self::from_toml(&text, &origin)
    }

    /// Parse and validate TOML text.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ProfileError> {
        let p: Profile = toml::from_str(text)
            .map_err(|e| ProfileError::Parse { path: origin.to_string(), message: e.to_string() })?;
        p.validate()?;
        Ok(p)
    }

    /// Check values are in range and consistent.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |m: String| ProfileError::Invalid { name: self.name.clone(), message: m };
        if self.rune_divisibility > self.decimals {
            return Err(bad(format!(
                "rune_divisibility {} exceeds decimals {}",
                self.rune_divisibility, self.decimals
            )));
        }
        if self.decimals > 18 {
            return Err(bad(format!("decimals {} is above 18", self.decimals)));
        }
        self.treasury_key().map_err(|e| bad(format!("treasury: {e}")))?;
        if self.max_batch_txs == 0 {
            return Err(bad("max_batch_txs must be at least 1".into()));
        }
        if let Some(b) = &self.bridge {
            if b.pubkeys.len() != 3 {
                return Err(bad(format!("bridge needs 3 pubkeys, got {}", b.pubkeys.len())));
            }
            for k in &b.pubkeys {
                let ok = hex::decode(k).ok().and_then(|v| bitcoin::secp256k1::PublicKey::from_slice(&v).ok());
                if ok.is_none() {
                    return Err(bad(format!("bridge pubkey {k:?} is not a compressed secp256k1 key")));
                }
            }
        }
        Ok(())
    }

    /// The Treasury's account key.
    pub fn treasury_key(&self) -> Result<AccountKey, AddressError> {
        parse_l2_address(&self.treasury, self.network)
    }

    /// Credits per smallest rune unit on L1: `10^(decimals - rune_divisibility)`.
    pub fn credits_per_rune_unit(&self) -> u64 {
        10u64.pow(u32::from(self.decimals.saturating_sub(self.rune_divisibility)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_load() {
        let m = Profile::load("mainnet").unwrap();
        assert_eq!(m.rune_id, "925516:1550");
        assert_eq!(m.gas_per_tx, 1000);
        assert_eq!(m.credits_per_rune_unit(), 1000);
        assert_eq!(m.network, L1Network::Mainnet);
        let r = Profile::load("regtest").unwrap();
        assert_eq!(r.network, L1Network::Regtest);
        assert!(r.bridge.is_some());
    }

    #[test]
    fn bad_profiles_are_named() {
        assert!(matches!(Profile::load("nosuch"), Err(ProfileError::Unknown(_))));
        let mut text = MAINNET.replace("confirmations = 6", "confirmations = -1");
        assert!(matches!(Profile::from_toml(&text, "x"), Err(ProfileError::Parse { .. })));
        text = MAINNET.replace("decimals = 3", "decimals = 3\nbogus = 1");
        assert!(Profile::from_toml(&text, "x").unwrap_err().to_string().contains("bogus"));
        text = MAINNET.replace("bc1p5u00mjuxy0c040t9jdvcjxmzjsy2yluzukdzkta0fnu0hc5m29aqhk3nhv", "treasury");
        assert!(Profile::from_toml(&text, "x").unwrap_err().to_string().contains("treasury"));
    }
}
