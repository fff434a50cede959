//! The journal on a real SQLite file in a temp dir: durable records, idempotent fills, an
//! append-only audit log, and tampering found and named by `traderd audit verify`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

use chrono::{TimeZone, Utc};
use rust_decimal_macros::dec;
use std::process::Command;
use traderd::alpaca::model::{OrderSide, OrderStatus};
use traderd::journal::*;

fn intent(n: u32) -> OrderIntent {
    OrderIntent {
        client_order_id: format!("td-1-{n}-AAPL"),
        symbol: "AAPL".into(),
        side: OrderSide::Buy,
        qty: dec!(10),
        request: serde_json::json!({"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market", "time_in_force": "day"}),
        correlation_id: format!("corr-{n}").into(),
        created_at: Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, n).unwrap(),
    }
}

fn fill(n: u32, exec: &str) -> FillRecord {
    FillRecord {
        execution_id: exec.into(),
        client_order_id: format!("td-1-{n}-AAPL"),
        broker_order_id: format!("b-{n}"),
        symbol: "AAPL".into(),
        side: OrderSide::Buy,
        qty: dec!(4),
        price: dec!(190.123456789),
        at: Utc.with_ymd_and_hms(2026, 11, 20, 14, 31, n).unwrap(),
    }
}

fn traderd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_traderd"))
}

#[test]
fn records_survive_a_reopen_and_fills_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        s.record_intent(&intent(1)).unwrap();
        s.record_intent(&intent(2)).unwrap();
        assert!(matches!(
            s.record_intent(&intent(1)),
            Err(JournalError::DuplicateIntent(_))
        ));
        let state = OrderState {
            client_order_id: "td-1-1-AAPL".into(),
            broker_order_id: Some("b-1".into()),
            status: OrderStatus::Filled,
            filled_qty: dec!(10),
            filled_avg_price: Some(dec!(190.1)),
            at: Utc::now(),
        };
        s.record_order_state(&state).unwrap();
        let unknown = OrderState {
            client_order_id: "never".into(),
            ..state
        };
        assert!(matches!(
            s.record_order_state(&unknown),
            Err(JournalError::UnknownIntent(_))
        ));
        assert!(s.record_fill(&fill(1, "exec-1")).unwrap());
        assert!(
            !s.record_fill(&fill(1, "exec-1")).unwrap(),
            "the same execution twice is one fill"
        );
        s.record_mode(&ModeTransition {
            from: "active".into(),
            to: "preserved".into(),
            cause: "test".into(),
            at: Utc::now(),
        })
        .unwrap();
        assert_eq!(s.next_counter("orders").unwrap(), 1);
        assert_eq!(s.next_counter("orders").unwrap(), 2);
    }
    assert!(
        dir.path().join("traderd.sqlite-wal").exists()
            || dir.path().join("traderd.sqlite").exists()
    );
    let s = Store::open(dir.path()).unwrap();
    let intents = s.intents(false).unwrap();
    assert_eq!(intents.len(), 2);
    assert_eq!(
        (
            intents[0].status,
            intents[0].broker_order_id.as_deref(),
            intents[0].filled_qty
        ),
        (Some(OrderStatus::Filled), Some("b-1"), dec!(10))
    );
    assert_eq!(
        s.intents(true).unwrap().len(),
        1,
        "the filled intent is final"
    );
    assert_eq!(
        s.fills().unwrap(),
        vec![fill(1, "exec-1")],
        "decimals come back exactly"
    );
    assert_eq!(s.current_mode().unwrap().as_deref(), Some("preserved"));
    // intent, intent, state, fill, mode: five audit records (refusals write nothing).
    assert_eq!(s.verify_audit().unwrap(), Ok(5));
    let mut s = s;
    assert_eq!(
        s.next_counter("orders").unwrap(),
        3,
        "counters survive restarts"
    );
}

#[test]
fn the_audit_log_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .record_intent(&intent(1))
        .unwrap();
    let raw = rusqlite::Connection::open(dir.path().join("traderd.sqlite")).unwrap();
    let update = raw
        .execute("UPDATE audit SET body = '{}' WHERE seq = 1", [])
        .unwrap_err();
    assert!(update.to_string().contains("append-only"), "{update}");
    let delete = raw.execute("DELETE FROM audit", []).unwrap_err();
    assert!(delete.to_string().contains("append-only"), "{delete}");
}

