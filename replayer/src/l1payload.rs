//! The KRAY L1 `OP_RETURN` payloads (docs/protocol.md §13): their bytes, scripts and the strict parser.
//! Pure; the transaction builders live in the devnet and the challenger.
//!
//! Every payload is one `OP_RETURN` followed by exactly one minimal push:
//! - anchor: `b"KRAY" || root32` (36 bytes);
//! - deposit tag: `b"KRAY" || b"D" || l2_account_key32` (37 bytes), beside the runestone of a
//!   deposit transaction;
//! - challenge: `b"KRAY" || b"C" || batch_id (u64 big-endian) || proof_hash32` (45 bytes).

use bitcoin::opcodes::all::OP_RETURN;
use bitcoin::script::{Instruction, PushBytesBuf};
use bitcoin::{Amount, Script, ScriptBuf, Transaction, TxOut};

/// The ASCII magic `KRAY` (`4b524159`) that starts every payload.
pub const KRAY_MAGIC: [u8; 4] = *b"KRAY";
/// Length of an anchor payload.
pub const ANCHOR_LEN: usize = 36;
/// Length of a deposit-tag payload.
pub const DEPOSIT_LEN: usize = 37;
/// Length of a challenge payload.
pub const CHALLENGE_LEN: usize = 45;

/// A decoded KRAY payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KrayPayload {
    /// A state-root anchor.
    Anchor([u8; 32]),
    /// A deposit tag naming the 32-byte L2 account key credited.
    Deposit([u8; 32]),
    /// A challenge marker for a batch, committing to a fraud proof.
    Challenge {
        /// The challenged batch.
        batch_id: u64,
        /// Hash of the fraud proof.
        proof_hash: [u8; 32],
    },
}

impl KrayPayload {
    /// The payload bytes (without the `OP_RETURN` and push opcode).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = KRAY_MAGIC.to_vec();
        match self {
            KrayPayload::Anchor(root) => out.extend_from_slice(root),
            KrayPayload::Deposit(key) => {
                out.push(b'D');
                out.extend_from_slice(key);
            }
            KrayPayload::Challenge { batch_id, proof_hash } => {
                out.push(b'C');
                out.extend_from_slice(&batch_id.to_be_bytes());
                out.extend_from_slice(proof_hash);
            }
        }
        out
    }

    /// The `OP_RETURN <payload>` script.
    pub fn to_script(&self) -> ScriptBuf {
        let bytes = self.to_bytes();
        // Payloads are at most 45 bytes, far below the 520-byte push limit.
        let push = PushBytesBuf::try_from(bytes).unwrap_or_default();
        ScriptBuf::new_op_return(push)
    }

    /// A zero-value output carrying the payload.
    pub fn to_txout(&self) -> TxOut {
        TxOut { value: Amount::ZERO, script_pubkey: self.to_script() }
    }
}

/// The anchor script `OP_RETURN <"KRAY" || root>`.
pub fn anchor_script(root: &[u8; 32]) -> ScriptBuf {
    KrayPayload::Anchor(*root).to_script()
}

/// The deposit tag script `OP_RETURN <"KRAY" || "D" || account_key>`.
pub fn deposit_tag_script(account_key: &[u8; 32]) -> ScriptBuf {
    KrayPayload::Deposit(*account_key).to_script()
}

/// The challenge script `OP_RETURN <"KRAY" || "C" || batch_id_be || proof_hash>`.
pub fn challenge_script(batch_id: u64, proof_hash: &[u8; 32]) -> ScriptBuf {
    KrayPayload::Challenge { batch_id, proof_hash: *proof_hash }.to_script()
}

