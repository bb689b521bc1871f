//! Email over SMTP with lettre's tokio transport: plain (a trusted local relay), STARTTLS or implicit TLS,
//! rustls only, credentials from the environment.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};
use crate::error::{AlertsError, SinkError};
use crate::model::{rfc3339, Notification};
use crate::sink::{BoxFuture, Sink};

/// An SMTP sink: one plain-text email per notification to every recipient.
pub struct SmtpSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: String,
    source: String,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the credentials: never print it.
        f.debug_struct("SmtpSink").field("from", &self.from).field("to", &self.to).finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// Builds the sink named `name` from `config`, reading the credentials from the environment variables
    /// it names. Nothing is connected yet: each delivery opens its own connection.
    pub fn new(name: &str, config: &SmtpConfig, source: &str) -> Result<SmtpSink, AlertsError> {
        let invalid = |reason: String| AlertsError::InvalidConfig { sink: name.to_string(), reason };
        let from: Mailbox = config.from.parse().map_err(|e| invalid(format!("`from` {:?}: {e}", config.from)))?;
        if config.to.is_empty() {
            return Err(invalid("`to` lists no recipient".to_string()));
        }
        let to = config
            .to
            .iter()
            .map(|t| t.parse::<Mailbox>().map_err(|e| invalid(format!("`to` {t:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;

        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(name, config)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(name, config)?),
        };
        let port = config.port.unwrap_or(match config.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(config.timeout_secs.max(1))));
        match (&config.username_env, &config.password_env) {
            (Some(user_var), Some(pass_var)) => {
                let user = read_env(name, user_var)?;
                let pass = read_env(name, pass_var)?;
                builder = builder.credentials(Credentials::new(user, pass));
            }
            (None, None) => {}
            _ => return Err(invalid("`username_env` and `password_env` go together".to_string())),
        }
        tracing::debug!(
            sink = name,
            host = %config.host,
            port,
            tls = ?config.tls,
            authenticated = config.username_env.is_some(),
            "SMTP sink configured"
        );
        Ok(SmtpSink {
            transport: builder.build(),
            from,
            to,
            subject_prefix: config.subject_prefix.clone(),
            source: source.to_string(),
        })
    }

    /// The email for `n`.
    pub fn message(&self, n: &Notification) -> Result<Message, SinkError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email_subject(&self.subject_prefix, n))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder.body(email_body(n, &self.source)).map_err(|e| SinkError::Message(e.to_string()))
    }
}

fn read_env(sink: &str, var: &str) -> Result<String, AlertsError> {
    std::env::var(var).map_err(|_| AlertsError::MissingEnv { sink: sink.to_string(), var: var.to_string() })
}

fn tls_parameters(name: &str, config: &SmtpConfig) -> Result<TlsParameters, AlertsError> {
    let smtp_err = |source| AlertsError::Smtp { sink: name.to_string(), source };
    let mut builder = TlsParameters::builder(config.host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|source| AlertsError::CaFile {
            sink: name.to_string(),
            path: path.clone(),
            source,
        })?;
        builder = builder.add_root_certificate(Certificate::from_pem(&pem).map_err(smtp_err)?);
    }
    builder.build_rustls().map_err(smtp_err)
}

/// `"<prefix> [P0 FIRING] <title>"`.
pub fn email_subject(prefix: &str, n: &Notification) -> String {
    if prefix.is_empty() {
        n.headline()
    } else {
        format!("{prefix} {}", n.headline())
    }
}

/// The plain-text body: headline, summary, one `Label: value` line per fact, the event time and source.
pub fn email_body(n: &Notification, source: &str) -> String {
    let mut body = format!("{}\n\n{}\n\n", n.headline(), n.alert.summary);
    for (label, value) in n.alert.facts() {
        body.push_str(&format!("{label}: {value}\n"));
    }
    body.push_str(&format!("\nEvent: {} at {}\n-- \nSent by {source}\n", n.event.as_str(), rfc3339(n.at)));
    body
}

impl Sink for SmtpSink {
    fn kind(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let message = self.message(n)?;
            self.transport.send(message).await.map_err(|source| SinkError::Smtp { source })?;
            Ok(())
        })
    }
}
