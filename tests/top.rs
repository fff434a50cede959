#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `traderd ctl top` in a real terminal: tmux, 80×24, against the daemon running in this
//! process. It draws the mode, the streams, equity, positions, fills, health and strategies;
//! `p` pauses, `r` resumes, `f` asks before flattening, `q` quits; without a terminal it says so.

mod common;

use common::wait_for;
use std::process::Command;
use std::time::Duration;
use traderd::config::CheckContext;

const WAIT: Duration = Duration::from_secs(60);

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tmux is needed (apt-get install tmux; .ci/run does it): {e}"));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[actix_rt::test]
async fn ctl_top_shows_the_daemon_and_steers_it_from_the_keyboard() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::busy_config("", &CheckContext::default());
    let daemon = common::InProcess::start(config, CheckContext::default(), dir.path(), |_| None);
    let socket = daemon.socket.clone();
    wait_for("fills", WAIT, || async {
        let r = traderd::control::call(&socket, "status", &[]).await.ok()?;
        (r.result?["fills"].as_u64()? >= 1).then_some(())
    })
    .await;

    // Not a terminal: a clear refusal.
    let piped = Command::new(env!("CARGO_BIN_EXE_traderd"))
        .args(["ctl", "top", "--socket"])
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&piped.stderr).contains("stdout is not one"));

    let session = format!("top-{}", std::process::id());
    let socket_dir = dir.path().join("tmux.sock");
    let sock = socket_dir.to_str().unwrap().to_string();
    let cmd = format!(
        "{} ctl top --socket {}",
        env!("CARGO_BIN_EXE_traderd"),
        socket.display()
    );
    tmux(&[
        "-S",
        &sock,
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "80",
        "-y",
        "24",
        &cmd,
    ]);
    let screen = |sock: String, session: String| {
        let out = tmux(&["-S", &sock, "capture-pane", "-p", "-t", &session]);
        async move { Some(out) }
    };
    let shows = |what: &'static str| {
        let (sock, session) = (sock.clone(), session.clone());
        async move {
            wait_for(what, WAIT, || {
                let (sock, session) = (sock.clone(), session.clone());
                async move { screen(sock, session).await?.contains(what).then_some(()) }
            })
            .await
        }
    };
    let first = wait_for("the dashboard", WAIT, || {
        let (sock, session) = (sock.clone(), session.clone());
        async move {
            let s = screen(sock, session).await?;
            (s.contains("mode active") && s.contains("last fills") && s.contains(" @ "))
                .then_some(s)
        }
    })
    .await;
    eprintln!("{first}");
    for part in [
        "market data",
        "equity",
        "positions, strategies",
        "health",
        "rest errors in window",
        "q quit",
    ] {
        assert!(first.contains(part), "{part} missing:\n{first}");
    }
    assert!(first.lines().count() <= 24 && first.lines().all(|l| l.chars().count() <= 80));

    // p pauses; r resumes; f asks first and n leaves it.
    tmux(&["-S", &sock, "send-keys", "-t", &session, "p"]);
    shows("mode reduce_only").await;
    tmux(&["-S", &sock, "send-keys", "-t", &session, "r"]);
    shows("mode active").await;
    tmux(&["-S", &sock, "send-keys", "-t", &session, "f"]);
    shows("flatten every position?").await;
    tmux(&["-S", &sock, "send-keys", "-t", &session, "n"]);
    shows("flatten: not asked").await;
    let r = traderd::control::call(&socket, "status", &[])
        .await
        .unwrap();
    assert_eq!(r.result.unwrap()["mode"], "active", "nothing flattened");
    // q quits: the session ends with it.
    tmux(&["-S", &sock, "send-keys", "-t", &session, "q"]);
    wait_for("top to quit", WAIT, || {
        let (sock, session) = (sock.clone(), session.clone());
        async move {
            let alive = Command::new("tmux")
                .args(["-S", &sock, "has-session", "-t", &session])
                .status()
                .ok()?
                .success();
            (!alive).then_some(())
        }
    })
    .await;
    daemon.stop().await;
}
