//! systemd integration (`Type=notify`): `READY=1` once the order side has reconciled with the
//! broker, `STATUS=` carrying the mode, `WATCHDOG=1` only while the actor system answers, and
//! `STOPPING=1` when the shutdown sequence begins. Without `NOTIFY_SOCKET` every call is a
//! no-op; a failed send is logged, never fatal.

use super::Daemon;
use crate::messages::GetStreamStatus;
use crate::messages::account::GetAccount;
use crate::messages::health::GetHealth;
use crate::messages::mode::GetSupervisorStatus;
use crate::messages::orders::GetOrderStats;
use crate::messages::risk::GetRiskStats;
use sd_notify::NotifyState;
use std::time::Duration;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// What the actors answer, as the service's status line; `None` if one of them did not answer
/// within `within` (a wedged actor).
pub async fn status_line(d: &Daemon, within: Duration) -> Result<String, &'static str> {
    let ask = async {
        let sup = d
            .supervisor
            .send(GetSupervisorStatus)
            .await
            .map_err(|_| "supervisor")?;
        let orders = d.orders.send(GetOrderStats).await.map_err(|_| "orders")?;
        d.risk.send(GetRiskStats).await.map_err(|_| "risk")?;
        d.account.send(GetAccount).await.map_err(|_| "account")?;
        d.health.send(GetHealth).await.map_err(|_| "health")?;
        let market = d
            .market_stream
            .send(GetStreamStatus)
            .await
            .map_err(|_| "market data stream")?;
        Ok::<_, &'static str>(format!(
            "mode {}; market data {:?}; positions {}; open orders {}; fills {}",
            crate::domain::TradingMode::name(sup.mode),
            market.state,
            orders.positions.len(),
            orders.open_orders,
            orders.fills
        ))
    };
    match tokio::time::timeout(within, ask).await {
        Ok(r) => r,
        Err(_) => Err("an actor (timed out)"),
    }
}

/// Waits until the order side has reconciled with the broker, then says `READY=1`.
pub async fn notify_ready(d: &Daemon) {
    loop {
        match d.orders.send(GetOrderStats).await {
            Ok(s) if s.reconciled => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => return,
        }
    }
    let status = status_line(d, Duration::from_secs(5))
        .await
        .unwrap_or_else(|_| "starting".into());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tracing::info!(status = %status, "ready");
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Every half of `interval`: if every actor answers within a quarter of it, `WATCHDOG=1` and the
/// status line; if one does not, no ping (systemd restarts a daemon whose actors are wedged).
pub async fn watchdog(d: &Daemon, interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        match status_line(d, interval / 4).await {
            Ok(status) => send(&[NotifyState::Watchdog, NotifyState::Status(&status)]),
            Err(who) => {
                tracing::error!(
                    actor = who,
                    "an actor did not answer: withholding the watchdog ping"
                )
            }
        }
    }
}

/// The shutdown sequence begins.
pub fn notify_stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}
