//! Remembers the `(key, nonce)` of recent signed blob requests so none is accepted twice.
//!
//! Entries are kept for [`REPLAY_WINDOW_SECS`] of the server's wall clock after they were
//! seen: longer than any timestamp stays fresh (it was within the skew of the clock when
//! seen and is refused once the clock is more than the skew past it), so whichever way
//! the clock moves, an entry is dropped only once its request could no longer pass the
//! freshness check anyway. The cache is bounded; when it is full of entries still in
//! their window, the oldest is dropped and every request whose timestamp is not newer
//! than the dropped entry's is refused from then on, so a dropped entry cannot be
//! replayed either. Time is an argument: nothing here reads a clock.

use std::collections::{HashSet, VecDeque};

use sealdesk_proto::blob_auth::{RequestNonce, REPLAY_WINDOW_SECS};
use sealdesk_proto::DeviceKey;

/// How many requests the cache remembers at most (about 100 bytes each).
pub(crate) const DEFAULT_CAPACITY: usize = 100_000;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This `(key, nonce)` was accepted before.
    Replayed,
    /// The timestamp is not newer than an entry the full cache had to forget.
    TooOld,
}

struct Entry {
    key: DeviceKey,
    nonce: RequestNonce,
    timestamp: u64,
    seen_at: u64,
}

/// A bounded replay cache.
pub(crate) struct ReplayCache {
    seen: HashSet<(DeviceKey, RequestNonce)>,
    order: VecDeque<Entry>,
    capacity: usize,
    /// Timestamps at or below this are refused (set when a live entry was forgotten).
    floor: Option<u64>,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            floor: None,
        }
    }

    /// Accepts a request seen at `now` (unix seconds) and remembers it, or refuses it.
    pub(crate) fn check_and_insert(
        &mut self,
        now: u64,
        key: DeviceKey,
        nonce: RequestNonce,
        timestamp: u64,
    ) -> Result<(), Refused> {
        while let Some(front) = self.order.front() {
            if front.seen_at.saturating_add(REPLAY_WINDOW_SECS) > now {
                break;
            }
            self.seen.remove(&(front.key, front.nonce));
            self.order.pop_front();
        }
        if self.seen.contains(&(key, nonce)) {
            return Err(Refused::Replayed);
        }
        if self.floor.is_some_and(|f| timestamp <= f) {
            return Err(Refused::TooOld);
        }
        if self.order.len() >= self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&(old.key, old.nonce));
                self.floor = Some(self.floor.map_or(old.timestamp, |f| f.max(old.timestamp)));
            }
        }
        self.seen.insert((key, nonce));
        self.order.push_back(Entry {
            key,
            nonce,
            timestamp,
            seen_at: now,
        });
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> DeviceKey {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        DeviceKey::from_verifying_key(&sk.verifying_key())
    }

    #[test]
    fn a_nonce_is_accepted_once_per_key_within_the_window() {
        let mut c = ReplayCache::new(10);
        let n = RequestNonce([1; 16]);
        assert_eq!(c.check_and_insert(1000, key(1), n, 1000), Ok(()));
        assert_eq!(
            c.check_and_insert(1001, key(1), n, 1000),
            Err(Refused::Replayed)
        );
        assert_eq!(
            c.check_and_insert(1299, key(1), n, 1000),
            Err(Refused::Replayed)
        );
        // Another key may use the same nonce.
        assert_eq!(c.check_and_insert(1001, key(2), n, 1000), Ok(()));
        // After the window the entry is forgotten (the timestamp is stale by then anyway).
        assert_eq!(c.check_and_insert(1301, key(1), n, 1000), Ok(()));
    }

    #[test]
    fn expired_entries_are_dropped() {
        let mut c = ReplayCache::new(10);
        for i in 0..5u8 {
            c.check_and_insert(1000, key(1), RequestNonce([i; 16]), 1000)
                .unwrap();
        }
        assert_eq!(c.len(), 5);
        c.check_and_insert(1300, key(1), RequestNonce([9; 16]), 1300)
            .unwrap();
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_full_cache_refuses_what_it_can_no_longer_recognise() {
        let mut c = ReplayCache::new(2);
        let (a, b, d) = (
            RequestNonce([1; 16]),
            RequestNonce([2; 16]),
            RequestNonce([3; 16]),
        );
        c.check_and_insert(1000, key(1), a, 990).unwrap();
        c.check_and_insert(1000, key(1), b, 1000).unwrap();
        // Full: `a` (timestamp 990) is forgotten, so timestamps up to 990 are refused.
        c.check_and_insert(1001, key(1), d, 1001).unwrap();
        assert_eq!(
            c.check_and_insert(1002, key(1), a, 990),
            Err(Refused::TooOld)
        );
        assert_eq!(
            c.check_and_insert(1002, key(2), RequestNonce([7; 16]), 985),
            Err(Refused::TooOld)
        );
        assert_eq!(
            c.check_and_insert(1002, key(1), b, 1000),
            Err(Refused::Replayed)
        );
        assert_eq!(c.len(), 2);
    }
}
