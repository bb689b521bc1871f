//! Decisions and actions of the guardian (issue #5): deadlines in L1 blocks, the journal and sender of
//! its own L1 transactions (anchors and challenge markers, with coin selection, fee clamping and
//! BIP-125 bumps), the anchoring turn order among guardians, and fraud-proof submission.
//!
//! | module | what |
//! |---|---|
//! | [`deadline`] | challenge window, anchor grace, deposit grace; the nearest open deadline (pure) |
//! | [`journal`] | fsync'd JSON-lines record of every signed tx, written before broadcast |
//! | [`coins`] | the guardian key (0600 file), coin selection, key-path signing |
//! | [`fees`] | fee floor/cap clamp, bump rates, local BIP-125 checks (pure) |
//! | [`l1`] | the [`l1::L1Client`] trait and its bitcoind JSON-RPC implementation |
//! | [`sender`] | sign, persist, broadcast, re-broadcast, bump, settle |
//! | [`scripted`] | a scripted in-memory [`l1::L1Client`] for tests |
//! | [`turns`] | deterministic anchoring turn order (pure) |
//! | [`submit`] | POST a fraud proof to every challenge endpoint with retries |

pub mod coins;
pub mod deadline;
pub mod fees;
pub mod journal;
pub mod l1;
pub mod scripted;
pub mod sender;
pub mod submit;
pub mod turns;