/// Decodes a KRAY payload from an output script; `None` unless the script is exactly
/// `OP_RETURN` plus one minimal push of a well-formed anchor, deposit tag or challenge.
/// (The JavaScript's 28-byte truncated root is not an anchor.)
pub fn parse_kray_payload(script: &Script) -> Option<KrayPayload> {
    let mut it = script.instructions_minimal();
    match it.next()? {
        Ok(Instruction::Op(op)) if op == OP_RETURN => {}
        _ => return None,
    }
    let data = match it.next()? {
        Ok(Instruction::PushBytes(p)) => p.as_bytes(),
        _ => return None,
    };
    if it.next().is_some() {
        return None;
    }
    let rest = data.strip_prefix(&KRAY_MAGIC)?;
    match (data.len(), rest.first()) {
        (ANCHOR_LEN, _) => Some(KrayPayload::Anchor(rest.try_into().ok()?)),
        (DEPOSIT_LEN, Some(b'D')) => Some(KrayPayload::Deposit(rest[1..].try_into().ok()?)),
        (CHALLENGE_LEN, Some(b'C')) => {
            let batch_id = u64::from_be_bytes(rest[1..9].try_into().ok()?);
            let proof_hash = rest[9..].try_into().ok()?;
            Some(KrayPayload::Challenge { batch_id, proof_hash })
        }
        _ => None,
    }
}

/// Finds the KRAY payloads of a transaction, with their output indices.
pub fn kray_payloads(tx: &Transaction) -> Vec<(usize, KrayPayload)> {
    tx.output.iter().enumerate().filter_map(|(i, o)| parse_kray_payload(&o.script_pubkey).map(|p| (i, p))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::opcodes::all::OP_PUSHDATA1;
    use bitcoin::script::Builder;

    #[test]
    fn anchor_layout_is_exact() {
        let root = [0xab; 32];
        let s = anchor_script(&root);
        let b = s.as_bytes();
        assert_eq!(b[0], 0x6a);
        assert_eq!(b[1], 36);
        assert_eq!(&b[2..6], b"KRAY");
        assert_eq!(&b[6..], &root);
        assert_eq!(b.len(), 38);
        assert_eq!(parse_kray_payload(&s), Some(KrayPayload::Anchor(root)));
    }

    #[test]
    fn deposit_and_challenge_roundtrip() {
        let key = [7u8; 32];
        let d = deposit_tag_script(&key);
        assert_eq!(d.as_bytes()[1], 37);
        assert_eq!(&d.as_bytes()[2..7], b"KRAYD");
        assert_eq!(parse_kray_payload(&d), Some(KrayPayload::Deposit(key)));
        let c = challenge_script(0x0102030405060708, &[9u8; 32]);
        assert_eq!(c.as_bytes()[1], 45);
        assert_eq!(&c.as_bytes()[2..7], b"KRAYC");
        assert_eq!(&c.as_bytes()[7..15], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            parse_kray_payload(&c),
            Some(KrayPayload::Challenge { batch_id: 0x0102030405060708, proof_hash: [9u8; 32] })
        );
    }

    #[test]
    fn rejects_non_canonical_payloads() {
        // The JavaScript's truncated 28-byte root.
        let mut js = b"KRAY".to_vec();
        js.extend_from_slice(&[1u8; 28]);
        let s = ScriptBuf::new_op_return(PushBytesBuf::try_from(js).expect("push"));
        assert_eq!(parse_kray_payload(&s), None);
        // Wrong magic.
        let mut bad = b"KRAZ".to_vec();
        bad.extend_from_slice(&[1u8; 32]);
        let s = ScriptBuf::new_op_return(PushBytesBuf::try_from(bad).expect("push"));
        assert_eq!(parse_kray_payload(&s), None);
        // 37 bytes whose tag is not D.
        let mut x = b"KRAYX".to_vec();
        x.extend_from_slice(&[1u8; 32]);
        let s = ScriptBuf::new_op_return(PushBytesBuf::try_from(x).expect("push"));
        assert_eq!(parse_kray_payload(&s), None);
        // Trailing data after the push.
        let mut two = anchor_script(&[2u8; 32]).into_bytes();
        two.extend_from_slice(&[0x01, 0x00]);
        assert_eq!(parse_kray_payload(&ScriptBuf::from_bytes(two)), None);
        // Non-minimal push (OP_PUSHDATA1 for 36 bytes).
        let mut nm = vec![0x6a, OP_PUSHDATA1.to_u8(), 36];
        nm.extend_from_slice(b"KRAY");
        nm.extend_from_slice(&[3u8; 32]);
        assert_eq!(parse_kray_payload(&ScriptBuf::from_bytes(nm)), None);
        // Not an OP_RETURN.
        let p = Builder::new().push_slice([0u8; 36]).into_script();
        assert_eq!(parse_kray_payload(&p), None);
        assert_eq!(parse_kray_payload(Script::new()), None);
    }
}
