//! `traderd ctl top`: a live terminal dashboard over the control socket. It asks `status` and
//! `health` a few times a second and draws the mode and why, both streams, equity and day P&L
//! with a sparkline of the session's equity, positions with unrealised P&L, open orders, the
//! last fills, the health windows against their thresholds and one row per strategy. Keys:
//! `p` pause, `r` resume, `f` flatten (asks to confirm), `q` quits. Fits 80×24.

use ratatui::Frame;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use serde_json::Value;
use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the screen shows: the last answers, the equity seen, a message for the operator.
#[derive(Default)]
struct View {
    status: Value,
    health: Value,
    equity: VecDeque<u64>,
    message: String,
    confirm_flatten: bool,
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn mode_style(mode: &str) -> Style {
    let color = match mode {
        "active" => Color::Green,
        "reduce_only" => Color::Yellow,
        _ => Color::Red,
    };
    Style::default().fg(color).add_modifier(Modifier::BOLD)
}

fn draw(f: &mut Frame, v: &View) {
    let st = &v.status;
    let rows = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(3),
        Constraint::Min(6),
        Constraint::Length(5),
        Constraint::Length(1),
    ])
    .split(f.area());
    // Mode, streams, money.
    let mode = s(&st["mode"]);
    let header = vec![
        Line::from(vec![
            Span::raw("mode "),
            Span::styled(mode.clone(), mode_style(&mode)),
            Span::raw(format!("  {}", s(&st["mode_cause"]))),
        ]),
        Line::from(format!(
            "market data {} ({} reconnects, last {})  trade updates {}",
            s(&st["stream"]["state"]),
            s(&st["stream"]["reconnects"]),
            s(&st["stream"]["last_message_at"])
                .get(11..19)
                .unwrap_or("-"),
            s(&st["trade_stream"]["state"]),
        )),
        Line::from(format!(
            "equity {}  day P&L {}  cash {}  open orders {}  fills {}",
            s(&st["equity"]),
            s(&st["day_pnl"]),
            s(&st["cash"]),
            s(&st["open_orders"]),
            s(&st["fills"]),
        )),
    ];
    f.render_widget(
        Paragraph::new(header).block(Block::bordered().title(" traderd ")),
        rows[0],
    );
    // Cents above the session's low, so a move of a few dollars on 100,000 shows.
    let low = v.equity.iter().copied().min().unwrap_or(0);
    let data: Vec<u64> = v.equity.iter().map(|e| e - low + 1).collect();
    f.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(" equity this session "))
            .data(&data)
            .style(Style::default().fg(Color::Cyan)),
        rows[1],
    );
    // Positions and strategies | last fills.
    let middle =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).split(rows[2]);
    let mut left: Vec<Line> = Vec::new();
    for (sym, qty) in st["positions"].as_object().into_iter().flatten() {
        left.push(Line::from(format!(
            "{sym:<7}{:>9}  unreal. {}",
            s(qty),
            s(&st["unrealized"][sym])
        )));
    }
    if left.is_empty() {
        left.push(Line::from("no position"));
    }
    for strat in st["strategies"].as_array().into_iter().flatten() {
        left.push(Line::from(format!(
            "{}{} ({}): {} sig, {} ord, P&L {}",
            s(&strat["name"]),
            if strat["paused"] == true {
                " PAUSED"
            } else {
                ""
            },
            s(&strat["kind"]),
            s(&strat["signals"]),
            s(&strat["orders"]),
            s(&strat["realized_pnl"]),
        )));
    }
    f.render_widget(
        Paragraph::new(left).block(Block::bordered().title(" positions, strategies ")),
        middle[0],
    );
    let fills: Vec<Line> = st["recent_fills"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .map(|fl| {
            Line::from(format!(
                "{} {} {} {} @ {}",
                s(&fl["at"]).get(11..19).unwrap_or("-"),
                s(&fl["side"]),
                s(&fl["qty"]),
                s(&fl["symbol"]),
                s(&fl["price"]),
            ))
        })
        .collect();
    f.render_widget(
        Paragraph::new(fills).block(Block::bordered().title(" last fills ")),
        middle[1],
    );
    // Health windows against their thresholds.
    let h = &v.health;
    let window = |name: &str| {
        format!(
            "{} {}/{}",
            name.replace('_', " "),
            s(&h[name]),
            s(&h["thresholds"][name])
        )
    };
    let health = vec![
        Line::from(format!(
            "{}   {}",
            window("rest_errors_in_window"),
            window("order_rejects_in_a_row")
        )),
        Line::from(format!(
            "{}   crossings {}   tripped {}",
            window("restarts_in_window"),
            s(&h["crossings"]),
            s(&h["tripped"])
        )),
        Line::from(
            h["notes"]
                .as_array()
                .and_then(|n| n.last())
                .map(s)
                .unwrap_or_default(),
        ),
    ];
    f.render_widget(
        Paragraph::new(health).block(Block::bordered().title(" health ")),
        rows[3],
    );
    let keys = if v.confirm_flatten {
        "flatten every position? y: yes, any other key: no".to_string()
    } else {
        format!("p pause  r resume  f flatten  q quit   {}", v.message)
    };
    f.render_widget(
        Paragraph::new(keys).style(Style::default().add_modifier(Modifier::REVERSED)),
        rows[4],
    );
}

