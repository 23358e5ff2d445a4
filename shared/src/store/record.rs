//! Versioned records with their own expiry (the store has no TTL) and a unique marker, so
//! that a compare-and-swap can tell whose write is in the store (design.md, State).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{KeyValue, StoreError, Swap};
use crate::clock::{Random, UnixTime};
use crate::jose::b64url;

/// The schema version written by this code.
pub const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    exp: UnixTime,
    marker: String,
    data: T,
}

/// A record as read: its data, and the bytes to expect in a compare-and-swap. `Debug` prints
/// the data through its own `Debug` (which redacts its secrets), never the stored bytes.
#[derive(Clone)]
pub struct Stored<T> {
    /// The data.
    pub data: T,
    /// When it stops existing.
    pub exp: UnixTime,
    raw: Vec<u8>,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Stored<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("data", &self.data)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// The bytes of a record of `data` until `exp`, with a fresh marker.
pub(crate) fn encode<T: Serialize>(
    data: &T,
    exp: UnixTime,
    random: &dyn Random,
) -> Result<Vec<u8>, StoreError> {
    let mut marker = [0u8; 16];
    random.fill(&mut marker)?;
    serde_json::to_vec(&Envelope {
        v: VERSION,
        exp,
        marker: b64url(&marker),
        data,
    })
    .map_err(|_| StoreError("cannot encode a record".into()))
}

/// Reads the record under `key`; an expired or unreadable one counts as absent.
pub fn get<T: DeserializeOwned>(
    store: &dyn KeyValue,
    key: &str,
    now: UnixTime,
) -> Result<Option<Stored<T>>, StoreError> {
    Ok(store.get(key)?.and_then(|raw| decode(raw, now)))
}

/// Reads a record from the bytes the store holds; an expired or unreadable one is `None`.
pub fn decode<T: DeserializeOwned>(raw: Vec<u8>, now: UnixTime) -> Option<Stored<T>> {
    let envelope = serde_json::from_slice::<Envelope<T>>(&raw).ok()?;
    if envelope.v != VERSION || envelope.exp <= now {
        return None;
    }
    Some(Stored {
        data: envelope.data,
        exp: envelope.exp,
        raw,
    })
}

/// Writes a new record under `key` (the key is fresh: an unguessable id or token hash).
pub fn put<T: Serialize>(
    store: &dyn KeyValue,
    key: &str,
    data: &T,
    exp: UnixTime,
    random: &dyn Random,
) -> Result<(), StoreError> {
    store.set(key, &encode(data, exp, random)?)
}

/// Replaces `old` with `data`, only if nobody changed it since it was read.
pub fn replace<T: Serialize>(
    store: &dyn KeyValue,
    key: &str,
    old: &Stored<T>,
    data: &T,
    exp: UnixTime,
    random: &dyn Random,
) -> Result<Swap, StoreError> {
    store.compare_and_swap(key, Some(&old.raw), &encode(data, exp, random)?)
}

/// Swaps `data` in under `key` if the store holds exactly `expected` (`None`: absent; on
/// Spin's SQLite store that is an upsert, see [`crate::store`]).
pub fn swap<T: Serialize>(
    store: &dyn KeyValue,
    key: &str,
    expected: Option<&[u8]>,
    data: &T,
    exp: UnixTime,
    random: &dyn Random,
) -> Result<Swap, StoreError> {
    store.compare_and_swap(key, expected, &encode(data, exp, random)?)
}

/// Reads the record under `key` and swaps in what `next` makes of it, reading once
/// ([`KeyValue::read_and_swap`]). An expired or unreadable record is shown to `next` as
/// absent, but it is still what the swap expects to replace. Returns whether the swap won and
/// what `next` said besides the record.
pub fn read_and_replace<T, R>(
    store: &dyn KeyValue,
    key: &str,
    now: UnixTime,
    random: &dyn Random,
    next: impl FnOnce(Option<&T>) -> (T, UnixTime, R),
) -> Result<(Swap, R), StoreError>
where
    T: Serialize + DeserializeOwned,
{
    let mut next = Some(next);
    let mut outcome: Option<Result<R, StoreError>> = None;
    let swapped = store.read_and_swap(key, &mut |raw| {
        let next = next.take()?;
        let current = raw.and_then(|r| decode::<T>(r.to_vec(), now));
        let (data, exp, said) = next(current.as_ref().map(|c| &c.data));
        match encode(&data, exp, random) {
            Ok(bytes) => {
                outcome = Some(Ok(said));
                Some(bytes)
            }
            Err(e) => {
                outcome = Some(Err(e));
                None
            }
        }
    })?;
    match (swapped, outcome) {
        (Some(swap), Some(Ok(said))) => Ok((swap, said)),
        (_, Some(Err(e))) => Err(e),
        _ => Err(StoreError("the store did not read the record".into())),
    }
}

/// Reads the record under `key`, lets `change` compute its next value, and swaps it in;
/// a concurrent writer makes it read again, up to a few times (design.md, State). `change`
/// returning `Err` stops without writing.
pub fn update<T, E>(
    store: &dyn KeyValue,
    key: &str,
    now: UnixTime,
    random: &dyn Random,
    mut change: impl FnMut(Option<&Stored<T>>) -> Result<(T, UnixTime), E>,
) -> Result<Result<T, E>, StoreError>
where
    T: Serialize + DeserializeOwned,
{
    for _ in 0..4 {
        // What is there decides the swap, even a record that reads as absent (expired).
        let raw = store.get(key)?;
        let current = raw.clone().and_then(|r| decode::<T>(r, now));
        let (next, exp) = match change(current.as_ref()) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e)),
        };
        let encoded = encode(&next, exp, random)?;
        if store.compare_and_swap(key, raw.as_deref(), &encoded)? == Swap::Swapped {
            return Ok(Ok(next));
        }
    }
    Err(StoreError("the record keeps changing".into()))
}

/// The `exp` of `raw` if it is a record of this code (any data): what the sweep reads before
/// deleting a record, since a record can be rewritten to live longer than the purge entry
/// written when it was created (a consent once authorised, CONS-1).
pub fn expiry(raw: &[u8]) -> Option<UnixTime> {
    #[derive(Deserialize)]
    struct Head {
        v: u32,
        exp: UnixTime,
    }
    serde_json::from_slice::<Head>(raw)
        .ok()
        .filter(|head| head.v == VERSION)
        .map(|head| head.exp)
}
