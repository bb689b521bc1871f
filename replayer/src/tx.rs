//! L2 transactions: the published form, its canonical encoding (which the tx id and the tx root commit
//! to), the signed message, and static validation (what can be judged from the tx alone).

use crate::address::{parse_l1_address, parse_l2_address, AccountKey, AddressError};
use crate::encoding::{DecodeError, EncodeError, Reader, Writer};
use crate::hash::{hexser, leaf_hash, sha256, Hash32};
use crate::profile::{L1Network, Profile};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use thiserror::Error;

/// Version byte of the canonical tx encoding.
pub const TX_VERSION: u8 = 1;
/// Longest memo, bytes.
pub const MAX_MEMO: usize = 256;
/// Longest `data` field, bytes.
pub const MAX_DATA: usize = 4096;

/// The tx types this protocol version executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// A signed transfer between two L2 accounts.
    Transfer,
    /// A signed withdrawal to an L1 address: burns `amount + gas`, queues the payout.
    Withdrawal,
    /// A sequencer tx crediting an L1 deposit outpoint to an L2 account.
    Deposit,
}

impl TxKind {
    /// Parse a `tx_type` string; `None` for types this version does not execute.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "transfer" => Some(TxKind::Transfer),
            "withdrawal" => Some(TxKind::Withdrawal),
            "deposit" => Some(TxKind::Deposit),
            _ => None,
        }
    }
    /// The `tx_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Transfer => "transfer",
            TxKind::Withdrawal => "withdrawal",
            TxKind::Deposit => "deposit",
        }
    }
}

/// A published L2 transaction. User fields are signed; `gas_fee`, `from_index` and `to_index` are
/// the sequencer's annotations (the account indices make fraud proofs possible without
/// non-membership proofs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tx {
    /// `transfer`, `withdrawal`, `deposit` (others are rejected as unsupported).
    pub tx_type: String,
    /// Sender L2 address; for a deposit, the L1 outpoint `txid:vout`.
    pub from: String,
    /// Recipient L2 address; for a withdrawal, the L1 destination address.
    pub to: String,
    /// Credits moved.
    #[serde(with = "hexser::u64str")]
    pub amount: u64,
    /// Sender nonce (0 for deposits).
    #[serde(with = "hexser::u64str")]
    pub nonce: u64,
    /// Gas charged (profile gas for user txs, 0 for deposits).
    #[serde(with = "hexser::u64str")]
    pub gas_fee: u64,
    /// Merkle index of the sender account (none for deposits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_index: Option<u64>,
    /// Merkle index of the recipient account; equal to the account count for a new account (none for
    /// withdrawals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_index: Option<u64>,
    /// Signer's x-only pubkey (zeros for deposits).
    #[serde(with = "hexser")]
    pub pubkey: [u8; 32],
    /// BIP-340 signature over `sha256(from:to:amount:nonce:tx_type)` (zeros for deposits).
    #[serde(with = "hexser")]
    pub signature: [u8; 64],
    /// Optional human-readable memo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
    /// Optional application data (opaque text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// An L1 outpoint `txid:vout` (txid in the usual display order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OutPointRef {
    /// Transaction id, display (big-endian hex) order.
    #[serde(with = "hexser")]
    pub txid: [u8; 32],
    /// Output index.
    pub vout: u32,
}

impl OutPointRef {
    /// Parse the canonical `txid:vout` form (64 lowercase hex, decimal vout without leading zeros).
    pub fn parse(s: &str) -> Option<Self> {
        let (t, v) = s.split_once(':')?;
        if t.len() != 64 || t.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let vout = u32::try_from(crate::hash::parse_canonical_u64(v)?).ok()?;
        Some(Self { txid: crate::hash::hex32(t)?, vout })
    }
}

impl std::fmt::Display for OutPointRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", hex::encode(self.txid), self.vout)
    }
}

/// Why a tx is malformed or unsupported (judged from the tx alone, before any state is read).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxFormatError {
    /// The canonical bytes do not decode.
    #[error("tx bytes do not decode: {0}")]
    Decode(#[from] DecodeError),
    /// A type this protocol version does not execute.
    #[error("unsupported tx type {0:?} (this protocol version executes transfer, withdrawal, deposit)")]
    Unsupported(String),
    /// A field is invalid for its type.
    #[error("{0}")]
    Invalid(String),
}

