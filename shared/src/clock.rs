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
