//! The TradingMode state machine, without I/O: what a crossed threshold or an operator's
//! command does in each mode. The Supervisor actor asks [`decide`] and performs the answer
//! (journal the change, tell the risk checks and the listeners, run the flatten procedure).

use crate::domain::TradingMode;

/// What can move the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeInput {
    /// A health threshold was crossed (the cause, as the monitor words it).
    Crossed(String),
    Pause,
    Resume,
    Flatten,
    Halt,
    /// The flatten procedure verified the broker flat.
    Flat(String),
}

/// What to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeDecision {
    /// Move to `to`, for `cause`.
    Move { to: TradingMode, cause: String },
    /// Nothing changes; the mode stays what it is (not an error: the command is already met,
    /// or the mode already blocks what the input would block).
    Stay,
    /// The input is refused in this mode, for this reason.
    Refuse(String),
}

fn name(mode: TradingMode) -> &'static str {
    match mode {
        TradingMode::Active => "active",
        TradingMode::ReduceOnly => "reduce_only",
        TradingMode::Preserving => "preserving",
        TradingMode::Preserved => "preserved",
        TradingMode::Halted => "halted",
    }
}

/// The transition `input` makes from `mode`.
pub fn decide(mode: TradingMode, input: &ModeInput) -> ModeDecision {
    use ModeDecision::*;
    use TradingMode::*;
    let to = |to: TradingMode, cause: &str| Move {
        to,
        cause: cause.to_string(),
    };
    match (input, mode) {
        // A crossing starts capital preservation from a trading mode; the other modes already
        // block new entries (and a running procedure is not restarted).
        (ModeInput::Crossed(cause), Active | ReduceOnly) => to(Preserving, cause),
        (ModeInput::Crossed(_), _) => Stay,
        (ModeInput::Pause, Active) => to(ReduceOnly, "operator: pause"),
        (ModeInput::Pause, ReduceOnly) => Stay,
        (ModeInput::Pause, m) => Refuse(format!(
            "cannot pause while {}: pause only narrows active to reduce_only",
            name(m)
        )),
        (ModeInput::Resume, Preserving) => {
            Refuse("the flatten procedure is running: wait for preserved, or halt".to_string())
        }
        (ModeInput::Resume, Active) => Stay,
        (ModeInput::Resume, _) => to(Active, "operator: resume"),
        (ModeInput::Flatten, Preserving) => Stay,
        (ModeInput::Flatten, _) => to(Preserving, "operator: flatten"),
        (ModeInput::Halt, Halted) => Stay,
        (ModeInput::Halt, _) => to(Halted, "operator: halt"),
        (ModeInput::Flat(cause), Preserving) => to(Preserved, cause),
        (ModeInput::Flat(_), _) => Stay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModeDecision::*;
    use TradingMode::*;

    #[test]
    fn table() {
        let crossed = ModeInput::Crossed("broker errors".into());
        let flat = ModeInput::Flat("flat after 1 attempt(s)".into());
        let moved =
            |to: TradingMode| move |d: &ModeDecision| matches!(d, Move { to: t, .. } if *t == to);
        // (input, from, what must come out)
        type Check = Box<dyn Fn(&ModeDecision) -> bool>;
        let rows: Vec<(&ModeInput, TradingMode, Check)> = vec![
            (&crossed, Active, Box::new(moved(Preserving))),
            (&crossed, ReduceOnly, Box::new(moved(Preserving))),
            (&crossed, Preserving, Box::new(|d| *d == Stay)),
            (&crossed, Preserved, Box::new(|d| *d == Stay)),
            (&crossed, Halted, Box::new(|d| *d == Stay)),
            (&ModeInput::Pause, Active, Box::new(moved(ReduceOnly))),
            (&ModeInput::Pause, ReduceOnly, Box::new(|d| *d == Stay)),
            (
                &ModeInput::Pause,
                Preserved,
                Box::new(|d| matches!(d, Refuse(_))),
            ),
            (
                &ModeInput::Pause,
                Halted,
                Box::new(|d| matches!(d, Refuse(_))),
            ),
            (
                &ModeInput::Resume,
                Preserving,
                Box::new(|d| matches!(d, Refuse(w) if w.contains("flatten"))),
            ),
            (&ModeInput::Resume, Active, Box::new(|d| *d == Stay)),
            (&ModeInput::Resume, ReduceOnly, Box::new(moved(Active))),
            (&ModeInput::Resume, Preserved, Box::new(moved(Active))),
            (&ModeInput::Resume, Halted, Box::new(moved(Active))),
            (&ModeInput::Flatten, Active, Box::new(moved(Preserving))),
            (&ModeInput::Flatten, Halted, Box::new(moved(Preserving))),
            (&ModeInput::Flatten, Preserved, Box::new(moved(Preserving))),
            (&ModeInput::Flatten, Preserving, Box::new(|d| *d == Stay)),
            (&ModeInput::Halt, Preserving, Box::new(moved(Halted))),
            (&ModeInput::Halt, Halted, Box::new(|d| *d == Stay)),
            (&flat, Preserving, Box::new(moved(Preserved))),
            (&flat, Active, Box::new(|d| *d == Stay)),
        ];
        for (input, from, check) in rows {
            let d = decide(from, input);
            assert!(check(&d), "{input:?} from {from:?} gave {d:?}");
        }
        // The cause travels with the move.
        assert_eq!(
            decide(Active, &crossed),
            Move {
                to: Preserving,
                cause: "broker errors".into()
            }
        );
    }
}
