//! Where the order side stands between a start (or an actor restart) and taking orders: it
//! sends a strategy's order only once reconciled with the broker **and** with the
//! `trade_updates` stream ready; the flatten procedure's closes need only reconciliation
//! (open orders are polled over REST while the stream is down).

/// The order side's lifecycle. A restart of the actor goes back to reconciling and keeps what
/// it knew of the stream (the stream client is another actor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lifecycle {
    /// Neither reconciled nor with the stream ready.
    #[default]
    Starting,
    /// The stream is ready; reconciliation not done yet.
    Reconciling,
    /// Reconciled; waiting for the stream.
    AwaitingStream,
    /// Both: orders go.
    Ready,
}

impl Lifecycle {
    pub fn reconciled(self) -> bool {
        matches!(self, Lifecycle::AwaitingStream | Lifecycle::Ready)
    }
    pub fn stream_ready(self) -> bool {
        matches!(self, Lifecycle::Reconciling | Lifecycle::Ready)
    }
    /// Whether an order goes: a closing order of the flatten procedure needs only
    /// reconciliation; any other, both. `Err` says what it waits for.
    pub fn admits(self, closing: bool) -> Result<(), &'static str> {
        match (self, closing) {
            (Lifecycle::Ready, _) | (Lifecycle::AwaitingStream, true) => Ok(()),
            (Lifecycle::Starting | Lifecycle::Reconciling, _) => Err("reconciling with the broker"),
            (Lifecycle::AwaitingStream, false) => Err("waiting for the trade_updates stream"),
        }
    }
    #[must_use]
    pub fn reconciled_now(self) -> Lifecycle {
        if self.stream_ready() {
            Lifecycle::Ready
        } else {
            Lifecycle::AwaitingStream
        }
    }
    #[must_use]
    pub fn stream_ready_now(self) -> Lifecycle {
        if self.reconciled() {
            Lifecycle::Ready
        } else {
            Lifecycle::Reconciling
        }
    }
    /// After an actor restart: reconcile again before any order.
    #[must_use]
    pub fn restarted(self) -> Lifecycle {
        if self.stream_ready() {
            Lifecycle::Reconciling
        } else {
            Lifecycle::Starting
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Lifecycle::*;

    #[test]
    fn orders_go_only_when_reconciled_and_streaming_and_closes_need_only_reconciliation() {
        // (state, closing order?, admitted?)
        let rows = [
            (Starting, false, false),
            (Starting, true, false),
            (Reconciling, false, false),
            (Reconciling, true, false),
            (AwaitingStream, false, false),
            (AwaitingStream, true, true),
            (Ready, false, true),
            (Ready, true, true),
        ];
        for (state, closing, admitted) in rows {
            assert_eq!(
                state.admits(closing).is_ok(),
                admitted,
                "{state:?} closing={closing}"
            );
        }
        assert_eq!(Starting.admits(false), Err("reconciling with the broker"));
        assert_eq!(
            AwaitingStream.admits(false),
            Err("waiting for the trade_updates stream")
        );
    }

    #[test]
    fn either_order_of_events_reaches_ready_and_a_restart_reconciles_again() {
        assert_eq!(Starting.reconciled_now().stream_ready_now(), Ready);
        assert_eq!(Starting.stream_ready_now().reconciled_now(), Ready);
        assert_eq!(Ready.restarted(), Reconciling, "the stream stays ready");
        assert_eq!(AwaitingStream.restarted(), Starting);
        assert_eq!(Ready.reconciled_now(), Ready);
        assert_eq!(Ready.stream_ready_now(), Ready);
    }
}
