//! Corporate actions (`GET /v1/corporate-actions` of the market-data API): the splits the
//! daemon explains position changes with. Other kinds (dividends, mergers, spin-offs, name
//! changes, …) are kept as raw JSON: read, not modelled.

use crate::alpaca::num::flex;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A forward or reverse split: `old_rate` shares become `new_rate` shares on `ex_date`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    #[serde(default)]
    pub id: Option<String>,
    pub symbol: String,
    #[serde(with = "flex")]
    pub new_rate: Decimal,
    #[serde(with = "flex")]
    pub old_rate: Decimal,
    pub ex_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payable_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cusip: Option<String>,
}

impl Split {
    /// Shares after per share before (4 for a 4-for-1, 0.02 for a 1-for-50); `None` for a
    /// rate that is not positive.
    pub fn ratio(&self) -> Option<Decimal> {
        (self.old_rate > Decimal::ZERO && self.new_rate > Decimal::ZERO)
            .then(|| self.new_rate.checked_div(self.old_rate))
            .flatten()
    }
    /// A stable key for the journal: the same split is never applied twice.
    pub fn key(&self) -> String {
        format!(
            "split:{}:{}:{}:{}",
            self.symbol, self.ex_date, self.old_rate, self.new_rate
        )
    }
}

/// The body of `GET /v1/corporate-actions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorporateActionsPage {
    #[serde(default)]
    pub corporate_actions: CorporateActions,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorporateActions {
    #[serde(default, deserialize_with = "null_as_empty")]
    pub forward_splits: Vec<Split>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub reverse_splits: Vec<Split>,
    /// Every other kind, as sent.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl CorporateActions {
    pub fn splits(&self) -> impl Iterator<Item = &Split> {
        self.forward_splits.iter().chain(&self.reverse_splits)
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn splits_decode_with_their_ratio_and_other_kinds_are_kept_raw() {
        let body = r#"{"corporate_actions":{"forward_splits":[{"id":"x","symbol":"SRE","new_rate":2,"old_rate":1,"ex_date":"2023-08-22","cusip":"C"}],
            "reverse_splits":[{"symbol":"MNTS","new_rate":1,"old_rate":50,"ex_date":"2023-08-24"}],
            "cash_dividends":[{"symbol":"T","rate":0.2775}]},"next_page_token":null}"#;
        let page: CorporateActionsPage = serde_json::from_str(body).unwrap();
        let ratios: Vec<_> = page.corporate_actions.splits().map(|s| s.ratio()).collect();
        assert_eq!(ratios, vec![Some(dec!(2)), Some(dec!(0.02))]);
        assert!(page.corporate_actions.other.contains_key("cash_dividends"));
        let zero = Split {
            old_rate: Decimal::ZERO,
            ..page.corporate_actions.forward_splits[0].clone()
        };
        assert_eq!(zero.ratio(), None);
    }
}
