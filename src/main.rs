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
use newswatch::cli::{self, Cli, Command, FeedsCommand, LogFormat, UsageError};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    limit_heap_retention();
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
            // One line: the error and its causes, each said once.
            let msg = cli::error_line(&e);
            let _ = writeln!(
                std::io::stderr(),
                "newswatch: error: {}",
                newswatch::text::sanitize(&msg)
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
            let (source, settings) = cli::load_settings_any_backend(cli)?;
            cli::check(&source, &settings, &mut out)
        }
        Command::Query(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::query(&settings, args, &mut out)
        }
        Command::Run => {
            let (source, settings) = cli::load_settings_any_backend(cli)?;
            let rt = newswatch::service::poll::build_runtime()?;
            rt.block_on(cli::run(source, settings))
        }
        Command::Digest(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::digest(&settings, args, chrono::Utc::now(), &mut out)
        }
        Command::Show(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::show(&settings, args, &mut out)
        }
        Command::Mark(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::mark(&settings, args, &mut out)
        }
        Command::Search(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::search(&settings, args, &mut out)
        }
        Command::Backfill(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::backfill(&settings, args, chrono::Utc::now(), &mut out)
        }
        Command::Prune(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::prune(&settings, args, chrono::Utc::now(), &mut out)
        }
        Command::Archive(args) => match args.command {
            cli::ArchiveCommand::Rebuild => {
                let (_, settings) = cli::load_settings_any_backend(cli)?;
                cli::archive_rebuild(&settings, &mut out)
            }
        },
        Command::Story(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::story(&settings, args, &mut out)
        }
        Command::Stats(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::stats(&settings, args, chrono::Utc::now(), &mut out)
        }
        Command::Poll(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            let rt = newswatch::service::poll::build_runtime()?;
            rt.block_on(cli::poll(settings, args, &mut std::io::stderr()))?;
            Ok(())
        }
        Command::Feeds(args) => match &args.command {
            None => {
                let (_, settings) = cli::load_settings_any_backend(cli)?;
                cli::feeds_list(&settings, args.format, &mut out)
            }
            Some(FeedsCommand::Import(a)) => cli::feeds_import(a, &mut out),
            Some(FeedsCommand::Export(a)) => {
                // The config's feeds: no database, so either backend.
                let (_, settings) = cli::load_settings_any_backend(cli)?;
                cli::feeds_export(&settings, a, &mut out)
            }
            Some(FeedsCommand::Discover(a)) => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(cli::feeds_discover(a, &mut out))
            }
        },
        Command::Export(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            cli::export(&settings, args, &mut out)
        }
        Command::Serve(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            let rt = newswatch::service::poll::build_runtime()?;
            rt.block_on(cli::serve(settings, args))
        }
        Command::Alerts(args) => {
            let (_, settings) = cli::load_settings_any_backend(cli)?;
            match &args.command {
                cli::AlertsCommand::List(a) => cli::alerts_list(&settings, a, &mut out),
                cli::AlertsCommand::Test(a) => {
                    let rt = newswatch::service::poll::build_runtime()?;
                    rt.block_on(cli::alerts_test(&settings, a, &mut out))
                }
            }
        }
        Command::Migrate(args) => cli::migrate(args, &mut out),
        Command::Completions(args) => cli::completions(args, &mut out),
        Command::Man => cli::man(&mut out),
    }
}

fn init_logging(cli: &Cli) {
    let daemon = matches!(cli.command, Command::Run | Command::Serve(_));
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

/// Keep glibc from hoarding freed memory. Its mmap threshold starts at 128 KiB but rises with
/// every large block freed, after which big buffers (feed bodies, parsed documents) come from
/// the heap arenas and stay in RSS once freed. Pinning the threshold keeps them mmapped and
/// returned to the system: a cold poll of 1,000 feeds peaked at 75-125 MB RSS without this,
/// ~60 MB with it (BENCHMARKS.md), at no measurable CPU cost.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_heap_retention() {
    const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
    // SAFETY: mallopt only changes allocator tuning; called first thing in main, before any
    // other thread exists. A failure (returns 0) just leaves glibc's default behaviour.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_heap_retention() {}
