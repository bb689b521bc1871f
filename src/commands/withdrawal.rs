//! `kray-guardian withdrawal <id|address>`: asks a running guardian whether a withdrawal is safe and
//! prints the chain of evidence with the verdict. The exit code is the verdict (see [`run`]).

use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// Arguments of `withdrawal`.
#[derive(clap::Args, Debug)]
pub struct WithdrawalArgs {
    /// A withdrawal tx id (64 hex), an L2 address (the sender) or an L1 destination address.
    pub query: String,
    /// The guardian's public API.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "KRAY_GUARDIAN_URL")]
    pub guardian: String,
    /// Print the guardian's JSON answer instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Exit code for SAFE.
pub const EXIT_SAFE: u8 = 0;
/// Exit code for PENDING.
pub const EXIT_PENDING: u8 = 10;
/// Exit code for AT RISK.
pub const EXIT_AT_RISK: u8 = 11;
/// Exit code for UNKNOWN (the guardian is not synced).
pub const EXIT_UNKNOWN: u8 = 12;

/// Run `withdrawal`; the exit code is the verdict: 0 SAFE, 10 PENDING, 11 AT RISK, 12 UNKNOWN; with
/// several withdrawals (an address query) the worst of them (AT RISK, UNKNOWN, PENDING, SAFE in that
/// order). 1 for errors, including "no such withdrawal".
pub fn run(a: &WithdrawalArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(query(a))
}

fn is_id(q: &str) -> bool {
    q.len() == 64 && q.chars().all(|c| c.is_ascii_hexdigit())
}

async fn query(a: &WithdrawalArgs) -> anyhow::Result<u8> {
    let q = a.query.trim();
    anyhow::ensure!(!q.is_empty() && q.len() <= 128, "give a withdrawal id or an address (at most 128 characters)");
    let base = a.guardian.trim_end_matches('/');
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = if is_id(q) {
        format!("{base}/v1/withdrawals/{q}")
    } else {
        let mut u =
            reqwest::Url::parse(&format!("{base}/v1/withdrawals")).with_context(|| format!("guardian URL {base}"))?;
        u.query_pairs_mut().append_pair("address", q);
        u.to_string()
    };
    let resp = client.get(&url).send().await.with_context(|| format!("asking the guardian at {base}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.with_context(|| format!("the guardian's answer to {url} is not JSON"))?;
    if status.as_u16() == 503 {
        if a.json {
            println!("{body}");
        } else {
            println!("UNKNOWN: {}", body["error"].as_str().unwrap_or("the guardian is not synced"));
        }
        return Ok(EXIT_UNKNOWN);
    }
    if !status.is_success() {
        anyhow::bail!("the guardian answered {status}: {}", body["error"].as_str().unwrap_or("no detail"));
    }
    let list: Vec<Value> =
        if is_id(q) { vec![body.clone()] } else { body["withdrawals"].as_array().cloned().unwrap_or_default() };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if list.is_empty() {
        anyhow::bail!("no withdrawal from or to {q} in the batches this guardian replayed valid");
    }
    let mut worst = EXIT_SAFE;
    for w in &list {
        if !a.json {
            print_report(w);
        }
        worst = worse(worst, code_of(w["verdict"].as_str().unwrap_or("UNKNOWN")));
    }
    Ok(worst)
}

/// The exit code of a verdict.
pub fn code_of(verdict: &str) -> u8 {
    match verdict {
        "SAFE" => EXIT_SAFE,
        "PENDING" => EXIT_PENDING,
        "AT RISK" => EXIT_AT_RISK,
        _ => EXIT_UNKNOWN,
    }
}

fn rank(code: u8) -> u8 {
    match code {
        EXIT_AT_RISK => 3,
        EXIT_UNKNOWN => 2,
        EXIT_PENDING => 1,
        _ => 0,
    }
}

fn worse(a: u8, b: u8) -> u8 {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn print_report(w: &Value) {
    let s = |k: &str| w[k].as_str().unwrap_or("?").to_string();
    println!("withdrawal {}", s("id"));
    println!("  {} credits from {} to {} (batch {})", s("amount"), s("from"), s("l1_address"), w["batch_id"]);
    for step in w["evidence"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let mark = match step["status"].as_str().unwrap_or("") {
            "ok" => "[ok]     ",
            "waiting" => "[waiting]",
            "bad" => "[BAD]    ",
            _ => "[?]      ",
        };
        println!("  {mark} {}", step["detail"].as_str().unwrap_or(""));
    }
    println!("  verdict: {} ({})", s("verdict"), s("reason"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worst_verdict_sets_the_exit_code() {
        assert_eq!(code_of("SAFE"), 0);
        assert_eq!(worse(code_of("SAFE"), code_of("PENDING")), EXIT_PENDING);
        assert_eq!(worse(code_of("AT RISK"), code_of("UNKNOWN")), EXIT_AT_RISK);
        assert_eq!(worse(code_of("PENDING"), code_of("whatever")), EXIT_UNKNOWN);
        assert!(is_id(&"ab".repeat(32)));
        assert!(!is_id("bcrt1pxyz"));
    }
}
