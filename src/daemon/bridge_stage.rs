//! The bridge stage: the watcher's bridge rows and the replayed L2 state, judged together
//! ([`kray_watcher::judge::judge_bridge`]): deposits credited once and in time, every bridge spend a
//! payout of a mature withdrawal, the bridge solvent.

use std::collections::BTreeMap;

use anyhow::Context;
use kray_replayer::address::parse_l1_address;
use kray_replayer::state::State;
use kray_replayer::Profile;
use kray_watcher::judge::{
    judge_bridge, AnchorReport, BridgeInputs, BridgeParams, BridgeReport, BridgeSpend, Credit, DepositSeen, Payout,
    Withdrawal,
};
use kray_watcher::store::{Outpoint, Store};

/// Inputs from the replay stage.
pub struct L2View<'a> {
    /// The state after the last valid batch.
    pub state: &'a State,
    /// The first faulty batch.
    pub first_bad_batch: Option<u64>,
    /// The highest `l1_height` a replayed batch declares.
    pub l2_l1_height: Option<u64>,
}

/// Judges the bridge whose scriptPubKey is `bridge_script` at L1 height `tip`.
pub async fn judge(
    store: &Store,
    profile: &Profile,
    bridge_script: &bitcoin::ScriptBuf,
    l2: L2View<'_>,
    anchors: &AnchorReport,
    tip: u64,
    now: i64,
) -> anyhow::Result<BridgeReport> {
    let script_hex = hex::encode(bridge_script.as_bytes());
    let unit = u128::from(profile.credits_per_rune_unit().max(1));
    let deposits: Vec<DepositSeen> = store
        .bridge_deposits()
        .await
        .context("reading bridge deposits")?
        .into_iter()
        .map(|(d, _)| DepositSeen { outpoint: d.outpoint, height: d.height, amount: d.amount, recipient: d.recipient })
        .collect();
    let unspent: Vec<(Outpoint, u128)> = store
        .unspent_rune_outputs_of_script(&script_hex)
        .await
        .context("reading bridge outputs")?
        .into_iter()
        .map(|o| (o.outpoint, o.amount))
        .collect();
    let credits: Vec<Credit> = l2
        .state
        .deposits()
        .iter()
        .map(|d| Credit {
            outpoint: Outpoint { txid: hex::encode(d.outpoint.txid), vout: d.outpoint.vout },
            batch_id: d.batch_id,
        })
        .collect();
    let withdrawals: Vec<Withdrawal> = l2
        .state
        .withdrawals()
        .iter()
        .map(|w| Withdrawal {
            tx_id: hex::encode(w.tx_id),
            batch_id: w.batch_id,
            script: parse_l1_address(&w.l1_address, profile.network).map(hex::encode).unwrap_or_default(),
            amount: u128::from(w.amount) / unit,
        })
        .collect();
    let mut spends: BTreeMap<String, BridgeSpend> = BTreeMap::new();
    let mut moved: BTreeMap<String, (u128, u128)> = BTreeMap::new();
    for s in store.bridge_spends().await.context("reading bridge spends")? {
        let e = spends.entry(s.spent_by.clone()).or_insert_with(|| BridgeSpend {
            txid: s.spent_by.clone(),
            height: s.height,
            inputs: Vec::new(),
            payouts: s
                .outputs
                .iter()
                .filter(|o| o.script_pubkey != script_hex && o.amount > 0)
                .map(|o| Payout { vout: o.outpoint.vout, script: o.script_pubkey.clone(), amount: o.amount })
                .collect(),
            burned: 0,
        });
        e.inputs.push((s.outpoint.clone(), s.path));
        let m = moved.entry(s.spent_by.clone()).or_insert((0, s.outputs.iter().map(|o| o.amount).sum()));
        m.0 = m.0.saturating_add(s.amount);
    }
    for (txid, (ins, outs)) in moved {
        if let Some(e) = spends.get_mut(&txid) {
            e.burned = ins.saturating_sub(outs);
        }
    }
    let balances: u128 = l2.state.accounts().iter().map(|a| u128::from(a.balance)).sum();
    let params = BridgeParams {
        confirmations: u64::from(profile.confirmations),
        deposit_grace_blocks: u64::from(profile.deposit_grace_blocks),
        challenge_window_blocks: u64::from(profile.challenge_window_blocks),
        anchored: anchors.anchored(),
        first_bad_batch: l2.first_bad_batch,
        l2_l1_height: l2.l2_l1_height,
        liabilities: balances.div_ceil(unit),
    };
    let spends: Vec<BridgeSpend> = spends.into_values().collect();
    Ok(judge_bridge(
        BridgeInputs {
            deposits: &deposits,
            unspent: &unspent,
            credits: &credits,
            withdrawals: &withdrawals,
            spends: &spends,
        },
        tip,
        &params,
        now,
    ))
}
