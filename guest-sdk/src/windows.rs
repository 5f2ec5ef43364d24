//! Event-time windows built on keyed state and timers, as Flink's window
//! operator is: each key keeps its open windows' accumulators in its value
//! state, and an event-time timer at each window's end emits its result.
//!
//! The `#[weir_guest::window]` attribute turns an `add` function into such an
//! operator; this module is what it runs.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keyed::Keyed;
use crate::operators::IntoRecords;

/// A window: event times from `start` (inclusive) to `end` (exclusive), epoch ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First millisecond of the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl Window {
    /// The last event time in the window: when its timer fires.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }
}

/// How records are assigned to windows.
#[derive(Debug, Clone, Copy)]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size` ms, aligned to the epoch.
    Tumbling {
        /// Window length, ms.
        size: i64,
    },
    /// Windows of `size` ms starting every `slide` ms (a record is in
    /// `size / slide` of them).
    Sliding {
        /// Window length, ms.
        size: i64,
        /// Distance between window starts, ms.
        slide: i64,
    },
    /// Per key, activity separated by at least `gap` ms of silence.
    Session {
        /// Silence that closes a session, ms.
        gap: i64,
    },
}

/// A window operator's settings.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpec {
    /// How records are assigned to windows.
    pub kind: WindowKind,
    /// How long after a window's end late records still update it (ms).
    pub allowed_lateness: i64,
    /// The side output that gets records later than that.
    pub late_output: &'static str,
}

/// The open windows of one key (the operator's value state).
#[derive(Debug, Serialize, Deserialize)]
pub struct WindowState<A> {
    panes: Vec<Pane<A>>,
}

impl<A> Default for WindowState<A> {
    fn default() -> Self {
        Self { panes: Vec::new() }
    }
}

/// One open window; stored as a JSON array `[start, end, acc, fired]`,
/// which parses and prints faster than an object per window.
#[derive(Debug, Deserialize)]
#[serde(from = "(i64, i64, A, bool)")]
#[serde(bound(deserialize = "A: Deserialize<'de>"))]
struct Pane<A> {
    start: i64,
    end: i64,
    acc: A,
    fired: bool,
}

impl<A> From<(i64, i64, A, bool)> for Pane<A> {
    fn from((start, end, acc, fired): (i64, i64, A, bool)) -> Self {
        Self {
            start,
            end,
            acc,
            fired,
        }
    }
}

impl<A: Serialize> Serialize for Pane<A> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.start, self.end, &self.acc, self.fired).serialize(serializer)
    }
}

impl<A> Pane<A> {
    fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }
}

/// What an `add` function may return: nothing, or a `Result`.
pub trait AddOutcome {
    /// As a `Result`.
    ///
    /// # Errors
    /// The `Err` of the function.
    fn into_result(self) -> Result<(), Error>;
}

impl AddOutcome for () {
    fn into_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl<E: std::fmt::Display> AddOutcome for Result<(), E> {
    fn into_result(self) -> Result<(), Error> {
        self.map_err(|e| Error::new(e.to_string()))
    }
}

impl WindowSpec {
    /// The windows a record at `time` belongs to, oldest first (no
    /// allocation: this runs for every record).
    fn assign(&self, time: i64) -> impl Iterator<Item = Window> {
        let (size, slide) = match self.kind {
            WindowKind::Tumbling { size } => (size, size),
            WindowKind::Sliding { size, slide } => (size, slide),
            WindowKind::Session { gap } => (gap, gap),
        };
        let (first, count) = match self.kind {
            WindowKind::Session { .. } => (time, 1),
            _ => {
                // Starts are multiples of `slide` in (time - size, time].
                let last = time - time.rem_euclid(slide);
                let count = (last - time + size + slide - 1) / slide;
                (last - (count - 1) * slide, count)
            }
        };
        (0..count).map(move |k| {
            let start = first + k * slide;
            Window {
                start,
                end: start + size,
            }
        })
    }

