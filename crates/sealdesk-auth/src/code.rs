//! One-time codes `R · S` for attended access, and the limits that make guessing them
//! hopeless (DESIGN.md §2, §4).
//!
//! `R` is the host's 9-digit routing number (public); `S` is 8 secret digits drawn on the
//! host by rejection sampling and never sent anywhere. The host allows 3 handshake runs
//! per code (counted when the first message arrives), one at a time, for 10 minutes, and
//! the code is spent by the first run that passes key confirmation. The viewer stops after
//! 3 failed runs against the same `R` for 10 minutes, because a fake host can guess too.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use sealdesk_proto::RoutingNumber;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Number of secret digits.
pub const SECRET_DIGITS: usize = 8;
/// Handshake runs allowed per code on the host, and failed runs per `R` on the viewer.
pub const MAX_ATTEMPTS: u8 = 3;
/// How long a code is valid after it is shown.
pub const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// How long one run may stay in flight on the host before it is abandoned.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

const SECRET_SPACE: u32 = 100_000_000;
/// The largest multiple of 10⁸ that fits in a u32: draws at or above it are rejected.
const REJECT_AT: u32 = (u32::MAX / SECRET_SPACE) * SECRET_SPACE;

/// The secret half `S`: 8 ASCII digits, zeroized on drop, never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CodeSecret([u8; SECRET_DIGITS]);

impl CodeSecret {
    /// Draws 8 uniform digits by rejection sampling.
    pub fn draw(rng: &mut impl CryptoRngCore) -> Self {
        loop {
            let mut v = rng.next_u32();
            if v < REJECT_AT {
                v %= SECRET_SPACE;
                let mut digits = [0u8; SECRET_DIGITS];
                for d in digits.iter_mut().rev() {
                    *d = b'0' + (v % 10) as u8;
                    v /= 10;
                }
                return Self(digits);
            }
        }
    }

    /// The secret as a number below 10⁸ (for tests and statistics).
    pub fn value(&self) -> u32 {
        self.0
            .iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    }

    pub(crate) fn digits(&self) -> &[u8; SECRET_DIGITS] {
        &self.0
    }
}

impl fmt::Debug for CodeSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSecret(..)")
    }
}

/// A one-time code `R · S`.
#[derive(Clone)]
pub struct OneTimeCode {
    /// The host's routing number (public).
    pub routing: RoutingNumber,
    /// The secret digits.
    pub secret: CodeSecret,
}

/// A typed code could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeParseError {
    /// Wrong number of digits.
    #[error("a code has 17 digits (9 for the host number, 8 secret); this has {0}")]
    WrongLength(usize),
    /// Something other than digits, spaces, '·', '-' or '.'.
    #[error("a code contains only digits (spaces, '·' and '-' are ignored)")]
    NotDigits,
    /// The routing number part is not valid.
    #[error("the host number part of the code is not valid")]
    BadRouting,
}

impl OneTimeCode {
    /// A fresh code for the host with routing number `routing`.
    pub fn draw(routing: RoutingNumber, rng: &mut impl CryptoRngCore) -> Self {
        Self {
            routing,
            secret: CodeSecret::draw(rng),
        }
    }

    /// Reads a code as typed by a person: `123 456 789 · 1234 5678`, `123456789-12345678`, …
    pub fn parse(text: &str) -> Result<Self, CodeParseError> {
        let mut digits = Zeroizing::new(Vec::with_capacity(17));
        for c in text.chars() {
            match c {
                '0'..='9' => digits.push(c as u8),
                ' ' | '\t' | '·' | '-' | '.' | '•' => {}
                _ => return Err(CodeParseError::NotDigits),
            }
        }
        if digits.len() != 9 + SECRET_DIGITS {
            return Err(CodeParseError::WrongLength(digits.len()));
        }
        let r = digits[..9]
            .iter()
            .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
        let routing = RoutingNumber::new(r).map_err(|_| CodeParseError::BadRouting)?;
        let mut s = [0u8; SECRET_DIGITS];
        s.copy_from_slice(&digits[9..]);
        let secret = CodeSecret(s);
        s.zeroize();
        Ok(Self { routing, secret })
    }

