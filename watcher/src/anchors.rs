//! Anchor scanning: the `OP_RETURN "KRAY" || root32` anchors and `"KRAY" "C"` challenge markers of an
//! L1 block, as store effects.
//!
//! Pure: no I/O. The payload format and its strict parser are the replayer's
//! (`kray_replayer::l1payload`, docs/protocol.md §13): an anchor is `OP_RETURN` followed by exactly one
//! minimal push of the 36 bytes `b"KRAY" || root`. Deposit tags and challenge markers are not anchors,
//! nor is the JavaScript prototype's 28-byte truncated root.

use bitcoin::{Block, BlockHash, Script, Transaction};
use kray_replayer::l1payload::{parse_kray_payload, KrayPayload};

use crate::store::{Effect, Outpoint};

/// The anchored root if `script` is exactly `OP_RETURN <"KRAY" || root32>`; `None` for anything else.
pub fn parse_anchor(script: &Script) -> Option<[u8; 32]> {
    match parse_kray_payload(script)? {
        KrayPayload::Anchor(root) => Some(root),
        _ => None,
    }
}

/// The anchors of one transaction: `(output index, root)`.
pub fn tx_anchors(tx: &Transaction) -> Vec<(u32, [u8; 32])> {
    tx.output
        .iter()
        .enumerate()
        .filter_map(|(i, out)| Some((u32::try_from(i).ok()?, parse_anchor(&out.script_pubkey)?)))
        .collect()
}

/// The [`Effect::Anchor`] and [`Effect::Challenge`] rows of `block` (at `height`, hash `hash`), in
/// block order. Height and hash only label the log line:
/// [`Store::apply_block`](crate::store::Store::apply_block) attaches them to the rows.
pub fn anchor_effects(block: &Block, height: u32, hash: BlockHash) -> Vec<Effect> {
    let mut effects = Vec::new();
    for tx in &block.txdata {
        let mut txid = None;
        for (i, out) in tx.output.iter().enumerate() {
            let Ok(vout) = u32::try_from(i) else { continue };
            let Some(payload) = parse_kray_payload(&out.script_pubkey) else { continue };
            let txid = txid.get_or_insert_with(|| tx.compute_txid().to_string()).clone();
            match payload {
                KrayPayload::Anchor(root) => {
                    let root = hex(&root);
                    tracing::info!(height, %hash, %txid, vout, %root, "KRAY anchor found");
                    effects.push(Effect::Anchor { outpoint: Outpoint { txid, vout }, root });
                }
                KrayPayload::Challenge { batch_id, proof_hash } => {
                    let proof_hash = hex(&proof_hash);
                    tracing::warn!(height, %hash, %txid, vout, batch_id, %proof_hash, "KRAY challenge marker found");
                    effects.push(Effect::Challenge { outpoint: Outpoint { txid, vout }, batch_id, proof_hash });
                }
                _ => {}
            }
        }
    }
    effects
}

