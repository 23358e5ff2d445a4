//! The key-value interface the rules use, and an in-memory store for tests.
//!
//! The runtime's store (Spin's `default` label: SQLite, Redis, …) has no TTL and weak
//! atomics: Spin's SQLite store upserts unconditionally when the key was absent at the start
//! of a compare-and-swap, and Spin 4.1's Redis store reports every swap as failed, even one that
//! was written (design.md, State). So:
//! - a value swapped in must carry a unique marker, so that a re-read tells who won;
//! - "the first to do X" (use a `jti`, consume an `auth_req_id`) is an [`KeyValue::increment`]
//!   whose answer only one caller can get, which every store implements atomically
//!   ([`first_use`]).
//!
//! Nothing expires by itself: every record or counter that stops mattering at a known time is
//! announced to the purge index when it is created, and the sweep of [`purge`] walks that
//! index, never listing the store.

pub mod keys;
pub mod memory;
pub mod prefetch;
pub mod purge;
pub mod record;

/// A fault of the store itself: the request fails with `server_error`, and nothing is assumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key-value store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

/// The outcome of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swap {
    /// The new value was written over the expected one.
    Swapped,
    /// The value was not the expected one (or another writer won the race): nothing written.
    Conflict,
}

/// One answer of [`KeyValue::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    /// Keys of the store, in no particular order.
    pub keys: Vec<String>,
    /// Where the next page starts; `None` after the last one (Spin answers every key at once).
    pub cursor: Option<String>,
}

/// What [`KeyValue::read_and_swap`] asks of its caller: the new value for what it read, or
/// `None` to leave it.
pub type NextValue<'a> = dyn FnMut(Option<&[u8]>) -> Option<Vec<u8>> + 'a;

/// One key-value store.
pub trait KeyValue {
    /// The value under `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes `value` under `key`.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; removing an absent key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Replaces the value under `key` with `new` if it currently equals `expected`.
    ///
    /// `new` must differ from every value another writer could swap in (carry a unique
    /// marker): implementations re-read after an ambiguous answer and compare.
    /// `expected: None` (insert if absent) is only as strong as the store's atomics; use
    /// [`KeyValue::increment`] for a first-use check.
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError>;
    /// Reads `key` and, when `next` makes a new value of what it read, swaps that in over it,
    /// with the same guarantees as [`KeyValue::compare_and_swap`]: one round trip less than
    /// a `get` followed by a compare-and-swap of what it returned. `Ok(None)` when `next`
    /// declined to write.
    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError>;
    /// Atomically adds `delta` to the counter under `key` (absent counts as 0) and returns the
    /// new value. Counters are only ever read through this call: stores encode them
    /// differently.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// One page of the store's keys (`wasi:keyvalue` `list-keys`), from `cursor` (`None`: the
    /// first page). No request lists keys (Spin answers with every key of the store at once,
    /// no cursor, and on Redis with `KEYS *`): only the operator's listing sweep
    /// ([`purge::sweep_listing`]) does.
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError>;

    /// The values of those of `keys` that exist, as `(key, value)` pairs in no particular
    /// order: `wasi:keyvalue/batch` `get-many` as Spin answers it (one `SELECT … IN` on its
    /// SQLite store; absent keys are left out, not answered `none`). One round trip for
    /// independent reads. A counter reads as [`KeyValue::get`] reads it. The default is one
    /// [`KeyValue::get`] per key, for a store without batches.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(value) = self.get(key)? {
                found.push(((*key).to_string(), value));
            }
        }
        Ok(found)
    }

    /// Writes every pair: `wasi:keyvalue/batch` `set-many`, one transaction on Spin's SQLite
    /// store (one wait for the disk instead of one per key). Not atomic across keys on every
    /// store (the interface promises none): a failure may leave some pairs written, so a
    /// caller batches only writes that are each harmless alone. The default is one
    /// [`KeyValue::set`] per pair.
    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (key, value) in pairs {
            self.set(key, value)?;
        }
        Ok(())
    }

    /// Removes every key of `keys` (absent ones are skipped): `wasi:keyvalue/batch`
    /// `delete-many`, one statement on Spin's SQLite store. Not atomic across keys on every
    /// store. The default is one [`KeyValue::delete`] per key.
    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        for key in keys {
            self.delete(key)?;
        }
        Ok(())
    }

    /// Takes `keys`, which stop mattering at `until`, to be announced to the purge with this
    /// request's next write ([`purge::Gathering`]); `None` for a store that writes
    /// announcements at once ([`purge::announce`] then does).
    fn gather(
        &self,
        _until: crate::clock::UnixTime,
        _keys: &[&str],
    ) -> Option<Result<(), StoreError>> {
        None
    }
}

