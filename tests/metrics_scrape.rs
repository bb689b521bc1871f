//! The real `GET /metrics` of a `kray-guardian run` process watching a devnet on a regtest bitcoind: the
//! values move as the devnet does (L1 blocks mined, batches replayed, a `wrong-gas` fault found), and every
//! metric name the Grafana dashboards and the Prometheus rules in `dashboards/` use is in the scrape.
//! Also: `kray-guardian --version` names the crate version and the git commit.
//!
//! Needs the regtest bitcoind (`BITCOIND_EXE` or the install cache); `KRAY_SKIP_BITCOIND=1` skips the devnet
//! test (not the `--version` test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kray_devnet::bitcoind::free_port;
use kray_devnet::guardian::guardian_toml;
use kray_devnet::runner::{Devnet, DevnetConfig};

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

mod support;

use support::{transfers, Guardian};

fn skip() -> bool {
    support::skip("the /metrics scrape test")
}

// ---------------------------------------------------------------------------------------------------------
// Parsing a scrape.

/// One sample of a scrape: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses `name{a="x",b="y"} value` (labels optional); `None` for comments, blank or malformed lines.
fn parse_sample(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let (series, value) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].find('}')?;
            (&line[..=close], line[close + 1..].trim())
        }
        None => line.split_once(' ').map(|(s, v)| (s, v.trim()))?,
    };
    let value: f64 = value.split(' ').next()?.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        None => (series, BTreeMap::new()),
    };
    Some(Sample { name: name.to_string(), labels, value })
}

/// Parses `a="x",b="y"` (label values here have no escaped quotes: every label is a fixed kebab-case enum).
fn parse_labels(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=')?;
        out.insert(k.trim().to_string(), v.trim().strip_prefix('"')?.strip_suffix('"')?.to_string());
    }
    Some(out)
}

/// Every sample of a scrape.
fn samples(scrape: &str) -> Vec<Sample> {
    scrape.lines().filter_map(parse_sample).collect()
}

/// The sum of the samples named `name` whose labels include every pair of `labels`; `None` when no sample
/// matches (a missing series is an error, not a zero).
fn value(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(scrape)
        .into_iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// [`value`], or a panic naming the series and showing the scrape.
fn must(scrape: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape:\n{scrape}"))
}

#[test]
fn scrape_parsing() {
    let text = "# TYPE a gauge\na 3\nb_total{x=\"1\",y=\"p-q\"} 2\nb_total{x=\"2\",y=\"p-q\"} 5.5\nc{} 1\n# EOF\n";
    assert_eq!(value(text, "a", &[]), Some(3.0));
    assert_eq!(value(text, "b_total", &[]), Some(7.5));
    assert_eq!(value(text, "b_total", &[("x", "2")]), Some(5.5));
    assert_eq!(value(text, "b_total", &[("y", "p-q"), ("x", "1")]), Some(2.0));
    assert_eq!(value(text, "b_total", &[("x", "3")]), None);
    assert_eq!(value(text, "b", &[]), None, "a name is matched whole, not as a prefix");
    assert_eq!(value(text, "c", &[]), Some(1.0));
    assert_eq!(samples(text).len(), 4);
}

// ---------------------------------------------------------------------------------------------------------
// Metric names used by `dashboards/` (the extraction of `tests/dashboards.rs`, copied: that file is a test
// crate of its own, with tests that would run twice if it were included here).

/// Every `targets[].expr` of every panel (rows' nested panels included), as written in the dashboard.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<String>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A dashboard expression with Grafana's variables replaced by values PromQL accepts.
fn substitute_grafana_vars(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*");
    assert!(!e.contains('$'), "unknown Grafana variable in {expr:?}: add it to substitute_grafana_vars");
    e
}

/// Values of `key:` in a Prometheus rules YAML file (plain, quoted, or a `>`/`|` block on following lines).
fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let prefix = format!("{key}:");
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("- ").unwrap_or(trimmed).strip_prefix(&prefix) else { continue };
        let indent = line.len() - trimmed.len();
        let rest = rest.trim();
        if rest.starts_with('>') || rest.starts_with('|') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            out.push(block.join(" ").trim().to_string());
        } else {
            let unquoted = rest
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                .unwrap_or(rest);
            out.push(unquoted.to_string());
        }
    }
    out
}

