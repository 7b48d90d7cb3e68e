//! `supervisor`: keeps processes alive, learning of each death from the
//! kernel as it happens.
//!
//! Data flows one way: kernel record -> `backend` -> `exit::ExitEvent` ->
//! (watch state machine) -> action. This crate is both the daemon/CLI
//! binary and a library so the test suite can drive the backends directly.
pub mod after;
pub mod backend;
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod client;
pub mod clone3;
pub mod conditions;
pub mod config;
pub mod control;
pub mod core_file;
pub mod daemon;
pub mod daemonize;
pub mod env_file;
pub mod events;
pub mod exit;
pub mod exit_log;
pub mod follow;
pub mod grid;
pub mod health;
pub mod helper;
pub mod histogram;
pub mod http;
pub mod import;
pub mod init;
pub mod kernel;
pub mod limits;
pub mod notification;
pub mod oom;
pub mod origin;
pub mod output;
pub mod pid_file;
pub mod places;
pub mod proc_connector;
pub mod process;
pub mod protocol;
pub mod resources;
pub mod rlimit;
pub mod runtime_dir;
pub mod safe_open;
pub mod sampler;
pub mod sched;
pub mod sd_notify;
pub mod service_manager;
pub mod snapshot;
pub mod spawn;
pub mod state;
pub mod survivor;
pub mod top;
pub mod trace;
pub mod tree;
pub mod units;
pub mod watch;
pub mod why;