/// Lowercase hex of `bytes` (in the order given: a root is stored as its bytes, not reversed).
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use bitcoin::absolute::LockTime;
    use bitcoin::block::{Header, Version};
    use bitcoin::hashes::Hash;
    use bitcoin::opcodes::all::OP_RETURN;
    use bitcoin::script::{Builder, PushBytesBuf};
    use bitcoin::transaction::Version as TxVersion;
    use bitcoin::{Amount, CompactTarget, ScriptBuf, TxMerkleNode, TxOut};
    use kray_replayer::l1payload::KRAY_MAGIC;

    use super::*;

    fn op_return(data: &[u8]) -> ScriptBuf {
        ScriptBuf::new_op_return(PushBytesBuf::try_from(data.to_vec()).expect("push"))
    }

    fn payload(tag: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut v = KRAY_MAGIC.to_vec();
        v.extend_from_slice(tag);
        v.extend_from_slice(rest);
        v
    }

    fn tx(scripts: Vec<ScriptBuf>) -> Transaction {
        Transaction {
            version: TxVersion::TWO,
            lock_time: LockTime::ZERO,
            input: vec![],
            output: scripts.into_iter().map(|s| TxOut { value: Amount::ZERO, script_pubkey: s }).collect(),
        }
    }

    fn block(txdata: Vec<Transaction>) -> Block {
        let header = Header {
            version: Version::TWO,
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: CompactTarget::from_consensus(0x207fffff),
            nonce: 0,
        };
        Block { header, txdata }
    }

    #[test]
    fn a_36_byte_anchor_is_accepted() {
        let root = [0xab; 32];
        assert_eq!(parse_anchor(&op_return(&payload(&[], &root))), Some(root));
        // Same bytes as the devnet builder.
        assert_eq!(parse_anchor(&kray_devnet::l1tx::anchor_script(&root)), Some(root));
    }

    #[test]
    fn a_28_byte_js_style_root_is_rejected() {
        assert_eq!(parse_anchor(&op_return(&payload(&[], &[0xab; 24]))), None);
        assert_eq!(parse_anchor(&op_return(&payload(&[], &[0xab; 28]))), None);
        assert_eq!(parse_anchor(&op_return(&payload(&[], &[0xab; 33]))), None);
    }

    #[test]
    fn deposit_tags_and_challenge_markers_are_not_anchors() {
        let key = [3u8; 32];
        assert_eq!(parse_anchor(&kray_devnet::l1tx::deposit_tag_script(&key)), None);
        assert_eq!(parse_anchor(&kray_devnet::l1tx::challenge_script(7, &key)), None);
        assert_eq!(parse_anchor(&op_return(&payload(b"D", &key))), None);
    }

    #[test]
    fn only_exact_op_return_single_push_scripts_count() {
        let data = payload(&[], &[1; 32]);
        let push = PushBytesBuf::try_from(data.clone()).expect("push");
        // Wrong magic.
        let mut wrong = data.clone();
        wrong[0] = b'k';
        assert_eq!(parse_anchor(&op_return(&wrong)), None);
        // A second push after the payload.
        let two = Builder::new().push_opcode(OP_RETURN).push_slice(&push).push_slice([0u8]).into_script();
        assert_eq!(parse_anchor(&two), None);
        // No OP_RETURN.
        let bare = Builder::new().push_slice(&push).into_script();
        assert_eq!(parse_anchor(&bare), None);
        // Non-minimal push (OP_PUSHDATA1 for 36 bytes).
        let mut raw = vec![OP_RETURN.to_u8(), 0x4c, 36];
        raw.extend_from_slice(&data);
        assert_eq!(parse_anchor(&ScriptBuf::from_bytes(raw)), None);
        assert_eq!(parse_anchor(&ScriptBuf::new()), None);
    }

    #[test]
    fn block_effects_list_every_anchor_and_challenge_marker_and_nothing_else() {
        let r1 = [1u8; 32];
        let r2 = [2u8; 32];
        let t1 = tx(vec![op_return(&payload(&[], &[9; 28])), kray_devnet::l1tx::anchor_script(&r1)]);
        let t2 = tx(vec![kray_devnet::l1tx::deposit_tag_script(&r2), kray_devnet::l1tx::challenge_script(1, &r2)]);
        let t2_again = t2.clone();
        let t3 =
            tx(vec![ScriptBuf::new(), kray_devnet::l1tx::anchor_script(&r2), kray_devnet::l1tx::anchor_script(&r1)]);
        let b = block(vec![t1.clone(), t2, t3.clone()]);
        let effects = anchor_effects(&b, 5, b.block_hash());
        let anchor = |t: &Transaction, vout: u32, root: [u8; 32]| Effect::Anchor {
            outpoint: Outpoint { txid: t.compute_txid().to_string(), vout },
            root: hex(&root),
        };
        let challenge = Effect::Challenge {
            outpoint: Outpoint { txid: t2_again.compute_txid().to_string(), vout: 1 },
            batch_id: 1,
            proof_hash: hex(&r2),
        };
        assert_eq!(effects, vec![anchor(&t1, 1, r1), challenge, anchor(&t3, 1, r2), anchor(&t3, 2, r1)]);
        assert_eq!(hex(&[0x00, 0xff, 0x4b]), "00ff4b");
    }
}
