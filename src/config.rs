//! Guardian configuration: defaults < TOML file < env (`KRAY_GUARDIAN_*`) < flags (in progress).
