//! Typed errors: building the alerter from configuration, and one delivery attempt of a sink.

use std::path::PathBuf;

/// An error building the alerter or one of its sinks (at start-up: a bad configuration fails fast).
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// An environment variable the configuration names (a credential, a URL) is not set or not UTF-8.
    #[error("alert sink `{sink}`: environment variable `{var}` is not set or not UTF-8")]
    MissingEnv {
        /// The sink's name.
        sink: String,
        /// The variable's name (never its value).
        var: String,
    },
    /// A configuration value is invalid.
    #[error("alert sink `{sink}`: {reason}")]
    InvalidConfig {
        /// The sink's name.
        sink: String,
        /// What is wrong.
        reason: String,
    },
    /// A CA certificate file could not be read.
    #[error("alert sink `{sink}`: cannot read CA file {}: {source}", path.display())]
    CaFile {
        /// The sink's name.
        sink: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// lettre refused the SMTP settings (e.g. an invalid certificate).
    #[error("alert sink `{sink}`: SMTP settings: {source}")]
    Smtp {
        /// The sink's name.
        sink: String,
        /// lettre's error.
        source: lettre::transport::smtp::Error,
    },
    /// The HTTP client could not be built.
    #[error("alerts HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    /// The alerter was started outside a tokio runtime.
    #[error("the alerter must be started inside a tokio runtime")]
    NoRuntime,
}

/// The failure of one delivery attempt by a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The HTTP endpoint answered with a non-success status.
    #[error("HTTP status {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not complete (connection refused, timeout, TLS); the URL is never included.
    #[error("HTTP transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// The SMTP exchange failed.
    #[error("SMTP: {source}")]
    Smtp {
        /// lettre's error.
        source: lettre::transport::smtp::Error,
    },
    /// The message could not be built (a permanent problem of this alert or configuration).
    #[error("message: {0}")]
    Message(String),
}

impl SinkError {
    /// Whether trying again may succeed: transport failures, timeouts, HTTP 408/429/5xx and transient SMTP
    /// errors are retried; other HTTP 4xx, permanent SMTP errors and unbuildable messages are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            SinkError::Transport(_) => true,
            SinkError::Smtp { source } => !source.is_permanent(),
            SinkError::Message(_) => false,
        }
    }

    /// A transport error with its URL stripped (chat webhook URLs carry secrets).
    pub fn transport(error: reqwest::Error) -> SinkError {
        SinkError::Transport(error.without_url())
    }
}
