//! The guardian's own coins: its key (a BIP-86 single key read from a 0600 file), coin selection
//! over its confirmed UTXOs and the Taproot key-path signature of the transactions it builds.
//!
//! The key is never logged: [`GuardianKey`]'s `Debug` prints only the public key.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak, TweakedKeypair, XOnlyPublicKey};
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{taproot, Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut};
use bitcoin::{Weight, Witness};
use thiserror::Error;

/// Blocks a coinbase output must wait before it can be spent.
pub const COINBASE_MATURITY: u64 = 100;

/// Smallest change output kept (the P2TR dust limit); less goes to the fee.
pub const P2TR_DUST: Amount = Amount::from_sat(330);

/// Errors reading the key file.
#[derive(Debug, Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("cannot read the guardian key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Group or others may read or write the file.
    #[error("the guardian key file {path} has permissions {mode:o}; it must be 0600 (run `chmod 600 {path}`)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The content is not 64 hex digits of a valid secp256k1 secret key (the content is not echoed).
    #[error("the guardian key file {0} must hold one secret key as 64 hex digits")]
    Format(PathBuf),
}

/// The guardian's BIP-86 key: a single secp256k1 key spending by Taproot key path, no script tree.
#[derive(Clone)]
pub struct GuardianKey {
    secp: Secp256k1<All>,
    keypair: Keypair,
    tweaked: TweakedKeypair,
    network: Network,
}

impl fmt::Debug for GuardianKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardianKey").field("public_key", &self.public_key()).finish_non_exhaustive()
    }
}

impl GuardianKey {
    /// Reads the key from `path`: 64 hex digits (surrounding whitespace ignored). The file must not be
    /// accessible to group or others (mode 0600 or stricter), else it is refused.
    pub fn load(path: &Path, network: Network) -> Result<Self, KeyError> {
        check_permissions(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Format(path.to_path_buf()))?;
        let sk = SecretKey::from_slice(&bytes).map_err(|_| KeyError::Format(path.to_path_buf()))?;
        Ok(Self::from_secret_key(sk, network))
    }

    /// The key from a secret key (tests, key generation).
    pub fn from_secret_key(sk: SecretKey, network: Network) -> Self {
        let secp = Secp256k1::new();
        let keypair = Keypair::from_secret_key(&secp, &sk);
        let tweaked = keypair.tap_tweak(&secp, None);
        Self { secp, keypair, tweaked, network }
    }

    /// The internal x-only public key (the guardian's identity, e.g. for anchoring turns).
    pub fn public_key(&self) -> XOnlyPublicKey {
        self.keypair.x_only_public_key().0
    }

    /// The BIP-86 address.
    pub fn address(&self) -> Address {
        Address::p2tr(&self.secp, self.public_key(), None, self.network)
    }