/// A tx that passed static validation, with parsed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedTx {
    /// Which kind.
    pub kind: TxKind,
    /// Sender account (transfer, withdrawal).
    pub from_key: Option<AccountKey>,
    /// Recipient account (transfer, deposit).
    pub to_key: Option<AccountKey>,
    /// Deposit outpoint (deposit).
    pub outpoint: Option<OutPointRef>,
}

impl Tx {
    /// A tx as a user builds it: no signature yet (zeros) and none of the sequencer's annotations.
    /// A deposit (a sequencer tx) is built the same way with `from` = the outpoint and nonce 0.
    pub fn unsigned(tx_type: &str, from: impl Into<String>, to: impl Into<String>, amount: u64, nonce: u64) -> Self {
        Tx {
            tx_type: tx_type.to_string(),
            from: from.into(),
            to: to.into(),
            amount,
            nonce,
            gas_fee: 0,
            from_index: None,
            to_index: None,
            pubkey: [0; 32],
            signature: [0; 64],
            memo: None,
            data: None,
        }
    }

    /// Sign as the holder of `keypair`: sets `pubkey` and the BIP-340 `signature` over the signing hash.
    pub fn sign(&mut self, keypair: &bitcoin::key::Keypair) {
        self.pubkey = keypair.x_only_public_key().0.serialize();
        self.signature = crate::signature::sign(keypair, &self.signing_hash());
    }

    /// The exact message users sign: `from:to:amount:nonce:tx_type`.
    pub fn signing_message(&self) -> String {
        format!("{}:{}:{}:{}:{}", self.from, self.to, self.amount, self.nonce, self.tx_type)
    }

    /// `sha256(utf8(signing_message))`, the 32 bytes the BIP-340 signature signs. The message is fed
    /// to SHA-256 in parts, without building the `String`.
    pub fn signing_hash(&self) -> Hash32 {
        let (mut amount, mut nonce) = ([0u8; U64_DIGITS], [0u8; U64_DIGITS]);
        let mut h = Sha256::new();
        h.update(self.from.as_bytes());
        h.update(b":");
        h.update(self.to.as_bytes());
        h.update(b":");
        h.update(decimal(self.amount, &mut amount));
        h.update(b":");
        h.update(decimal(self.nonce, &mut nonce));
        h.update(b":");
        h.update(self.tx_type.as_bytes());
        h.finalize().into()
    }

