//! Decisions and actions: deadlines, fraud-proof submission, the guardian's own L1 transactions.
//! (Built by issue #5; this crate is a placeholder until then.)
