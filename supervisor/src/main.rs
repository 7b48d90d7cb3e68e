use std::{path::Path, process::ExitCode};

use clap::Parser as _;
use supervisor::{
    cli::{Cli, Command, InitPlan, WatchesInit},
    client, config, daemonize,
    protocol::{Command as Verb, Request},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A client verb piped into `head` ends quietly when the pipe closes,
    // as Unix tools do; the daemon keeps SIGPIPE ignored (its clients and
    // webhooks may hang up on it).
    let daemon = match &cli.command {
        Command::Run(_) => true,
        Command::Init(args) => args.config.is_some(),
        _ => false,
    };
    if !daemon {
        // SAFETY: setting a signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // Before the slots below: an init passes every fd it was given on.
    let mut as_init = None;
    match cli.command {
        Command::Init(ref args) => match args.plan() {
            InitPlan::Single(options) => return supervisor::init::run(&options),
            InitPlan::Watches(plan) => {
                if let Some(signal) = plan.parent_death {
                    if let Err(e) = supervisor::init::set_parent_death(signal) {
                        eprintln!("supervisor init: {e:#}");
                        return ExitCode::from(1);
                    }
                }
                as_init = Some(plan);
            }
        },
        Command::Completions { shell } => {
            supervisor::cli::print_completions(shell);
            return ExitCode::SUCCESS;
        }
        Command::ManPages { dir } => {
            return match supervisor::cli::write_man_pages(&dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("supervisor: writing man pages into {}: {e}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        _ => {}
    }
    // Before anything opens a file: see `clone3`. Without the slots,
    // processes start through std's Command instead.
    if let Err(e) = supervisor::clone3::reserve_fd_slots() {
        eprintln!("supervisor: cannot reserve fds 3-5 for starting processes: {e}");
    }
    if let Command::SelfTestChild = cli.command {
        supervisor::check::self_test_child();
    }
    // The daemon logs at its config's level unless told otherwise; the
    // other verbs only warn.
    let mut moved = Vec::new();
    let config = match (&cli.command, &as_init) {
        (Command::Run(args), _) => {
            match load(&args.config, args.insecure_config, cli.socket.as_deref()) {
                Ok(config) => Some(config),
                Err(e) => {
                    eprintln!("supervisor: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        (_, Some(plan)) => match load_for_init(plan, cli.socket.as_deref()) {
            Ok((config, notes)) => {
                moved = notes;
                Some(config)
            }
            Err(e) => {
                eprintln!("supervisor init: {e:#}");
                return ExitCode::from(1);
            }
        },
        _ => None,
    };
    // The state directory is checked and locked before anything else, so
    // that a second daemon on it stops here, having touched nothing.
    let wants_state = match &cli.command {
        Command::Run(args) => !args.check_config,
        Command::Init(_) => true,
        _ => false,
    };
    let state = match &config {
        Some(config) if wants_state => {
            let legacy = supervisor::cgroup::instance_name(&config.daemon.socket);
            match supervisor::state::StateDir::open(&config.daemon.state_dir, &legacy) {
                Ok(state) => Some(state),
                Err(e) => {
                    eprintln!("supervisor: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    // Forking must happen before any thread (the runtime's) exists.
    let ready = match (&cli.command, &config) {
        (Command::Run(args), Some(config)) if args.daemonize && !args.check_config => {
            let log = args
                .log_file
                .clone()
                .unwrap_or_else(|| config.daemon.state_dir.join("supervisor.log"));
            match daemonize::detach(&log) {
                Ok(ready) => Some(ready),
                Err(e) => {
                    eprintln!("supervisor: cannot daemonize: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        _ => None,
    };
    let level = cli.log_level.clone().unwrap_or_else(|| {
        config
            .as_ref()
            .map_or("warn".to_owned(), |c| c.daemon.log_level.clone())
    });
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_micros()
        .init();
    for note in moved {
        log::warn!("{note}");
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
    let socket = supervisor::cli::socket_path(cli.socket.as_deref());
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run(args, config.expect("loaded above"), state, ready).await,
            Command::Init(_) => {
                let plan = as_init.expect("planned above");
                let code = supervisor::daemon::run(
                    config.expect("loaded above"),
                    state.expect("opened above"),
                    None,
                    supervisor::daemon::Role::Init,
                )
                .await?;
                Ok(ExitCode::from(supervisor::init::remapped(
                    code,
                    &plan.success_codes,
                )))
            }
            Command::Status(args) => client::status(&socket, args).await,
            Command::Why(args) => supervisor::why::run(&socket, args).await,
            Command::Events(args) => supervisor::follow::run(&socket, args).await,
            Command::Top(args) => supervisor::top::run(&socket, args).await,
            Command::Import { file, json } => supervisor::import::run(&file, json).await,
            Command::Start(args) => client::command(&socket, Verb::Start, args).await,
            Command::Stop(args) => client::command(&socket, Verb::Stop, args).await,
            Command::Restart(args) => client::command(&socket, Verb::Restart, args).await,
            Command::Monitor(args) => client::command(&socket, Verb::Monitor, args).await,
            Command::Unmonitor(args) => client::command(&socket, Verb::Unmonitor, args).await,
            Command::Quit => client::simple(&socket, Request::Quit).await,
            Command::Info { json } => client::info(&socket, json).await,
            Command::Signal { target, signal } => {
                client::simple(&socket, Request::Signal { target, signal }).await
            }
            Command::Remove { name } => client::simple(&socket, Request::Remove { name }).await,
            Command::Log {
                name,
                lines,
                no_follow,
            } => client::log(&socket, &name, lines, !no_follow).await,
            Command::Load { path, missing } => client::load(&socket, path, missing.into()).await,
            Command::Terminate => client::simple(&socket, Request::Terminate).await,
            Command::Check(args) => supervisor::check::run(args).await,
            Command::Trace(args) => supervisor::trace::run(args).await,
            Command::SelfTestChild | Command::Completions { .. } | Command::ManPages { .. } => {
                unreachable!("handled before the runtime starts")
            }
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

fn load(
    path: &Path,
    insecure: bool,
    socket: Option<&Path>,
) -> Result<config::Config, config::ConfigError> {
    let trust = if insecure {
        config::Trust::Insecure
    } else {
        config::Trust::Owner
    };
    let mut config = config::load(path, trust)?;
    if let Some(socket) = socket {
        config.daemon.socket = socket.to_path_buf();
    }
    Ok(config)
}

/// The config of `init -c`, with CMD as its main watch, and its socket
/// and state where a container lets them be (and what was moved, to log).
fn load_for_init(
    plan: &WatchesInit,
    socket: Option<&Path>,
) -> anyhow::Result<(config::Config, Vec<String>)> {
    let mut config = load(&plan.config, plan.insecure_config, socket)?;
    if !plan.command.is_empty() {
        if let Some(main) = config.watches.iter().find(|w| w.main) {
            anyhow::bail!(
                "{}: watch '{}' is main = true, and CMD would be a second main watch",
                config.source.display(),
                main.name
            );
        }
        if config.watches.iter().any(|w| w.name == "main") {
            anyhow::bail!(
                "{}: a watch is named 'main', the name CMD runs under",
                config.source.display()
            );
        }
        let mut main = config::WatchConfig::for_command("main", plan.command.clone());
        main.main = true;
        main.autostart = true;
        // Its end is the container's, as with tini.
        main.keepalive = config::Keepalive::Never;
        // As s6-overlay runs CMD: once the services are up, and stopped
        // first.
        main.after = config.watches.iter().map(|w| w.name.clone()).collect();
        config.watches.push(main);
    }
    let moved = if socket.is_none() {
        supervisor::places::settle(&mut config.daemon)
    } else {
        Vec::new()
    };
    Ok((config, moved))
}

async fn run(
    args: supervisor::cli::RunArgs,
    config: config::Config,
    state: Option<supervisor::state::StateDir>,
    ready: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<ExitCode> {
    if args.check_config {
        println!(
            "{}: {} watch(es)",
            config.source.display(),
            config.watches.len()
        );
        for w in &config.watches {
            println!("  {}: {}", w.name, shell_words::join(&w.argv));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let code = supervisor::daemon::run(
        config,
        state.expect("opened above"),
        ready,
        supervisor::daemon::Role::Daemon,
    )
    .await?;
    Ok(ExitCode::from(code))
}