#[test]
fn tampering_is_detected_and_the_first_broken_record_named() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        for n in 1..=4 {
            s.record_intent(&intent(n)).unwrap();
        }
    }
    let ok = traderd()
        .args(["audit", "verify", "--state-dir"])
        .arg(dir.path())
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact (4 records)"));

    // Someone with write access drops the guard and edits record 3.
    let raw = rusqlite::Connection::open(dir.path().join("traderd.sqlite")).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET body = replace(body, '\"10\"', '\"1000\"') WHERE seq = 3;").unwrap();
    drop(raw);
    let bad = traderd()
        .args(["audit", "verify", "--state-dir"])
        .arg(dir.path())
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("audit record 3 is broken") && stderr.contains("altered"),
        "{stderr}"
    );

    // A missing journal is a clear error, not an empty success.
    let empty = tempfile::tempdir().unwrap();
    let none = traderd()
        .args(["audit", "verify", "--state-dir"])
        .arg(empty.path())
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no journal at"));
}

#[test]
fn a_removed_record_breaks_the_chain_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        for n in 1..=5 {
            s.record_intent(&intent(n)).unwrap();
        }
    }
    let raw = rusqlite::Connection::open(dir.path().join("traderd.sqlite")).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 2;")
        .unwrap();
    drop(raw);
    let broken = Store::open(dir.path())
        .unwrap()
        .verify_audit()
        .unwrap()
        .unwrap_err();
    assert_eq!(broken.seq, 2, "{broken}");
}

