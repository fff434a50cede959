//! Notifications: what the daemon tells a webhook (a generic JSON body, or Slack's or
//! Discord's shape) when the mode changes, an order fills, or the health monitor crosses or
//! rearms. Built from the event alone: no key, secret or account number can be in one. The
//! `Notifier` actor (`actors/notifier.rs`) sends them off the trading path.

use serde::{Deserialize, Serialize};

/// What a webhook can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Mode,
    Fill,
    Health,
}

/// The body a webhook expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"source":"traderd","instance":…,"kind":…,"at":…,"text":…,"fields":{…}}`.
    #[default]
    Json,
    /// `{"text": …}` (an incoming webhook).
    Slack,
    /// `{"content": …}`.
    Discord,
}

/// One thing worth telling.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub at: chrono::DateTime<chrono::Utc>,
    /// One line for a person.
    pub text: String,
    /// The event's facts, for a machine.
    pub fields: serde_json::Value,
}

impl Notice {
    pub fn mode(from: &str, to: &str, cause: &str, at: chrono::DateTime<chrono::Utc>) -> Notice {
        Notice {
            kind: NoticeKind::Mode,
            at,
            text: format!("traderd: mode {from} → {to}: {cause}"),
            fields: serde_json::json!({ "from": from, "to": to, "cause": cause }),
        }
    }

    pub fn fill(f: &crate::journal::FillRecord) -> Notice {
        Notice {
            kind: NoticeKind::Fill,
            at: f.at,
            text: format!(
                "traderd: {} {} {} at {}",
                f.side.as_str(),
                f.qty,
                f.symbol,
                f.price
            ),
            fields: serde_json::json!({
                "symbol": f.symbol,
                "side": f.side.as_str(),
                "qty": f.qty.to_string(),
                "price": f.price.to_string(),
                "client_order_id": f.client_order_id,
            }),
        }
    }

    pub fn health(crossed: Option<&str>, at: chrono::DateTime<chrono::Utc>) -> Notice {
        match crossed {
            Some(cause) => Notice {
                kind: NoticeKind::Health,
                at,
                text: format!("traderd: health threshold crossed: {cause}"),
                fields: serde_json::json!({ "change": "crossed", "cause": cause }),
            },
            None => Notice {
                kind: NoticeKind::Health,
                at,
                text: "traderd: health rearmed: errors back under their thresholds".into(),
                fields: serde_json::json!({ "change": "rearmed" }),
            },
        }
    }

    /// The body to POST in `format`; `instance` names the daemon (its unit instance or host).
    pub fn body(&self, format: Format, instance: &str) -> serde_json::Value {
        match format {
            Format::Json => serde_json::json!({
                "source": "traderd",
                "instance": instance,
                "kind": self.kind,
                "at": self.at.to_rfc3339(),
                "text": self.text,
                "fields": self.fields,
            }),
            Format::Slack => serde_json::json!({ "text": format!("[{instance}] {}", self.text) }),
            Format::Discord => {
                serde_json::json!({ "content": format!("[{instance}] {}", self.text) })
            }
        }
    }
}

/// Where a URL points, for logs: scheme, host and port only (a Slack or Discord webhook's path
/// is its secret).
pub fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_format_has_its_shape_and_no_more_than_the_event() {
        let at = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 15, 0, 0).unwrap();
        let n = Notice::mode("active", "preserving", "rest errors 12 in 20 s", at);
        let json = n.body(Format::Json, "paper-1");
        assert_eq!(json["kind"], "mode");
        assert_eq!(json["fields"]["to"], "preserving");
        assert_eq!(json["instance"], "paper-1");
        assert_eq!(
            n.body(Format::Slack, "paper-1"),
            serde_json::json!({"text": "[paper-1] traderd: mode active → preserving: rest errors 12 in 20 s"})
        );
        assert_eq!(
            n.body(Format::Discord, "paper-1")["content"],
            "[paper-1] traderd: mode active → preserving: rest errors 12 in 20 s"
        );
        let h = Notice::health(None, at);
        assert_eq!(h.body(Format::Json, "x")["fields"]["change"], "rearmed");
    }

    #[test]
    fn a_url_is_logged_without_its_path() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T000/B000/XXXXSECRET"),
            "https://hooks.slack.com"
        );
        assert_eq!(
            redacted("http://127.0.0.1:9000/hook?token=s"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(redacted("nonsense"), "(not a URL)");
    }
}