/// Independent writes of one request, gathered for one [`KeyValue::set_many`] (issue 18): on
/// Spin's SQLite store one transaction instead of one per key, on Redis one `MSET`. Both of
/// Spin's stores write a batch whole, but `wasi:keyvalue` promises no atomicity, so a batch
/// holds only writes whose partial landing leaves nothing inconsistent: fresh records under
/// fresh keys, with the purge entries that announce them (through a
/// [`purge::Gathering`] store; an entry without its record deletes nothing).
#[derive(Default)]
pub struct Batch {
    pairs: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("writes", &self.pairs.len())
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new record under `key` ([`record::put`]).
    pub fn put<T: serde::Serialize>(
        &mut self,
        key: &str,
        data: &T,
        exp: crate::clock::UnixTime,
        random: &dyn crate::clock::Random,
    ) -> Result<(), StoreError> {
        self.pairs
            .push((key.to_string(), record::encode(data, exp, random)?));
        Ok(())
    }

    /// Writes everything gathered in one call: a `set` for one pair, a `set-many` for more,
    /// nothing for none.
    pub fn write(self, store: &dyn KeyValue) -> Result<(), StoreError> {
        let pairs: Vec<(&str, &[u8])> = self
            .pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        match pairs.as_slice() {
            [] => Ok(()),
            [(key, value)] => store.set(key, value),
            _ => store.set_many(&pairs),
        }
    }
}

/// Marks `key` used, once: `Ok(true)` for exactly one caller, however many race.
///
/// The marker is a counter whose value is the time it may be forgotten (`forget_after`), so
/// the record carries its own expiry (design.md, State) while staying portable: counters are
/// encoded differently by each store and are read only through
/// [`KeyValue::increment`]. The key's name ends with the same time ([`keys::forget_after`]);
/// [`first_use_of_jti`] announces it to the sweep of [`purge`]. The first caller adds
/// `forget_after` to an absent (0) counter and gets exactly that back; a later caller gets a
/// larger sum, loses, and takes its own addition back so the stored expiry stays the winner's
/// (a loser that dies in between only makes the marker live longer). A refused request never
/// reaches this call: it is the last step of every check that uses it (CLI-6, BCA-11,
/// HINT-13/15).
pub fn first_use(
    store: &dyn KeyValue,
    key: &str,
    forget_after: crate::clock::UnixTime,
) -> Result<bool, StoreError> {
    let forget_after = forget_after.max(1);
    let total = store.increment(key, forget_after)?;
    if total == forget_after {
        return Ok(true);
    }
    store.increment(key, -forget_after)?;
    Ok(false)
}

/// [`first_use`] of a client-made JWT's `jti` marker (CLI-6, BCA-11, HINT-15): `Ok(true)` for
/// exactly one caller, however many race, whatever their JWTs' `exp`.
///
/// The marker's own bucket is incremented first, then the other bucket a marker in force can
/// be in is read ([`keys::JtiMarker`]): of two racers in different buckets, the one that reads
/// last sees the other's increment, so both may lose but never both win. A loser, and a winner
/// whose read failed, take their use back ([`release`]), so that a refused or failed request
/// uses up nothing it need not.
pub fn first_use_of_jti(
    store: &dyn KeyValue,
    marker: &keys::JtiMarker,
) -> Result<bool, StoreError> {
    if !first_use(store, &marker.key, marker.forget_after)? {
        return Ok(false);
    }
    // The counter was just made: announced to the sweep now, even if the use is given back
    // below (the counter stays, at 0).
    if let Err(e) = purge::announce(store, marker.forget_after, &[&marker.key]) {
        let _ = release(store, &marker.key, marker.forget_after);
        return Err(e);
    }
    for neighbour in &marker.neighbours {
        match was_used(store, neighbour) {
            Ok(false) => {}
            Ok(true) => {
                // The JWT is refused whether or not the take-back lands: its `jti` is used.
                let _ = release(store, &marker.key, marker.forget_after);
                return Ok(false);
            }
            Err(e) => {
                let _ = release(store, &marker.key, marker.forget_after);
                return Err(e);
            }
        }
    }
    Ok(true)
}

