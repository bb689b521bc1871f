//! Electrum chain source (in progress).