    /// The code as shown to people: `123 456 789 · 1234 5678`. This string is secret.
    pub fn display(&self) -> Zeroizing<String> {
        let s = self.secret.digits();
        let mut out = Zeroizing::new(self.routing.grouped());
        out.push_str(" · ");
        for (i, d) in s.iter().enumerate() {
            if i == 4 {
                out.push(' ');
            }
            out.push(char::from(*d));
        }
        out
    }

    /// The SPAKE2 password: `"sealdesk/v1 code|" R "|" S`.
    pub(crate) fn password(&self) -> Zeroizing<Vec<u8>> {
        let mut pw = Zeroizing::new(Vec::with_capacity(40));
        pw.extend_from_slice(b"sealdesk/v1 code|");
        pw.extend_from_slice(format!("{:09}", self.routing.get()).as_bytes());
        pw.push(b'|');
        pw.extend_from_slice(self.secret.digits());
        pw
    }
}

impl fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimeCode")
            .field("routing", &self.routing)
            .field("secret", &self.secret)
            .finish()
    }
}

/// Why the host refused to start a run with its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeRefusal {
    Expired,
    Used,
    Exhausted,
    Busy,
}

/// The host's per-code accounting.
#[derive(Debug)]
pub(crate) struct CodeLimits {
    issued_at: Instant,
    attempts: u8,
    in_flight_since: Option<Instant>,
    used: bool,
}

impl CodeLimits {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            issued_at: now,
            attempts: 0,
            in_flight_since: None,
            used: false,
        }
    }

    pub(crate) fn expires_at(&self) -> Instant {
        self.issued_at + CODE_LIFETIME
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at()
    }

    /// Starts a run: spends an attempt and marks it in flight, or says why not.
    pub(crate) fn begin(&mut self, now: Instant) -> Result<(), CodeRefusal> {
        if self.used {
            return Err(CodeRefusal::Used);
        }
        if self.is_expired(now) {
            return Err(CodeRefusal::Expired);
        }
        if let Some(since) = self.in_flight_since {
            if now < since + RUN_TIMEOUT {
                return Err(CodeRefusal::Busy);
            }
            self.in_flight_since = None;
        }
        if self.attempts >= MAX_ATTEMPTS {
            return Err(CodeRefusal::Exhausted);
        }
        self.attempts += 1;
        self.in_flight_since = Some(now);
        Ok(())
    }

    /// The run in flight ended; `confirmed` spends the code for good.
    pub(crate) fn end(&mut self, confirmed: bool) {
        self.in_flight_since = None;
        if confirmed {
            self.used = true;
        }
    }

    pub(crate) fn is_used(&self) -> bool {
        self.used
    }

    pub(crate) fn attempts_left(&self) -> u8 {
        MAX_ATTEMPTS.saturating_sub(self.attempts)
    }

    pub(crate) fn in_flight_deadline(&self) -> Option<Instant> {
        self.in_flight_since.map(|s| s + RUN_TIMEOUT)
    }
}

/// A point in time as a shell reads its monotonic clock, passed into the core (which reads
/// none). Natively that is [`Instant`]; where an `Instant` cannot be made — in a browser,
/// `wasm32-unknown-unknown` has no clock behind it — it is [`Elapsed`], the time since the
/// shell's own epoch (`performance.now()`).
pub trait Moment: Copy + Ord + fmt::Debug {
    /// `self + d`, saturating at the latest representable moment.
    fn after(self, d: Duration) -> Self;
    /// How long after `earlier` this is (zero if it is not after it).
    fn since(self, earlier: Self) -> Duration;
    /// `self - d`, if that is representable.
    fn before(self, d: Duration) -> Option<Self>;
}

impl Moment for Instant {
    fn after(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(self)
    }
    fn since(self, earlier: Self) -> Duration {
        self.saturating_duration_since(earlier)
    }
    fn before(self, d: Duration) -> Option<Self> {
        self.checked_sub(d)
    }
}

/// Time since an epoch the shell chose (a browser's `performance.now()`): a [`Moment`] for
/// platforms without [`Instant`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Elapsed(pub Duration);

impl Elapsed {
    /// From milliseconds since the epoch (negative and non-finite values are the epoch).
    pub fn from_millis_f64(ms: f64) -> Self {
        Self(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::ZERO))
    }
}

impl Moment for Elapsed {
    fn after(self, d: Duration) -> Self {
        Self(self.0.saturating_add(d))
    }
    fn since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
    fn before(self, d: Duration) -> Option<Self> {
        self.0.checked_sub(d).map(Self)
    }
}

