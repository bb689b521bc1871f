//! `kray-guardian run`: the daemon, until SIGTERM or SIGINT.

use std::time::Duration;

use anyhow::Context;

use crate::config::{LogFormat, RunArgs};
use crate::daemon::Daemon;

/// Time between two ticks of the daemon when nothing is left to catch up.
const TICK: Duration = Duration::from_millis(500);

/// Runs the daemon; returns the exit code.
pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let cfg = args.load_config()?;
    init_logging(&cfg.log.level, cfg.log.format);
    tracing::info!(config = %cfg.masked_json(), "starting kray-guardian {}", crate::version());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        let listen = cfg.http.listen_addr()?;
        let rate_limit = cfg.http.rate_limit_per_ip_per_minute;
        let mut daemon = Daemon::open(cfg).await?;
        daemon.audit_bridge().await?;
        daemon.notify_pending().await;
        let listener =
            tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding http.listen {listen}"))?;
        let limiter = crate::rate_limit::RateLimiter::new(rate_limit);
        let app = crate::http::router(daemon.shared(), daemon.store().clone(), daemon.metrics())
            .merge(daemon.mirror_router())
            .merge(crate::user_api::router(daemon.shared()))
            .layer(axum::middleware::from_fn_with_state(limiter, crate::rate_limit::limit));
        let server = tokio::spawn(async move {
            if let Err(e) =
                axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
            {
                tracing::error!(error = %e, "http server stopped");
            }
        });
        tracing::info!(%listen, "http API listening");
        let mut stop = std::pin::pin!(shutdown_signal());
        // A signal interrupts a tick too: every stage commits in transactions and the sender journals
        // before it broadcasts, so stopping between two awaits is as safe as a crash, and a long first
        // catch-up never delays the stop.
        loop {
            let more = tokio::select! {
                () = &mut stop => break,
                more = daemon.tick() => more,
            };
            if more {
                continue; // a catch-up in progress: the next tick at once (each is time-bounded)
            }
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(TICK) => {}
            }
        }
        tracing::info!("shutting down");
        server.abort();
        daemon.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(0)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Logging for the daemon: `level` (an `EnvFilter` directive; `RUST_LOG` wins) in text or JSON lines.
fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| "info".into());
    // Colour only on a terminal: journald, Docker and files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
