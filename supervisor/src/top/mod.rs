//! `supervisor top`: the watches live in the terminal, like htop. Owns
//! the terminal (raw mode and the alternate screen, given back on every
//! way out: a key, a signal, a panic, an error) and the loop that asks the
//! daemon for its status every interval, measures usage, reads the
//! selected watch's log, and sends an action when a key asks for one.
//! What is shown and what keys mean is `app`; how it looks is `draw`.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context as _, Result};
use ratatui::{
    backend::CrosstermBackend,
    crossterm::{
        cursor,
        event::{self, Event},
        execute,
        terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
    },
    Terminal,
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};

use crate::{
    cli::{TopArgs, TopSort},
    control,
    protocol::{Request, Summary, WatchStatus},
};

mod app;
mod draw;
mod usage;

use app::{Action, App, Sort};

/// Log lines read for the lower pane.
const LOG_LINES: usize = 50;

pub async fn run(socket: &Path, args: TopArgs) -> Result<ExitCode> {
    use std::io::IsTerminal as _;
    if !std::io::stdout().is_terminal() {
        bail!("top needs a terminal (for a picture to read, use `supervisor status` or `events`)");
    }
    // Asked once before the screen is taken, so that a daemon that is not
    // there is an error in the shell, not a blank screen.
    let first = status(socket, args.target.as_deref()).await?;
    let sort = match args.sort {
        TopSort::Name => Sort::Name,
        TopSort::Cpu => Sort::Cpu,
        TopSort::Memory => Sort::Memory,
        TopSort::Restarts => Sort::Restarts,
    };
    let screen = Screen::take()?;
    let result = show(&screen, socket, &args, App::new(sort), first).await;
    drop(screen);
    result.map(|()| ExitCode::SUCCESS)
}

/// What the loop waits on.
enum Input {
    Key(Event),
    /// An action's outcome, to be said.
    Done(String),
}

async fn show(
    screen: &Screen,
    socket: &Path,
    args: &TopArgs,
    mut app: App,
    first: Status,
) -> Result<()> {
    let mut terminal = screen.terminal()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let keys = tx.clone();
    // crossterm reads the terminal blocking: a thread of its own, which
    // ends with the process.
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if keys.send(Input::Key(event)).is_err() {
                break;
            }
        }
    });
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut meter = usage::Meter::new();
    let mut tick = tokio::time::interval(args.interval);
    tick.tick().await;
    let mut status_now = Some(first);
    loop {
        if let Some(s) = status_now.take() {
            let usage = meter.measure(&s.watches);
            app.update(s.watches, usage, s.info);
        }
        let log = log_lines(app.selected());
        terminal.draw(|frame| draw::draw(frame, &app, &log))?;
        tokio::select! {
            _ = tick.tick() => match status(socket, args.target.as_deref()).await {
                Ok(s) => {
                    if app.said.as_deref() == Some(LOST) {
                        app.said = None;
                    }
                    status_now = Some(s);
                }
                Err(_) => app.said = Some(LOST.to_owned()),
            },
            input = rx.recv() => match input {
                Some(Input::Key(Event::Key(key))) => match app.key(key) {
                    Some(Action::Quit) => return Ok(()),
                    Some(Action::Command(command, name)) => {
                        let (socket, done) = (socket.to_owned(), tx.clone());
                        tokio::spawn(async move {
                            let said = act(&socket, command, name).await;
                            let _ = done.send(Input::Done(said));
                        });
                    }
                    Some(Action::Redraw) | None => {}
                },
                // A resize, among others: drawn again at its new size.
                Some(Input::Key(_)) => {}
                Some(Input::Done(said)) => {
                    app.said = Some(said);
                    // What the action did, at once.
                    tick.reset_immediately();
                }
                None => return Ok(()),
            },
            _ = term.recv() => return Ok(()),
            _ = hangup.recv() => return Ok(()),
            _ = interrupt.recv() => return Ok(()),
        }
    }
}

const LOST: &str = "the daemon does not answer; trying again";

/// One answer to `status`.
struct Status {
    watches: Vec<WatchStatus>,
    info: Option<crate::protocol::DaemonInfo>,
}

async fn status(socket: &Path, target: Option<&str>) -> Result<Status> {
    let response = control::request(
        socket,
        &Request::Status {
            target: target.map(str::to_owned),
        },
    )
    .await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    let info = match response.summary {
        Some(Summary::Info(info)) => Some(*info),
        _ => None,
    };
    Ok(Status {
        watches: response.watches,
        info,
    })
}

async fn act(socket: &Path, command: crate::protocol::Command, name: String) -> String {
    let request = Request::Command {
        command,
        target: Some(name.clone()),
    };
    let verb = command.verb();
    match control::request(socket, &request).await {
        Ok(r) if r.ok => format!("{verb} {name}: done"),
        Ok(r) => format!("{verb} {name}: {}", r.error.unwrap_or_default()),
        Err(e) => format!("{verb} {name}: {e:#}"),
    }
}

/// The end of the selected watch's log files (stdout, then stderr when it
/// is another file).
fn log_lines(watch: Option<&WatchStatus>) -> Vec<String> {
    let Some(w) = watch else {
        return Vec::new();
    };
    let mut paths: Vec<&std::path::PathBuf> =
        [&w.stdout, &w.stderr].into_iter().flatten().collect();
    paths.dedup();
    if paths.is_empty() {
        return vec!["(no stdout or stderr file in its config)".to_owned()];
    }
    let mut lines = Vec::new();
    for path in paths {
        match crate::client::open_log(path).and_then(|mut f| crate::client::tail(&mut f, LOG_LINES))
        {
            Ok(text) => lines.extend(String::from_utf8_lossy(&text).lines().map(str::to_owned)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => lines.push(format!("({}: {e})", path.display())),
        }
    }
    lines
}

/// The terminal while `top` has it: raw, on the alternate screen, the
/// cursor hidden. Given back when dropped, and by the panic hook.
struct Screen;

impl Screen {
    fn take() -> Result<Self> {
        terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        let screen = Self;
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
            .context("taking the alternate screen")?;
        let earlier = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |panic| {
            give_back();
            earlier(panic);
        }));
        Ok(screen)
    }

    fn terminal(&self) -> Result<Terminal<CrosstermBackend<std::io::Stdout>>> {
        Ok(Terminal::new(CrosstermBackend::new(std::io::stdout()))?)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        give_back();
    }
}

fn give_back() {
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}
