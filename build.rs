//! Embeds the git commit in the version: `KRAY_GIT_HASH` from the environment if set (builds without
//! `.git`), else `git rev-parse`, else "unknown".
fn main() {
    println!("cargo:rerun-if-env-changed=KRAY_GIT_HASH");
    if let Ok(hash) = std::env::var("KRAY_GIT_HASH") {
        println!("cargo:rustc-env=KRAY_GIT_HASH={hash}");
        return;
    }
    let hash = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=KRAY_GIT_HASH={hash}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}
