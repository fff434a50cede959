//! The queries of the list endpoints, and how much of a position a close liquidates.

use super::*;

/// Query for `GET /v2/orders`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListOrders {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbols: Option<String>,
}

/// Query for `GET /v2/account/activities`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListActivities {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_types: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

/// Query for `GET /v2/stocks/bars`.
#[derive(Debug, Clone, Serialize)]
pub struct BarsQuery {
    pub symbols: String,
    pub timeframe: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed: Option<String>,
    /// `raw` (Alpaca's default), `split`, `dividend` or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adjustment: Option<String>,
}

impl BarsQuery {
    pub fn new(symbols: &[&str], timeframe: TimeFrame) -> Self {
        BarsQuery {
            symbols: symbols.join(","),
            timeframe: timeframe.to_string(),
            start: None,
            end: None,
            limit: None,
            page_token: None,
            feed: None,
            adjustment: None,
        }
    }
}

/// How much of a position `close_position` liquidates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CloseAmount {
    All,
    Qty(Decimal),
    Percentage(Decimal),
}
