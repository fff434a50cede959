//! The documented frames, JSON and msgpack round trips, bad messages.

use super::*;

use rust_decimal_macros::dec;

const DOC_FRAME: &str = r#"[{"T":"t","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z","c":["@","I"],"z":"C"},
    {"T":"q","S":"AMD","bx":"U","bp":87.66,"bs":1,"ax":"Q","ap":87.68,"as":4,"t":"2021-02-22T15:51:45.335689322Z","c":["R"],"z":"C"},
    {"T":"b","S":"SPY","o":388.985,"h":389.13,"l":388.975,"c":389.12,"v":49378,"t":"2021-02-22T19:15:00Z","n":66,"vw":388.99},
    {"T":"c","S":"AAPL","x":"V","oi":1,"op":1.0},
    {"T":"subscription","trades":["AAPL"],"quotes":["AMD","CLDR"],"bars":["*"],"updatedBars":[],"dailyBars":["VOO"],"statuses":["*"],"lulds":[],"corrections":["AAPL"],"cancelErrors":["AAPL"]},
    {"T":"error","code":406,"msg":"connection limit exceeded"}]"#;

#[test]
fn decodes_the_documented_messages() {
    let v: Vec<DataMessage> = serde_json::from_str(DOC_FRAME).unwrap();
    let DataMessage::Trade(t) = &v[0] else {
        panic!("{:?}", v[0])
    };
    assert_eq!(
        (
            t.symbol.as_str(),
            t.price,
            t.size,
            t.id,
            t.exchange.as_str()
        ),
        ("AAPL", dec!(126.55), dec!(1), 96921, "D")
    );
    assert_eq!(t.conditions.iter().collect::<Vec<_>>(), vec!["@", "I"]);
    let DataMessage::Quote(q) = &v[1] else {
        panic!()
    };
    assert_eq!(
        (q.bid_price, q.ask_price, q.ask_size),
        (dec!(87.66), dec!(87.68), dec!(4))
    );
    assert_eq!(q.timestamp.timestamp_subsec_nanos(), 335_689_322);
    let DataMessage::Bar(b) = &v[2] else { panic!() };
    assert_eq!(
        (b.open, b.vwap, b.trade_count, b.kind),
        (dec!(388.985), Some(dec!(388.99)), Some(66), BarKind::Minute)
    );
    assert_eq!(v[3], DataMessage::Other { kind: "c".into() });
    let DataMessage::Subscription(s) = &v[4] else {
        panic!()
    };
    assert_eq!(s.cancel_errors, vec!["AAPL"]);
    assert_eq!(
        v[5],
        DataMessage::Error {
            code: 406,
            msg: "connection limit exceeded".into()
        }
    );
}

