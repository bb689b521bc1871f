//! The L2 batch mirror (in progress).
