//! L1 and L2 observation for the guardian: chain following with reorgs (`chain`) and the SQL store
//! (`store`), anchors indexed from blocks (`anchors`) into the store, reorg- and restart-safe (`l1_index`).
//! Anchor matching, bridge and rune tracking and the batch mirror follow (issue #4).
pub mod anchors;
pub mod bridge;
pub mod chain;
pub mod finding_kind;
pub mod judge;
pub mod l1_index;
pub mod mirror;
pub mod store;

pub use finding_kind::FindingKind;