/// PromQL words that are not metric names when they stand alone.
const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];

/// Words followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names a PromQL expression selects: identifiers that are not functions (followed by `(`),
/// keywords, label names or values (inside `{}` or a `by (...)` list), strings, numbers or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_string = |i: usize| -> usize {
        let quote = chars[i];
        let mut j = i + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    let skip_to = |mut j: usize, close: char| -> usize {
        while j < chars.len() && chars[j] != close {
            j = if matches!(chars[j], '"' | '\'' | '`') { skip_string(j) } else { j + 1 };
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(i);
        } else if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_')) {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | ':')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let lower = word.to_ascii_lowercase();
            if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(j) == Some(&'(') {
                    i = skip_to(j + 1, ')');
                }
            } else if chars.get(j) == Some(&'(') || PROMQL_KEYWORDS.contains(&lower.as_str()) {
                // A function or an aggregation operator, or a keyword.
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The sample names of an OpenMetrics/Prometheus text scrape (`name` or `name{labels} value`).
fn scrape_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Every metric name used by a Grafana dashboard or a Prometheus rule in `dashboards/`, with one expression
/// using it.
fn names_used_in_dashboards() -> BTreeMap<String, String> {
    let mut exprs = Vec::new();
    let grafana = root().join("dashboards/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&grafana)
        .expect("read dashboards/grafana")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard JSON in {}", grafana.display());
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        exprs.extend(dashboard_exprs(&json).iter().map(|e| substitute_grafana_vars(e)));
    }
    let rules = root().join("dashboards/prometheus/kray-guardian.rules.yml");
    exprs.extend(yaml_values(&std::fs::read_to_string(rules).expect("read rules"), "expr"));
    let mut used = BTreeMap::new();
    for e in exprs {
        for n in metric_names(&e) {
            used.entry(n).or_insert_with(|| e.clone());
        }
    }
    used
}

#[test]
fn dashboard_name_extraction_finds_the_guardian_metrics() {
    let used = names_used_in_dashboards();
    assert!(used.len() >= 25, "too few metric names found in dashboards/: {:?}", used.keys());
    for n in ["kray_guardian_up", "kray_guardian_sync_height", "kray_guardian_findings_total"] {
        assert!(used.contains_key(n), "{n} not found in dashboards/: {:?}", used.keys());
    }
    let names = metric_names("sum by (class) (rate(a_total{x=\"y\"}[5m])) / on(z) b > 1e3");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_total", "b"]);
}

// ---------------------------------------------------------------------------------------------------------
// A guardian process against a devnet.

/// A guardian process, killed on drop.
/// A `watch` guardian on `d`, with its config and log in `dir`.
fn start_guardian(dir: &Path, d: &Devnet) -> Guardian {
    let port = free_port().expect("port");
    let config = dir.join("guardian.toml");
    let text = guardian_toml(&d.info, "watch", &dir.join("guardian-data"), &format!("127.0.0.1:{port}"));
    std::fs::write(&config, text).expect("config");
    Guardian::spawn(&config, port, &dir.join("guardian.log"), &[])
}

/// `GET /metrics`: the body, after checking the OpenMetrics content type and the `# EOF` terminator.
async fn scrape(client: &reqwest::Client, g: &Guardian) -> Option<String> {
    let resp = client.get(format!("{}/metrics", g.url)).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let ctype = resp.headers().get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?.to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "content type {ctype}");
    let text = resp.text().await.ok()?;
    assert!(text.ends_with("# EOF\n"), "an OpenMetrics scrape ends with # EOF:\n{text}");
    Some(text)
}