#[test]
fn json_and_msgpack_round_trip() {
    let v: Vec<DataMessage> = serde_json::from_str(DOC_FRAME).unwrap();
    let keep: Vec<DataMessage> = v
        .into_iter()
        .filter(|m| !matches!(m, DataMessage::Other { .. }))
        .collect();
    let json = serde_json::to_vec(&keep).unwrap();
    assert_eq!(
        serde_json::from_slice::<Vec<DataMessage>>(&json).unwrap(),
        keep
    );
    let mp = rmp_serde::to_vec_named(&keep).unwrap();
    assert_eq!(
        rmp_serde::from_slice::<Vec<DataMessage>>(&mp).unwrap(),
        keep
    );
    assert!(String::from_utf8_lossy(&json).starts_with(r#"[{"T":"t","#));
}

#[test]
fn decodes_msgpack_written_by_pythons_msgpack() {
    // Made by Python's msgpack with msgpack.Timestamp, as alpaca-py's server side would.
    let bytes = include_bytes!("../../../../tests/fuzz/seeds/data_frame_msgpack/batch.msgpack");
    let v: Vec<DataMessage> = rmp_serde::from_slice(bytes).unwrap();
    let DataMessage::Trade(t) = &v[0] else {
        panic!("{:?}", v[0])
    };
    assert_eq!(
        (t.price, t.timestamp.to_rfc3339()),
        (dec!(126.55), "2021-02-22T11:51:44.208+00:00".to_string())
    );
    let DataMessage::Bar(b) = &v[2] else { panic!() };
    assert_eq!(b.vwap, Some(dec!(388.99)));
}

#[test]
fn conditions_are_held_inline_up_to_four() {
    let frame = r#"[{"T":"t","S":"A","p":1,"t":"2021-02-22T15:51:44Z","c":["@","F","T","I","Z"]},
        {"T":"t","S":"B","p":1,"t":"2021-02-22T15:51:44Z","c":null},
        {"T":"t","S":"C","p":1,"t":"2021-02-22T15:51:44Z","c":["LONGER"]}]"#;
    let v: Vec<DataMessage> = serde_json::from_str(frame).unwrap();
    let codes = |m: &DataMessage| match m {
        DataMessage::Trade(t) => t.conditions,
        other => panic!("{other:?}"),
    };
    // The tapes allow four; a fifth is ignored, not an error.
    assert_eq!(
        codes(&v[0]).iter().collect::<Vec<_>>(),
        ["@", "F", "T", "I"]
    );
    assert!(codes(&v[1]).is_empty());
    // Kept to four bytes, like exchange codes, and compared the same way.
    assert!(codes(&v[2]).contains("LONG") && codes(&v[2]).contains("LONGER"));
    let again: Vec<DataMessage> =
        rmp_serde::from_slice(&rmp_serde::to_vec_named(&v).unwrap()).unwrap();
    assert_eq!(again, v);
    assert_eq!(format!("{:?}", codes(&v[0])), r#"["@", "F", "T", "I"]"#);
}

#[test]
fn bad_messages_fail_cleanly() {
    for bad in [
        r#"[{"S":"AAPL","T":"t"}]"#,
        r#"[{"T":"t","S":"AAPL","p":"abc","t":"2021-02-22T15:51:44Z"}]"#,
        r#"[{"T":"t","S":"AAPL","p":1}]"#,
        r#"[{"T":"q","S":"AAPL","bp":1,"ap":2,"t":12}]"#,
        r#"[{"T":"t","S":"AAP"#,
        r#"{"T":"t"}"#,
        r#"[1,2]"#,
    ] {
        assert!(
            serde_json::from_str::<Vec<DataMessage>>(bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn actions_encode_like_the_sdks() {
    let sub = ClientAction::subscribe(ChannelLists {
        trades: vec!["AAPL".into()],
        bars: vec!["*".into()],
        ..Default::default()
    });
    assert_eq!(
        serde_json::to_string(&sub).unwrap(),
        r#"{"action":"subscribe","trades":["AAPL"],"bars":["*"]}"#
    );
    let go: ClientAction = serde_json::from_str(
        r#"{"action":"subscribe","trades":["AAPL"],"quotes":null,"news":null}"#,
    )
    .unwrap();
    assert_eq!(go.channels.trades, vec!["AAPL"]);
    assert!(go.channels.quotes.is_empty());
}

#[test]
fn a_frame_decoded_into_held_messages_adds_all_or_none_in_either_codec() {
    use crate::alpaca::stream::{Codec, decode_data_frame, decode_data_frame_into};
    let whole = decode_data_frame(Codec::Json, DOC_FRAME.as_bytes()).unwrap();
    for codec in [Codec::Json, Codec::Msgpack] {
        let bytes = codec.encode(&whole[..3]);
        let held = decode_data_frame(codec, &bytes).unwrap();
        let mut into = held.clone();
        decode_data_frame_into(codec, &bytes, &mut into).unwrap();
        assert_eq!(into.len(), 6, "{codec:?}");
        assert_eq!(into[..3], held[..]);
        assert_eq!(into[3..], held[..]);
        // Cut short: an error, and what was held stays as it was.
        let cut = &bytes[..bytes.len() - 3];
        assert!(decode_data_frame_into(codec, cut, &mut into).is_err());
        assert_eq!(into.len(), 6, "{codec:?}");
    }
    // The frames serde decodes (a correction, a subscription, an error among them) too.
    let mut into = whole[..1].to_vec();
    decode_data_frame_into(Codec::Json, DOC_FRAME.as_bytes(), &mut into).unwrap();
    assert_eq!(into[1..], whole[..]);
    // Into an empty vector sized ahead: kept, not replaced by serde's own.
    let mut into = Vec::with_capacity(2_256);
    decode_data_frame_into(Codec::Json, DOC_FRAME.as_bytes(), &mut into).unwrap();
    assert_eq!((into.len(), into.capacity()), (whole.len(), 2_256));
}