    /// Canonical bytes (see docs/protocol.md, "Transaction encoding").
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(256);
        w.u8(TX_VERSION);
        w.str8("tx_type", &self.tx_type)?;
        w.str8("from", &self.from)?;
        w.str8("to", &self.to)?;
        w.u64(self.amount).u64(self.nonce).u64(self.gas_fee);
        for idx in [self.from_index, self.to_index] {
            match idx {
                Some(i) => w.u8(1).u64(i),
                None => w.u8(0),
            };
        }
        w.raw(&self.pubkey).raw(&self.signature);
        for (field, v, max) in [("memo", &self.memo, MAX_MEMO), ("data", &self.data, MAX_DATA)] {
            match v {
                Some(s) => {
                    w.u8(1).bytes16(field, s.as_bytes(), max)?;
                }
                None => {
                    w.u8(0);
                }
            }
        }
        Ok(w.finish())
    }

    /// Decode canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = r.u8("version")?;
        if v != TX_VERSION {
            return Err(DecodeError { offset: 0, what: format!("tx version {v}, expected {TX_VERSION}") });
        }
        let tx_type = r.str8("tx_type")?;
        if tx_type.is_empty() || !tx_type.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(r.error(format!("tx_type {tx_type:?} is not lowercase ASCII letters and '_'")));
        }
        let from = r.str8("from")?;
        let to = r.str8("to")?;
        let amount = r.u64("amount")?;
        let nonce = r.u64("nonce")?;
        let gas_fee = r.u64("gas_fee")?;
        let from_index = if r.flag("from_index")? { Some(r.u64("from_index")?) } else { None };
        let to_index = if r.flag("to_index")? { Some(r.u64("to_index")?) } else { None };
        let pubkey = r.array::<32>("pubkey")?;
        let signature = r.array::<64>("signature")?;
        let mut opt = |field: &str, max| -> Result<Option<String>, DecodeError> {
            if r.flag(field)? {
                let b = r.bytes16(field, max)?;
                String::from_utf8(b).map(Some).map_err(|_| r.error(format!("{field} is not UTF-8")))
            } else {
                Ok(None)
            }
        };
        let memo = opt("memo", MAX_MEMO)?;
        let data = opt("data", MAX_DATA)?;
        r.end()?;
        Ok(Tx { tx_type, from, to, amount, nonce, gas_fee, from_index, to_index, pubkey, signature, memo, data })
    }

    /// Static validation against a profile: type supported, addresses canonical on the network,
    /// amounts positive and in whole rune units where L1 is involved, fields present as the type needs.
    pub fn check(&self, profile: &Profile) -> Result<CheckedTx, TxFormatError> {
        self.check_inner(profile, None, &mut false)
    }

    /// [`Tx::check`], with L2 addresses looked up in `cache` before they are parsed. The result is
    /// identical: only addresses that passed the full check are ever in the cache, and a miss (or an
    /// address that fails) goes through the same parser. The flag is true when the tx passed and at
    /// least one of its L2 addresses missed the cache (the replayer then adds them to the cache).
    pub fn check_cached(&self, profile: &Profile, cache: &AddressCache) -> Result<(CheckedTx, bool), TxFormatError> {
        let mut missed = false;
        let checked = self.check_inner(profile, Some(cache), &mut missed)?;
        Ok((checked, missed))
    }

    fn check_inner(
        &self,
        profile: &Profile,
        cache: Option<&AddressCache>,
        missed: &mut bool,
    ) -> Result<CheckedTx, TxFormatError> {
        let mut l2 = |s: &str, net: L1Network| -> Result<AccountKey, AddressError> {
            if let Some(k) = cache.and_then(|c| c.get(s, net)) {
                return Ok(k);
            }
            *missed = true;
            parse_l2_address(s, net)
        };
        let kind = TxKind::parse(&self.tx_type).ok_or_else(|| TxFormatError::Unsupported(self.tx_type.clone()))?;
        let inv = |m: String| TxFormatError::Invalid(m);
        if self.amount == 0 {
            return Err(inv("amount is 0".into()));
        }
        let net = profile.network;
        let unit = profile.credits_per_rune_unit();
        match kind {
            TxKind::Transfer => {
                let from_key = l2(&self.from, net).map_err(|e| inv(format!("from: {e}")))?;
                let to_key = l2(&self.to, net).map_err(|e| inv(format!("to: {e}")))?;
                if self.from_index.is_none() || self.to_index.is_none() {
                    return Err(inv("transfer needs from_index and to_index".into()));
                }
                Ok(CheckedTx { kind, from_key: Some(from_key), to_key: Some(to_key), outpoint: None })
            }
            TxKind::Withdrawal => {
                let from_key = l2(&self.from, net).map_err(|e| inv(format!("from: {e}")))?;
                parse_l1_address(&self.to, net).map_err(|e| inv(format!("withdrawal destination: {e}")))?;
                if !self.amount.is_multiple_of(unit) {
                    return Err(inv(format!(
                        "withdrawal amount {} is not a whole number of rune units ({unit} credits)",
                        self.amount
                    )));
                }
                if self.from_index.is_none() || self.to_index.is_some() {
                    return Err(inv("withdrawal needs from_index and no to_index".into()));
                }
                Ok(CheckedTx { kind, from_key: Some(from_key), to_key: None, outpoint: None })
            }
            TxKind::Deposit => {
                let outpoint = OutPointRef::parse(&self.from).ok_or_else(|| {
                    inv(format!("deposit from {:?} is not a canonical txid:vout outpoint", self.from))
                })?;
                let to_key = l2(&self.to, net).map_err(|e| inv(format!("to: {e}")))?;
                if !self.amount.is_multiple_of(unit) {
                    return Err(inv(format!(
                        "deposit amount {} is not a whole number of rune units ({unit} credits)",
                        self.amount
                    )));
                }
                if self.nonce != 0 || self.pubkey != [0; 32] || self.signature != [0; 64] {
                    return Err(inv("deposit must have nonce 0 and zero pubkey and signature".into()));
                }
                if self.from_index.is_some() || self.to_index.is_none() {
                    return Err(inv("deposit needs to_index and no from_index".into()));
                }
                Ok(CheckedTx { kind, from_key: None, to_key: Some(to_key), outpoint: Some(outpoint) })
            }
        }
    }
}

