//! The key-value store through `wasi:keyvalue` (Spin's `default` label), with the
//! re-read rules of design.md, State, for Spin's store quirks.

use ciba::store::{KeyPage, KeyValue, NextValue, StoreError, Swap};
use std::sync::atomic::{AtomicBool, Ordering};

use spin_sdk::experimental::wasi::keyvalue::{atomics, batch, store};

/// Whether this instance's store refused a `get-many` (Spin 4.1's Redis store always does
/// for two keys or more): [`SpinStore::get_many`] then reads key by key.
static GET_MANY_REFUSED: AtomicBool = AtomicBool::new(false);

/// An open bucket of the runtime's store.
pub struct SpinStore {
    bucket: store::Bucket,
}

fn fault(e: store::Error) -> StoreError {
    StoreError(match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access to the store denied".into(),
        store::Error::Other(why) => why,
    })
}

impl SpinStore {
    /// Opens the store labelled `default` (design.md, State).
    pub fn open_default() -> Result<Self, StoreError> {
        Self::open("default")
    }

    /// Opens the store with `label`.
    pub fn open(label: &str) -> Result<Self, StoreError> {
        Ok(Self {
            bucket: store::open(label).map_err(fault)?,
        })
    }
}

impl KeyValue for SpinStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bucket.get(key).map_err(fault)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.bucket.set(key, value).map_err(fault)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.bucket.delete(key).map_err(fault)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        let swapped = self.read_and_swap(key, &mut |current| {
            (current == expected).then(|| new.to_vec())
        })?;
        Ok(swapped.unwrap_or(Swap::Conflict))
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        let cas = atomics::Cas::new(&self.bucket, key).map_err(fault)?;
        let current = cas.current().map_err(fault)?;
        let Some(new) = next(current.as_deref()) else {
            return Ok(None);
        };
        let answer = atomics::swap(cas, &new);
        // A swap over a value that was there is a conditional write on every store: its
        // success is true. Otherwise the value now there decides: a failed swap may have been
        // written (Spin 4.1 Redis), and an insert into an absent key is an unconditional
        // upsert (Spin SQLite) that a concurrent writer may have overwritten.
        match answer {
            Ok(()) if current.is_some() => Ok(Some(Swap::Swapped)),
            Ok(()) | Err(atomics::CasError::CasFailed(_)) => {
                let now = self.bucket.get(key).map_err(fault)?;
                Ok(Some(if now.as_deref() == Some(new.as_slice()) {
                    Swap::Swapped
                } else {
                    Swap::Conflict
                }))
            }
            Err(atomics::CasError::StoreError(e)) => Err(fault(e)),
        }
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(&self.bucket, key, delta).map_err(fault)
    }

    /// `get-many`: Spin answers only the keys that exist; a `none` another host might send
    /// is left out the same way. No call for no keys, and a `get` for one.
    ///
    /// Spin 4.1's Redis store implements `get-many` with `KEYS <key>…` (issue 18, found by
    /// the host's Redis model): Redis refuses it for more than one key, and for one key that
    /// exists the host panics. So one key is always a `get`, and a refused batch is read again
    /// one `get` per key: one call on Spin's SQLite store, the same answer on Redis. A refusal
    /// is remembered for the rest of the instance's life (Spin reuses an instance for up to
    /// 128 requests), so on Redis only its first multi-key read pays the refused call; a
    /// store that refused for another reason (a transient fault) is read key by key until
    /// the instance ends, which is slower, never wrong.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match keys {
            [] => Ok(Vec::new()),
            [key] => Ok(self
                .get(key)?
                .map(|value| vec![((*key).to_string(), value)])
                .unwrap_or_default()),
            _ => {
                if !GET_MANY_REFUSED.load(Ordering::Relaxed) {
                    let owned: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
                    match batch::get_many(&self.bucket, &owned) {
                        Ok(found) => {
                            return Ok(found
                                .into_iter()
                                .filter_map(|(key, value)| Some((key, value?)))
                                .collect());
                        }
                        Err(_) => GET_MANY_REFUSED.store(true, Ordering::Relaxed),
                    }
                }
                let mut found = Vec::with_capacity(keys.len());
                for key in keys {
                    if let Some(value) = self.get(key)? {
                        found.push(((*key).to_string(), value));
                    }
                }
                Ok(found)
            }
        }
    }

    /// `set-many`: one transaction on Spin's SQLite store. No call for no pairs.
    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.to_vec()))
            .collect();
        batch::set_many(&self.bucket, &pairs).map_err(fault)
    }

    /// `delete-many`: one statement on Spin's SQLite store. No call for no keys.
    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        batch::delete_many(&self.bucket, &keys).map_err(fault)
    }

    /// `list-keys`: Spin 4 answers every key in one page (it refuses a cursor), from SQLite
    /// or with Redis `KEYS *`; another host may page.
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        let page = self.bucket.list_keys(cursor).map_err(fault)?;
        Ok(KeyPage {
            keys: page.keys,
            cursor: page.cursor,
        })
    }
}
