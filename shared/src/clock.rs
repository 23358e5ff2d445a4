//! Time and randomness come in through these interfaces, so tests pin them (style 4).

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// The current time.
pub trait Clock {
    /// Now, in whole seconds since the epoch.
    fn now(&self) -> UnixTime;
}

/// A source of cryptographically secure random bytes.
pub trait Random {
    /// Fills `buf`; a source that cannot must fail the request, never return weak bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), crate::store::StoreError>;
}

/// A clock that always says the same time, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub UnixTime);

impl Clock for FixedClock {
    fn now(&self) -> UnixTime {
        self.0
    }
}

/// Clock skew tolerated on every time check: ±60 s (requirements.md, conventions).
pub const SKEW: i64 = 60;

/// A source that replays fixed bytes in order, for tests that pin identifiers.
#[derive(Debug, Default)]
pub struct CountingRandom(std::sync::atomic::AtomicU64);

impl Random for CountingRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), crate::store::StoreError> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (n.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8;
        }
        Ok(())
    }
}
