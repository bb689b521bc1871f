//! L1 and L2 observation for the guardian: chain following with reorgs (`chain`) and the SQL store
//! (`store`). Anchor scanning, bridge and rune tracking and the batch mirror follow (issue #4).
pub mod chain;
pub mod store;
