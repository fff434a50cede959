//! `traderd data import`: bars from a CSV file, all or nothing.
//!
//! The header names the columns `timestamp,open,high,low,close,volume` (any order, any case;
//! `trade_count` and `vwap` are read when present, other columns ignored). A timestamp is RFC
//! 3339 (`2025-01-02T14:30:00Z`) or Unix epoch seconds, milliseconds or nanoseconds (told
//! apart by magnitude). Every problem names its line; one bad line and nothing is written.

use crate::alpaca::model::Bar;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::io::Read;
use std::str::FromStr;

const REQUIRED: [&str; 6] = ["timestamp", "open", "high", "low", "close", "volume"];

/// Reads every bar of a CSV, oldest first, or says what is wrong and where.
pub fn read_csv(input: impl Read) -> Result<Vec<Bar>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| format!("line 1: cannot read the header: {e}"))?
        .clone();
    let columns: HashMap<String, usize> = header
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_ascii_lowercase(), i))
        .collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "line 1: the header lacks {}: it must name timestamp,open,high,low,close,volume",
            missing.join(", ")
        ));
    }
    let col = |name: &str| columns.get(name).copied();
    let mut bars: Vec<(usize, Bar)> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("line {line}: {e}"))?;
        let field = |name: &str| col(name).and_then(|c| record.get(c)).unwrap_or("");
        let num = |name: &str| -> Result<Decimal, String> {
            let text = field(name);
            Decimal::from_str(text)
                .or_else(|_| Decimal::from_scientific(text))
                .map_err(|_| format!("line {line}: {name} {text:?} is not a number"))
        };
        let t = timestamp(field("timestamp")).map_err(|e| format!("line {line}: {e}"))?;
        let (o, h, l, c, v) = (
            num("open")?,
            num("high")?,
            num("low")?,
            num("close")?,
            num("volume")?,
        );
        if [o, h, l, c].iter().any(|p| *p <= Decimal::ZERO) {
            return Err(format!("line {line}: prices must be positive"));
        }
        if v < Decimal::ZERO {
            return Err(format!("line {line}: volume {v} is negative"));
        }
        if h < o.max(c).max(l) || l > o.min(c) {
            return Err(format!(
                "line {line}: high {h} and low {l} do not contain open {o} and close {c}"
            ));
        }
        let n =
            match col("trade_count").map(|_| field("trade_count")) {
                Some("") | None => None,
                Some(text) => Some(text.parse::<u64>().map_err(|_| {
                    format!("line {line}: trade_count {text:?} is not a whole number")
                })?),
            };
        let vw = match col("vwap").map(|_| field("vwap")) {
            Some("") | None => None,
            Some(_) => Some(num("vwap")?),
        };
        bars.push((
            line,
            Bar {
                t,
                o,
                h,
                l,
                c,
                v,
                n,
                vw,
            },
        ));
    }
    if bars.is_empty() {
        return Err("the file has a header and no bars".into());
    }
    bars.sort_by_key(|(_, b)| b.t);
    for pair in bars.windows(2) {
        if pair[0].1.t == pair[1].1.t {
            return Err(format!(
                "lines {} and {}: two bars at {}",
                pair[0].0.min(pair[1].0),
                pair[0].0.max(pair[1].0),
                pair[0].1.t.to_rfc3339()
            ));
        }
    }
    Ok(bars.into_iter().map(|(_, b)| b).collect())
}

/// RFC 3339, or epoch seconds / milliseconds / nanoseconds.
fn timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let n: i64 = text.parse().map_err(|_| {
        format!("timestamp {text:?} is neither RFC 3339 (2025-01-02T14:30:00Z) nor epoch seconds")
    })?;
    let t = match n.unsigned_abs() {
        0..100_000_000_000 => DateTime::from_timestamp(n, 0),
        100_000_000_000..100_000_000_000_000 => DateTime::from_timestamp_millis(n),
        _ => Some(DateTime::from_timestamp_nanos(n)),
    };
    t.ok_or_else(|| format!("timestamp {text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn reads_rfc3339_and_epoch_in_any_column_order() {
        let csv = "Volume,timestamp,open,high,low,close,extra\n\
                   100,2025-01-02T14:31:00Z,10,11,9,10.5,x\n\
                   200,1735828200,10.5,12,10,11,y\n\
                   300,1735828320000,11,11.5,10.5,11.25,z\n";
        let bars = read_csv(csv.as_bytes()).unwrap();
        let times: Vec<String> = bars.iter().map(|b| b.t.to_rfc3339()).collect();
        assert_eq!(
            times,
            [
                "2025-01-02T14:30:00+00:00",
                "2025-01-02T14:31:00+00:00",
                "2025-01-02T14:32:00+00:00"
            ]
        );
        assert_eq!(bars[1].c, dec!(10.5));
        assert_eq!(bars[0].v, dec!(200));
    }

    #[test]
    fn a_bad_line_is_named_with_its_problem() {
        let head = "timestamp,open,high,low,close,volume\n";
        let good = "2025-01-02T14:30:00Z,10,11,9,10,5\n";
        // (the lines after the header and a good first line, what the error says)
        let rows = [
            (
                "2025-01-02T14:31:00Z,10,11,9,ten,5\n",
                "line 3: close \"ten\" is not a number",
            ),
            (
                "yesterday,10,11,9,10,5\n",
                "line 3: timestamp \"yesterday\"",
            ),
            (
                "2025-01-02T14:31:00Z,10,9,11,10,5\n",
                "line 3: high 9 and low 11",
            ),
            ("2025-01-02T14:31:00Z,10,11,9,10\n", "line 3"),
            (
                "2025-01-02T14:30:00Z,10,11,9,10,5\n",
                "lines 2 and 3: two bars",
            ),
            (
                "2025-01-02T14:31:00Z,-1,11,9,10,5\n",
                "line 3: prices must be positive",
            ),
        ];
        for (bad, says) in rows {
            let e = read_csv(format!("{head}{good}{bad}").as_bytes()).unwrap_err();
            assert!(e.starts_with(says), "{e:?} for {bad:?}");
        }
        let e = read_csv("time,open,high,low,close,volume\n".as_bytes()).unwrap_err();
        assert!(e.contains("lacks timestamp"), "{e}");
        assert!(read_csv(head.as_bytes()).unwrap_err().contains("no bars"));
    }
}