/// Scrapes until `ready` holds for the scrape (bounded: 240 attempts, 250 ms apart), and returns it.
async fn scrape_until(client: &reqwest::Client, g: &Guardian, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..240 {
        if let Some(text) = scrape(client, g).await {
            if ready(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the scrape never showed {what}; last scrape:\n{last}\nguardian log:\n{}", g.log_tail());
}

fn l1_blocks(s: &str) -> f64 {
    must(s, "kray_guardian_sync_height", &[("stage", "l1-blocks")])
}

fn replayed(s: &str) -> f64 {
    must(s, "kray_guardian_sync_height", &[("stage", "batches-replayed")])
}

fn verdicts(s: &str, verdict: &str) -> f64 {
    must(s, "kray_guardian_batches_total", &[("verdict", verdict)])
}

/// `findings_total` of one class, over every severity.
fn found(s: &str, class: &str) -> f64 {
    must(s, "kray_guardian_findings_total", &[("class", class)])
}

/// Transfers between the devnet users, so the next batch has transactions (and can carry a batch fault).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_devnet_and_cover_the_dashboards() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = DevnetConfig {
        data_dir: dir.path().join("devnet"),
        users: 3,
        seed: 21,
        faults: vec!["wrong-gas@3".parse().expect("fault")],
        ..DevnetConfig::default()
    };
    let mut d = Devnet::start(cfg).await.expect("devnet");
    d.sync().await.expect("devnet sync");
    let client = reqwest::Client::new();
    let mut g = start_guardian(dir.path(), &d);

    // Before: the guardian has followed L1 to the devnet's tip; no batch is sealed yet.
    let start_height = f64::from(d.height());
    let before = scrape_until(&client, &g, "L1 at the devnet's start height", |s| l1_blocks(s) >= start_height).await;
    assert_eq!(must(&before, "kray_guardian_up", &[]), 1.0);
    assert_eq!(l1_blocks(&before), start_height, "the guardian is not ahead of the node");
    assert_eq!(replayed(&before), 0.0);
    assert_eq!(verdicts(&before, "valid"), 0.0);
    assert_eq!(verdicts(&before, "fault"), 0.0);
    assert_eq!(found(&before, "wrong-gas"), 0.0);
    assert_eq!(must(&before, "kray_guardian_replayed_txs_total", &[]), 0.0);
    assert_eq!(must(&before, "kray_guardian_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), 1.0);

    // Every metric name the dashboards and alert rules use is in the real scrape.
    let names = scrape_names(&before);
    let missing: Vec<_> = names_used_in_dashboards().into_iter().filter(|(n, _)| !names.contains(n)).collect();
    assert!(missing.is_empty(), "used in dashboards/ but not in the daemon's /metrics: {missing:#?}");

    // Batches 1 (the users' deposits) and 2 (transfers): both valid, L1 moves on.
    d.tick().await.expect("tick");
    d.mine(1).await.expect("mine");
    transfers(&d, &client, 3).await;
    let second = d.tick().await.expect("tick");
    assert_eq!(second, 2);
    d.mine(2).await.expect("mine");
    let height = f64::from(d.height());
    let middle = scrape_until(&client, &g, "batch 2 replayed at the new L1 tip", |s| {
        replayed(s) >= 2.0 && l1_blocks(s) >= height
    })
    .await;
    assert!(l1_blocks(&middle) > l1_blocks(&before), "L1 height did not rise with mined blocks");
    assert_eq!(l1_blocks(&middle), height);
    assert_eq!(replayed(&middle), 2.0);
    assert_eq!(verdicts(&middle, "valid"), 2.0);
    assert_eq!(verdicts(&middle, "fault"), 0.0);
    assert_eq!(found(&middle, "wrong-gas"), 0.0);
    assert!(must(&middle, "kray_guardian_replayed_txs_total", &[]) >= 3.0, "3 transfers were replayed");
    assert!(must(&middle, "kray_guardian_replay_duration_seconds_count", &[]) >= 1.0);
    assert!(
        must(&middle, "kray_guardian_last_success_timestamp_seconds", &[("stage", "batches-replayed")]) > 0.0,
        "the replay stage's last success is set"
    );

    // Batch 3 carries the wrong-gas fault; batch 4 comes after it.
    transfers(&d, &client, 3).await;
    assert_eq!(d.tick().await.expect("tick"), 3);
    d.mine(1).await.expect("mine");
    transfers(&d, &client, 2).await;
    let last = d.tick().await.expect("tick");
    d.mine(3).await.expect("mine");
    let height = f64::from(d.height());
    let after = scrape_until(&client, &g, "the wrong-gas finding and the last batch replayed", |s| {
        replayed(s) >= last as f64 && l1_blocks(s) >= height && found(s, "wrong-gas") >= 1.0
    })
    .await;
    assert_eq!(must(&after, "kray_guardian_up", &[]), 1.0);
    assert_eq!(l1_blocks(&after), height);
    assert!(l1_blocks(&after) > l1_blocks(&middle));
    assert_eq!(replayed(&after), last as f64, "batches-replayed reaches the last batch id");
    assert_eq!(must(&after, "kray_guardian_sync_height", &[("stage", "batches-mirrored")]), last as f64);
    assert_eq!(must(&after, "kray_guardian_sync_height", &[("stage", "l1-headers")]), height);
    assert_eq!(must(&after, "kray_guardian_l1_node_lag_blocks", &[]), 0.0);
    assert_eq!(verdicts(&after, "valid"), 2.0, "batches after the fault are not valid");
    assert_eq!(verdicts(&after, "fault"), 1.0);
    assert_eq!(found(&after, "wrong-gas"), 1.0);
    assert_eq!(must(&after, "kray_guardian_findings_total", &[("class", "wrong-gas"), ("origin", "replay")]), 1.0);
    assert!(
        must(&after, "kray_guardian_findings_open", &[("class", "wrong-gas")]) >= 1.0,
        "the wrong-gas finding is open"
    );
    assert_eq!(found(&after, "bad-nonce"), 0.0, "only the injected fault class is counted");
    // The route the Docker HEALTHCHECK calls answers 200 while the guardian watches.
    let health = client.get(format!("{}/health", g.url)).send().await.expect("GET /health");
    assert_eq!(health.status().as_u16(), 200);
    let names = scrape_names(&after);
    let missing: Vec<_> = names_used_in_dashboards().into_iter().filter(|(n, _)| !names.contains(n)).collect();
    assert!(missing.is_empty(), "used in dashboards/ but not in the daemon's /metrics: {missing:#?}");

    // A graceful stop, as the systemd unit and the Docker image do it: SIGTERM, exit status 0.
    let status = g.terminate().await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}; log:\n{}", g.log_tail());
    assert!(g.log_tail().contains("shutting down"), "{}", g.log_tail());
}

// ---------------------------------------------------------------------------------------------------------
// `--version`.

/// Runs `git args` in the repository; its trimmed stdout on success.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(root()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What is wrong with a `--version` line, if anything: it must be `kray-guardian VERSION (HASH)` with the crate
/// version and, in a git checkout, a 12-digit commit of this repository (build.rs embeds `git rev-parse
/// --short=12 HEAD` as of the build; the commit is checked to exist rather than to be HEAD now, since HEAD may
/// have moved since the build). Outside a git checkout the hash is `unknown`.
fn version_problem(line: &str) -> Option<String> {
    let Some(rest) = line.strip_prefix("kray-guardian ") else { return Some("no program name".into()) };
    let Some((version, hash)) = rest.split_once(' ') else { return Some("no hash".into()) };
    if version != env!("CARGO_PKG_VERSION") {
        return Some(format!("version {version}, the crate is {}", env!("CARGO_PKG_VERSION")));
    }
    let Some(hash) = hash.strip_prefix('(').and_then(|h| h.strip_suffix(')')) else {
        return Some("the hash is not in parentheses".into());
    };
    if git(&["rev-parse", "--git-dir"]).is_none() {
        return (hash != "unknown").then(|| format!("{hash} outside a git checkout"));
    }
    if hash.len() != 12 || !hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
        return Some(format!(
            "{hash:?} is not a 12-digit commit (was the binary built where .git is not visible? a build from \
             another sandbox sharing this target dir leaves `unknown` until build.rs runs again)"
        ));
    }
    let commit = format!("{hash}^{{commit}}");
    git(&["cat-file", "-e", &commit]).is_none().then(|| format!("{hash} is not a commit of this repository"))
}

#[test]
fn version_prints_the_crate_version_and_the_git_hash() {
    let out = Command::new(env!("CARGO_BIN_EXE_kray-guardian")).arg("--version").output().expect("run --version");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let line = text.trim_end();
    if let Some(problem) = version_problem(line) {
        panic!("`kray-guardian --version` printed {line:?}: {problem}");
    }
}

#[test]
fn version_check_refuses_what_it_should() {
    let v = env!("CARGO_PKG_VERSION");
    assert!(version_problem("kray-guardian 9.9.9 (unknown)").is_some());
    assert!(version_problem(&format!("kray-guardian {v}")).is_some());
    assert!(version_problem(&format!("kray-guardian {v} 0123456789ab")).is_some());
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        assert!(version_problem(&format!("kray-guardian {v} (unknown)")).is_none());
        return;
    };
    assert_eq!(version_problem(&format!("kray-guardian {v} ({head})")), None);
    assert!(version_problem(&format!("kray-guardian {v} (unknown)")).is_some());
    assert!(version_problem(&format!("kray-guardian {v} ({})", head.to_uppercase())).is_some());
    let not_a_commit = if head.starts_with('0') { "f".repeat(12) } else { "0".repeat(12) };
    assert!(version_problem(&format!("kray-guardian {v} ({not_a_commit})")).is_some());
}