/// Most decimal digits of a `u64` (`u64::MAX` has 20).
const U64_DIGITS: usize = 20;

/// `v` in decimal, as `format!("{v}")` writes it, into the end of `buf`.
fn decimal(mut v: u64, buf: &mut [u8; U64_DIGITS]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

/// Most addresses an [`AddressCache`] holds before it starts over (bounds memory on huge workloads).
pub const ADDRESS_CACHE_LIMIT: usize = 1 << 18;

/// L2 addresses that passed the full canonical check ([`parse_l2_address`]) on one network, with
/// their account keys, so that [`Tx::check_cached`] can skip the bech32 decode and re-encode of
/// addresses it has seen. Owned by one user (a [`crate::Replayer`]): reads are shared during the
/// parallel checks, and new addresses are added between them, so no lock is needed. Only the crate
/// adds addresses, from checks that passed.
#[derive(Debug, Default)]
pub struct AddressCache {
    network: Option<L1Network>,
    map: HashMap<Box<str>, AccountKey>,
}

impl AddressCache {
    /// The account key of `s`, when `s` passed the check on `network` before.
    pub fn get(&self, s: &str, network: L1Network) -> Option<AccountKey> {
        if self.network != Some(network) {
            return None;
        }
        self.map.get(s).copied()
    }

    /// Remember the L2 addresses of `tx`, which passed [`Tx::check`] on `network` as `checked`. The
    /// cache starts over when it is full, or when `network` differs from the one it holds. Crate-only:
    /// a `checked` that is not the check of `tx` would make [`Tx::check_cached`] differ from
    /// [`Tx::check`].
    pub(crate) fn learn(&mut self, network: L1Network, tx: &Tx, checked: &CheckedTx) {
        if self.network != Some(network) {
            self.map.clear();
            self.network = Some(network);
        }
        // Only a passed check sets these keys: `from_key` from `tx.from`, `to_key` from `tx.to`.
        for (s, key) in [(&tx.from, checked.from_key), (&tx.to, checked.to_key)] {
            let Some(key) = key else { continue };
            if self.map.contains_key(s.as_str()) {
                continue;
            }
            if self.map.len() >= ADDRESS_CACHE_LIMIT {
                self.map.clear();
            }
            self.map.insert(s.as_str().into(), key);
        }
    }

    /// Addresses held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when no address is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The tx id: `sha256(canonical bytes)`, recomputable by anyone from the published tx.
pub fn tx_id(bytes: &[u8]) -> Hash32 {
    sha256(bytes)
}

/// The tx's leaf in the batch's tx tree: `sha256(0x00 || canonical bytes)`.
pub fn tx_leaf(bytes: &[u8]) -> Hash32 {
    leaf_hash(bytes)
}

/// How a tx appears in a batch file: decoded fields, or the raw bytes when they do not decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TxJson {
    /// Bytes that do not decode, kept as published.
    Raw {
        /// The canonical bytes, hex.
        #[serde(with = "hexser::vec")]
        raw: Vec<u8>,
    },
    /// A decodable tx.
    Tx(Box<Tx>),
}

impl TxJson {
    /// The JSON form of canonical bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        match Tx::decode(bytes) {
            Ok(tx) if tx.encode().as_deref() == Ok(bytes) => TxJson::Tx(Box::new(tx)),
            _ => TxJson::Raw { raw: bytes.to_vec() },
        }
    }
    /// The canonical bytes of this JSON form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            TxJson::Raw { raw } => Ok(raw.clone()),
            TxJson::Tx(tx) => tx.encode(),
        }
    }
}

