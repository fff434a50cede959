#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The recorded corpus: responses and stream messages from public sources (Alpaca's docs,
//! alpaca-py's test suite; `tests/fixtures/alpaca/README.md` names each file's source),
//! decoded with the daemon's own types, values checked. The data stream's fixtures come in
//! both codecs: the JSON as recorded, and msgpack encoded from it by the `msgpack` Python
//! package (not by our encoder), with `t` as a msgpack Timestamp extension.

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::path::{Path, PathBuf};
use traderd::alpaca::model::*;
use traderd::alpaca::stream::data::DataMessage;
use traderd::alpaca::stream::{Codec, decode_data_frame, decode_trading_frame};

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/alpaca")
        .join(sub)
}

fn read(sub: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(sub).join(name)).unwrap_or_else(|e| panic!("{sub}/{name}: {e}"))
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// A list every entry of which the daemon must understand (no foreign entry).
fn whole_list<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Listing<T>, String> {
    let l = Listing::<T>::decode(bytes).map_err(|e| e.to_string())?;
    match l.foreign.first() {
        Some(f) => Err(format!("foreign entry: {}", f.describe())),
        None => Ok(l),
    }
}

/// The daemon's type for each recorded response, by the file's name.
fn decode_rest(name: &str, bytes: &[u8]) -> Result<(), String> {
    let route = name.split("__").nth(1).unwrap_or("");
    match route {
        "get_account" => decode::<Account>(bytes).map(drop),
        "get_account_configurations"
        | "get_account_configurations_without_deprecated_pdt_fields" => {
            decode::<AccountConfigurations>(bytes).map(drop)
        }
        "get_all_assets" | "get_all_assets_params" => whole_list::<Asset>(bytes).map(drop),
        "get_asset" => decode::<Asset>(bytes).map(drop),
        "get_corporate_actions" => decode::<CorporateActionsPage>(bytes).map(drop),
        "get_bars" | "get_bars_desc" | "multisymbol_get_bars" => {
            decode::<BarsPage>(bytes).map(drop)
        }
        "get_latest_quote" => decode::<LatestQuotes>(bytes).map(drop),
        "get_latest_trade" | "get_multisymbol_latest_trade" => {
            decode::<LatestTrades>(bytes).map(drop)
        }
        "stock_latest_bar" | "multi_stock_latest_bar" => decode::<LatestBars>(bytes).map(drop),
        "get_snapshot" => decode::<Snapshots>(bytes).map(drop),
        "get_trades" | "multisymbol_get_trades" => decode::<TradesPage>(bytes).map(drop),
        "get_quotes" | "multisymbol_quotes" => decode::<QuotesPage>(bytes).map(drop),
        "cancel_orders" => decode::<Vec<CancelOrderStatus>>(bytes).map(drop),
        "get_orders" => whole_list::<Order>(bytes).map(drop),
        "get_order_by_client_id"
        | "get_order_by_id"
        | "limit_order"
        | "market_order"
        | "order_position_intent"
        | "replace_order"
        | "close_position_with_id"
        | "close_position_with_percentage"
        | "close_position_with_qty"
        | "close_position_with_symbol" => decode::<Order>(bytes).map(drop),
        "close_all_positions" => decode::<Vec<ClosePositionStatus>>(bytes).map(drop),
        "get_all_positions" => whole_list::<Position>(bytes).map(drop),
        "get_open_position_with_asset_id" | "get_open_position_with_symbol" => {
            decode::<Position>(bytes).map(drop)
        }
        other => Err(format!(
            "no type for route {other:?}: add one to decode_rest"
        )),
    }
}

