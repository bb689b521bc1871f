//! The monitoring artefacts in `dashboards/` are checked against the real metrics registry and `promtool`:
//! the alert rules pass `promtool check rules` and their unit tests (`promtool test rules`), every PromQL
//! expression of the Grafana dashboards parses, every metric name the dashboards and rules use is in the
//! guardian's `/metrics` encoding, and every `runbook_url` anchor is a heading of `docs/runbook.md`.
//!
//! `promtool` comes from Debian's `prometheus` package: `scripts/install-promtool.sh` installs it. Without it
//! the promtool tests fail, unless `KRAY_SKIP_PROMTOOL=1`. `PROMTOOL=/path/to/promtool` picks a binary.

// `src/metrics.rs` carries its own `#![allow(dead_code)]`: this test uses only part of it.
#[path = "../src/metrics.rs"]
mod metrics;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rules_file() -> PathBuf {
    root().join("dashboards/prometheus/kray-guardian.rules.yml")
}

/// The `promtool` to use, or `None` when it is missing and `KRAY_SKIP_PROMTOOL=1` (the test then skips).
fn promtool() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PROMTOOL").map(PathBuf::from).filter(|p| p.is_file()) {
        return Some(p);
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("promtool")).find(|p| p.is_file()))
        .unwrap_or(None);
    if found.is_none() && std::env::var("KRAY_SKIP_PROMTOOL").as_deref() == Ok("1") {
        eprintln!("promtool not found; skipped because KRAY_SKIP_PROMTOOL=1");
        return None;
    }
    Some(found.expect(
        "promtool not found on PATH: run `bash scripts/install-promtool.sh` (Debian package `prometheus`), \
         set PROMTOOL=/path/to/promtool, or set KRAY_SKIP_PROMTOOL=1 to skip the promtool checks",
    ))
}

/// Runs promtool with `args`; returns success and the combined output.
fn run_promtool(promtool: &Path, args: &[&std::ffi::OsStr], dir: &Path) -> (bool, String) {
    let out = Command::new(promtool).args(args).current_dir(dir).output().expect("run promtool");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every Grafana dashboard JSON file under `dashboards/grafana`.
fn dashboard_files() -> Vec<PathBuf> {
    let dir = root().join("dashboards/grafana");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read dashboards/grafana")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard JSON in {}", dir.display());
    files
}

/// Every `targets[].expr` of every panel (rows' nested panels included), as written in the dashboard.
pub fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
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
pub fn substitute_grafana_vars(expr: &str) -> String {
    let e = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("${instance}", ".*")
        .replace("$instance", ".*");
    assert!(!e.contains('$'), "unknown Grafana variable in {expr:?}: add it to substitute_grafana_vars");
    e
}

/// All PromQL expressions of all dashboards, variables substituted.
fn all_dashboard_exprs() -> Vec<String> {
    let mut exprs = Vec::new();
    for f in dashboard_files() {
        let text = std::fs::read_to_string(&f).expect("read dashboard");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        exprs.extend(dashboard_exprs(&json).iter().map(|e| substitute_grafana_vars(e)));
    }
    exprs
}

