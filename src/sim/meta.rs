//! The reference data of `GET /v2/stocks/meta/exchanges` and `/meta/conditions/{tick_type}`:
//! the codes the trades and quotes carry, as Alpaca's market-data reference lists them
//! (SIP exchange codes; a subset of the CTA/UTP sale and quote conditions).

use std::collections::BTreeMap;

const EXCHANGES: &[(&str, &str)] = &[
    ("A", "NYSE American (AMEX)"),
    ("B", "NASDAQ OMX BX"),
    ("C", "National Stock Exchange"),
    ("D", "FINRA ADF"),
    ("E", "Market Independent"),
    ("H", "MIAX"),
    ("I", "International Securities Exchange"),
    ("J", "Cboe EDGA"),
    ("K", "Cboe EDGX"),
    ("L", "Long Term Stock Exchange"),
    ("M", "Chicago Stock Exchange"),
    ("N", "New York Stock Exchange"),
    ("P", "NYSE Arca"),
    ("Q", "NASDAQ OMX"),
    ("S", "NASDAQ Small Cap"),
    ("T", "NASDAQ Int"),
    ("U", "Members Exchange"),
    ("V", "IEX"),
    ("W", "CBOE"),
    ("X", "NASDAQ OMX PSX"),
    ("Y", "Cboe BYX"),
    ("Z", "Cboe BZX"),
];

const TRADE_CONDITIONS: &[(&str, &str)] = &[
    ("@", "Regular Sale"),
    ("B", "Average Price Trade"),
    ("C", "Cash Sale"),
    ("F", "Intermarket Sweep"),
    ("H", "Price Variation Trade"),
    ("I", "Odd Lot Trade"),
    ("M", "Market Center Official Close"),
    ("N", "Next Day"),
    ("O", "Opening Prints"),
    ("Q", "Market Center Official Open"),
    ("R", "Seller"),
    ("T", "Extended Trading Hours (Sold Out of Sequence)"),
    ("U", "Extended Trading Hours"),
    ("V", "Contingent Trade"),
    ("W", "Average Price Trade"),
    ("X", "Cross/Periodic Auction Trade"),
    ("Z", "Sold (Out of Sequence)"),
    ("4", "Derivatively Priced"),
    ("5", "Re-Opening Prints"),
    ("6", "Closing Prints"),
];

const QUOTE_CONDITIONS: &[(&str, &str)] = &[
    ("A", "Manual Ask Automated Bid"),
    ("B", "Manual Bid Automated Ask"),
    ("H", "Fast Trading"),
    ("L", "Closed Quote"),
    ("O", "Opening Quote Automated"),
    ("R", "Regular Two-Sided Open Quote Automated"),
    (
        "W",
        "Slow Quote Due to Set Slow List on Both Bid and Offer Sides",
    ),
    ("4", "On Demand Intra Day Auction"),
];

pub fn exchanges() -> BTreeMap<&'static str, &'static str> {
    EXCHANGES.iter().copied().collect()
}

/// The conditions of a tick type (`trade` or `quote`); `None` for any other.
pub fn conditions(tick_type: &str) -> Option<BTreeMap<&'static str, &'static str>> {
    match tick_type {
        "trade" => Some(TRADE_CONDITIONS.iter().copied().collect()),
        "quote" => Some(QUOTE_CONDITIONS.iter().copied().collect()),
        _ => None,
    }
}
