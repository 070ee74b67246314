//! The `newswatch` binary: parse the command line, set up logging, run the command, map
//! errors to exit codes (0 ok, 1 runtime error, 2 usage or config error).

// Same rule as the library (a separate crate root, so it needs its own attribute): no
// unwrap/expect/panic outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use newswatch::cli::{self, Cli, Command, LogFormat, UsageError};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging(&cli);
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = e.chain().any(|c| c.is::<UsageError>());
            // One line: the error and its causes.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            let mut msg = msg.join(": ");
            msg.retain(|c| c != '\n');
            let _ = writeln!(
                std::io::stderr(),
                "newswatch: error: {}",
                cli::sanitize(&msg)
            );
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match &cli.command {
        Command::Check => {
            let (source, settings) = cli::load_settings(cli)?;
            cli::check(&source, &settings, &mut out)
        }
        Command::Feeds(args) => {
            let (_, settings) = cli::load_settings(cli)?;
            cli::feeds_list(&settings, args.format, &mut out)
        }
        Command::Query(args) => {
            let (_, settings) = cli::load_settings(cli)?;
            cli::query(&settings, args, &mut out)
        }
        Command::Run => {
            let (source, settings) = cli::load_settings(cli)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(cli::run(source, settings))
        }
        Command::Poll(args) => {
            let (_, settings) = cli::load_settings(cli)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(cli::poll(settings, args, &mut std::io::stderr()))?;
            Ok(())
        }
    }
}

fn init_logging(cli: &Cli) {
    let daemon = matches!(cli.command, Command::Run);
    let default = match cli.verbose {
        0 if daemon => "newswatch=info",
        0 => "newswatch=warn",
        1 => "newswatch=info",
        2 => "newswatch=debug",
        _ => "newswatch=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(|ce| matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe))
            || c.downcast_ref::<serde_json::Error>().is_some_and(|je| je.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
