//! What `supervisor top` shows and what its keys mean: the watches with
//! their measured usage, the order, the selection (kept by name, so that
//! it stays on its watch as the order changes) and the last word said.
//! Pure: no terminal, no socket, no clock.
use std::collections::HashMap;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::protocol::{Command, DaemonInfo, WatchStatus};

/// What `top` measured of a watch's processes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Of one core, since the last measure (none for the first).
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    Name,
    Cpu,
    Memory,
    Restarts,
}

impl Sort {
    pub fn label(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Cpu => "cpu",
            Self::Memory => "memory",
            Self::Restarts => "restarts",
        }
    }
}

/// What a key asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    /// Start, stop or restart this watch.
    Command(Command, String),
    /// Nothing beyond drawing again.
    Redraw,
}

pub struct App {
    pub watches: Vec<WatchStatus>,
    pub usage: HashMap<String, Usage>,
    pub info: Option<DaemonInfo>,
    pub sort: Sort,
    /// Largest first (for names: A to Z).
    pub descending: bool,
    selected: Option<String>,
    /// The last thing to tell: an action's outcome, a lost connection.
    pub said: Option<String>,
}

impl App {
    pub fn new(sort: Sort) -> Self {
        Self {
            watches: Vec::new(),
            usage: HashMap::new(),
            info: None,
            sort,
            descending: sort != Sort::Name,
            selected: None,
            said: None,
        }
    }

    /// Takes a new picture of the watches and their usage.
    pub fn update(
        &mut self,
        watches: Vec<WatchStatus>,
        usage: HashMap<String, Usage>,
        info: Option<DaemonInfo>,
    ) {
        self.watches = watches;
        self.usage = usage;
        self.info = info;
        let known = |name: &String| self.watches.iter().any(|w| &w.name == name);
        if !self.selected.as_ref().is_some_and(known) {
            self.selected = self.rows().first().map(|w| w.name.clone());
        }
    }

    /// The watches in the chosen order.
    pub fn rows(&self) -> Vec<&WatchStatus> {
        let mut rows: Vec<&WatchStatus> = self.watches.iter().collect();
        let usage = |w: &WatchStatus| self.usage.get(&w.name).copied().unwrap_or_default();
        rows.sort_by(|a, b| {
            let order = match self.sort {
                Sort::Name => a.name.cmp(&b.name),
                Sort::Cpu => usage(a)
                    .cpu_percent
                    .unwrap_or(-1.0)
                    .total_cmp(&usage(b).cpu_percent.unwrap_or(-1.0)),
                Sort::Memory => usage(a).memory_bytes.cmp(&usage(b).memory_bytes),
                Sort::Restarts => a.restarts.cmp(&b.restarts),
            };
            // Ties in name order, whichever way the sort goes.
            let order = if self.descending {
                order.reverse()
            } else {
                order
            };
            order.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    /// Where the selection is in `rows()`.
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_ref()?;
        self.rows().iter().position(|w| &w.name == name)
    }

    pub fn selected(&self) -> Option<&WatchStatus> {
        let name = self.selected.as_ref()?;
        self.watches.iter().find(|w| &w.name == name)
    }

    fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let at = self.selected_index().unwrap_or(0) as isize;
        let to = (at + by).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[to].name.clone());
    }

    fn sort_by(&mut self, sort: Sort) {
        if self.sort == sort {
            self.descending = !self.descending;
        } else {
            self.sort = sort;
            self.descending = sort != Sort::Name;
        }
    }

    /// What `key` does: lower-case letters change the view, capitals act
    /// on the selected watch (so that a stray key never stops one).
    pub fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return Some(Action::Quit),
            KeyCode::Char('q') | KeyCode::Esc => return Some(Action::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home => self.move_selection(isize::MIN / 2),
            KeyCode::End => self.move_selection(isize::MAX / 2),
            KeyCode::Char('c') => self.sort_by(Sort::Cpu),
            KeyCode::Char('m') => self.sort_by(Sort::Memory),
            KeyCode::Char('r') => self.sort_by(Sort::Restarts),
            KeyCode::Char('n') => self.sort_by(Sort::Name),
            KeyCode::Char(verb @ ('S' | 'X' | 'R')) => {
                let name = self.selected()?.name.clone();
                let command = match verb {
                    'S' => Command::Start,
                    'X' => Command::Stop,
                    _ => Command::Restart,
                };
                self.said = Some(format!("{} {name}…", command.verb()));
                return Some(Action::Command(command, name));
            }
            _ => return None,
        }
        Some(Action::Redraw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::State;

    fn watch(name: &str, restarts: u32) -> WatchStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "group": null, "state": "up", "pid": 1, "uptime_secs": 1.0,
            "restarts": restarts, "last_exit": null, "last_error": null,
            "backoff_secs": null, "ready": "started", "health": null, "said": null,
            "stdout": null, "stderr": null
        }))
        .expect("a WatchStatus")
    }

    fn usage(cpu: f64, memory: u64) -> Usage {
        Usage {
            cpu_percent: Some(cpu),
            memory_bytes: Some(memory),
        }
    }

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn names(app: &App) -> Vec<&str> {
        app.rows().iter().map(|w| w.name.as_str()).collect()
    }

    fn app() -> App {
        let mut app = App::new(Sort::Name);
        app.update(
            vec![watch("a", 5), watch("b", 0), watch("c", 2)],
            HashMap::from([
                ("a".into(), usage(1.0, 300)),
                ("b".into(), usage(90.0, 100)),
                ("c".into(), usage(10.0, 200)),
            ]),
            None,
        );
        app
    }

    #[test]
    fn keys_sort_each_way_and_the_selection_stays_on_its_watch() {
        let mut app = app();
        assert_eq!(names(&app), ["a", "b", "c"]);
        assert_eq!(app.selected().unwrap().name, "a");
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected().unwrap().name, "b");
        press(&mut app, KeyCode::Char('c'));
        assert_eq!(names(&app), ["b", "c", "a"]);
        assert_eq!(app.selected_index(), Some(0), "still on b");
        press(&mut app, KeyCode::Char('m'));
        assert_eq!(names(&app), ["a", "c", "b"]);
        press(&mut app, KeyCode::Char('m'));
        assert_eq!(names(&app), ["b", "c", "a"], "again: the other way");
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(names(&app), ["a", "c", "b"]);
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected().unwrap().name, "b");
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected().unwrap().name, "b", "stops at the end");
    }

    #[test]
    fn capitals_act_on_the_selected_watch_and_quitting_has_three_keys() {
        let mut app = app();
        press(&mut app, KeyCode::Down);
        assert_eq!(
            press(&mut app, KeyCode::Char('R')),
            Some(Action::Command(Command::Restart, "b".into()))
        );
        assert_eq!(app.said.as_deref(), Some("restart b…"));
        assert_eq!(
            press(&mut app, KeyCode::Char('X')),
            Some(Action::Command(Command::Stop, "b".into()))
        );
        assert_eq!(
            press(&mut app, KeyCode::Char('S')),
            Some(Action::Command(Command::Start, "b".into()))
        );
        assert_eq!(press(&mut app, KeyCode::Char('s')), None);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));
        assert_eq!(press(&mut app, KeyCode::Esc), Some(Action::Quit));
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
    }

    #[test]
    fn a_selected_watch_that_goes_leaves_the_selection_on_the_first() {
        let mut app = app();
        press(&mut app, KeyCode::Down);
        let mut c = watch("c", 2);
        c.state = State::Unmonitored;
        app.update(vec![watch("a", 5), c], HashMap::new(), None);
        assert_eq!(app.selected().unwrap().name, "a");
    }
}
