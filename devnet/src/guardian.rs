//! A guardian configuration (TOML) watching this devnet: its bitcoind, its publication API, its
//! profile and genesis. Written next to the devnet's data so `kray-guardian run --config` can start.

use std::path::Path;

use crate::runner::DevnetInfo;

/// Splits `http://user:password@host:port` into (`http://host:port`, user, password).
pub fn split_credentials(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    match rest.rsplit_once('@') {
        Some((creds, host)) => {
            let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
            (format!("{scheme}://{host}"), user.to_string(), password.to_string())
        }
        None => (url.to_string(), String::new(), String::new()),
    }
}

/// TOML text quoting.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A guardian config for `info` in `mode` (`watch`, `challenge`, `full`), keeping its data in
/// `data_dir` and serving its API on `listen` (e.g. `127.0.0.1:0` is not allowed: give a port).
pub fn guardian_toml(info: &DevnetInfo, mode: &str, data_dir: &Path, listen: &str) -> String {
    let (url, user, password) = split_credentials(&info.bitcoind_url);
    format!(
        "# A guardian watching the local devnet (written by the devnet).\n\
         mode = {mode}\n\
         data_dir = {data}\n\
         profile = {profile}\n\
         genesis = {genesis}\n\
         # The devnet's chain is short: index it from the start (rune etching, deposits).\n\
         start_height = 0\n\
         \n[bitcoind]\nurl = {url}\nuser = {user}\npassword = {password}\n\
         \n[[sources]]\nname = \"sequencer\"\nurl = {api}\nrole = \"sequencer\"\npoll_interval_ms = 500\n\
         \n[challenge]\nendpoints = [{challenge}]\n\
         \n[http]\nlisten = {listen}\n# Tests and the demo poll often; a public guardian keeps the default.\nrate_limit_per_ip_per_minute = 6000\n",
        mode = q(mode),
        data = q(&data_dir.display().to_string()),
        profile = q(&info.profile_path.display().to_string()),
        genesis = q(&info.genesis_path.display().to_string()),
        url = q(&url),
        user = q(&user),
        password = q(&password),
        api = q(&info.api_url),
        challenge = q(&format!("{}/l2/challenges", info.api_url)),
        listen = q(listen),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_split_from_the_url() {
        assert_eq!(split_credentials("http://u:p@127.0.0.1:1"), ("http://127.0.0.1:1".into(), "u".into(), "p".into()));
        assert_eq!(
            split_credentials("http://127.0.0.1:1"),
            ("http://127.0.0.1:1".into(), String::new(), String::new())
        );
    }
}
