//! `Notifier` actor: tells the configured webhooks (`[notify]`) of mode changes, fills and
//! health crossings, off the trading path. Each webhook has a bounded queue and a task of its
//! own that POSTs one notice at a time with retries (exponential backoff); a full queue drops
//! the newest notice and counts it, so a slow or dead receiver never delays an order nor grows
//! memory. A webhook's URL is never logged (only its host), and a notice carries only the
//! event's facts (`crate::notify`).
//!
//! Handles: [`ModeChanged`], [`OrderEvent`], [`HealthChanged`], [`GetNotifyStats`].

use crate::config::{NotifySection, Webhook};
use crate::messages::health::HealthChanged;
use crate::messages::mode::ModeChanged;
use crate::messages::orders::OrderEvent;
use crate::notify::{Notice, redacted};
use actix::prelude::*;
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the notifier did, for tests and `ctl`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct NotifyStats {
    pub queued: u64,
    pub sent: u64,
    /// Given up after the retries.
    pub failed: u64,
    /// Dropped because the webhook's queue was full.
    pub dropped: u64,
}

#[derive(Message)]
#[rtype(result = "NotifyStats")]
pub struct GetNotifyStats;

struct Hook {
    webhook: Webhook,
    tx: mpsc::Sender<serde_json::Value>,
    rx: Option<mpsc::Receiver<serde_json::Value>>,
}

pub struct Notifier {
    hooks: Vec<Hook>,
    instance: String,
    client: reqwest::Client,
    timeout: Duration,
    max_retries: usize,
    queued: u64,
    dropped: u64,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Notifier {
    /// `instance` names this daemon in every notice.
    pub fn new(section: &NotifySection, instance: String) -> Result<Notifier, String> {
        crate::alpaca::rest::install_crypto_provider();
        let client = reqwest::Client::builder()
            .user_agent(concat!("traderd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client: {}", e.without_url()))?;
        let hooks = section
            .webhooks
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel(section.queue.max(1));
                Hook {
                    webhook: w.clone(),
                    tx,
                    rx: Some(rx),
                }
            })
            .collect();
        Ok(Notifier {
            hooks,
            instance,
            client,
            timeout: Duration::from_millis(section.timeout_ms.max(1)),
            max_retries: section.max_retries,
            queued: 0,
            dropped: 0,
            sent: Arc::default(),
            failed: Arc::default(),
        })
    }

    fn notice(&mut self, n: Notice) {
        for hook in &self.hooks {
            if !hook.webhook.events.contains(&n.kind) {
                continue;
            }
            match hook
                .tx
                .try_send(n.body(hook.webhook.format, &self.instance))
            {
                Ok(()) => self.queued += 1,
                Err(_) => {
                    self.dropped += 1;
                    tracing::warn!(webhook = %redacted(&hook.webhook.url), kind = ?n.kind, dropped = self.dropped, "webhook queue full: notice dropped");
                }
            }
        }
    }
}

/// One webhook's sender: a notice at a time, retried, never more than the queue held.
async fn send_all(
    client: reqwest::Client,
    url: String,
    mut rx: mpsc::Receiver<serde_json::Value>,
    timeout: Duration,
    max_retries: usize,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) {
    let label = redacted(&url);
    while let Some(body) = rx.recv().await {
        let post = || async {
            client
                .post(&url)
                .timeout(timeout)
                .json(&body)
                .send()
                .await?
                .error_for_status()
                .map(|_| ())
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(500))
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(max_retries);
        match post.retry(backoff).await {
            Ok(()) => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook = %label, error = %e.without_url(), "webhook notice not delivered after its retries");
            }
        }
    }
}

impl Actor for Notifier {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        for hook in &mut self.hooks {
            let Some(rx) = hook.rx.take() else {
                continue;
            };
            tracing::info!(webhook = %redacted(&hook.webhook.url), format = ?hook.webhook.format, events = ?hook.webhook.events, "notifying a webhook");
            actix::spawn(send_all(
                self.client.clone(),
                hook.webhook.url.clone(),
                rx,
                self.timeout,
                self.max_retries,
                self.sent.clone(),
                self.failed.clone(),
            ));
        }
    }
}

impl Handler<ModeChanged> for Notifier {
    type Result = ();
    fn handle(&mut self, msg: ModeChanged, _: &mut Context<Self>) {
        self.notice(Notice::mode(
            msg.from.name(),
            msg.to.name(),
            &msg.cause,
            msg.at,
        ));
    }
}

impl Handler<OrderEvent> for Notifier {
    type Result = ();
    fn handle(&mut self, msg: OrderEvent, _: &mut Context<Self>) {
        if let OrderEvent::Fill(f) = &msg {
            self.notice(Notice::fill(f));
        }
    }
}

impl Handler<HealthChanged> for Notifier {
    type Result = ();
    fn handle(&mut self, msg: HealthChanged, _: &mut Context<Self>) {
        let now = chrono::Utc::now();
        match &msg {
            HealthChanged::Crossed { cause } => self.notice(Notice::health(Some(cause), now)),
            HealthChanged::Rearmed => self.notice(Notice::health(None, now)),
            HealthChanged::Stream { .. } => {}
        }
    }
}

impl Handler<GetNotifyStats> for Notifier {
    type Result = MessageResult<GetNotifyStats>;
    fn handle(&mut self, _: GetNotifyStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(NotifyStats {
            queued: self.queued,
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped,
        })
    }
}