/// The viewer's record of failed runs per host routing number, timed by a [`Moment`].
#[derive(Debug)]
pub struct ViewerAttempts<T: Moment = Instant> {
    failures: HashMap<RoutingNumber, (u8, T)>,
}

impl<T: Moment> Default for ViewerAttempts<T> {
    fn default() -> Self {
        Self {
            failures: HashMap::new(),
        }
    }
}

impl ViewerAttempts<Instant> {
    /// No failures recorded (timed by [`Instant`]; [`Default`] for other clocks).
    pub fn new() -> Self {
        Self::default()
    }
}

impl<T: Moment> ViewerAttempts<T> {
    /// Whether a new run against `routing` is allowed at `now`.
    pub fn allowed(&mut self, routing: RoutingNumber, now: T) -> bool {
        match self.failures.get(&routing) {
            Some(&(n, last)) if n >= MAX_ATTEMPTS => {
                if now >= last.after(CODE_LIFETIME) {
                    self.failures.remove(&routing);
                    true
                } else {
                    false
                }
            }
            _ => true,
        }
    }

    /// Records a run that reached key confirmation and failed. Returns runs left.
    pub fn record_failure(&mut self, routing: RoutingNumber, now: T) -> u8 {
        let e = self.failures.entry(routing).or_insert((0, now));
        e.0 = e.0.saturating_add(1);
        e.1 = now;
        MAX_ATTEMPTS.saturating_sub(e.0)
    }

    /// Runs left against `routing` at `now` (before its next failure).
    pub fn left(&self, routing: RoutingNumber, now: T) -> u8 {
        match self.failures.get(&routing) {
            Some(&(n, last)) if now < last.after(CODE_LIFETIME) => MAX_ATTEMPTS.saturating_sub(n),
            _ => MAX_ATTEMPTS,
        }
    }

    /// Records a successful run (clears the count).
    pub fn record_success(&mut self, routing: RoutingNumber) {
        self.failures.remove(&routing);
    }

    /// The records still relevant at `now`, as (routing number, failures, age of the last
    /// failure), so a shell can keep them across restarts with a wall clock.
    pub fn export(&self, now: T) -> Vec<(RoutingNumber, u8, Duration)> {
        let mut out: Vec<_> = self
            .failures
            .iter()
            .map(|(r, &(n, last))| (*r, n, now.since(last)))
            .filter(|(_, _, age)| *age < CODE_LIFETIME)
            .collect();
        out.sort_by_key(|(r, _, _)| *r);
        out
    }