/// Runs the dashboard until `q`. `Err` when stdout is not a terminal or the socket cannot be
/// reached at the start.
pub fn run(socket: &Path, every: Duration) -> Result<(), String> {
    if !std::io::stdout().is_terminal() {
        return Err(
            "ctl top draws on a terminal and stdout is not one: use `traderd ctl status` (or --json) in scripts"
                .into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let call = |cmd: &str| {
        runtime
            .block_on(super::call(socket, cmd, &[]))
            .map_err(|e| e.to_string())
    };
    // Fail before taking the screen if the daemon is not there.
    call("status")?;
    let mut terminal = ratatui::init();
    let mut view = View::default();
    let mut next = Instant::now();
    let result = loop {
        if Instant::now() >= next {
            next = Instant::now() + every;
            match call("status") {
                Ok(r) => {
                    if let Some(st) = r.result {
                        if let Some(e) = st["equity"].as_str().and_then(|e| e.parse::<f64>().ok()) {
                            if view.equity.len() == 300 {
                                view.equity.pop_front();
                            }
                            view.equity.push_back((e.max(0.0) * 100.0).round() as u64);
                        }
                        view.status = st;
                    }
                }
                Err(e) => view.message = format!("the daemon did not answer: {e}"),
            }
            if let Ok(Some(h)) = call("health").map(|r| r.result) {
                view.health = h;
            }
        }
        if let Err(e) = terminal.draw(|f| draw(f, &view)) {
            break Err(e.to_string());
        }
        let wait = next.saturating_duration_since(Instant::now());
        match event::poll(wait) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => break Err(e.to_string()),
        }
        let key = match event::read() {
            Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => k.code,
            Ok(_) => continue,
            Err(e) => break Err(e.to_string()),
        };
        if view.confirm_flatten {
            view.confirm_flatten = false;
            view.message = if key == KeyCode::Char('y') {
                answer(call("flatten"))
            } else {
                "flatten: not asked".into()
            };
            next = Instant::now();
            continue;
        }
        match key {
            KeyCode::Char('q') | KeyCode::Esc => break Ok(()),
            KeyCode::Char('p') => view.message = answer(call("pause")),
            KeyCode::Char('r') => view.message = answer(call("resume")),
            KeyCode::Char('f') => view.confirm_flatten = true,
            _ => {}
        }
        next = Instant::now();
    };
    ratatui::restore();
    result
}

fn answer(r: Result<super::Response, String>) -> String {
    match r {
        Ok(r) if r.ok => format!(
            "ok: {}",
            r.result.map(|v| v.to_string()).unwrap_or_default()
        ),
        Ok(r) => format!(
            "refused: {}",
            r.error.map(|e| e.message).unwrap_or_default()
        ),
        Err(e) => format!("error: {e}"),
    }
}
