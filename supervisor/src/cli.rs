//! Command-line arguments: parsed and checked here, once, at the edge.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    backend::{BackendChoice, BackendKind},
    process::Pid,
    protocol::Missing,
};

#[derive(Parser, Debug)]
#[command(
    name = "supervisor",
    version,
    about = "Keeps processes alive, learning of each death from the kernel as it happens"
)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) [default: warn; for
    /// `run`, the config's]. RUST_LOG overrides.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// The daemon's control socket [default: the config's for `run`, else
    /// /run/supervisor-rs.sock].
    #[arg(long, global = true, value_name = "PATH", env = "SUPERVISOR_SOCKET")]
    pub socket: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground on a config file or directory.
    Run(RunArgs),
    /// Show watches: state, pid, uptime, restarts, last exit. Exit status
    /// 0 when all shown are up, 1 when all are unmonitored, else 2.
    Status(StatusArgs),
    /// Why a watch's processes died, newest first: cause, sender or
    /// kernel reason, what they printed last, how long they ran.
    Why(WhyArgs),
    /// Follow what happens to watches as it happens: transitions, exits
    /// with their cause, health checks, notifications.
    Events(EventsArgs),
    /// Write a supervisord config (with its includes) or a systemd
    /// .service unit as the equivalent TOML, on stdout; what has no
    /// equivalent is listed, with its line, in a comment at the top.
    Import {
        file: std::path::PathBuf,
        /// A JSON report: the TOML, the watches, and what was skipped.
        #[arg(long)]
        json: bool,
    },
    /// The watches live in the terminal, like htop: CPU, memory,
    /// restarts, the selected one's last exits and log; keys to sort and
    /// to start, stop or restart it.
    Top(TopArgs),
    /// Start a watch, a group, or everything.
    Start(TargetArgs),
    /// Stop a watch, a group, or everything (stop signal, then SIGKILL).
    Stop(TargetArgs),
    /// Stop then start a watch, a group, or everything.
    Restart(TargetArgs),
    /// Start supervising (and starting) a watch again.
    Monitor(TargetArgs),
    /// Stop supervising a watch, leaving its process running.
    Unmonitor(TargetArgs),
    /// Send a signal to a watch's (or group's) processes.
    Signal {
        /// A watch or group name.
        target: String,
        /// TERM, SIGHUP, USR1, 9, ...
        signal: String,
    },
    /// Stop a watch and forget it.
    Remove { name: String },
    /// Print the end of a watch's log file(s), then follow them.
    Log {
        name: String,
        /// Lines to show from the end first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Print and exit instead of following.
        #[arg(long)]
        no_follow: bool,
    },
    /// Load a config file or directory in place of the running one: new
    /// watches start, changed ones restart, unchanged ones are untouched.
    Load {
        path: std::path::PathBuf,
        /// What happens to watches the new config no longer has.
        #[arg(long, value_enum, default_value = "leave")]
        missing: MissingArg,
    },
    /// Show the daemon itself: exit backend and its counters (events
    /// delivered, lost and recovered), process tracking, watches.
    Info {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Make the daemon exit, leaving every process running.
    Quit,
    /// Stop every watch, then make the daemon exit.
    Terminate,
    /// Report which exit backends work here and prove the chosen one live.
    Check(CheckArgs),
    /// Print process exits as they happen.
    Trace(TraceArgs),
    /// Run as a container's init: `init -- CMD` is a drop-in for `tini
    /// --` (reap every process that ends under it, forward SIGTERM,
    /// SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH to CMD, exit
    /// as it did, 128+N for signal N); `init -c CONFIG [-- CMD]` runs the
    /// config's watches (and CMD as its main watch) as PID 1, forwards
    /// those signals to the main watch or to all, shuts down in reverse
    /// `after` order, and exits with the main watch's status.
    Init(InitArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// powershell (`cargo xtask install` installs bash's, zsh's and fish's).
    Completions { shell: clap_complete::Shell },
    /// Write the man pages, one per verb, into DIR (internal: for `cargo
    /// xtask install` and the package).
    #[command(name = "__man-pages", hide = true)]
    ManPages { dir: PathBuf },
    /// A process for `check` to kill (internal).
    #[command(name = "__self-test-child", hide = true)]
    SelfTestChild,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Run the watches of this config (a TOML file or a directory), not
    /// CMD alone; with CMD too, CMD is its main watch, started after the
    /// others.
    #[arg(short, long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// With -c: accept config files that someone other than root or the
    /// init's user owns or may write.
    #[arg(long, requires = "config")]
    pub insecure_config: bool,
    /// Forward signals to CMD's whole process group, not CMD alone
    /// (tini's -g).
    #[arg(short = 'g', long, conflicts_with = "config")]
    pub group: bool,
    /// Report this exit code of CMD as 0 (tini's -e); may be repeated.
    #[arg(short = 'e', long = "remap-exit", value_name = "CODE")]
    pub remap_exit: Vec<u8>,
    /// The signal the init gets when its parent dies (tini's -p), e.g.
    /// SIGTERM, which it then forwards.
    #[arg(short = 'p', long, value_name = "SIGNAL", value_parser = crate::units::parse_signal)]
    pub parent_death: Option<nix::sys::signal::Signal>,
    /// Accepted for tini's -s: the init is always a child subreaper when
    /// it is not PID 1.
    #[arg(short = 's', hide = true)]
    pub subreaper: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "config", value_name = "CMD")]
    pub command: Vec<String>,
}

