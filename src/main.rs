//! The `kassette` binary: parse the command line, set up logging, run a role,
//! turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use kassette::cli::Cli;
use kassette::config::LogConfig;
use kassette::error::EXIT_USAGE;

fn main() -> ExitCode {
    kassette::tune_allocator();
    // The AWS SDK, kube and the GCS client all speak rustls; with more than
    // one crypto backend linked, rustls cannot pick one by itself.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    // Clap cannot say which setting is not UTF-8; this can.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(problem) = kassette::cli::non_utf8_setting(std::env::vars_os(), &args) {
        eprintln!("error: {problem}");
        return ExitCode::from(EXIT_USAGE);
    }
    // Usage errors exit 2 and --help/--version exit 0, from clap itself.
    let cli = Cli::parse_from(args);
    let log = match LogConfig::from_args(&cli.log) {
        Ok(log) => log,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    kassette::telemetry::init(&log);

    match kassette::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            err.exit_code()
        }
    }
}
