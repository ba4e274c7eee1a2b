use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    init_tracing();
    let cli = cross_executor::cli::Cli::parse();
    ExitCode::from(cross_executor::main_with(cli))
}

/// Sends `tracing` diagnostics to standard error, filtered by `RUST_LOG` (default: warnings).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
}
