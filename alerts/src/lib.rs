//! Alert model, de-duplication and sinks (SMTP, webhooks). (Built by issue #5; this crate is a
//! placeholder until then.)
