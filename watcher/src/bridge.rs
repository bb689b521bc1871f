//! Bridge multisig and KRAY rune tracking (in progress).
