//! End-to-end tests of `kray-guardian init`: the example is written, an existing file is kept unless
//! `--force`, and the written example loads and validates (`init --check`) with secrets masked.

use std::path::Path;
use std::process::{Command, Output};

/// The binary with no `KRAY_GUARDIAN_*` variables from the test's own environment.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kray-guardian"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("KRAY_GUARDIAN_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn init(out: &Path, extra: &[&str]) -> Output {
    run(bin().arg("init").arg("--output").arg(out).args(extra))
}

/// Writes a valid `genesis.json` for `network` next to the config `out` (the example names it).
fn genesis(out: &Path, network: &str) {
    let dir = out.parent().expect("dir");
    let gen = dir.join("gen");
    let o = run(bin()
        .args(["gen-workload", "--profile", network, "--accounts", "2", "--txs", "1", "--batch-size", "1", "--out"])
        .arg(&gen));
    assert!(o.status.success(), "gen-workload: {}", stderr(&o));
    std::fs::copy(gen.join("genesis.json"), dir.join("genesis.json")).expect("copy genesis");
}

fn check(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.arg("init").arg("--check").arg(file);
    for (k, v) in env {
        c.env(k, v);
    }
    run(&mut c)
}

#[test]
fn init_writes_an_example_that_loads() {
    for network in ["mainnet", "regtest"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("guardian.toml");
        let o = init(&out, &["--network", network]);
        assert!(o.status.success(), "init failed: {}", stderr(&o));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(&format!("profile = \"{network}\"")), "{text}");
        assert!(text.lines().filter(|l| l.starts_with('#')).count() > 50, "the example is commented");
        let table: toml::Table = toml::from_str(&text).expect("the example is TOML");
        assert_eq!(table["mode"].as_str(), Some("watch"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the config may hold secrets");
        }
        // Without the federation's genesis the example is refused, as `run` would refuse it.
        let o = check(&out, &[]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("genesis.json) is not an existing file"), "{}", stderr(&o));
        genesis(&out, network);
        let o = check(&out, &[]);
        assert!(o.status.success(), "the {network} example does not validate: {}", stderr(&o));
        assert!(stdout(&o).contains(&format!("profile = \"{network}\"")), "{}", stdout(&o));
        // Relative data_dir is relative to the config file and created by validation.
        assert!(dir.path().join("guardian-data").is_dir());
    }
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("guardian.toml");
    std::fs::write(&out, "# mine\n").unwrap();
    let o = init(&out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists; pass --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# mine\n", "the file is untouched");
    let o = init(&out, &["--force", "--network", "regtest"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&out).unwrap().contains("profile = \"regtest\""));
}

#[test]
fn check_applies_env_masks_secrets_and_names_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("guardian.toml");
    assert!(init(&out, &["--network", "regtest"]).status.success());
    genesis(&out, "regtest");
    // Env overrides the file; the secret in the database URL is never printed.
    let o = check(
        &out,
        &[
            ("KRAY_GUARDIAN_DATABASE_URL", "postgres://guardian:cli-db-secret@127.0.0.1/guardian"),
            ("KRAY_GUARDIAN_FINALITY_DEPTH", "11"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let printed = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!printed.contains("cli-db-secret"), "secret leaked:\n{printed}");
    assert!(stdout(&o).contains("postgres://guardian:***@127.0.0.1/guardian"), "{}", stdout(&o));
    assert!(stdout(&o).contains("finality_depth = 11"), "{}", stdout(&o));
    // A typo in a variable, a typo in a key and a bad value are errors naming them.
    let o = check(&out, &[("KRAY_GUARDIAN_BITCOIND_URI", "http://x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown environment variable KRAY_GUARDIAN_BITCOIND_URI"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    std::fs::write(&out, text.replace("finality_depth = 6", "finalty_depth = 6")).unwrap();
    let o = check(&out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("finalty_depth"), "{}", stderr(&o));
    std::fs::write(&out, text.replace("fee_cap_sat_vb = 200", "fee_cap_sat_vb = 1")).unwrap();
    let o = check(&out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("anchoring.fee_cap_sat_vb (1) is below anchoring.fee_floor_sat_vb (2)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn full_mode_example_validates_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("guardian.toml");
    assert!(init(&out, &["--network", "regtest"]).status.success());
    genesis(&out, "regtest");
    let text = std::fs::read_to_string(&out)
        .unwrap()
        .replace("mode = \"watch\"", "mode = \"full\"")
        .replace("# key_file = \"anchor.key\"", "key_file = \"anchor.key\"")
        .replace("endpoints = []", "endpoints = [\"http://127.0.0.1:18080/l2/challenges\"]");
    std::fs::write(&out, text).unwrap();
    let key = dir.path().join("anchor.key");
    std::fs::write(&key, "not a real key\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = check(&out, &[]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("has permissions 0644; it must be 0600"), "{}", stderr(&o));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let o = check(&out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is valid (mode full)"), "{}", stderr(&o));
}

/// Every configuration `run` refuses, `init --check` refuses too, naming the problem.
#[test]
fn check_refuses_what_run_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("guardian.toml");
    assert!(init(&out, &["--network", "regtest"]).status.success());
    genesis(&out, "regtest");
    let text = std::fs::read_to_string(&out).unwrap();
    // The example logs in with the cookie file only, and is valid.
    assert!(text.contains("\ncookie_file = ") && !text.contains("\nuser = "), "{text}");
    let o = check(&out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The withdrawal command's variable is not a typo of a config variable.
    let o = check(&out, &[("KRAY_GUARDIAN_URL", "http://127.0.0.1:8080")]);
    assert!(o.status.success(), "{}", stderr(&o));
    let refused = |changed: String, env: &[(&str, &str)], expected: &str| {
        std::fs::write(&out, changed).unwrap();
        let o = check(&out, env);
        assert_eq!(o.status.code(), Some(1), "accepted, expected {expected:?}");
        assert!(stderr(&o).contains(expected), "expected {expected:?} in:\n{}", stderr(&o));
    };
    refused(text.replace("level = \"info\"", "level = \"verbose\""), &[], "\"verbose\" is not a level");
    refused(text.replace("genesis = \"genesis.json\"", ""), &[], "genesis: the L2 genesis file");
    refused(
        text.replace("url = \"http://127.0.0.1:18443\"", "").replace("# url = \"ssl://", "url = \"ssl://"),
        &[],
        "electrum.url alone is not enough",
    );
    let with_sink = |sink: &str| text.replace("sinks = []\n", "") + &format!("\n[[alerts.sinks]]\n{sink}\n");
    refused(
        with_sink("type = \"slack\"\nurl_env = \"KRAY_TEST_SLACK_URL\""),
        &[],
        "KRAY_TEST_SLACK_URL, which is not set",
    );
    refused(with_sink("type = \"webhook\"\nurl = \"not-a-url\""), &[], "must be an http:// or https:// URL");
    refused(with_sink("type = \"log\"\nurl = \"https://h.example/x\""), &[], "unknown key \"url\"");
    // The same sink with its variable set is fine.
    std::fs::write(&out, with_sink("type = \"slack\"\nurl_env = \"KRAY_TEST_SLACK_URL\"")).unwrap();
    let o = check(&out, &[("KRAY_TEST_SLACK_URL", "https://hooks.example/T/B/x")]);
    assert!(o.status.success(), "{}", stderr(&o));
}
