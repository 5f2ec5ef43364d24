//! Barrier alignment: a stage with several inputs takes a checkpoint only
//! once every input has delivered that checkpoint's barrier.
//!
//! All inputs share one channel, so an input whose barrier has arrived cannot
//! be left unread as Flink does; what it sends next is held here instead and
//! handed back, in order, once the last barrier arrives. An input that has
//! ended (its watermark reached [`END_OF_TIME`]) sends no more barriers and
//! counts as aligned.

use std::collections::VecDeque;

use super::message::{END_OF_TIME, Envelope};

/// The alignment state of one stage.
pub struct Aligner {
    /// Per input: it has ended.
    ended: Vec<bool>,
    /// The checkpoint being aligned, and which inputs delivered its barrier.
    pending: Option<(u64, Vec<bool>)>,
    /// What blocked inputs sent after their barrier.
    held: VecDeque<Envelope>,
    /// What alignment released, to be handled before the channel is read.
    ready: VecDeque<Envelope>,
    /// A checkpoint whose barriers have all arrived, not yet taken.
    aligned: Option<u64>,
}

impl Aligner {
    /// For a stage with `inputs` upstream senders.
    pub fn new(inputs: usize) -> Self {
        Self {
            ended: vec![false; inputs.max(1)],
            pending: None,
            held: VecDeque::new(),
            ready: VecDeque::new(),
            aligned: None,
        }
    }

    /// What alignment released earlier, to handle before reading the input.
    pub fn released(&mut self) -> Option<Envelope> {
        self.ready.pop_front()
    }

    /// Takes an envelope in: returns it when the stage should handle it now,
    /// `None` when it is held back or was a barrier (see [`Self::take_aligned`]).
    pub fn admit(&mut self, envelope: Envelope) -> Option<Envelope> {
        let Some(input) = envelope.input().filter(|&i| i < self.ended.len()) else {
            return Some(envelope);
        };
        if let Some((_, arrived)) = &self.pending
            && arrived[input]
        {
            self.held.push_back(envelope);
            return None;
        }
        match envelope {
            Envelope::Barrier { checkpoint, .. } => {
                let inputs = self.ended.len();
                let (_, arrived) = self
                    .pending
                    .get_or_insert_with(|| (checkpoint, vec![false; inputs]));
                arrived[input] = true;
                self.check();
                None
            }
            Envelope::Watermark { time, .. } if time == END_OF_TIME => {
                self.ended[input] = true;
                self.check();
                Some(envelope)
            }
            other => Some(other),
        }
    }

    /// The checkpoint whose barriers have now all arrived, once: the stage
    /// snapshots its state and forwards the barrier.
    pub fn take_aligned(&mut self) -> Option<u64> {
        self.aligned.take()
    }

    fn check(&mut self) {
        let Some((checkpoint, arrived)) = &self.pending else {
            return;
        };
        if arrived.iter().zip(&self.ended).all(|(a, e)| *a || *e) {
            self.aligned = Some(*checkpoint);
            self.pending = None;
            self.ready.append(&mut self.held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_of(input: usize) -> Envelope {
        Envelope::Watermark { input, time: 0 }
    }

    fn input_of(e: &Envelope) -> Option<usize> {
        e.input()
    }

    #[test]
    fn holds_an_aligned_input_until_every_barrier_arrived() {
        let mut a = Aligner::new(2);
        assert!(a.admit(batch_of(0)).is_some());
        assert!(
            a.admit(Envelope::Barrier {
                input: 0,
                checkpoint: 7
            })
            .is_none()
        );
        assert_eq!(a.take_aligned(), None);
        // Input 0 is past its barrier: held. Input 1 is not: handled.
        assert!(a.admit(batch_of(0)).is_none());
        assert_eq!(a.admit(batch_of(1)).as_ref().and_then(input_of), Some(1));
        assert!(
            a.admit(Envelope::Barrier {
                input: 1,
                checkpoint: 7
            })
            .is_none()
        );
        assert_eq!(a.take_aligned(), Some(7));
        assert_eq!(a.released().as_ref().and_then(input_of), Some(0));
        assert!(a.released().is_none());
    }

    #[test]
    fn an_ended_input_counts_as_aligned() {
        let mut a = Aligner::new(2);
        a.admit(Envelope::Barrier {
            input: 0,
            checkpoint: 1,
        });
        assert!(
            a.admit(Envelope::Watermark {
                input: 1,
                time: END_OF_TIME
            })
            .is_some()
        );
        assert_eq!(a.take_aligned(), Some(1));
        a.admit(Envelope::Barrier {
            input: 0,
            checkpoint: 2,
        });
        assert_eq!(a.take_aligned(), Some(2));
    }
}
