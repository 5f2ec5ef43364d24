//! An operator's failures counted against its `on_failure` policy, and the
//! gate its workers wait at while it is paused. Shared by the operator's
//! workers (which count and wait) and the control plane (which resumes and
//! reports).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::FailurePolicy;

/// The failure record of one operator.
#[derive(Debug)]
pub struct Failures {
    policy: FailurePolicy,
    state: Mutex<State>,
    resumed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// When each failure within the policy's span happened, oldest first.
    recent: VecDeque<Instant>,
    paused: bool,
    total: u64,
}

/// What a new failure means under the policy.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate.
    Within,
    /// Over it: this many failures within the span.
    Over(usize),
}

impl Failures {
    /// No failures yet, under `policy`.
    pub fn new(policy: FailurePolicy) -> Self {
        Self {
            policy,
            state: Mutex::default(),
            resumed: Condvar::new(),
        }
    }

    /// The policy failures are counted under.
    pub fn policy(&self) -> &FailurePolicy {
        &self.policy
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a failure at `now`.
    pub fn record(&self, now: Instant) -> Verdict {
        let mut state = self.state();
        state.total += 1;
        state.recent.push_back(now);
        let span = self.policy.within;
        while let Some(&oldest) = state.recent.front() {
            if now.saturating_duration_since(oldest) < span {
                break;
            }
            state.recent.pop_front();
        }
        if state.recent.len() > self.policy.max_failures {
            Verdict::Over(state.recent.len())
        } else {
            Verdict::Within
        }
    }

    /// Failures since the start of the run.
    pub fn total(&self) -> u64 {
        self.state().total
    }

    /// Stops the operator's workers at their next batch; false when it was
    /// paused already (by another of its workers, say).
    pub fn pause(&self) -> bool {
        !std::mem::replace(&mut self.state().paused, true)
    }

    /// Whether the operator is paused.
    pub fn is_paused(&self) -> bool {
        self.state().paused
    }

    /// Lets the workers go on, with the count started over; false when the
    /// operator was not paused.
    pub fn resume(&self) -> bool {
        let mut state = self.state();
        let was_paused = std::mem::take(&mut state.paused);
        state.recent.clear();
        drop(state);
        self.resumed.notify_all();
        was_paused
    }

    /// Blocks while the operator is paused.
    pub fn wait_while_paused(&self) {
        let state = self.state();
        let _resumed = self
            .resumed
            .wait_while(state, |s| s.paused)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FailureAction;
    use std::sync::Arc;
    use std::time::Duration;

    fn failures(max_failures: usize) -> Failures {
        Failures::new(FailurePolicy {
            max_failures,
            within: Duration::from_secs(60),
            then: FailureAction::Pause,
        })
    }

    #[test]
    fn only_failures_within_the_span_count() {
        let f = failures(2);
        let start = Instant::now();
        assert_eq!(f.record(start), Verdict::Within);
        assert_eq!(f.record(start + Duration::from_secs(10)), Verdict::Within);
        assert_eq!(f.record(start + Duration::from_secs(20)), Verdict::Over(3));
        // The first two are a minute old by now.
        assert_eq!(f.record(start + Duration::from_secs(75)), Verdict::Within);
        assert_eq!(f.total(), 4);
    }

    #[test]
    fn resuming_releases_the_waiting_workers_and_starts_the_count_over() {
        let f = Arc::new(failures(0));
        let now = Instant::now();
        assert_eq!(f.record(now), Verdict::Over(1));
        assert!(f.pause());
        assert!(!f.pause(), "paused already");
        let worker = {
            let f = Arc::clone(&f);
            std::thread::spawn(move || f.wait_while_paused())
        };
        assert!(f.is_paused());
        assert!(f.resume());
        worker.join().unwrap();
        assert!(!f.resume(), "not paused any more");
        assert_eq!(f.record(now), Verdict::Over(1));
    }
}