    /// The BIP-86 output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address().script_pubkey()
    }

    /// Signs every input of `tx` by key path (`SIGHASH_DEFAULT`); `prevouts` are the spent outputs
    /// in input order (all must be this key's).
    pub fn sign(&self, tx: &mut Transaction, prevouts: &[TxOut]) -> Result<(), CoinError> {
        let keypair = self.tweaked.to_keypair();
        for index in 0..tx.input.len() {
            let sighash = SighashCache::new(&*tx)
                .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), TapSighashType::Default)
                .map_err(|e| CoinError::Sighash { index, reason: e.to_string() })?;
            let msg = Message::from_digest(sighash.to_byte_array());
            let signature = self.secp.sign_schnorr(&msg, &keypair);
            let sig = taproot::Signature { signature, sighash_type: TapSighashType::Default };
            tx.input[index].witness = Witness::p2tr_key_spend(&sig);
        }
        Ok(())
    }
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions { path: path.to_path_buf(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

/// One confirmed unspent output of the guardian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utxo {
    /// Where it is.
    pub outpoint: OutPoint,
    /// Its value and script.
    pub txout: TxOut,
    /// Height of the block holding it.
    pub height: u64,
    /// Whether it is a coinbase output (subject to maturity).
    pub coinbase: bool,
}

impl Utxo {
    /// Whether it may go into a transaction for the block after `tip`.
    pub fn is_spendable(&self, tip: u64) -> bool {
        !self.coinbase || tip.saturating_add(1) >= self.height.saturating_add(COINBASE_MATURITY)
    }
}

/// Errors building the guardian's transactions.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoinError {
    /// The spendable coins do not cover the outputs plus the fee.
    #[error("insufficient funds: need {needed}, have {available} spendable")]
    InsufficientFunds {
        /// Outputs plus the fee when selection gave up.
        needed: Amount,
        /// What the usable coins add up to.
        available: Amount,
    },
    /// An input that must be spent is not among the coins.
    #[error("outpoint {0} is not a known coin")]
    UnknownCoin(OutPoint),
    /// Amount arithmetic overflowed.
    #[error("amount overflow")]
    Overflow,
    /// The sighash could not be computed.
    #[error("sighash of input {index}: {reason}")]
    Sighash {
        /// Input index.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// An unsigned transaction with its spent outputs and fee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funded {
    /// The transaction (witnesses empty).
    pub tx: Transaction,
    /// The spent outputs, in input order.
    pub prevouts: Vec<TxOut>,
    /// The fee paid.
    pub fee: Amount,
}

/// The vsize of `tx` once every input carries a 64-byte key-path signature.
pub fn signed_vsize(tx: &Transaction) -> u64 {
    let mut t = tx.clone();
    for i in &mut t.input {
        let mut w = Witness::new();
        w.push([0u8; 64]);
        i.witness = w;
    }
    t.weight().to_vbytes_ceil()
}

/// Selects coins for `outputs` at `fee_rate`: first `must_spend` (a bump keeps the original's inputs),
/// then the largest spendable coins not in `reserved`; change above dust goes to `change`. Every
/// input signals RBF. Deterministic for the same coins.
pub fn select_coins(
    coins: &[Utxo],
    reserved: &BTreeSet<OutPoint>,
    must_spend: &[OutPoint],
    outputs: &[TxOut],
    change: &ScriptBuf,
    fee_rate: FeeRate,
    tip: u64,
) -> Result<Funded, CoinError> {
    let out_sum = sum(outputs.iter().map(|o| o.value))?;
    let mut chosen: Vec<&Utxo> = Vec::new();
    for op in must_spend {
        chosen.push(coins.iter().find(|c| c.outpoint == *op).ok_or(CoinError::UnknownCoin(*op))?);
    }
    let mut candidates: Vec<&Utxo> = coins
        .iter()
        .filter(|c| c.is_spendable(tip) && !reserved.contains(&c.outpoint) && !must_spend.contains(&c.outpoint))
        .collect();
    candidates.sort_by(|a, b| b.txout.value.cmp(&a.txout.value).then(a.outpoint.cmp(&b.outpoint)));
    let mut candidates = candidates.into_iter();
    loop {
        let in_sum = sum(chosen.iter().map(|c| c.txout.value))?;
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: chosen
                .iter()
                .map(|c| TxIn {
                    previous_output: c.outpoint,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs.to_vec(),
        };
        let fee_plain = fee_of(&tx, fee_rate)?;
        tx.output.push(TxOut { value: Amount::ZERO, script_pubkey: change.clone() });
        let fee_change = fee_of(&tx, fee_rate)?;
        let need_change = out_sum.checked_add(fee_change).and_then(|a| a.checked_add(P2TR_DUST));
        let need_plain = out_sum.checked_add(fee_plain).ok_or(CoinError::Overflow)?;
        if !chosen.is_empty() && need_change.is_some_and(|n| in_sum >= n) {
            let last = tx.output.len() - 1;
            tx.output[last].value = in_sum - out_sum - fee_change;
            let prevouts = chosen.iter().map(|c| c.txout.clone()).collect();
            return Ok(Funded { tx, prevouts, fee: fee_change });
        }
        if !chosen.is_empty() && in_sum >= need_plain {
            tx.output.pop();
            let prevouts = chosen.iter().map(|c| c.txout.clone()).collect();
            return Ok(Funded { tx, prevouts, fee: in_sum - out_sum });
        }
        match candidates.next() {
            Some(c) => chosen.push(c),
            None => return Err(CoinError::InsufficientFunds { needed: need_plain, available: in_sum }),
        }
    }
}

/// What the spendable, unreserved coins add up to.
pub fn spendable_total(coins: &[Utxo], reserved: &BTreeSet<OutPoint>, tip: u64) -> Amount {
    coins
        .iter()
        .filter(|c| c.is_spendable(tip) && !reserved.contains(&c.outpoint))
        .fold(Amount::ZERO, |acc, c| acc.checked_add(c.txout.value).unwrap_or(Amount::MAX))
}

/// The fee of a one-input, OP_RETURN-plus-change transaction at `rate` (the "next action" cost).
pub fn typical_action_fee(rate: FeeRate) -> Amount {
    // 1 key-path input, a 45-byte OP_RETURN and a P2TR change: ~ 154 vB; rounded up generously.
    rate.fee_wu(Weight::from_vb_unchecked(200)).unwrap_or(Amount::MAX)
}

fn fee_of(tx: &Transaction, rate: FeeRate) -> Result<Amount, CoinError> {
    rate.fee_vb(signed_vsize(tx)).ok_or(CoinError::Overflow)
}

fn sum(amounts: impl Iterator<Item = Amount>) -> Result<Amount, CoinError> {
    amounts.into_iter().try_fold(Amount::ZERO, |acc, a| acc.checked_add(a)).ok_or(CoinError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Txid;
    use kray_replayer::l1payload::anchor_script;

    fn key() -> GuardianKey {
        GuardianKey::from_secret_key(SecretKey::from_slice(&[7u8; 32]).expect("sk"), Network::Regtest)
    }

    fn coin(k: &GuardianKey, n: u8, sats: u64, coinbase: bool, height: u64) -> Utxo {
        Utxo {
            outpoint: OutPoint { txid: Txid::from_byte_array([n; 32]), vout: 0 },
            txout: TxOut { value: Amount::from_sat(sats), script_pubkey: k.script_pubkey() },
            height,
            coinbase,
        }
    }

    fn anchor() -> Vec<TxOut> {
        vec![TxOut { value: Amount::ZERO, script_pubkey: anchor_script(&[1u8; 32]) }]
    }

    #[test]
    fn key_file_needs_0600_and_hex() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("guardian.key");
        std::fs::write(&path, format!("{}\n", hex::encode([7u8; 32]))).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = GuardianKey::load(&path, Network::Regtest).expect_err("world-readable key refused");
        assert!(matches!(err, KeyError::Permissions { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("0600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let k = GuardianKey::load(&path, Network::Regtest).expect("0600 key loads");
        assert_eq!(k.public_key(), key().public_key());
        // Debug never shows the secret.
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode([7u8; 32])), "{dbg}");
        std::fs::write(&path, "not a key").expect("write");
        let err = GuardianKey::load(&path, Network::Regtest).expect_err("junk refused");
        assert!(matches!(err, KeyError::Format(_)));
        assert!(!err.to_string().contains("not a key"), "content not echoed");
    }

    #[test]
    fn selection_is_largest_first_skips_reserved_and_immature() {
        let k = key();
        let coins = vec![
            coin(&k, 1, 5_000, false, 10),
            coin(&k, 2, 50_000, false, 10),
            coin(&k, 3, 900_000, true, 150), // immature at tip 200
            coin(&k, 4, 80_000, false, 10),
        ];
        let reserved: BTreeSet<OutPoint> = [coins[3].outpoint].into_iter().collect();
        let rate = FeeRate::from_sat_per_vb_u32(2);
        let f = select_coins(&coins, &reserved, &[], &anchor(), &k.script_pubkey(), rate, 200).expect("funded");
        assert_eq!(f.tx.input.len(), 1);
        assert_eq!(f.tx.input[0].previous_output, coins[1].outpoint, "largest unreserved mature coin");
        assert!(f.tx.input.iter().all(|i| i.sequence.is_rbf()));
        assert_eq!(f.tx.output.len(), 2, "anchor + change");
        assert_eq!(f.tx.output[1].value + f.fee, Amount::from_sat(50_000));
        assert_eq!(f.fee, rate.fee_vb(signed_vsize(&f.tx)).expect("fee"));
        // Once mature, the coinbase is the largest.
        let f = select_coins(&coins, &reserved, &[], &anchor(), &k.script_pubkey(), rate, 249).expect("funded");
        assert_eq!(f.tx.input[0].previous_output, coins[2].outpoint);
        // Not enough.
        let err = select_coins(
            &coins[..1],
            &BTreeSet::new(),
            &[],
            &anchor(),
            &k.script_pubkey(),
            FeeRate::from_sat_per_vb_u32(100),
            200,
        )
        .expect_err("too poor");
        assert!(matches!(err, CoinError::InsufficientFunds { available, .. } if available == Amount::from_sat(5_000)));
        assert_eq!(spendable_total(&coins, &reserved, 200), Amount::from_sat(55_000));
    }

    #[test]
    fn must_spend_keeps_inputs_and_adds_more_when_needed() {
        let k = key();
        let coins = vec![coin(&k, 1, 1_000, false, 10), coin(&k, 2, 60_000, false, 10)];
        let rate = FeeRate::from_sat_per_vb_u32(20);
        let must = [coins[0].outpoint];
        let f = select_coins(&coins, &BTreeSet::new(), &must, &anchor(), &k.script_pubkey(), rate, 50).expect("ok");
        assert_eq!(f.tx.input[0].previous_output, coins[0].outpoint);
        assert_eq!(f.tx.input.len(), 2, "1,000 sat cannot pay 20 sat/vB alone");
        // Small change goes to the fee instead of a dust output.
        let f = select_coins(
            &coins[..1],
            &BTreeSet::new(),
            &must,
            &anchor(),
            &k.script_pubkey(),
            FeeRate::from_sat_per_vb_u32(7),
            50,
        )
        .expect("ok");
        assert_eq!(f.tx.output.len(), 1);
        assert_eq!(f.fee, Amount::from_sat(1_000));
    }

    #[test]
    fn signs_a_valid_key_path_spend() {
        let k = key();
        let coins = vec![coin(&k, 1, 100_000, false, 10)];
        let mut f = select_coins(
            &coins,
            &BTreeSet::new(),
            &[],
            &anchor(),
            &k.script_pubkey(),
            FeeRate::from_sat_per_vb_u32(3),
            50,
        )
        .expect("ok");
        let unsigned_vsize = signed_vsize(&f.tx);
        k.sign(&mut f.tx, &f.prevouts).expect("sign");
        assert_eq!(f.tx.vsize() as u64, unsigned_vsize, "fee estimate matches the signed size");
        // Verify the Schnorr signature against the tweaked output key.
        let secp = Secp256k1::verification_only();
        let sighash = SighashCache::new(&f.tx)
            .taproot_key_spend_signature_hash(0, &Prevouts::All(&f.prevouts), TapSighashType::Default)
            .expect("sighash");
        let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(&f.tx.input[0].witness[0]).expect("sig");
        let out_key = XOnlyPublicKey::from_slice(&k.script_pubkey().as_bytes()[2..]).expect("key");
        secp.verify_schnorr(&sig, &Message::from_digest(sighash.to_byte_array()), &out_key).expect("valid signature");
    }
}