// ---------------------------------------------------------------------------------------------------------
// Packaging (`contrib/`): what can be checked without systemd running or a Docker daemon.

fn contrib(file: &str) -> String {
    std::fs::read_to_string(root().join("contrib").join(file)).unwrap_or_else(|e| panic!("contrib/{file}: {e}"))
}

/// The values of `key=` in a systemd unit, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(str::trim).collect()
}

/// The option flags (`--name`) `kray-guardian run` accepts.
fn run_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_kray-guardian")).args(["run", "--help"]).output().expect("run --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    help.split(|c: char| c.is_whitespace() || c == ',').filter(|w| w.starts_with("--")).map(str::to_string).collect()
}

#[test]
fn systemd_unit_is_hardened_and_valid() {
    let unit = contrib("kray-guardian.service");
    for (key, value) in [
        ("User", "kray-guardian"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("StateDirectory", "kray-guardian"),
        ("ReadWritePaths", "/var/lib/kray-guardian"),
        ("Restart", "on-failure"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert!(unit_values(&unit, key).contains(&value), "{key}={value} missing from contrib/kray-guardian.service");
    }
    for key in ["LimitNOFILE", "TimeoutStopSec"] {
        assert_eq!(unit_values(&unit, key).len(), 1, "{key} missing from contrib/kray-guardian.service");
    }
    // ExecStart runs the daemon with flags the binary has, and its data dir is the writable state directory.
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let args: Vec<&str> = exec[0].split_whitespace().collect();
    assert_eq!(args[..2], ["/usr/local/bin/kray-guardian", "run"], "{args:?}");
    let flags = run_flags();
    assert!(flags.contains("--config") && flags.contains("--data-dir"), "{flags:?}");
    for a in args.iter().filter(|a| a.starts_with("--")) {
        assert!(flags.contains(*a), "ExecStart uses {a}, which `kray-guardian run` does not have: {flags:?}");
    }
    let data_dir = args.iter().position(|a| *a == "--data-dir").map(|i| args[i + 1]);
    assert_eq!(data_dir, Some("/var/lib/kray-guardian"));

    // systemd's own parser: no unknown key, no value it cannot parse (it warns on stderr and exits 0).
    let Some(analyze) =
        ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].into_iter().find(|p| Path::new(p).exists())
    else {
        eprintln!("systemd-analyze not found: skipping `systemd-analyze verify` of the unit");
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let verify = |text: &str| {
        let path = dir.path().join("kray-guardian.service");
        std::fs::write(&path, text).expect("write unit");
        let out = Command::new(analyze).args(["verify", "--man=no"]).arg(&path).output().expect("systemd-analyze");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string())
    };
    // The binary must exist for verify: point ExecStart at the one under test.
    let local = unit.replace("/usr/local/bin/kray-guardian", env!("CARGO_BIN_EXE_kray-guardian"));
    let (ok, stderr) = verify(&local);
    assert!(ok && stderr.is_empty(), "systemd-analyze verify contrib/kray-guardian.service:\n{stderr}");
    // The check is real: a misspelt hardening key is reported.
    let (_, stderr) = verify(&local.replace("ProtectHome=yes", "ProtectHomes=yes"));
    assert!(stderr.contains("ProtectHomes"), "systemd-analyze did not report an unknown key: {stderr:?}");

    // systemd's exposure score of the sandbox, offline: at most 2.0 of 10 ("OK"); an unhardened unit is refused.
    let security = |text: &str| {
        let path = dir.path().join("kray-guardian.service");
        std::fs::write(&path, text).expect("write unit");
        let out = Command::new(analyze)
            .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
            .arg(&path)
            .output()
            .expect("systemd-analyze security");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string())
    };
    let (ok, report) = security(&local);
    assert!(ok && report.contains("Overall exposure level"), "exposure above 2.0:\n{report}");
    let bare = format!("[Service]\nExecStart={} run\n", env!("CARGO_BIN_EXE_kray-guardian"));
    let (ok, report) = security(&bare);
    assert!(!ok, "an unhardened unit passed the exposure threshold:\n{report}");
}

