//! L1 and L2 observation for the guardian: chain following with reorgs, anchor scanning, bridge and
//! rune tracking, the batch mirror and the SQL store. (Built by issue #4; this crate is a placeholder
//! until then.)
