//! `kray-guardian init`: write a commented example configuration (in progress).

/// Arguments of `init`.
#[derive(clap::Args, Debug)]
pub struct InitArgs {}

/// Runs `init`.
pub fn run(_args: &InitArgs) -> anyhow::Result<u8> {
    anyhow::bail!("init is not implemented yet")
}
