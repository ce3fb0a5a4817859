//! Jittered exponential backoff for reconnecting (randomness is an argument).

use std::time::Duration;

use rand::Rng;

/// Delays grow `base · 2^attempt` up to `max`; each delay is drawn uniformly from
/// the upper half of that ceiling ("equal jitter"), so a fleet reconnecting after a
/// server restart spreads out, and no delay is ever near zero.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never exceeding `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(rng.gen_range(0..=nanos))
    }

    /// A connection succeeded: start again from `base`.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_is_capped_jittered_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay(&mut rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_millis(100 << i).min(Duration::from_secs(2));
            assert!(*d >= ceiling / 2 && *d <= ceiling, "{i}: {d:?}");
        }
        assert!(delays.windows(2).any(|w| w[0] != w[1]));
        b.reset();
        assert!(b.next_delay(&mut rng) <= Duration::from_millis(100));
        // Two clients with different randomness do not retry in lockstep.
        let mut r2 = rand::rngs::StdRng::seed_from_u64(4);
        let mut b1 = Backoff::default();
        let mut b2 = Backoff::default();
        let same = (0..5)
            .filter(|_| b1.next_delay(&mut rng) == b2.next_delay(&mut r2))
            .count();
        assert_eq!(same, 0);
    }
}