#[actix_rt::test]
async fn the_actor_journals_on_its_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let journal = start(dir.path(), traderd::journal::Durability::Full).unwrap();
    journal
        .addr
        .send(RecordIntent(intent(7)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        journal
            .addr
            .send(RecordFill(fill(7, "exec-7")))
            .await
            .unwrap()
            .unwrap()
    );
    let seq = journal
        .addr
        .send(RecordEvent(
            Utc::now(),
            "reconciled".into(),
            serde_json::json!({"orders": 1}),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seq, 3);
    assert_eq!(
        journal
            .addr
            .send(LoadIntents(true))
            .await
            .unwrap()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        journal.addr.send(VerifyAudit).await.unwrap().unwrap(),
        Ok(3)
    );
    let err = journal
        .addr
        .send(RecordIntent(intent(7)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("already journaled"), "{err}");
    journal.stop();
}

#[test]
fn state_directory_precedence() {
    use std::path::Path;
    use traderd::config::resolve_state_dir;
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let systemd = resolve_state_dir(
        Some(Path::new("/cli")),
        "/conf",
        env(&[
            ("STATE_DIRECTORY", "/var/lib/traderd:/other"),
            ("HOME", "/h"),
        ]),
    )
    .unwrap();
    assert_eq!(systemd, Path::new("/var/lib/traderd"));
    assert_eq!(
        resolve_state_dir(Some(Path::new("/cli")), "/conf", env(&[("HOME", "/h")])).unwrap(),
        Path::new("/cli")
    );
    assert_eq!(
        resolve_state_dir(None, "/conf", env(&[("HOME", "/h")])).unwrap(),
        Path::new("/conf")
    );
    assert_eq!(
        resolve_state_dir(None, "", env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")])).unwrap(),
        Path::new("/x/traderd")
    );
    assert_eq!(
        resolve_state_dir(None, "", env(&[("HOME", "/h")])).unwrap(),
        Path::new("/h/.local/state/traderd")
    );
    assert!(resolve_state_dir(None, "", env(&[])).is_err());
}

/// Records written one after the other reach the journal in that order, whatever else the
/// writing actor is doing: a bracket leg's intent, then its state. Actix polls the futures an
/// actor spawns in an order of its own (an item that completes is replaced by the last one), so
/// a `journal.send` made on a spawned future's first poll can overtake the one spawned before
/// it: the state then names an intent the journal does not have yet, as the order manager once
/// logged at ERROR. `ordered` queues the record when it is called.
#[actix_rt::test]
async fn records_keep_their_order_whatever_the_writer_spawns() {
    use actix::prelude::*;

    struct Writer(Addr<Journal>);
    impl Actor for Writer {
        type Context = Context<Self>;
    }
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Write(
        u32,
        tokio::sync::mpsc::UnboundedSender<Option<Result<(), JournalError>>>,
    );
    impl Handler<Write> for Writer {
        type Result = ();
        fn handle(&mut self, Write(n, answers): Write, ctx: &mut Context<Self>) {
            let mut i = intent(n % 60);
            i.client_order_id = format!("leg-{n}");
            let state = OrderState {
                client_order_id: i.client_order_id.clone(),
                broker_order_id: Some(format!("b-{n}")),
                status: OrderStatus::New,
                filled_qty: dec!(0),
                filled_avg_price: None,
                at: Utc::now(),
            };
            // Something else the actor had spawned, done at its first poll.
            ctx.spawn(async {}.into_actor(self));
            let first = ordered(&self.0, RecordIntent(i));
            let second = ordered(&self.0, RecordOrderState(state));
            let tx = answers.clone();
            ctx.spawn(
                async move {
                    tx.send(first.await).ok();
                }
                .into_actor(self),
            );
            ctx.spawn(
                async move {
                    answers.send(second.await).ok();
                }
                .into_actor(self),
            );
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let journal = traderd::journal::start(dir.path(), Durability::Normal).unwrap();
    let writer = Writer(journal.addr.clone()).start();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..200u32 {
        writer.do_send(Write(n, tx.clone()));
    }
    for _ in 0..400 {
        let r = rx.recv().await.unwrap();
        assert!(matches!(r, Some(Ok(()))), "{r:?}");
    }
    journal.stop();
}

/// The order path writes intents itself, on its own thread, through the journal's store; the
/// journal's thread writes everything else. Both at once from several threads: every write
/// lands, each intent's state after it, a duplicate is refused, and the journal's write
/// latency counts the intents too.
#[actix_rt::test]
async fn intents_written_on_the_order_path_take_turns_with_the_journals_thread() {
    let dir = tempfile::tempdir().unwrap();
    let journal = traderd::journal::start(dir.path(), Durability::Normal).unwrap();
    let writers: Vec<_> = (0..4u32)
        .map(|t| {
            let (intents, addr) = (journal.intents.clone(), journal.addr.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mine = |k: u32| OrderIntent {
                    client_order_id: format!("td-{t}-{k}-AAPL"),
                    ..intent(k)
                };
                for k in 0..25u32 {
                    intents.record_intent(&mine(k)).unwrap();
                    let state = OrderState {
                        client_order_id: format!("td-{t}-{k}-AAPL"),
                        broker_order_id: Some(format!("b-{t}-{k}")),
                        status: OrderStatus::New,
                        filled_qty: dec!(0),
                        filled_avg_price: None,
                        at: Utc::now(),
                    };
                    // The state through the journal's thread, after its intent.
                    let r = rt.block_on(ordered(&addr, RecordOrderState(state)));
                    assert!(matches!(r, Some(Ok(()))), "{r:?}");
                }
                assert!(matches!(
                    intents.record_intent(&mine(0)),
                    Err(JournalError::DuplicateIntent(_))
                ));
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let all = stored(&journal).await;
    assert_eq!(all.len(), 100);
    assert!(all.iter().all(|s| s.status == Some(OrderStatus::New)));
    let writes = journal.addr.send(GetJournalStats).await.unwrap();
    assert!(writes.count >= 200, "{writes:?}");
    assert_eq!(
        journal.addr.send(VerifyAudit).await.unwrap().unwrap(),
        Ok(200)
    );
    journal.stop();
}

/// Records sent to the journal together are committed together: one sync for the lot (group
/// commit), and still each sender hears back only once its record is on disk, as another
/// connection to the file sees it then.
#[actix_rt::test]
async fn records_sent_together_share_one_commit_and_are_answered_once_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let journal = traderd::journal::start(dir.path(), Durability::Full).unwrap();
    for k in 0..50u32 {
        journal.intents.record_intent(&intent(k)).unwrap();
    }
    // The store has the intents (copied from the intent log) before the count starts.
    assert_eq!(stored(&journal).await.len(), 50);
    let before = journal.intents.commits();
    // Queued now, all fifty, before any answer is awaited.
    let answers: Vec<_> = (0..50u32)
        .map(|k| {
            let state = OrderState {
                client_order_id: intent(k).client_order_id,
                broker_order_id: Some(format!("b-{k}")),
                status: OrderStatus::Accepted,
                filled_qty: dec!(0),
                filled_avg_price: None,
                at: Utc::now(),
            };
            ordered(&journal.addr, RecordOrderState(state))
        })
        .collect();
    let file = dir.path().join(traderd::journal::store::FILE_NAME);
    for (k, answer) in answers.into_iter().enumerate() {
        let r = answer.await;
        assert!(matches!(r, Some(Ok(()))), "{r:?}");
        let other = rusqlite::Connection::open(&file).unwrap();
        let status: Option<String> = other
            .query_row(
                "SELECT status FROM order_intents WHERE client_order_id = ?1",
                [intent(k as u32).client_order_id],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(
            status.as_deref(),
            Some("accepted"),
            "record {k} answered before it was on disk"
        );
    }
    let commits = journal.intents.commits() - before;
    assert!(
        commits <= 10,
        "fifty records sent together took {commits} commits"
    );
    // A record that fails in a batch is refused alone; the others stay.
    let unknown = OrderState {
        client_order_id: "nobody".into(),
        broker_order_id: None,
        status: OrderStatus::New,
        filled_qty: dec!(0),
        filled_avg_price: None,
        at: Utc::now(),
    };
    let (bad, good) = (
        ordered(&journal.addr, RecordOrderState(unknown)),
        ordered(&journal.addr, RecordFill(fill(1, "e-1"))),
    );
    assert!(matches!(
        bad.await,
        Some(Err(JournalError::UnknownIntent(_)))
    ));
    assert!(matches!(good.await, Some(Ok(true))));
    assert_eq!(
        journal.addr.send(VerifyAudit).await.unwrap().unwrap(),
        Ok(101)
    );
    println!("fifty records sent together: {commits} commit(s)");
    journal.stop();
}

/// The order path's write-ahead is a file of its own, synced before the request leaves; the
/// store has the intent a moment later. A stop in between (the daemon killed) leaves intents
/// only in that file: the next start puts them in the store, audited, before anything else,
/// and an intent written ahead is refused again as a duplicate.
#[actix_rt::test]
async fn intents_written_ahead_but_not_yet_stored_are_in_the_journal_after_a_restart() {
    use traderd::journal::intent_log::{CAPACITY, IntentLog};
    let dir = tempfile::tempdir().unwrap();
    // A run that wrote two intents to the store the usual way.
    let journal = traderd::journal::start(dir.path(), Durability::Full).unwrap();
    assert!(journal.intents.wait_ready(), "a new log is made");
    journal.intents.record_intent(&intent(0)).unwrap();
    journal.intents.record_intent(&intent(1)).unwrap();
    let (last, _) = journal.intents.log_position();
    assert_eq!(last, 2);
    journal.close().await;
    // Closed at once: whatever its thread had not copied in yet is copied in at the start.
    let journal = traderd::journal::start(dir.path(), Durability::Full).unwrap();
    let all = stored(&journal).await;
    assert_eq!(all.len(), 2);
    journal.close().await;
    // Then a run killed after writing three intents ahead, before its journal's thread
    // copied them in.
    let (mut log, left) = IntentLog::open(dir.path(), CAPACITY, true).unwrap();
    assert!(
        left.len() <= 2,
        "the last runs' intents, already stored: {left:?}"
    );
    for k in 2..5u32 {
        log.append(&intent(k), 0).unwrap().unwrap();
    }
    drop(log);
    let journal = traderd::journal::start(dir.path(), Durability::Full).unwrap();
    let all = stored(&journal).await;
    let ids: Vec<_> = all
        .iter()
        .map(|s| s.intent.client_order_id.clone())
        .collect();
    assert_eq!(
        ids,
        (0..5u32)
            .map(|k| intent(k).client_order_id)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        journal.addr.send(VerifyAudit).await.unwrap().unwrap(),
        Ok(5)
    );
    assert!(matches!(
        journal.intents.record_intent(&intent(3)),
        Err(JournalError::DuplicateIntent(_))
    ));
    // A new intent after the restart is written ahead and stored as before.
    journal.intents.record_intent(&intent(5)).unwrap();
    let all = stored(&journal).await;
    assert_eq!(all.len(), 6);
    journal.close().await;
}

/// Every intent the journal's store has (after committing what is queued before the ask).
async fn stored(journal: &JournalHandle) -> Vec<StoredIntent> {
    journal
        .addr
        .send(LoadIntents(false))
        .await
        .unwrap()
        .unwrap()
}