    /// Restores records written by [`ViewerAttempts::export`] (ages measured at `now`).
    pub fn import(records: &[(RoutingNumber, u8, Duration)], now: T) -> Self {
        let mut out = Self::default();
        for &(r, n, age) in records {
            if age < CODE_LIFETIME {
                let last = now.before(age).unwrap_or(now);
                out.failures.insert(r, (n.min(MAX_ATTEMPTS), last));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parse_display_round_trip() {
        let c = OneTimeCode::parse("123 456 789 · 0012 3456").unwrap();
        assert_eq!(c.routing.get(), 123_456_789);
        assert_eq!(c.secret.value(), 123_456);
        assert_eq!(c.display().as_str(), "123 456 789 · 0012 3456");
        assert_eq!(
            OneTimeCode::parse("123456789-00123456")
                .unwrap()
                .secret
                .value(),
            123_456
        );
        assert_eq!(
            OneTimeCode::parse("123 456 789 · 0012 345").unwrap_err(),
            CodeParseError::WrongLength(16)
        );
        assert_eq!(
            OneTimeCode::parse("12345678a0012345").unwrap_err(),
            CodeParseError::NotDigits
        );
        assert_eq!(
            OneTimeCode::parse("000 000 001 · 0012 3456").unwrap_err(),
            CodeParseError::BadRouting
        );
        assert!(!format!("{c:?}").contains("00123456"), "{c:?}");
        assert_eq!(&c.password()[..], b"sealdesk/v1 code|123456789|00123456");
    }

    #[test]
    fn digits_are_uniform() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [[0u32; 10]; SECRET_DIGITS];
        let n = 50_000;
        for _ in 0..n {
            let s = CodeSecret::draw(&mut rng);
            for (i, d) in s.digits().iter().enumerate() {
                counts[i][usize::from(d - b'0')] += 1;
            }
        }
        // Chi-square with 9 degrees of freedom per position; 27.9 is the 0.1 % critical value.
        for pos in counts {
            let e = f64::from(n) / 10.0;
            let chi: f64 = pos.iter().map(|&c| (f64::from(c) - e).powi(2) / e).sum();
            assert!(chi < 27.9, "chi-square {chi}");
        }
    }

    #[test]
    fn rejection_sampling_rejects_the_biased_tail() {
        // An RNG that first returns values in the biased tail, then 42.
        struct Fixed(Vec<u32>);
        impl rand_core::RngCore for Fixed {
            fn next_u32(&mut self) -> u32 {
                self.0.remove(0)
            }
            fn next_u64(&mut self) -> u64 {
                u64::from(self.next_u32())
            }
            fn fill_bytes(&mut self, d: &mut [u8]) {
                d.fill(0)
            }
            fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
                d.fill(0);
                Ok(())
            }
        }
        impl rand_core::CryptoRng for Fixed {}
        let mut rng = Fixed(vec![u32::MAX, REJECT_AT, 42]);
        assert_eq!(CodeSecret::draw(&mut rng).value(), 42);
        assert_eq!(REJECT_AT, 4_200_000_000);
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs some real Instant to offset from"
    )]
    #[test]
    fn host_limits() {
        let t0 = Instant::now();
        let mut l = CodeLimits::new(t0);
        assert_eq!(l.begin(t0), Ok(()));
        assert_eq!(l.begin(t0), Err(CodeRefusal::Busy));
        l.end(false);
        assert_eq!(l.begin(t0), Ok(()));
        // An abandoned run frees the slot after RUN_TIMEOUT.
        assert_eq!(l.begin(t0 + RUN_TIMEOUT), Ok(()));
        l.end(false);
        assert_eq!(l.attempts_left(), 0);
        assert_eq!(l.begin(t0), Err(CodeRefusal::Exhausted));
        let mut l = CodeLimits::new(t0);
        assert_eq!(l.begin(t0 + CODE_LIFETIME), Err(CodeRefusal::Expired));
        l.begin(t0).unwrap();
        l.end(true);
        assert_eq!(l.begin(t0), Err(CodeRefusal::Used));
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "a test needs some real Instant to offset from"
    )]
    #[test]
    fn viewer_limits() {
        let t0 = Instant::now();
        let r = RoutingNumber::new(123_456_789).unwrap();
        let mut v = ViewerAttempts::new();
        assert!(v.allowed(r, t0));
        assert_eq!(v.record_failure(r, t0), 2);
        assert_eq!(v.record_failure(r, t0), 1);
        assert!(v.allowed(r, t0));
        assert_eq!(v.record_failure(r, t0), 0);
        assert!(!v.allowed(r, t0 + CODE_LIFETIME - Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(60);
        let saved = v.export(t1);
        assert_eq!(saved, vec![(r, 3, Duration::from_secs(60))]);
        let mut restored = ViewerAttempts::import(&saved, t1);
        assert!(!restored.allowed(r, t1));
        assert!(v.allowed(r, t0 + CODE_LIFETIME));
    }

    #[test]
    fn viewer_limits_without_instant() {
        // A browser's clock: milliseconds since the page loaded.
        let t = |ms: f64| Elapsed::from_millis_f64(ms);
        let r = RoutingNumber::new(987_654_321).unwrap();
        let mut v = ViewerAttempts::<Elapsed>::default();
        assert_eq!(v.left(r, t(0.0)), 3);
        assert_eq!(v.record_failure(r, t(10.0)), 2);
        assert_eq!(v.left(r, t(20.0)), 2);
        assert_eq!(v.record_failure(r, t(30.0)), 1);
        assert_eq!(v.record_failure(r, t(40.0)), 0);
        assert!(!v.allowed(r, t(50.0)));
        assert_eq!(v.left(r, t(50.0)), 0);
        let later = 40.0 + CODE_LIFETIME.as_secs_f64() * 1000.0;
        assert_eq!(v.left(r, t(later)), 3);
        assert!(v.allowed(r, t(later)));
        assert_eq!(t(-5.0), Elapsed(Duration::ZERO));
        assert_eq!(t(f64::NAN), Elapsed(Duration::ZERO));
        assert_eq!(Elapsed(Duration::ZERO).before(Duration::from_secs(1)), None);
    }
}
