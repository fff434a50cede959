//! Trading API v2 objects about the account: the account, positions, assets, clock and
//! calendar, activities, account configurations.
//!
//! Enums carry an `Unknown` catch-all where Alpaca may add values.

use super::trading::{AssetClass, OrderStatus, PositionSide};
use crate::alpaca::num::{flex, flex_opt};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccountStatus {
    Onboarding,
    SubmissionFailed,
    Submitted,
    AccountUpdated,
    ApprovalPending,
    Active,
    Rejected,
    Disabled,
    AccountClosed,
    #[serde(other)]
    Unknown,
}

/// `GET /v2/account` (§1.5). Fields Alpaca may drop are optional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Uuid,
    pub account_number: String,
    pub status: AccountStatus,
    #[serde(default)]
    pub crypto_status: Option<AccountStatus>,
    pub currency: String,
    #[serde(with = "flex")]
    pub cash: Decimal,
    #[serde(with = "flex")]
    pub portfolio_value: Decimal,
    #[serde(with = "flex")]
    pub buying_power: Decimal,
    #[serde(default, with = "flex_opt")]
    pub regt_buying_power: Option<Decimal>,
    #[serde(default, with = "flex_opt", skip_serializing_if = "Option::is_none")]
    pub daytrading_buying_power: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub effective_buying_power: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub non_marginable_buying_power: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub options_buying_power: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub bod_dtbp: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub accrued_fees: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub pending_transfer_in: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub pending_transfer_out: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_day_trader: Option<bool>,
    #[serde(default)]
    pub trading_blocked: bool,
    #[serde(default)]
    pub transfers_blocked: bool,
    #[serde(default)]
    pub account_blocked: bool,
    #[serde(default)]
    pub trade_suspended_by_user: bool,
    #[serde(default)]
    pub shorting_enabled: bool,
    pub created_at: DateTime<Utc>,
    #[serde(with = "flex")]
    pub multiplier: Decimal,
    #[serde(with = "flex")]
    pub equity: Decimal,
    #[serde(with = "flex")]
    pub last_equity: Decimal,
    #[serde(with = "flex")]
    pub long_market_value: Decimal,
    #[serde(with = "flex")]
    pub short_market_value: Decimal,
    #[serde(default, with = "flex_opt")]
    pub position_market_value: Option<Decimal>,
    #[serde(with = "flex")]
    pub initial_margin: Decimal,
    #[serde(with = "flex")]
    pub maintenance_margin: Decimal,
    #[serde(default, with = "flex_opt")]
    pub last_maintenance_margin: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub sma: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daytrade_count: Option<i64>,
    // Informational fields the daemon does not use; read leniently (an int is sometimes sent
    // as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_approved_level: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options_trading_level: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto_tier: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_asof: Option<String>,
    #[serde(
        default,
        with = "crate::alpaca::num::lenient_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub intraday_adjustments: Option<Decimal>,
    #[serde(
        default,
        with = "crate::alpaca::num::lenient_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pending_reg_taf_fees: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_configurations: Option<serde_json::Value>,
    #[serde(default)]
    pub user_configurations: Option<serde_json::Value>,
}

/// `GET /v2/positions[/{symbol}]`. `qty` is negative for a short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub asset_id: Uuid,
    pub symbol: String,
    pub exchange: String,
    #[serde(default)]
    pub asset_class: AssetClass,
    #[serde(default)]
    pub asset_marginable: bool,
    #[serde(with = "flex")]
    pub avg_entry_price: Decimal,
    #[serde(with = "flex")]
    pub qty: Decimal,
    #[serde(default, with = "flex_opt")]
    pub qty_available: Option<Decimal>,
    pub side: PositionSide,
    #[serde(default, with = "flex_opt")]
    pub market_value: Option<Decimal>,
    #[serde(with = "flex")]
    pub cost_basis: Decimal,
    #[serde(default, with = "flex_opt")]
    pub unrealized_pl: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub unrealized_plpc: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub unrealized_intraday_pl: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub unrealized_intraday_plpc: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub current_price: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub lastday_price: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub change_today: Option<Decimal>,
}

