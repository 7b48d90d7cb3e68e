//! How `supervisor top` looks: a header, the table of watches, the
//! selected watch's last exits beside the end of its log, and a line of
//! keys and the last word said. Draws `App` and the log lines it is
//! given; reads nothing itself. Everything a watched program wrote goes
//! through `printable`, so that its escape sequences never reach the
//! operator's terminal.
use std::time::Duration;

use ratatui::{
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState},
    Frame,
};

use super::app::App;
use crate::{
    client::{clock, printable},
    protocol::{State, WatchStatus},
    units::{short_duration, short_size},
};

/// Exits listed in the lower pane.
pub const EXITS_SHOWN: usize = 8;

pub fn draw(frame: &mut Frame, app: &App, log: &[String]) {
    let [header, table, lower, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(EXITS_SHOWN as u16 + 2),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(app)), header);
    draw_table(frame, app, table);
    let [exits, logs] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(lower);
    let selected = app.selected();
    let name = selected.map_or("", |w| w.name.as_str());
    frame.render_widget(
        Paragraph::new(exit_lines(selected)).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" last exits of {name} ")),
        ),
        exits,
    );
    let shown = log
        .len()
        .saturating_sub(logs.height.saturating_sub(2) as usize);
    let lines: Vec<Line> = log[shown..]
        .iter()
        .map(|l| Line::raw(printable(l).into_owned()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" log of {name} ")),
        ),
        logs,
    );
    frame.render_widget(Paragraph::new(key_line(app)), keys);
}

fn header_line(app: &App) -> Line<'static> {
    let mut text = format!("supervisor top · {} watches", app.watches.len());
    if let Some(info) = &app.info {
        text.push_str(&format!(
            " · exits seen by {} · tracking {}",
            info.backend, info.tracking
        ));
    }
    let way = if app.descending { "↓" } else { "↑" };
    text.push_str(&format!(" · sorted by {} {way}", app.sort.label()));
    Line::styled(text, Style::default().add_modifier(Modifier::BOLD))
}

fn key_line(app: &App) -> Line<'static> {
    let keys = "q quit  ↑↓ select  c cpu  m memory  r restarts  n name  S start  X stop  R restart";
    let mut spans = vec![Span::styled(keys, Style::default().fg(Color::DarkGray))];
    if let Some(said) = &app.said {
        spans.push(Span::raw("   "));
        spans.push(Span::styled(
            printable(said).into_owned(),
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    Line::from(spans)
}

fn state_style(state: State) -> Style {
    match state {
        State::Up => Style::default().fg(Color::Green),
        State::Unmonitored => Style::default().fg(Color::DarkGray),
        _ => Style::default().fg(Color::Yellow),
    }
}

fn draw_table(frame: &mut Frame, app: &App, area: Rect) {
    let header = Row::new([
        "WATCH",
        "STATE",
        "PID",
        "UPTIME",
        "RESTARTS",
        "CPU%",
        "MEM",
        "LAST EXIT",
    ])
    .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = app.rows().into_iter().map(|w| {
        let usage = app.usage.get(&w.name).copied().unwrap_or_default();
        let name = match &w.group {
            Some(g) => format!("{} ({g})", w.name),
            None => w.name.clone(),
        };
        let state = match w.backoff_secs {
            Some(_) => format!("{} (held)", w.state),
            None => w.state.to_string(),
        };
        Row::new([
            Cell::from(name),
            Cell::from(state).style(state_style(w.state)),
            Cell::from(w.pid.map(|p| p.to_string()).unwrap_or_default()),
            Cell::from(
                w.uptime_secs
                    .map(|s| short_duration(Duration::from_secs_f64(s)))
                    .unwrap_or_default(),
            ),
            Cell::from(w.restarts.to_string()),
            Cell::from(
                usage
                    .cpu_percent
                    .map(|c| format!("{c:.1}"))
                    .unwrap_or_default(),
            ),
            Cell::from(usage.memory_bytes.map(short_size).unwrap_or_default()),
            Cell::from(
                w.last_exit
                    .as_ref()
                    .map(|e| printable(&e.cause).into_owned())
                    .unwrap_or_default(),
            ),
        ])
    });
    let widths = [
        Constraint::Length(20),
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Min(20),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::default().borders(Borders::ALL))
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn exit_lines(watch: Option<&WatchStatus>) -> Vec<Line<'static>> {
    let Some(w) = watch else {
        return Vec::new();
    };
    if w.exits.is_empty() {
        return vec![Line::styled(
            "no exit yet",
            Style::default().fg(Color::DarkGray),
        )];
    }
    w.exits
        .iter()
        .rev()
        .take(EXITS_SHOWN)
        .map(|e| {
            Line::from(vec![
                Span::styled(
                    format!("{} pid {} ", clock(e.at, "%H:%M:%S"), e.pid),
                    Style::default().fg(Color::DarkGray),
                ),
                Span::raw(printable(&e.cause).into_owned()),
            ])
        })
        .collect()
}