/// Values of `key:` in a Prometheus rules YAML file (plain, quoted, or a `>`/`|` block on following lines).
/// Hand-rolled because the package has no YAML dependency; `rule_count` in the tests guards it.
pub fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
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
pub fn metric_names(expr: &str) -> BTreeSet<String> {
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
pub fn scrape_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// The guardian's encoding, as `GET /metrics` serves it.
fn guardian_scrape() -> String {
    metrics::Metrics::new().encode().expect("encode metrics")
}

/// GitHub's anchor of a Markdown heading: lowercase, spaces to `-`, punctuation other than `-`/`_` dropped.
pub fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn metric_name_extraction() {
    let e = r#"sum by (class, severity) (rate(foo_total{a="b", c=~"x|y"}[5m] offset 1h)) / on(x) group_left(y)
               bar:recorded > 0.5 and ignoring(stage) time() - baz{stage="l1-blocks"} > 1e3 or absent(qux)
               unless histogram_quantile(0.99, sum(rate(h_bucket[$__rate_interval])) by (le))"#;
    let names: Vec<String> = metric_names(&substitute_grafana_vars(e)).into_iter().collect();
    assert_eq!(names, ["bar:recorded", "baz", "foo_total", "h_bucket", "qux"]);
    assert!(metric_names("vector(1)").is_empty());
}

#[test]
fn yaml_values_reads_plain_quoted_and_block_values() {
    let y = "rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      runbook_url: \"docs/r.md#a\"\n  \
             - alert: B\n    expr: >\n      x\n        - y\n    for: 5m\n";
    assert_eq!(yaml_values(y, "expr"), ["up == 0", "x - y"]);
    assert_eq!(yaml_values(y, "runbook_url"), ["docs/r.md#a"]);
    assert_eq!(yaml_values(y, "alert"), ["A", "B"]);
}

#[test]
fn rules_pass_promtool_check() {
    let Some(promtool) = promtool() else { return };
    let (ok, out) = run_promtool(&promtool, &["check".as_ref(), "rules".as_ref(), rules_file().as_os_str()], root());
    assert!(ok, "promtool check rules failed:\n{out}");
}

#[test]
fn rules_pass_promtool_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let dir = root().join("dashboards/prometheus");
    let (ok, out) =
        run_promtool(&promtool, &["test".as_ref(), "rules".as_ref(), "kray-guardian.rules.test.yml".as_ref()], &dir);
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Writes `exprs` as recording rules and runs `promtool check rules`, which parses every expression.
fn promtool_parses(promtool: &Path, exprs: &[String]) -> (bool, String) {
    let rules: Vec<_> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:expr_{i}"), "expr": e}))
        .collect();
    // JSON is YAML: promtool reads it as a rules file.
    let file = serde_json::json!({"groups": [{"name": "dashboard-exprs", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-exprs.rules.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&file).expect("json")).expect("write rules");
    run_promtool(promtool, &["check".as_ref(), "rules".as_ref(), path.as_os_str()], dir.path())
}

#[test]
fn every_dashboard_expr_parses() {
    let Some(promtool) = promtool() else { return };
    let exprs = all_dashboard_exprs();
    assert!(exprs.len() >= 30, "only {} expressions found", exprs.len());
    let (ok, out) = promtool_parses(&promtool, &exprs);
    assert!(ok, "a dashboard expression does not parse:\n{out}");
    assert!(out.contains(&format!("{} rules found", exprs.len())), "{out}");
    // The check really parses: a broken expression is refused.
    let (ok, out) = promtool_parses(&promtool, &["sum(rate(kray_guardian_reorgs_total[5m])".to_string()]);
    assert!(!ok, "promtool accepted an unbalanced expression:\n{out}");
}

#[test]
fn every_metric_used_exists_in_the_scrape() {
    let scrape = scrape_names(&guardian_scrape());
    assert!(scrape.contains("kray_guardian_up") && scrape.contains("kray_guardian_reorgs_total"), "{scrape:?}");
    let rules = std::fs::read_to_string(rules_file()).expect("read rules");
    let mut used: Vec<(String, String)> = Vec::new();
    for e in yaml_values(&rules, "expr").into_iter().chain(all_dashboard_exprs()) {
        used.extend(metric_names(&e).into_iter().map(|n| (n, e.clone())));
    }
    assert!(used.len() > 40, "too few metric uses found: {}", used.len());
    let missing: Vec<_> = used.iter().filter(|(n, _)| !scrape.contains(n)).collect();
    assert!(missing.is_empty(), "metrics used but not exported by src/metrics.rs: {missing:#?}");
}

#[test]
fn every_family_is_on_the_dashboard() {
    let used: BTreeSet<String> = all_dashboard_exprs().iter().flat_map(|e| metric_names(e)).collect();
    for family in metrics::Metrics::new().family_names() {
        assert!(used.iter().any(|u| u.starts_with(family)), "{family} is on no dashboard panel");
    }
}

#[test]
fn every_alert_has_severity_priority_and_a_runbook_section() {
    let rules = std::fs::read_to_string(rules_file()).expect("read rules");
    let alerts = yaml_values(&rules, "alert");
    assert!(alerts.len() >= 13, "{alerts:?}");
    assert_eq!(yaml_values(&rules, "expr").len(), alerts.len(), "one expr per alert (YAML extraction broken?)");
    assert_eq!(yaml_values(&rules, "severity").len(), alerts.len(), "every alert needs a severity label");
    assert_eq!(yaml_values(&rules, "priority").len(), alerts.len(), "every alert needs a priority label");
    for s in yaml_values(&rules, "severity") {
        assert!(["critical", "warning", "info"].contains(&s.as_str()), "severity {s:?}");
    }
    let urls = yaml_values(&rules, "runbook_url");
    assert_eq!(urls.len(), alerts.len(), "every alert needs a runbook_url");
    let runbook = std::fs::read_to_string(root().join("docs/runbook.md")).expect("read docs/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(heading_anchor)
        .collect();
    for (alert, url) in alerts.iter().zip(&urls) {
        let anchor = url.strip_prefix("docs/runbook.md#").unwrap_or_else(|| panic!("{alert}: runbook_url {url}"));
        assert_eq!(anchor, heading_anchor(alert), "{alert}: anchor should be the alert's heading");
        assert!(anchors.contains(anchor), "{alert}: no heading for #{anchor} in docs/runbook.md");
    }
}