/// What `init` was asked to be.
pub enum InitPlan {
    /// `init -- CMD`: the one-process init.
    Single(crate::init::InitOptions),
    /// `init -c CONFIG [-- CMD]`: the daemon, as a container's init.
    Watches(WatchesInit),
}

pub struct WatchesInit {
    pub config: PathBuf,
    pub insecure_config: bool,
    /// Run as the main watch, after the config's.
    pub command: Vec<String>,
    pub success_codes: Vec<u8>,
    pub parent_death: Option<nix::sys::signal::Signal>,
}

impl InitArgs {
    pub fn plan(&self) -> InitPlan {
        match &self.config {
            None => InitPlan::Single(crate::init::InitOptions {
                argv: self.command.clone(),
                to_group: self.group,
                success_codes: self.remap_exit.clone(),
                parent_death: self.parent_death,
            }),
            Some(config) => InitPlan::Watches(WatchesInit {
                config: config.clone(),
                insecure_config: self.insecure_config,
                command: self.command.clone(),
                success_codes: self.remap_exit.clone(),
                parent_death: self.parent_death,
            }),
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A TOML file, or a directory of *.toml files.
    #[arg(short, long, value_name = "PATH")]
    pub config: std::path::PathBuf,
    /// Check the config, print what it defines, and exit.
    #[arg(long)]
    pub check_config: bool,
    /// Run in the background; return once the daemon serves its socket.
    #[arg(long)]
    pub daemonize: bool,
    /// Accept config files (and folders) that someone other than root or
    /// the daemon's user owns or may write. Whoever may write them runs
    /// commands as root.
    #[arg(long)]
    pub insecure_config: bool,
    /// With --daemonize: where the daemon's log goes [default:
    /// <state_dir>/supervisor.log].
    #[arg(long, value_name = "PATH", requires = "daemonize")]
    pub log_file: Option<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct TargetArgs {
    /// A watch or group name; every watch when omitted.
    pub target: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A watch or group name; every watch when omitted.
    pub target: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// A watch or group name.
    pub target: String,
    /// How many exits to show, newest first.
    #[arg(short = 'n', long, default_value_t = 5)]
    pub count: usize,
    /// Print JSON: each watch's name and its exits, newest first.
    #[arg(long)]
    pub json: bool,
}

/// `auto` or one backend by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    Auto,
    Ebpf,
    Netlink,
    Pidfd,
    Poll,
}

impl From<BackendArg> for BackendChoice {
    fn from(arg: BackendArg) -> Self {
        match arg {
            BackendArg::Auto => Self::Auto,
            BackendArg::Ebpf => Self::Only(BackendKind::Ebpf),
            BackendArg::Netlink => Self::Only(BackendKind::Netlink),
            BackendArg::Pidfd => Self::Only(BackendKind::Pidfd),
            BackendArg::Poll => Self::Only(BackendKind::Poll),
        }
    }
}

/// What `load` does with running watches the new config no longer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MissingArg {
    /// Keep them as they are: running and watched.
    Leave,
    /// Stop them; they stay listed, unmonitored.
    Stop,
    /// Stop them and forget them.
    Remove,
}

impl From<MissingArg> for Missing {
    fn from(arg: MissingArg) -> Self {
        match arg {
            MissingArg::Leave => Self::Leave,
            MissingArg::Stop => Self::Stop,
            MissingArg::Remove => Self::Remove,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BackendOptions {
    /// Exit backend: auto tries ebpf, netlink, pidfd, poll in that order.
    #[arg(long, value_enum, default_value = "auto", env = "SUPERVISOR_BACKEND")]
    pub backend: BackendArg,
    /// How often the poll backend looks (e.g. 500ms, 2s).
    #[arg(long, default_value = "1s", value_parser = crate::units::parse_duration)]
    pub poll_interval: Duration,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub backend: BackendOptions,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    #[command(flatten)]
    pub backend: BackendOptions,
    /// Only these processes (repeatable); every exit on the machine if none.
    #[arg(long = "pid", value_name = "PID")]
    pub pids: Vec<Pid>,
    /// Stop after this many exits.
    #[arg(long)]
    pub count: Option<u64>,
    /// Also print each signal that could end a traced process as it is
    /// sent, with its sender (eBPF backend only).
    #[arg(long)]
    pub signals: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The socket a CLI verb talks to: `--socket`, else `SUPERVISOR_SOCKET`,
/// else the default (clap applies the first two).
/// The daemon's socket: the flag's, else the default, else (where there
/// is none, and a container's init put it there) the fallback in $TMPDIR.
pub fn socket_path(flag: Option<&Path>) -> PathBuf {
    flag.map_or_else(crate::places::default_socket, Path::to_path_buf)
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// A watch or group name; every watch if none.
    pub target: Option<String>,
    /// First what the histories kept of this long ago (e.g. 10m).
    #[arg(long, value_parser = crate::units::parse_duration, value_name = "DURATION")]
    pub since: Option<std::time::Duration>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// A watch or group name; every watch if none.
    pub target: Option<String>,
    /// How often to ask the daemon and measure.
    #[arg(long, default_value = "1s", value_parser = crate::units::parse_duration, value_name = "DURATION")]
    pub interval: std::time::Duration,
    /// The order to begin with (keys c, m, r and n change it).
    #[arg(long, value_enum, default_value_t = TopSort::Name)]
    pub sort: TopSort,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TopSort {
    Name,
    Cpu,
    Memory,
    Restarts,
}

/// The completion script for `shell`, on stdout.
pub fn print_completions(shell: clap_complete::Shell) {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "supervisor", &mut std::io::stdout());
}

/// `supervisor.8` and one `supervisor-VERB.8` per verb, in `dir`: section
/// 8 (daemons and administration), which also keeps them apart from
/// Debian's supervisord, whose `supervisor.1` is in section 1.
pub fn write_man_pages(dir: &Path) -> std::io::Result<()> {
    let command = <Cli as clap::CommandFactory>::command()
        .version(env!("CARGO_PKG_VERSION"))
        .display_name("supervisor");
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(command, dir)?;
    // generate_to names them NAME.1: they are section 8 pages.
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "1") {
            let text = std::fs::read_to_string(&path)?.replacen(" 1 ", " 8 ", 1);
            std::fs::write(path.with_extension("8"), text)?;
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}
