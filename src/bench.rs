//! Placeholder wired by main.rs; helper-4 replaces this file with the real `bench` command.

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

/// Run `bench`.
pub fn run(_args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench is not built yet")
}
