//! Prometheus metrics of the guardian (in progress).