/// A sample transfer for unit tests of other modules.
#[cfg(test)]
pub(crate) mod tests_support {
    /// The sample tx.
    pub fn sample_tx() -> super::Tx {
        super::tests::sample()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Tx {
        Tx {
            tx_type: "transfer".into(),
            from: "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr".into(),
            to: "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh".into(),
            amount: 10_000,
            nonce: 0,
            gas_fee: 1000,
            from_index: Some(1),
            to_index: Some(2),
            pubkey: [3; 32],
            signature: [4; 64],
            memo: Some("hi".into()),
            data: None,
        }
    }

    #[test]
    fn encode_decode_roundtrip_and_json() {
        let tx = sample();
        let b = tx.encode().unwrap();
        assert_eq!(Tx::decode(&b).unwrap(), tx);
        let j = serde_json::to_string(&TxJson::from_bytes(&b)).unwrap();
        let back: TxJson = serde_json::from_str(&j).unwrap();
        assert_eq!(back.to_bytes().unwrap(), b);
        assert!(j.contains("\"amount\":\"10000\""), "{j}");
    }

    #[test]
    fn decode_is_strict() {
        let b = sample().encode().unwrap();
        let mut extra = b.clone();
        extra.push(0);
        assert!(Tx::decode(&extra).unwrap_err().what.contains("trailing"));
        assert!(Tx::decode(&b[..b.len() - 1]).is_err());
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(Tx::decode(&v2).unwrap_err().what.contains("version"));
        assert!(matches!(TxJson::from_bytes(&extra), TxJson::Raw { .. }));
    }

    #[test]
    fn signing_message_matches_seed_format() {
        let mut tx = sample();
        tx.from = "kray_bc11ec6ee659d2364a91e60e7d485dfa".into();
        tx.to = "kray_0d735c11a128792366fba42861b69777".into();
        assert_eq!(hex::encode(tx.signing_hash()), "9caa06196bc2df95f2b95c65880966dc3a9c6ba12a2a40d9844eebab6d432620");
    }

    #[test]
    fn static_checks() {
        let p = Profile::load("mainnet").unwrap();
        assert!(sample().check(&p).is_ok());
        let mut t = sample();
        t.tx_type = "nft_mint".into();
        assert!(matches!(t.check(&p), Err(TxFormatError::Unsupported(_))));
        let mut t = sample();
        t.amount = 0;
        assert!(t.check(&p).is_err());
        let mut t = sample();
        t.to = "bcrt1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0wasuu3a4l".into();
        assert!(t.check(&p).is_err());
        let mut t = sample();
        t.tx_type = "withdrawal".into();
        t.to = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into();
        t.to_index = None;
        assert!(t.check(&p).is_ok());
        t.amount = 1500;
        assert!(t.check(&p).unwrap_err().to_string().contains("whole number"));
        assert!(OutPointRef::parse(&format!("{}:0", "ab".repeat(32))).is_some());
        assert!(OutPointRef::parse(&format!("{}:01", "ab".repeat(32))).is_none());
        assert!(OutPointRef::parse(&format!("{}:0", "AB".repeat(32))).is_none());
    }

    #[test]
    fn signing_hash_is_sha256_of_the_message() {
        let numbers = [
            0,
            1,
            9,
            10,
            99,
            100,
            12_345,
            999_999_999,
            1_000_000_000,
            u32::MAX as u64,
            1 << 53,
            9_999_999_999_999_999_999,
            10_000_000_000_000_000_000,
            i64::MAX as u64,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        let texts = ["", ":", "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr", "é€𝄞 ", "a:b:c"];
        let mut n = 0;
        for (k, &amount) in numbers.iter().enumerate() {
            for &nonce in &numbers {
                let mut t = sample();
                t.amount = amount;
                t.nonce = nonce;
                t.from = texts[k % texts.len()].into();
                t.to = texts[(k + 2) % texts.len()].into();
                t.tx_type = ["transfer", "withdrawal", "deposit", "", "x_y"][k % 5].into();
                let want = sha256(format!("{}:{}:{}:{}:{}", t.from, t.to, t.amount, t.nonce, t.tx_type).as_bytes());
                assert_eq!(t.signing_hash(), want, "{t:?}");
                assert_eq!(t.signing_hash(), sha256(t.signing_message().as_bytes()));
                n += 1;
            }
        }
        assert_eq!(n, numbers.len() * numbers.len());
        let mut buf = [0u8; U64_DIGITS];
        for v in numbers {
            assert_eq!(decimal(v, &mut buf), v.to_string().as_bytes());
        }
    }

    #[test]
    fn cached_check_is_the_check() {
        let main = Profile::load("mainnet").unwrap();
        let regtest = Profile::load("regtest").unwrap();
        let a = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr";
        let b = "bc1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0was9fqzwh";
        let mut txs = vec![sample()];
        let mut t = sample();
        t.to = a.to_uppercase();
        txs.push(t);
        let mut t = sample();
        t.from = "bcrt1p4qhjn9zdvkux4e44uhx8tc55attvtyu358kutcqkudyccelu0wasuu3a4l".into();
        txs.push(t);
        let mut t = sample();
        t.from = b.into();
        t.to = a.into();
        txs.push(t);
        let mut t = sample();
        t.tx_type = "withdrawal".into();
        t.to = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into();
        t.to_index = None;
        t.amount = 100_000_000;
        txs.push(t);
        let mut t = sample();
        t.tx_type = "withdrawal".into();
        t.to = a.into();
        t.to_index = None;
        txs.push(t);
        let mut t = sample();
        t.tx_type = "deposit".into();
        t.from = format!("{}:0", "ab".repeat(32));
        t.nonce = 0;
        t.pubkey = [0; 32];
        t.signature = [0; 64];
        t.from_index = None;
        t.amount = 100_000_000;
        txs.push(t);
        let mut t = sample();
        t.to = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into();
        txs.push(t);
        let mut t = sample();
        t.amount = 0;
        txs.push(t);
        // The first cache learns on both networks in turn (so it starts over at each switch), the
        // second only on mainnet (so the regtest checks see a cache of another network).
        let mut caches = [AddressCache::default(), AddressCache::default()];
        for round in 0..3 {
            for p in [&main, &regtest] {
                for (c, cache) in caches.iter_mut().enumerate() {
                    for (i, t) in txs.iter().enumerate() {
                        let want = t.check(p);
                        let got = t.check_cached(p, cache);
                        let what = format!("round {round}, {}, cache {c}, tx {i}", p.network);
                        assert_eq!(got.as_ref().map(|(c, _)| c.clone()).map_err(|e| e.clone()), want, "{what}");
                        if let Ok((checked, true)) = got {
                            if c == 0 || p.network == main.network {
                                cache.learn(p.network, t, &checked);
                            }
                        }
                    }
                }
            }
        }
        assert!(!caches[0].is_empty());
        let mut c = AddressCache::default();
        c.learn(main.network, &txs[3], &txs[3].check(&main).unwrap());
        assert_eq!(c.len(), 2);
        assert!(c.get(a, main.network).is_some() && c.get(a, regtest.network).is_none());
        assert!(txs[3].check_cached(&main, &c).is_ok_and(|(_, fresh)| !fresh));
        assert!(txs[0].check_cached(&main, &c).is_ok_and(|(_, fresh)| !fresh));
        let mut t = sample();
        t.from = crate::address::format_l2_address(&AccountKey([5; 32]), regtest.network);
        t.to = t.from.clone();
        assert!(t.check_cached(&regtest, &c).is_ok_and(|(_, fresh)| fresh), "{:?}", t.check(&regtest));
        c.learn(regtest.network, &t, &t.check(&regtest).unwrap());
        assert_eq!(c.len(), 1);
        assert!(t.check_cached(&regtest, &c).is_ok_and(|(_, fresh)| !fresh));
        assert!(txs[3].check_cached(&main, &c).is_ok_and(|(_, fresh)| fresh));
    }
}