/// `GET /v2/assets[/{symbol}]`. Note the wire name `class`, not `asset_class`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    pub id: Uuid,
    #[serde(rename = "class")]
    pub asset_class: AssetClass,
    pub exchange: String,
    pub symbol: String,
    #[serde(default)]
    pub name: String,
    pub status: String,
    pub tradable: bool,
    pub marginable: bool,
    pub shortable: bool,
    pub easy_to_borrow: bool,
    pub fractionable: bool,
    #[serde(default, with = "flex_opt", skip_serializing_if = "Option::is_none")]
    pub min_order_size: Option<Decimal>,
    #[serde(default, with = "flex_opt", skip_serializing_if = "Option::is_none")]
    pub min_trade_increment: Option<Decimal>,
    #[serde(default, with = "flex_opt", skip_serializing_if = "Option::is_none")]
    pub price_increment: Option<Decimal>,
    #[serde(default, deserialize_with = "null_as_empty_vec")]
    pub attributes: Vec<String>,
    #[serde(
        default,
        with = "crate::alpaca::num::lenient_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub margin_requirement_long: Option<Decimal>,
    #[serde(
        default,
        with = "crate::alpaca::num::lenient_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub margin_requirement_short: Option<Decimal>,
    #[serde(
        default,
        with = "crate::alpaca::num::lenient_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub maintenance_margin_requirement: Option<Decimal>,
}

fn null_as_empty_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// `GET /v2/clock`. Times carry the exchange's offset on the wire (`-04:00`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clock {
    pub timestamp: DateTime<FixedOffset>,
    pub is_open: bool,
    pub next_open: DateTime<FixedOffset>,
    pub next_close: DateTime<FixedOffset>,
}

/// One trading day of `GET /v2/calendar`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalendarDay {
    pub date: NaiveDate,
    #[serde(with = "hhmm_colon")]
    pub open: NaiveTime,
    #[serde(with = "hhmm_colon")]
    pub close: NaiveTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_open: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_close: Option<String>,
    /// When trades made that day settle (T+1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_date: Option<NaiveDate>,
}

mod hhmm_colon {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.format("%H:%M").to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(&text, "%H:%M:%S"))
            .map_err(|_| serde::de::Error::custom(format!("invalid time {text:?}, expected HH:MM")))
    }
}

/// A FILL / PARTIAL_FILL account activity (§1.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeActivity {
    pub id: String,
    pub activity_type: String,
    pub transaction_time: DateTime<Utc>,
    #[serde(rename = "type")]
    pub fill_type: String,
    #[serde(with = "flex")]
    pub price: Decimal,
    #[serde(with = "flex")]
    pub qty: Decimal,
    pub side: String,
    pub symbol: String,
    #[serde(with = "flex")]
    pub leaves_qty: Decimal,
    #[serde(with = "flex")]
    pub cum_qty: Decimal,
    pub order_id: Uuid,
    #[serde(default)]
    pub order_status: Option<OrderStatus>,
}

/// A non-trade activity (dividends, fees, transfers, …).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonTradeActivity {
    pub id: String,
    pub activity_type: String,
    #[serde(default)]
    pub date: Option<NaiveDate>,
    #[serde(default, with = "flex_opt")]
    pub net_amount: Option<Decimal>,
    #[serde(default)]
    pub symbol: Option<String>,
    #[serde(default, with = "flex_opt")]
    pub qty: Option<Decimal>,
    #[serde(default, with = "flex_opt")]
    pub per_share_amount: Option<Decimal>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// An account activity, told apart by its `activity_type`: a FILL (or PARTIAL_FILL) must
/// decode as a fill. (Told apart by shape, a fill with one field we cannot read would pass as
/// a non-trade activity and the fill would be lost without a word.)
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Activity {
    Trade(TradeActivity),
    NonTrade(NonTradeActivity),
}

impl<'de> Deserialize<'de> for Activity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        let fill = matches!(
            value.get("activity_type").and_then(|t| t.as_str()),
            Some("FILL" | "PARTIAL_FILL")
        );
        if fill {
            serde_json::from_value(value)
                .map(Activity::Trade)
                .map_err(D::Error::custom)
        } else {
            serde_json::from_value(value)
                .map(Activity::NonTrade)
                .map_err(D::Error::custom)
        }
    }
}

impl Activity {
    pub fn id(&self) -> &str {
        match self {
            Activity::Trade(t) => &t.id,
            Activity::NonTrade(n) => &n.id,
        }
    }
}

/// `GET/PATCH /v2/account/configurations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountConfigurations {
    /// Removed from Alpaca's answer on 2026-07-06: optional, like every field the daemon does
    /// not need (it needs `suspend_trade`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtbp_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_confirm_email: Option<String>,
    #[serde(default)]
    pub suspend_trade: bool,
    #[serde(default)]
    pub no_shorting: bool,
    #[serde(default)]
    pub fractional_trading: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_margin_multiplier: Option<String>,
    /// Removed from Alpaca's answer on 2026-07-06.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdt_check: Option<String>,
    #[serde(default)]
    pub ptp_no_exception_entry: bool,
    #[serde(default)]
    pub max_options_trading_level: Option<i64>,
}

/// The PATCH body for account configurations: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountConfigurationsPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtbp_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_confirm_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_trade: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_shorting: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fractional_trading: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_margin_multiplier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdt_check: Option<String>,
}
