use std::process::ExitCode;

use clap::Parser as _;
use supervisor::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(cli.log_level.as_str()),
    )
    .format_timestamp_micros()
    .init();
    if let Command::SelfTestChild = cli.command {
        supervisor::check::self_test_child();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("supervisor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check(args) => supervisor::check::run(args).await,
            Command::Trace(args) => supervisor::trace::run(args).await,
            Command::SelfTestChild => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}
