//! Smooth weighted round-robin over binds.
//!
//! Every pick adds each candidate's weight to its current value, chooses the
//! largest current value (the first listed on a tie) and subtracts the total
//! weight from the winner. Over every window of `total` picks each candidate
//! is chosen exactly `weight` times, spread out rather than in runs.

use std::collections::HashMap;

use super::entities::Id;

/// One eligible bind: its id and weight (above 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub bind_id: Id,
    pub weight: u32,
}

/// Round-robin state for one set of binds.
#[derive(Clone, Debug, Default)]
pub struct SmoothWeightedRoundRobin {
    /// Current value of each candidate of the last pick, in the order the
    /// candidates were given.
    current: Vec<(Id, i64)>,
}

impl SmoothWeightedRoundRobin {
    /// Picks one candidate; `None` when no candidate has a weight above 0.
    ///
    /// Candidates that dropped out since the last pick lose their state,
    /// and new ones start at 0, so a bind coming back online starts fresh.
    /// A pick over the same candidates as the last one takes O(n) time with
    /// no allocation.
    pub fn pick(&mut self, candidates: &[Candidate]) -> Option<Id> {
        let total: i64 = candidates.iter().map(|c| i64::from(c.weight)).sum();
        if total == 0 {
            return None;
        }
        let same_candidates = self.current.len() == candidates.len()
            && self
                .current
                .iter()
                .zip(candidates)
                .all(|((bind_id, _), candidate)| *bind_id == candidate.bind_id);
        if !same_candidates {
            let previous: HashMap<Id, i64> = self.current.drain(..).collect();
            self.current = candidates
                .iter()
                .map(|c| (c.bind_id, previous.get(&c.bind_id).copied().unwrap_or(0)))
                .collect();
        }

        let mut best: Option<(usize, i64)> = None;
        for (index, candidate) in candidates.iter().enumerate() {
            if candidate.weight == 0 {
                continue;
            }
            let value = &mut self.current[index].1;
            *value += i64::from(candidate.weight);
            if best.is_none_or(|(_, best_value)| *value > best_value) {
                best = Some((index, *value));
            }
        }

        let (chosen, _) = best?;
        let (bind_id, value) = &mut self.current[chosen];
        *value -= total;
        Some(*bind_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(weights: &[(Id, u32)]) -> Vec<Candidate> {
        weights
            .iter()
            .map(|&(bind_id, weight)| Candidate { bind_id, weight })
            .collect()
    }

    #[test]
    fn three_to_one_in_every_window_of_four() {
        let mut rr = SmoothWeightedRoundRobin::default();
        let set = candidates(&[(1, 3), (2, 1)]);
        for _ in 0..10 {
            let window: Vec<Id> = (0..4).filter_map(|_| rr.pick(&set)).collect();
            assert_eq!(window.iter().filter(|id| **id == 1).count(), 3);
            assert_eq!(window.iter().filter(|id| **id == 2).count(), 1);
        }
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let mut rr = SmoothWeightedRoundRobin::default();
        let set = candidates(&[(1, 0), (2, 5)]);
        assert!((0..20).all(|_| rr.pick(&set) == Some(2)));
    }

    #[test]
    fn no_weight_gives_none() {
        let mut rr = SmoothWeightedRoundRobin::default();
        assert_eq!(rr.pick(&candidates(&[(1, 0)])), None);
        assert_eq!(rr.pick(&[]), None);
    }

    #[test]
    fn picks_are_spread_out() {
        let mut rr = SmoothWeightedRoundRobin::default();
        let set = candidates(&[(1, 5), (2, 1), (3, 1)]);
        let picks: Vec<Id> = (0..7).filter_map(|_| rr.pick(&set)).collect();
        assert_eq!(picks, vec![1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn changed_set_keeps_remaining_state() {
        let mut rr = SmoothWeightedRoundRobin::default();
        let both = candidates(&[(1, 1), (2, 1)]);
        assert_eq!(rr.pick(&both), Some(1));
        // Bind 3 joins in front: it starts at 0, and bind 2 keeps its lead.
        let three = candidates(&[(3, 1), (1, 1), (2, 1)]);
        assert_eq!(rr.pick(&three), Some(2));
        // Bind 1 drops out and comes back at 0. All three then tie, so
        // the first listed wins.
        let without_one = candidates(&[(3, 1), (2, 1)]);
        assert_eq!(rr.pick(&without_one), Some(3));
        assert_eq!(rr.pick(&three), Some(3));
    }

    #[test]
    fn split_over_many_weights_is_exact() {
        let mut rr = SmoothWeightedRoundRobin::default();
        let set = candidates(&[(1, 7), (2, 2), (3, 100), (4, 1)]);
        let mut counts: HashMap<Id, u32> = HashMap::new();
        for _ in 0..110 * 3 {
            *counts.entry(rr.pick(&set).unwrap()).or_default() += 1;
        }
        assert_eq!(counts[&1], 21);
        assert_eq!(counts[&2], 6);
        assert_eq!(counts[&3], 300);
        assert_eq!(counts[&4], 3);
    }
}
