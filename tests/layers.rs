#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

//! The house's floors, checked: imports point one way (docs/architecture.md, "Layers").
//!
//! - `domain/` imports nothing else of the crate;
//! - the cores (the wire in `alpaca/`, `aggregation`, `orders/`, `risk/`, `strategy/`, the
//!   journal's store, `trace`, `latency`) import only the domain and each other: never an
//!   actor, the daemon, the control socket, the simulator, the tools, telemetry, the
//!   cross-actor messages or the config, and never actix;
//! - the simulator, beside the daemon, never imports the daemon's actors, wiring or tools.

use std::path::{Path, PathBuf};

fn files(under: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(under);
    if root.is_file() {
        return vec![root];
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// Lines of `paths` (comments aside) that name one of `forbidden`.
fn offenders(paths: &[&str], forbidden: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for under in paths {
        for file in files(under) {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if let Some(f) = forbidden.iter().find(|f| code.contains(*f)) {
                    out.push(format!(
                        "{}:{}: names {f}: {}",
                        file.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    out
}

const ABOVE_THE_CORES: &[&str] = &[
    "crate::actors",
    "crate::daemon",
    "crate::control",
    "crate::sim",
    "crate::tools",
    "crate::telemetry",
    "crate::messages",
    "crate::config",
    "crate::systemd",
    "crate::cli",
    "actix",
];

#[test]
fn the_domain_imports_nothing_else_of_the_crate() {
    let found = offenders(
        &["domain"],
        &[
            "crate::alpaca",
            "crate::orders",
            "crate::risk",
            "crate::strategy",
            "crate::journal",
            "crate::aggregation",
        ],
    );
    let found: Vec<_> = found
        .into_iter()
        .chain(offenders(&["domain"], ABOVE_THE_CORES))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_cores_import_only_the_domain_and_each_other() {
    let cores = [
        "alpaca",
        "aggregation.rs",
        "analytics.rs",
        "orders",
        "risk",
        "strategy",
        "journal/store.rs",
        "journal/store",
        "history",
        "journal/audit.rs",
        "mode.rs",
        "connection",
        "trace.rs",
        "latency.rs",
    ];
    let found = offenders(&cores, ABOVE_THE_CORES);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_simulator_stands_beside_the_daemon() {
    let found = offenders(
        &["sim"],
        &[
            "crate::actors",
            "crate::daemon",
            "crate::control",
            "crate::tools",
            "crate::telemetry",
            "crate::messages",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_messages_are_a_contract_no_actor_defines() {
    let found = offenders(
        &["messages"],
        &[
            "crate::actors",
            "crate::daemon",
            "crate::control",
            "crate::sim",
            "crate::tools",
            "crate::telemetry",
        ],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_actors_hold_the_broker_trait_not_the_alpaca_client() {
    let found: Vec<String> = offenders(&["actors"], &["AlpacaClient"])
        .into_iter()
        // The REST observer is the Alpaca client's own hook, wired by the daemon.
        .filter(|l| !l.contains("fn observe_rest") && !l.contains("set_observer"))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_control_socket_addresses_messages_not_actors() {
    // One recipient per message it sends (`control::Handles`): it names no actor's type.
    let found = offenders(
        &["control"],
        &["crate::actors", "crate::sim", "crate::tools"],
    );
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn no_file_in_src_is_over_600_lines_unless_its_code_is_under_400_and_the_rest_tests() {
    let mut over = Vec::new();
    for file in files("") {
        let text = std::fs::read_to_string(&file).unwrap();
        let total = text.lines().count();
        if total <= 600 {
            continue;
        }
        // The code is what comes before the tests kept beside it.
        let code = text
            .lines()
            .position(|l| l == "#[cfg(test)]")
            .unwrap_or(total);
        if code >= 400 {
            over.push(format!(
                "{}: {total} lines, {code} of them code",
                file.display()
            ));
        }
    }
    assert!(over.is_empty(), "split these: {}", over.join("\n"));
}

#[test]
fn only_the_daemon_the_tools_and_the_command_line_use_the_simulator() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let users = ["sim", "daemon", "tools", "app.rs"];
    let mut found = Vec::new();
    for file in files("") {
        let rel = file.strip_prefix(&src).unwrap();
        if users.iter().any(|u| rel.starts_with(u)) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("crate::sim") {
                found.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
