//! A local KRAY L2 for demos and tests.