/// `KEY=VALUE` pairs of the Dockerfile's `ENV` instructions (continuation lines joined).
fn dockerfile_env(dockerfile: &str) -> BTreeMap<String, String> {
    let joined = dockerfile.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The arguments of the first instruction `name` (continuation lines joined).
fn dockerfile_instruction(dockerfile: &str, name: &str) -> String {
    let joined = dockerfile.replace("\\\n", " ");
    let prefix = format!("{name} ");
    let line =
        joined.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {name} in Dockerfile"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn dockerfile_matches_the_binary() {
    let df = contrib("Dockerfile");
    assert!(df.contains(" AS builder") && df.contains("COPY --from=builder"), "a multi-stage build");
    assert!(dockerfile_instruction(&df, "FROM").starts_with("rust:"), "the builder is a rust image");
    assert!(df.contains("cargo build --release --locked"), "the release profile, locked dependencies");
    assert!(df.contains("FROM debian:${DEBIAN_RELEASE}-slim"), "a debian-slim runtime");
    let user = dockerfile_instruction(&df, "USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "runs as root: USER {user}");

    let env = dockerfile_env(&df);
    let data_dir = env.get("KRAY_GUARDIAN_DATA_DIR").expect("KRAY_GUARDIAN_DATA_DIR");
    assert!(dockerfile_instruction(&df, "VOLUME").contains(data_dir.as_str()), "the data dir is a volume");
    let listen = env.get("KRAY_GUARDIAN_HTTP_LISTEN").expect("KRAY_GUARDIAN_HTTP_LISTEN");
    let port = listen.rsplit(':').next().expect("port");
    assert_eq!(dockerfile_instruction(&df, "EXPOSE"), port, "EXPOSE is the listen port");
    let health = dockerfile_instruction(&df, "HEALTHCHECK");
    assert!(health.contains(&format!("http://127.0.0.1:{port}/health")), "HEALTHCHECK: {health}");

    // The image's environment is accepted by the binary (an unknown KRAY_GUARDIAN_* name is an error), and
    // wins over the file. The data dir is moved into a temp dir: validation creates it.
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("guardian.toml");
    let bin = env!("CARGO_BIN_EXE_kray-guardian");
    let out = Command::new(bin).args(["init", "--network", "regtest", "--output"]).arg(&config).output().expect("init");
    assert!(out.status.success(), "{out:?}");
    // The example names genesis.json next to it; `init --check` refuses a config without it.
    let gen = dir.path().join("gen");
    let out = Command::new(bin)
        .args(["gen-workload", "--accounts", "2", "--txs", "1", "--batch-size", "1", "--out"])
        .arg(&gen)
        .output()
        .expect("gen-workload");
    assert!(out.status.success(), "{out:?}");
    std::fs::copy(gen.join("genesis.json"), dir.path().join("genesis.json")).expect("genesis");
    let data = dir.path().join("data");
    let mut check = Command::new(bin);
    check.args(["init", "--check"]).arg(&config);
    for (k, v) in &env {
        check.env(k, if k == "KRAY_GUARDIAN_DATA_DIR" { data.display().to_string() } else { v.clone() });
    }
    let out = check.output().expect("init --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the image's environment is refused: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("listen = \"{listen}\"")), "{stdout}");
    assert!(stdout.contains(&format!("data_dir = \"{}\"", data.display())), "{stdout}");
    // A misspelt variable would be refused: the check is real.
    let out = Command::new(bin).args(["init", "--check"]).arg(&config).env("KRAY_GUARDIAN_DATADIR", "x").output();
    assert!(!out.expect("init --check").status.success());
}
