//! Genesis: the chain's identity (profile, producer keys) and initial accounts. The chain id commits
//! to all three; every header carries it, and batch 1 names it as its `prev_batch_hash`.

use crate::address::{parse_l2_address, AddressError};
use crate::hash::{hexser, sha256_parts, Hash32, TAG_GENESIS};
use crate::profile::{L1Network, Profile};
use crate::state::{Account, BuildError, State};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Format tag of a genesis file.
pub const GENESIS_FORMAT: &str = "kray-genesis";

/// One initial account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// L2 address.
    pub address: String,
    /// Initial balance in credits.
    #[serde(with = "hexser::u64str")]
    pub balance: u64,
}

/// The genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Always `kray-genesis`.
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Network the chain runs on (must match the profile).
    pub network: L1Network,
    /// X-only pubkeys allowed to sign batch headers.
    pub producers: Vec<String>,
    /// Initial accounts in merkle order (the Treasury among them).
    pub accounts: Vec<GenesisAccount>,
}

/// The identity of a chain: profile, producers and genesis state root. Fraud proofs carry it; its
/// [`Chain::chain_id`] is in every signed header, so none of it can be altered in a proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// Protocol parameters.
    pub profile: Profile,
    /// Producer x-only pubkeys (lowercase hex).
    pub producers: Vec<String>,
    /// Genesis state root (the `prev_state_root` of batch 1).
    #[serde(with = "hexser")]
    pub genesis_state_root: Hash32,
}

impl Chain {
    /// `sha256(0x04 || u32 len || profile JSON || u8 n || n × producer32 || genesis state root)`, where
    /// the profile JSON is its compact serialization in field order (docs/protocol.md).
    pub fn chain_id(&self) -> Hash32 {
        let profile = serde_json::to_vec(&self.profile).unwrap_or_default();
        let producers: Vec<u8> =
            self.producers.iter().flat_map(|p| crate::hash::hex32(p).unwrap_or([0xff; 32])).collect();
        sha256_parts(&[
            &[TAG_GENESIS],
            &(profile.len() as u32).to_be_bytes(),
            &profile,
            &[self.producers.len().min(255) as u8],
            &producers,
            &self.genesis_state_root,
        ])
    }

    /// True when `pk` is one of the producers.
    pub fn is_producer(&self, pk: &[u8; 32]) -> bool {
        let h = hex::encode(pk);
        self.producers.contains(&h)
    }
}

/// Why a genesis is unusable.
#[derive(Debug, Error)]
pub enum GenesisError {
    /// Not JSON of the right shape.
    #[error("genesis JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
    /// Wrong format tag or version.
    #[error("not a genesis file (format {0:?} version {1}, expected {GENESIS_FORMAT:?} version 1)")]
    Format(String, u32),
    /// Network differs from the profile's.
    #[error("genesis is for {0}, the profile for {1}")]
    Network(L1Network, L1Network),
    /// Bad account address.
    #[error("genesis account {index}: {source}")]
    Address {
        /// Position.
        index: usize,
        /// Cause.
        source: AddressError,
    },
    /// Bad producer key.
    #[error("producer {0:?} is not a valid x-only pubkey")]
    Producer(String),
    /// No producers.
    #[error("genesis names no producers")]
    NoProducers,
    /// Treasury missing.
    #[error("the Treasury {0} is not a genesis account")]
    NoTreasury(String),
    /// State could not be built.
    #[error("genesis state: {0}")]
    State(#[from] BuildError),
}

impl Genesis {
    /// A genesis of this format version: `producers` are x-only pubkeys, `accounts` in merkle order.
    pub fn new(network: L1Network, producers: Vec<String>, accounts: Vec<GenesisAccount>) -> Self {
        Genesis { format: GENESIS_FORMAT.into(), version: 1, network, producers, accounts }
    }

    /// Parse a genesis file's text.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        let g: Genesis = serde_json::from_str(text)?;
        if g.format != GENESIS_FORMAT || g.version != 1 {
            return Err(GenesisError::Format(g.format, g.version));
        }
        Ok(g)
    }

    /// Build the genesis state and chain identity under `profile`.
    pub fn build(&self, profile: &Profile) -> Result<(Chain, State), GenesisError> {
        if self.network != profile.network {
            return Err(GenesisError::Network(self.network, profile.network));
        }
        if self.producers.is_empty() {
            return Err(GenesisError::NoProducers);
        }
        for p in &self.producers {
            let ok = crate::hash::hex32(p).and_then(|b| crate::address::parse_xonly(&b).ok());
            if ok.is_none() || *p != p.to_lowercase() {
                return Err(GenesisError::Producer(p.clone()));
            }
        }
        let accounts = self
            .accounts
            .iter()
            .enumerate()
            .map(|(index, a)| {
                let key = parse_l2_address(&a.address, profile.network)
                    .map_err(|source| GenesisError::Address { index, source })?;
                Ok(Account { key, balance: a.balance, nonce: 0 })
            })
            .collect::<Result<Vec<_>, GenesisError>>()?;
        let treasury = profile.treasury_key().map_err(|source| GenesisError::Address { index: usize::MAX, source })?;
        if !accounts.iter().any(|a| a.key == treasury) {
            return Err(GenesisError::NoTreasury(profile.treasury.clone()));
        }
        let state = State::from_accounts(accounts)?;
        let root = state.state_root();
        if self.producers.len() > 255 {
            return Err(GenesisError::Producer("more than 255 producers".into()));
        }
        let chain = Chain { profile: profile.clone(), producers: self.producers.clone(), genesis_state_root: root };
        Ok((chain, state))
    }
}