/// Whether a `jti` marker was used, in any bucket where one still in force can be: a read, as
/// [`was_used`].
pub fn jti_was_used(store: &dyn KeyValue, marker: &keys::JtiMarker) -> Result<bool, StoreError> {
    for key in std::iter::once(&marker.key).chain(&marker.neighbours) {
        if was_used(store, key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Gives back a use that [`first_use`] granted (with the same `forget_after`), for a winner
/// that failed before its effect was written: the next caller wins, as if the failed one had
/// never come (issue 9, store faults). The counter stays, at 0: unused.
pub fn release(
    store: &dyn KeyValue,
    key: &str,
    forget_after: crate::clock::UnixTime,
) -> Result<(), StoreError> {
    store.increment(key, -forget_after.max(1)).map(drop)
}

/// Whether [`first_use`] was already called for `key`: a read, so that a request bound to be
/// refused for a used marker is refused before it uses up anything else. A counter exists
/// once incremented, on every store, whatever its encoding; one that exists is then read for
/// its value ([`read_counter`]), because a use given back by [`release`] leaves it at 0.
pub fn was_used(store: &dyn KeyValue, key: &str) -> Result<bool, StoreError> {
    Ok(read_counter(store, key)?.is_some_and(|n| n > 0))
}

/// The value of the counter under `key`, `None` when absent, read without writing (issue 18:
/// no write used only to read; on Spin's SQLite store an increment of 0 is a transaction that
/// waits for the disk): one `get`, decoded as Spin's stores encode counters, 8 bytes
/// little-endian (SQLite, `key-value-spin`) or decimal text (Redis `INCRBY`). A value in any
/// other encoding is read through an increment of 0, as every counter was before.
pub fn read_counter(store: &dyn KeyValue, key: &str) -> Result<Option<i64>, StoreError> {
    match store.get(key)? {
        None => Ok(None),
        Some(raw) => match decode_counter(&raw) {
            Some(n) => Ok(Some(n)),
            None => store.increment(key, 0).map(Some),
        },
    }
}

/// A counter's bytes as Spin's stores write them: decimal text first (Redis), then 8 bytes
/// little-endian (SQLite). The two cannot be confused for the counters this code keeps: eight
/// little-endian bytes that are all ASCII digits stand for 3.4 × 10¹⁸ or more, and every
/// counter here is a count or a Unix time.
pub fn decode_counter(raw: &[u8]) -> Option<i64> {
    let decimal = !raw.is_empty()
        && raw.len() <= 20
        && raw
            .iter()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && *b == b'-' && raw.len() > 1));
    if decimal {
        return std::str::from_utf8(raw).ok()?.parse().ok();
    }
    let bytes: [u8; 8] = raw.try_into().ok()?;
    Some(i64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn first_use_wins_once_and_keeps_the_winner_s_expiry() {
        let store = MemoryStore::new();
        assert_eq!(first_use(&store, "jti:a", 1_000), Ok(true));
        assert_eq!(first_use(&store, "jti:a", 1_000), Ok(false));
        assert_eq!(first_use(&store, "jti:a", 2_000), Ok(false));
        assert_eq!(
            store.increment("jti:a", 0),
            Ok(1_000),
            "the record holds its expiry"
        );
        assert_eq!(first_use(&store, "jti:b", 1_000), Ok(true));
    }

    #[test]
    fn counters_read_in_both_of_spin_s_encodings_without_a_write() {
        assert_eq!(
            decode_counter(&1_800_000_000i64.to_le_bytes()),
            Some(1_800_000_000)
        );
        assert_eq!(decode_counter(&(-3i64).to_le_bytes()), Some(-3));
        assert_eq!(decode_counter(&0i64.to_le_bytes()), Some(0));
        assert_eq!(decode_counter(b"1800000000"), Some(1_800_000_000));
        assert_eq!(
            decode_counter(b"12345678"),
            Some(12_345_678),
            "8 digits: Redis text"
        );
        assert_eq!(decode_counter(b"-1"), Some(-1));
        assert_eq!(decode_counter(b"0"), Some(0));
        for other in [
            &b""[..],
            b"-",
            b"1.5",
            b"abc",
            b"12345x",
            b"123456789012345678901",
        ] {
            assert_eq!(decode_counter(other), None, "{other:?}");
        }
        // Read with one get, no increment.
        let store = MemoryStore::new();
        assert_eq!(read_counter(&store, "c"), Ok(None));
        store.increment("c", 5).unwrap();
        assert_eq!(read_counter(&store, "c"), Ok(Some(5)));
        // Another encoding falls back to the increment of 0.
        store.set("c", b"not a counter").unwrap();
        assert!(read_counter(&store, "c").is_ok());
    }

    #[test]
    fn a_released_use_is_unused_and_wins_again() {
        let store = MemoryStore::new();
        assert_eq!(was_used(&store, "m"), Ok(false));
        assert_eq!(first_use(&store, "m", 1_000), Ok(true));
        assert_eq!(was_used(&store, "m"), Ok(true));
        assert_eq!(release(&store, "m", 1_000), Ok(()));
        assert_eq!(was_used(&store, "m"), Ok(false), "given back");
        assert_eq!(
            first_use(&store, "m", 1_000),
            Ok(true),
            "the next caller wins"
        );
        assert_eq!(first_use(&store, "m", 1_000), Ok(false));
    }

    const NOW: crate::clock::UnixTime = 1_800_000_000;

    /// Every lifetime a JWT can have, from every second of two buckets.
    fn each_case(mut check: impl FnMut(i64, i64, i64)) {
        for now in (NOW..NOW + 2 * keys::JTI_BUCKET).step_by(7) {
            for first in [now + 1, now + 300, now + 720] {
                for later in [now, first - 1] {
                    check(now, first, later);
                }
            }
        }
    }

    #[test]
    fn cli_6_a_used_jti_is_found_from_any_bucket_while_it_is_in_force() {
        each_case(|now, first, later| {
            let store = MemoryStore::new();
            let marker = keys::assertion_jti("c", "j", first, now);
            assert_eq!(marker.neighbours.len(), 1, "one read for the other bucket");
            assert_eq!(first_use_of_jti(&store, &marker), Ok(true));
            for end in [later + 1, later + 360, later + 720] {
                let again = keys::assertion_jti("c", "j", end, later);
                assert_eq!(
                    jti_was_used(&store, &again),
                    Ok(true),
                    "{now} {first} {later} {end}"
                );
                assert_eq!(
                    first_use_of_jti(&store, &again),
                    Ok(false),
                    "{now} {first} {later} {end}"
                );
                let other = keys::assertion_jti("c", "other", end, later);
                assert_eq!(jti_was_used(&store, &other), Ok(false));
            }
        });
    }

    #[test]
    fn cli_6_a_refused_jti_leaves_its_bucket_as_it_found_it() {
        let store = MemoryStore::new();
        let first = keys::assertion_jti("c", "j", NOW + 10, NOW);
        assert_eq!(first_use_of_jti(&store, &first), Ok(true));
        // Another exp, in the other bucket: refused, and its own bucket stays unused.
        let mut end = NOW + 10;
        while keys::assertion_jti("c", "j", end, NOW).key == first.key {
            end += 1;
        }
        let second = keys::assertion_jti("c", "j", end, NOW);
        assert_eq!(first_use_of_jti(&store, &second), Ok(false));
        assert_eq!(was_used(&store, &second.key), Ok(false));
        assert_eq!(was_used(&store, &first.key), Ok(true));
    }

    #[test]
    fn cli_6_racing_jwts_with_one_jti_never_both_win() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let mut both_lost = 0;
        for trial in 0..2_000 {
            let jti = format!("j{trial}");
            // Two exps either side of a bucket's end, as far apart as a marker can be.
            let boundary = (NOW / keys::JTI_BUCKET + 1) * keys::JTI_BUCKET;
            let now = boundary - 300;
            let ends = [boundary - 1, boundary + 400];
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let racers: Vec<_> = ends
                .into_iter()
                .map(|end| {
                    let (store, barrier, jti) = (store.clone(), barrier.clone(), jti.clone());
                    std::thread::spawn(move || {
                        let marker = keys::assertion_jti("c", &jti, end, now);
                        barrier.wait();
                        first_use_of_jti(store.as_ref(), &marker).unwrap()
                    })
                })
                .collect();
            let winners = racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|won| *won)
                .count();
            assert!(winners <= 1, "trial {trial}: both won");
            both_lost += usize::from(winners == 0);
        }
        // Both may lose (each saw the other's increment); report it, never assert on timing.
        println!("both lost in {both_lost} of 2000 races");
    }
}
