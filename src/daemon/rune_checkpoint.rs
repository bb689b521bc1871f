//! The rune checkpoint file (`rune_checkpoint`): the rune outputs unspent just below `start_height`,
//! so the rune index can start above the etching height.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use bitcoin::{Amount, OutPoint, ScriptBuf};
use kray_watcher::bridge::CheckpointOutput;
use serde::Deserialize;

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    outpoint: String,
    script_pubkey: String,
    value_sats: u64,
    amount: String,
}

/// Parses checkpoint JSON text; errors name the entry and field.
pub fn parse(text: &str) -> anyhow::Result<Vec<CheckpointOutput>> {
    let entries: Vec<Entry> = serde_json::from_str(text).context("not a JSON list of checkpoint outputs")?;
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let outpoint = OutPoint::from_str(&e.outpoint)
                .with_context(|| format!("entry {i}: outpoint {:?} is not txid:vout", e.outpoint))?;
            let script = hex::decode(&e.script_pubkey)
                .with_context(|| format!("entry {i}: script_pubkey {:?} is not hex", e.script_pubkey))?;
            let amount = e
                .amount
                .parse::<u128>()
                .with_context(|| format!("entry {i}: amount {:?} is not a whole number", e.amount))?;
            Ok(CheckpointOutput {
                outpoint,
                script_pubkey: ScriptBuf::from_bytes(script),
                value: Amount::from_sat(e.value_sats),
                amount,
            })
        })
        .collect()
}

/// Reads and parses the checkpoint file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Vec<CheckpointOutput>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading rune_checkpoint {}", path.display()))?;
    parse(&text).with_context(|| format!("rune_checkpoint {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        let txid = "aa".repeat(32);
        let ok = format!(
            r#"[{{"outpoint": "{txid}:1", "script_pubkey": "5120{}", "value_sats": 546, "amount": "340282366920938463463374607431768211455"}}]"#,
            "bb".repeat(32)
        );
        let c = parse(&ok).expect("parses");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].outpoint.vout, 1);
        assert_eq!(c[0].amount, u128::MAX);
        assert_eq!(c[0].value, Amount::from_sat(546));
        let bad = ok.replace("340282366920938463463374607431768211455", "-1");
        assert!(format!("{:#}", parse(&bad).expect_err("negative")).contains("entry 0: amount"));
        let bad = ok.replace(":1", "");
        assert!(format!("{:#}", parse(&bad).expect_err("no vout")).contains("entry 0: outpoint"));
        assert!(parse("{}").is_err());
        assert!(parse(&ok.replace("value_sats", "sats")).is_err(), "unknown fields are refused");
    }
}
