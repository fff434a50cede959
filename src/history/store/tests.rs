//! The store: what is missing, and the block cache kept true.
use super::*;

#[test]
fn what_is_missing_is_what_no_fetched_range_covers() {
    // (ranges covered, missing from [0, 100])
    type Ranges<'a> = &'a [(i64, i64)];
    let rows: [(Ranges, Ranges); 5] = [
        (&[], &[(0, 100)]),
        (&[(0, 100)], &[]),
        (&[(10, 20)], &[(0, 9), (21, 100)]),
        (&[(-50, 30), (40, 200)], &[(31, 39)]),
        (&[(0, 10), (11, 100)], &[]),
    ];
    for (ranges, missing) in rows {
        assert_eq!(uncovered(0, 100, ranges), missing, "{ranges:?}");
    }
}

fn bar(t: i64, close: &str) -> Bar {
    let p: Decimal = close.parse().unwrap();
    Bar {
        t: time(t).unwrap(),
        o: p,
        h: p,
        l: p,
        c: p,
        v: Decimal::ONE_HUNDRED,
        n: Some(3),
        vw: Some(p),
    }
}

/// A store in a temporary directory with a day of 390 minute bars of "A" (closes by
/// `close`), read once through the block cache (which packs the day): the store, the day's
/// span and the bars.
fn a_day_read(close: impl Fn(i64) -> String) -> (tempfile::TempDir, HistoryStore, Span, Vec<Bar>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = HistoryStore::open(dir.path()).unwrap();
    let day = (
        time(1_764_167_400).unwrap(),
        time(1_764_167_400 + 86_399).unwrap(),
    );
    let bars: Vec<Bar> = (0..390)
        .map(|i| bar(1_764_167_400 + 60 * i, &close(i)))
        .collect();
    store.write("A", "1Min", &bars, None).unwrap();
    let mut out = Vec::new();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out, bars);
    (dir, store, day, bars)
}

fn block_len(store: &HistoryStore) -> i64 {
    store
        .conn
        .query_row("SELECT length(data) FROM blocks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn blocks_follow_every_write_to_the_rows_and_a_damaged_one_is_read_again() {
    let (_dir, mut store, day, bars) = a_day_read(|_| "10.50".into());
    let mut out = Vec::new();
    let blocks = |s: &HistoryStore| -> i64 {
        s.conn
            .query_row("SELECT COUNT(*) FROM blocks", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(blocks(&store), 1, "the first read packs the day");
    // traderd's own upsert of one bar drops the block ...
    store
        .write("A", "1Min", &[bar(1_764_167_400 + 600, "11.25")], None)
        .unwrap();
    assert_eq!(blocks(&store), 0);
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out[10].c.to_string(), "11.25");
    // ... and so does another tool's change to the rows.
    store
        .conn
        .execute(
            "UPDATE bars SET close = '12.00' WHERE t = ?1",
            [1_764_167_400 + 1200],
        )
        .unwrap();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out[20].c.to_string(), "12.00");
    store
        .conn
        .execute("DELETE FROM bars WHERE t = ?1", [1_764_167_400 + 1800])
        .unwrap();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out.len(), 389);
    // Another symbol's write leaves A's block alone.
    store.write("B", "1Min", &bars, None).unwrap();
    assert_eq!(blocks(&store), 1);
    // A damaged block is read from the rows and packed again.
    store
        .conn
        .execute("UPDATE blocks SET data = x'02ff'", [])
        .unwrap();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out.len(), 389);
    let len = block_len(&store);
    assert!(len > 100, "packed again: {len} bytes");
}

#[test]
fn a_block_damaged_part_way_hands_out_each_bar_once_and_is_packed_again() {
    let (_dir, store, day, bars) = a_day_read(|i| format!("10.{:02}", i % 100));
    let packed = block_len(&store);
    // The last few bars' bytes are gone: the count promises bars the bytes do not hold.
    store
        .conn
        .execute(
            "UPDATE blocks SET data = substr(data, 1, length(data) - 40)",
            [],
        )
        .unwrap();
    let mut span = SpanBars::default();
    store.span("A", "1Min", day, &mut span).unwrap();
    assert_eq!(span.left(), 390, "read from the block");
    let mut seen = Vec::new();
    while let Some(b) = span.next(&store).unwrap() {
        seen.push(b);
    }
    assert_eq!(
        seen, bars,
        "the rows take over after the last bar handed out"
    );
    assert_eq!(block_len(&store), packed, "packed again from the rows");
}

#[test]
fn a_store_of_an_older_schema_gets_its_block_cache_and_keeps_its_bars() {
    let dir = tempfile::tempdir().unwrap();
    let bars: Vec<Bar> = (0..10)
        .map(|i| bar(1_764_167_400 + 60 * i, "10.50"))
        .collect();
    {
        let mut store = HistoryStore::open(dir.path()).unwrap();
        store.write("A", "1Min", &bars, None).unwrap();
        // As version 1 left it: no blocks, no triggers.
        store
            .conn
            .execute_batch(
                "DROP TRIGGER bars_inserted; DROP TRIGGER bars_updated; DROP TRIGGER bars_deleted;
                 DROP TABLE blocks; UPDATE meta SET value = '1' WHERE key = 'schema';",
            )
            .unwrap();
    }
    let mut store = HistoryStore::open(dir.path()).unwrap();
    let day = (
        time(1_764_167_400).unwrap(),
        time(1_764_167_400 + 86_399).unwrap(),
    );
    let mut out = Vec::new();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out, bars);
    store
        .write("A", "1Min", &[bar(1_764_167_400, "9.75")], None)
        .unwrap();
    store
        .bars_cached("A", "1Min", day.0, day.1, &mut out)
        .unwrap();
    assert_eq!(out[0].c.to_string(), "9.75", "the triggers are back");
    let version: String = store
        .conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION.to_string());
}
