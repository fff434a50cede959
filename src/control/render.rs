//! Answers and events as text for a terminal.

/// The human-readable form of a command's answer.
pub fn render(cmd: &str, result: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    match cmd {
        "status" => {
            let mut out = format!(
                "mode          {}  (since {}: {})\nmarket data   {}{}  (feed {}, {} reconnects, last message {})\ntrade updates {}  ({} reconnects)\nequity        {}  (day P&L {}, cash {})\nopen orders   {}\norders sent   {}  fills {}\n",
                s(&result["mode"]),
                s(&result["mode_since"]),
                s(&result["mode_cause"]),
                s(&result["stream"]["state"]),
                if result["stream"]["degraded"] == true {
                    ", degraded: bars by REST"
                } else {
                    ""
                },
                s(&result["stream"]["feed"]),
                s(&result["stream"]["reconnects"]),
                s(&result["stream"]["last_message_at"]),
                s(&result["trade_stream"]["state"]),
                s(&result["trade_stream"]["reconnects"]),
                s(&result["equity"]),
                s(&result["day_pnl"]),
                s(&result["cash"]),
                s(&result["open_orders"]),
                s(&result["orders_sent"]),
                s(&result["fills"]),
            );
            out.push_str(&render_positions(&result["positions"]));
            for st in result["strategies"].as_array().into_iter().flatten() {
                let held: Vec<String> = st["positions"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(sym, q)| format!("{sym} {}", s(q)))
                    .collect();
                out.push_str(&format!(
                    "strategy      {} ({}) on {}{}: {} signals{}, {} orders, {} fills, P&L {} realised, {} unrealised; holds {}{}\n",
                    s(&st["name"]),
                    s(&st["kind"]),
                    st["symbols"]
                        .as_array()
                        .map(|a| a.iter().map(&s).collect::<Vec<_>>().join(","))
                        .unwrap_or_default(),
                    if st["paused"] == true { ", paused" } else { "" },
                    s(&st["signals"]),
                    match st["ignored"].as_u64() {
                        Some(n) if n > 0 => format!(" ({n} ignored)"),
                        _ => String::new(),
                    },
                    s(&st["orders"]),
                    s(&st["fills"]),
                    s(&st["realized_pnl"]),
                    s(&st["unrealized_pnl"]),
                    if held.is_empty() {
                        "nothing".to_string()
                    } else {
                        held.join(", ")
                    },
                    match st["cold_bars"].as_u64() {
                        Some(n) if n > 0 => format!(
                            "; {n} live bars came before any history (indicators started cold: see the log's warm-up lines)"
                        ),
                        _ => String::new(),
                    }
                ));
            }
            for note in result["notes"].as_array().into_iter().flatten() {
                out.push_str(&format!("note          {}\n", s(note)));
            }
            out
        }
        "positions" => render_positions(result),
        _ => match result {
            serde_json::Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k:<24}{}\n", s(v)))
                .collect(),
            other => format!("{}\n", s(other)),
        },
    }
}

pub(super) fn render_positions(p: &serde_json::Value) -> String {
    match p.as_object() {
        Some(map) if !map.is_empty() => {
            let mut out = String::from("positions\n");
            for (sym, qty) in map {
                out.push_str(&format!(
                    "  {sym:<8}{:>12}\n",
                    qty.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| qty.to_string())
                ));
            }
            out
        }
        _ => "positions     none\n".into(),
    }
}

/// One event as a line for people.
pub fn render_event(e: &serde_json::Value) -> String {
    let s = |k: &str| match &e[k] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    match e["kind"].as_str() {
        Some("mode_changed") => format!(
            "{}  mode   {} -> {}  ({})",
            s("at"),
            s("from"),
            s("to"),
            s("cause")
        ),
        Some("fill") => format!(
            "{}  fill   {} {} {} @ {}  {}",
            s("at"),
            s("symbol"),
            s("side"),
            s("qty"),
            s("price"),
            s("client_order_id")
        ),
        Some("order") => format!(
            "{}  order  {} {} filled {}",
            s("at"),
            s("client_order_id"),
            s("status"),
            s("filled_qty")
        ),
        Some("health") => match e["change"].as_str() {
            Some("crossed") => format!("health crossed: {}", s("cause")),
            Some("rearmed") => "health re-armed".to_string(),
            _ => format!("health {} stream {}", s("stream"), s("state")),
        },
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn a_strategy_line_says_how_many_signals_were_ignored_and_bars_came_cold_when_some_did() {
        let status = |ignored: u64, cold_bars: u64| {
            serde_json::json!({
                "strategies": [{
                    "name": "trend", "kind": "momentum", "symbols": ["AAPL"], "paused": false,
                    "positions": {}, "fills": 0, "realized_pnl": "0", "unrealized_pnl": "0",
                    "signals": 3, "orders": 1, "refused": 0, "over_allocation": 0,
                    "ignored": ignored, "cold_bars": cold_bars,
                }],
            })
        };
        let line = |ignored: u64| {
            render("status", &status(ignored, 0))
                .lines()
                .find(|l| l.starts_with("strategy"))
                .map(str::to_string)
        };
        assert!(
            line(2).is_some_and(|l| l.contains(": 3 signals (2 ignored), 1 orders")),
            "{:?}",
            line(2)
        );
        assert!(
            line(0).is_some_and(
                |l| l.contains(": 3 signals, 1 orders") && l.ends_with("holds nothing")
            ),
            "{:?}",
            line(0)
        );
        let cold = render("status", &status(0, 4));
        assert!(
            cold.contains("holds nothing; 4 live bars came before any history"),
            "{cold}"
        );
    }
}
