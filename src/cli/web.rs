//! `newswatch serve`: the web server alone (no polling, no daemon lock), until SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::{Context, Result};

use super::ServeArgs;
use crate::config::{Settings, WebSettings};
use crate::service::metrics::Metrics;
use crate::service::web::Server;

/// Where `serve` listens when neither the config nor `--listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// `newswatch serve`.
pub async fn serve(settings: Settings, args: &ServeArgs) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut web = match &settings.web {
        Some(w) => w.clone(),
        None => WebSettings {
            listen: DEFAULT_LISTEN.parse().context("default listen address")?,
            token: None,
        },
    };
    if let Some(listen) = args.listen {
        web.listen = listen;
    }
    let server = Server::bind(&settings, &web, Arc::new(Metrics::new()), None).await?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        stop.cancel();
    });
    server.serve(shutdown).await.context("web server")?;
    tracing::info!("stopped");
    Ok(())
}
