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

/// A record as read: its data, and the bytes to expect in a compare-and-swap.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    /// The data.
    pub data: T,
    /// When it stops existing.
    pub exp: UnixTime,
    raw: Vec<u8>,
}

fn encode<T: Serialize>(
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
    let Some(raw) = store.get(key)? else {
        return Ok(None);
    };
    let Ok(envelope) = serde_json::from_slice::<Envelope<T>>(&raw) else {
        return Ok(None);
    };
    if envelope.v != VERSION || envelope.exp <= now {
        return Ok(None);
    }
    Ok(Some(Stored {
        data: envelope.data,
        exp: envelope.exp,
        raw,
    }))
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