#[test]
fn every_recorded_response_decodes_with_the_daemons_types() {
    let mut failures = Vec::new();
    let mut n = 0;
    for entry in std::fs::read_dir(dir("rest")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        n += 1;
        if let Err(e) = decode_rest(&name, &std::fs::read(&path).unwrap()) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(n >= 35, "the corpus is there ({n} files)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn recorded_values_land_in_the_daemons_types_exactly() {
    let account: Account = decode(&read("rest", "account_routes__get_account__1.json")).unwrap();
    assert_eq!(
        (account.cash, account.equity, account.multiplier),
        (dec!(-23140.2), dec!(103820.56), dec!(4))
    );
    let conf: AccountConfigurations = decode(&read(
        "rest",
        "account_routes__get_account_configurations_without_deprecated_pdt_fields__1.json",
    ))
    .unwrap();
    assert_eq!((conf.pdt_check, conf.dtbp_check), (None, None));
    assert_eq!(conf.max_options_trading_level, Some(1));
    let bars: BarsPage = decode(&read("rest", "historical_stock_data__get_bars__1.json")).unwrap();
    let first = &bars.bars["AAPL"][0];
    assert_eq!(
        (first.o, first.h, first.c, first.v, first.vw),
        (
            dec!(174),
            dec!(174.84),
            dec!(174.61),
            dec!(85998033),
            Some(dec!(173.703516))
        )
    );
    assert!(bars.next_page_token.is_some());
    let quotes: QuotesPage =
        decode(&read("rest", "historical_stock_data__get_quotes__1.json")).unwrap();
    let q = &quotes.quotes["AAPL"][0];
    assert_eq!((q.bp, q.ap, q.as_), (dec!(159.52), dec!(158.65), dec!(1)));
    let trades: TradesPage =
        decode(&read("rest", "historical_stock_data__get_trades__1.json")).unwrap();
    assert_eq!(trades.trades["AAPL"][0].p, dec!(159.07));
    let positions: Listing<Position> =
        whole_list(&read("rest", "position_routes__get_all_positions__1.json")).unwrap();
    assert_eq!(
        (positions.items[0].qty, positions.items[0].avg_entry_price),
        (dec!(5), dec!(100))
    );
    let intent: Order =
        decode(&read("rest", "order_routes__order_position_intent__1.json")).unwrap();
    assert_eq!(intent.position_intent, Some(PositionIntent::BuyToOpen));
    // Alpaca's own OpenAPI example carries "hwm": "string": read as none, the order kept.
    let orders: Listing<Order> =
        whole_list(&read("rest", "order_routes__get_orders__1.json")).unwrap();
    assert_eq!(orders.items[0].hwm, None);
    let closed: Vec<ClosePositionStatus> = decode(&read(
        "rest",
        "position_routes__close_all_positions__1.json",
    ))
    .unwrap();
    let ClosePositionBody::Order(btc) = &closed[0].body else {
        panic!("{closed:?}")
    };
    assert_eq!(
        (btc.qty, btc.asset_class),
        (Some(dec!(0.0283)), AssetClass::Crypto)
    );
    let ClosePositionBody::Error(e) = &closed[1].body else {
        panic!("{closed:?}")
    };
    assert_eq!((closed[1].status, e.code), (403, Some(40310000)));
    let canceled: Vec<CancelOrderStatus> =
        decode(&read("rest", "order_routes__cancel_orders__1.json")).unwrap();
    assert_eq!(
        canceled.iter().map(|c| c.status).collect::<Vec<_>>(),
        vec![200, 404]
    );
    let actions: CorporateActionsPage = decode(&read(
        "rest",
        "corporate_actions__get_corporate_actions__1.json",
    ))
    .unwrap();
    let ratios: Vec<(String, Option<Decimal>)> = actions
        .corporate_actions
        .splits()
        .map(|s| (s.symbol.clone(), s.ratio()))
        .collect();
    assert!(
        ratios.contains(&("SRE".into(), Some(dec!(2)))),
        "{ratios:?}"
    );
    assert!(
        ratios.contains(&("MNTS".into(), Some(dec!(0.02)))),
        "{ratios:?}"
    );
    let snapshot: Snapshots =
        decode(&read("rest", "historical_stock_data__get_snapshot__1.json")).unwrap();
    let daily = snapshot["AAPL"]
        .as_ref()
        .unwrap()
        .daily_bar
        .as_ref()
        .unwrap();
    assert_eq!((daily.o, daily.c), (dec!(160.59), dec!(161.365)));
}

#[test]
fn what_the_daemon_cannot_model_is_foreign_with_what_can_be_read() {
    let mleg = read("constructed", "mleg_order.json");
    let list = format!("[{}]", String::from_utf8(mleg).unwrap());
    let l: Listing<Order> = Listing::decode(list.as_bytes()).unwrap();
    assert!(l.items.is_empty());
    let f = &l.foreign[0];
    assert_eq!(f.order_class.as_deref(), Some("mleg"));
    assert_eq!((f.qty, f.status.as_deref()), (Some(dec!(1)), Some("new")));
    assert!(f.is_open_order());
    // An options position decodes (it is only not traded); one without an asset id does not.
    let option: Position = decode(&read("constructed", "option_position.json")).unwrap();
    assert_eq!(option.asset_class, AssetClass::UsOption);
    let unreadable = format!(
        "[{}]",
        String::from_utf8(read("constructed", "unreadable_position.json")).unwrap()
    );
    let l: Listing<Position> = Listing::decode(unreadable.as_bytes()).unwrap();
    assert_eq!(l.foreign[0].symbol.as_deref(), Some("XYZ.WS"));
    assert!(l.foreign[0].is_held());
    // An activity with an unreadable quantity is foreign, not a silent non-trade.
    let activity = format!(
        "[{}]",
        String::from_utf8(read("constructed", "unknown_activity.json")).unwrap()
    );
    let l: Listing<Activity> = Listing::decode(activity.as_bytes()).unwrap();
    assert_eq!(l.foreign[0].activity_type.as_deref(), Some("OPEXC"));
}

/// Both codecs of one data-stream fixture: the same messages.
fn both_codecs(name: &str) -> Vec<DataMessage> {
    let json = decode_data_frame(Codec::Json, &read("stream", &format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}.json: {e:?}"));
    let msgpack = decode_data_frame(Codec::Msgpack, &read("stream", &format!("{name}.msgpack")))
        .unwrap_or_else(|e| panic!("{name}.msgpack: {e:?}"));
    assert_eq!(json, msgpack, "{name}: the codecs disagree");
    json
}

#[test]
fn recorded_stream_messages_decode_the_same_in_both_codecs() {
    let docs = both_codecs("data_docs_examples");
    let DataMessage::Trade(t) = &docs[0] else {
        panic!("{docs:?}")
    };
    assert_eq!(
        (t.symbol.as_str(), t.id, t.price, t.size),
        ("AAPL", 96921, dec!(126.55), dec!(1))
    );
    assert_eq!(t.conditions.iter().collect::<Vec<_>>(), vec!["@", "I"]);
    let DataMessage::Quote(q) = &docs[1] else {
        panic!("{docs:?}")
    };
    assert_eq!(
        (q.bid_price, q.ask_price, q.ask_size),
        (dec!(87.66), dec!(87.68), dec!(4))
    );
    assert_eq!(q.timestamp.timestamp_subsec_nanos(), 335_689_322);
    let DataMessage::Bar(b) = &docs[2] else {
        panic!("{docs:?}")
    };
    assert_eq!(
        (b.open, b.close, b.volume, b.vwap),
        (dec!(388.985), dec!(389.12), dec!(49378), Some(dec!(388.99)))
    );

    let cast = both_codecs("data_alpaca_py_cast");
    assert_eq!(cast.len(), 6);
    let DataMessage::Bar(b) = &cast[0] else {
        panic!("{cast:?}")
    };
    assert_eq!((b.high, b.trade_count), (dec!(178.005), Some(66)));
    assert_eq!(b.timestamp.timestamp_subsec_nanos(), 10);
    // An order book (crypto) and a cancel/error are not modelled: named, not fatal.
    assert!(
        matches!(&cast[3], DataMessage::Other { kind } if kind == "o"),
        "{:?}",
        cast[3]
    );
    let DataMessage::Status(s) = &cast[4] else {
        panic!("{cast:?}")
    };
    assert_eq!(
        (s.status_code.as_str(), s.reason_code.as_str()),
        ("T", "C11")
    );
    assert!(matches!(&cast[5], DataMessage::Other { kind } if kind == "x"));

    let control = both_codecs("data_control");
    let DataMessage::Subscription(set) = &control[0] else {
        panic!("{control:?}")
    };
    assert_eq!(set.quotes, vec!["AMD", "CLDR"]);
    assert_eq!(set.cancel_errors, vec!["AAPL"]);
    let error = both_codecs("data_error_409");
    assert!(
        matches!(&error[0], DataMessage::Error { code: 409, .. }),
        "{error:?}"
    );
}

#[test]
fn a_recorded_trade_update_decodes_with_its_fill() {
    use traderd::alpaca::stream::trading::TradingMessage;
    let m = decode_trading_frame(Codec::Json, &read("stream", "trade_updates_fill.json")).unwrap();
    let TradingMessage::TradeUpdate(u) = m else {
        panic!("{m:?}")
    };
    assert_eq!(u.event, "fill");
    assert_eq!(
        (u.price, u.qty, u.position_qty),
        (Some(dec!(105.8988475)), Some(dec!(1790.86)), Some(dec!(0)))
    );
    assert_eq!(u.order.status, OrderStatus::Filled);
}
