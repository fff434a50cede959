//! Encoding, for the simulator: `"T"` first, as Alpaca writes it.

use super::*;

/// A decimal written as a number.
struct Num<'a>(&'a Decimal);

impl Serialize for Num<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_number(self.0, s)
    }
}

struct Time<'a>(&'a DateTime<Utc>);

impl Serialize for Time<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        time::serialize(self.0, s)
    }
}

impl Serialize for DataMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DataMessage::Trade(t) => {
                let mut m = s.serialize_map(Some(9))?;
                m.serialize_entry("T", "t")?;
                m.serialize_entry("S", &t.symbol)?;
                m.serialize_entry("i", &t.id)?;
                m.serialize_entry("x", &t.exchange)?;
                m.serialize_entry("p", &Num(&t.price))?;
                m.serialize_entry("s", &Num(&t.size))?;
                m.serialize_entry("c", &t.conditions)?;
                m.serialize_entry("t", &Time(&t.timestamp))?;
                m.serialize_entry("z", &t.tape)?;
                m.end()
            }
            DataMessage::Quote(q) => {
                let mut m = s.serialize_map(Some(11))?;
                m.serialize_entry("T", "q")?;
                m.serialize_entry("S", &q.symbol)?;
                m.serialize_entry("bx", &q.bid_exchange)?;
                m.serialize_entry("bp", &Num(&q.bid_price))?;
                m.serialize_entry("bs", &Num(&q.bid_size))?;
                m.serialize_entry("ax", &q.ask_exchange)?;
                m.serialize_entry("ap", &Num(&q.ask_price))?;
                m.serialize_entry("as", &Num(&q.ask_size))?;
                m.serialize_entry("c", &q.conditions)?;
                m.serialize_entry("t", &Time(&q.timestamp))?;
                m.serialize_entry("z", &q.tape)?;
                m.end()
            }
            DataMessage::Bar(b) => {
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("T", b.kind.tag())?;
                m.serialize_entry("S", &b.symbol)?;
                m.serialize_entry("o", &Num(&b.open))?;
                m.serialize_entry("h", &Num(&b.high))?;
                m.serialize_entry("l", &Num(&b.low))?;
                m.serialize_entry("c", &Num(&b.close))?;
                m.serialize_entry("v", &Num(&b.volume))?;
                m.serialize_entry("t", &Time(&b.timestamp))?;
                m.serialize_entry("n", &b.trade_count)?;
                m.serialize_entry("vw", &b.vwap.as_ref().map(Num))?;
                m.end()
            }
            DataMessage::Status(st) => {
                let mut m = s.serialize_map(Some(8))?;
                m.serialize_entry("T", "s")?;
                m.serialize_entry("S", &st.symbol)?;
                m.serialize_entry("sc", &st.status_code)?;
                m.serialize_entry("sm", &st.status_message)?;
                m.serialize_entry("rc", &st.reason_code)?;
                m.serialize_entry("rm", &st.reason_message)?;
                m.serialize_entry("t", &Time(&st.timestamp))?;
                m.serialize_entry("z", "C")?;
                m.end()
            }
            DataMessage::Luld(l) => {
                let mut m = s.serialize_map(Some(7))?;
                m.serialize_entry("T", "l")?;
                m.serialize_entry("S", &l.symbol)?;
                m.serialize_entry("u", &Num(&l.limit_up))?;
                m.serialize_entry("d", &Num(&l.limit_down))?;
                m.serialize_entry("i", &l.indicator)?;
                m.serialize_entry("t", &Time(&l.timestamp))?;
                m.serialize_entry("z", "C")?;
                m.end()
            }
            DataMessage::Success { msg } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("T", "success")?;
                m.serialize_entry("msg", msg)?;
                m.end()
            }
            DataMessage::Error { code, msg } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("T", "error")?;
                m.serialize_entry("code", code)?;
                m.serialize_entry("msg", msg)?;
                m.end()
            }
            DataMessage::Subscription(set) => {
                let mut m = s.serialize_map(Some(10))?;
                m.serialize_entry("T", "subscription")?;
                m.serialize_entry("trades", &set.trades)?;
                m.serialize_entry("quotes", &set.quotes)?;
                m.serialize_entry("bars", &set.bars)?;
                m.serialize_entry("updatedBars", &set.updated_bars)?;
                m.serialize_entry("dailyBars", &set.daily_bars)?;
                m.serialize_entry("statuses", &set.statuses)?;
                m.serialize_entry("lulds", &set.lulds)?;
                m.serialize_entry("corrections", &set.corrections)?;
                m.serialize_entry("cancelErrors", &set.cancel_errors)?;
                m.end()
            }
            DataMessage::Other { kind } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("T", kind)?;
                m.end()
            }
        }
    }
}