    /// Whether a window can no longer change at watermark `watermark`.
    fn expired(&self, window: Window, watermark: i64) -> bool {
        window.max_timestamp().saturating_add(self.allowed_lateness) <= watermark
    }
}

/// Adds the current record to its windows. A record all of whose windows
/// have expired goes to the late output (`late` gives it as JSON); an update
/// of a window that already fired emits its result again.
///
/// # Errors
/// When `add`, `merge`, `result` or an emit fails.
pub fn add_record<A: Default, R: IntoRecords>(
    spec: &WindowSpec,
    ctx: &mut Keyed<'_, WindowState<A>>,
    mut add: impl FnMut(&mut A) -> Result<(), Error>,
    merge: Option<fn(&mut A, A)>,
    result: impl Fn(&str, Window, &A) -> R,
    late: impl FnOnce() -> Result<serde_json::Value, Error>,
) -> Result<(), Error> {
    let time = ctx
        .timestamp()
        .ok_or_else(|| Error::new("a window operator needs the source's `event_time`"))?;
    let watermark = ctx.watermark();
    let key = ctx.key;
    let mut updated = Vec::new();
    let mut windows = spec
        .assign(time)
        .filter(|w| !spec.expired(*w, watermark))
        .peekable();
    if windows.peek().is_none() {
        let record = late()?;
        return ctx.emit_to(spec.late_output, &record);
    }
    for window in windows {
        let (index, opened) = match (spec.kind, merge) {
            (WindowKind::Session { .. }, Some(merge)) => {
                let mut timers = Vec::new();
                let index = merge_session(ctx.state(), window, merge, &mut timers);
                for (time, register) in timers {
                    if register {
                        ctx.register_event_timer(time);
                    } else {
                        ctx.delete_event_timer(time);
                    }
                }
                (index, false)
            }
            _ => find_or_open(ctx.state(), window),
        };
        if opened {
            ctx.register_event_timer(window.max_timestamp());
        }
        let pane = &mut ctx.state().panes[index];
        add(&mut pane.acc)?;
        if pane.fired {
            updated.push(index);
        }
    }
    for index in updated {
        let out = {
            let pane = &ctx.state().panes[index];
            result(key, pane.window(), &pane.acc)
        };
        out.emit_into(ctx.__emitter())?;
    }
    Ok(())
}

/// The index of `window`'s pane, and whether it was just opened (and needs
/// its timer).
fn find_or_open<A: Default>(state: &mut WindowState<A>, window: Window) -> (usize, bool) {
    // The newest panes are at the end, and a record mostly lands in them.
    if let Some(i) = state
        .panes
        .iter()
        .rposition(|p| p.start == window.start && p.end == window.end)
    {
        return (i, false);
    }
    state.panes.push(Pane {
        start: window.start,
        end: window.end,
        acc: A::default(),
        fired: false,
    });
    (state.panes.len() - 1, true)
}

/// Merges a new session window with every open one it overlaps.
fn merge_session<A: Default>(
    state: &mut WindowState<A>,
    window: Window,
    merge: fn(&mut A, A),
    timers: &mut Vec<(i64, bool)>,
) -> usize {
    let mut merged = Pane {
        start: window.start,
        end: window.end,
        acc: A::default(),
        fired: false,
    };
    let mut kept = Vec::with_capacity(state.panes.len());
    for pane in state.panes.drain(..) {
        if pane.start < merged.end && merged.start < pane.end {
            merged.start = merged.start.min(pane.start);
            merged.end = merged.end.max(pane.end);
            merged.fired |= pane.fired;
            timers.push((pane.end - 1, false));
            merge(&mut merged.acc, pane.acc);
        } else {
            kept.push(pane);
        }
    }
    timers.push((merged.end - 1, true));
    kept.push(merged);
    state.panes = kept;
    state.panes.len() - 1
}

/// Runs in the timer function: emits the result of every window whose end
/// the watermark passed, and drops windows past their allowed lateness.
///
/// # Errors
/// When `result` or an emit fails.
pub fn fire<A: Default, R: IntoRecords>(
    spec: &WindowSpec,
    ctx: &mut Keyed<'_, WindowState<A>>,
    result: impl Fn(&str, Window, &A) -> R,
) -> Result<(), Error> {
    let Some((_, time)) = ctx.fired_timer() else {
        return Ok(());
    };
    let key = ctx.key;
    let mut outs = Vec::new();
    let mut cleanup = Vec::new();
    {
        let state = ctx.state();
        for pane in &mut state.panes {
            if !pane.fired && pane.end - 1 <= time {
                pane.fired = true;
                outs.push(result(key, pane.window(), &pane.acc));
                if spec.allowed_lateness > 0 {
                    cleanup.push((pane.end - 1).saturating_add(spec.allowed_lateness));
                }
            }
        }
        state
            .panes
            .retain(|p| !(p.fired && spec.expired(p.window(), time)));
    }
    if ctx.get().is_some_and(|s| s.panes.is_empty()) {
        ctx.clear();
    }
    for time in cleanup {
        ctx.register_event_timer(time);
    }
    for out in outs {
        out.emit_into(ctx.__emitter())?;
    }
    Ok(())
}

/// Top-N over a window's results: the `n` items with the largest `by`, ties
/// broken by the smallest `then_by`, each with its rank (from 1).
///
/// ```
/// let sold = vec![("kiwi", 3), ("fig", 7), ("apple", 7), ("date", 1)];
/// let top = weir_guest::windows::top_n(sold, 2, |s| s.1, |s| s.0);
/// assert_eq!(top, vec![(1, ("apple", 7)), (2, ("fig", 7))]);
/// ```
pub fn top_n<T, K: Ord, U: Ord>(
    mut items: Vec<T>,
    n: usize,
    by: impl Fn(&T) -> K,
    then_by: impl Fn(&T) -> U,
) -> Vec<(usize, T)> {
    items.sort_by(|a, b| by(b).cmp(&by(a)).then_with(|| then_by(a).cmp(&then_by(b))));
    items.truncate(n);
    items
        .into_iter()
        .enumerate()
        .map(|(i, t)| (i + 1, t))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{Window, WindowKind, WindowSpec};

    fn spec(kind: WindowKind) -> WindowSpec {
        WindowSpec {
            kind,
            allowed_lateness: 0,
            late_output: "late",
        }
    }

    /// A record belongs to every window whose start is a multiple of the
    /// slide with start <= time < start + size, oldest first.
    #[test]
    fn sliding_and_tumbling_windows_are_every_window_holding_the_time() {
        for (size, slide) in [(10, 2), (10, 3), (7, 7), (1, 1), (60, 10)] {
            let kind = if size == slide {
                WindowKind::Tumbling { size }
            } else {
                WindowKind::Sliding { size, slide }
            };
            for time in (-3 * size)..(3 * size) {
                let expected: Vec<Window> = (-5 * size..5 * size)
                    .filter(|start| start.rem_euclid(slide) == 0)
                    .filter(|start| *start <= time && time < start + size)
                    .map(|start| Window {
                        start,
                        end: start + size,
                    })
                    .collect();
                let got: Vec<Window> = spec(kind).assign(time).collect();
                assert_eq!(got, expected, "size {size}, slide {slide}, time {time}");
            }
        }
    }

    #[test]
    fn a_session_window_starts_at_the_record() {
        let got: Vec<Window> = spec(WindowKind::Session { gap: 5 }).assign(42).collect();
        assert_eq!(got, vec![Window { start: 42, end: 47 }]);
    }
}
