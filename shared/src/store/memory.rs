//! An in-memory [`KeyValue`] with exact atomics, for tests of the rules.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{KeyPage, KeyValue, NextValue, StoreError, Swap};

/// A store in a `HashMap` behind a lock. `Debug` prints how much it holds, not its records.
#[derive(Default)]
pub struct MemoryStore {
    values: Mutex<HashMap<String, Vec<u8>>>,
    counters: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many values and counters it holds (tests assert that a failed request wrote
    /// nothing).
    pub fn len(&self) -> usize {
        let values = self.lock_values().map(|v| v.len()).unwrap_or(0);
        values + self.counters.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether it holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock_values(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Vec<u8>>>, StoreError> {
        self.values
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))
    }

    fn lock_counters(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, i64>>, StoreError> {
        self.counters
            .lock()
            .map_err(|_| StoreError("memory store poisoned".into()))
    }
}

impl KeyValue for MemoryStore {
    /// A counter reads as its 8-byte little-endian value, as in Spin's SQLite store: it
    /// exists once incremented ([`super::was_used`]).
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(value) = self.lock_values()?.get(key) {
            return Ok(Some(value.clone()));
        }
        Ok(self
            .lock_counters()?
            .get(key)
            .map(|c| c.to_le_bytes().to_vec()))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.lock_values()?.insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock_values()?.remove(key);
        self.lock_counters()?.remove(key);
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        let mut values = self.lock_values()?;
        if values.get(key).map(Vec::as_slice) != expected {
            return Ok(Swap::Conflict);
        }
        values.insert(key.to_string(), new.to_vec());
        Ok(Swap::Swapped)
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        let mut values = self.lock_values()?;
        let Some(new) = next(values.get(key).map(Vec::as_slice)) else {
            return Ok(None);
        };
        values.insert(key.to_string(), new);
        Ok(Some(Swap::Swapped))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut counters = self.lock_counters()?;
        let value = counters.entry(key.to_string()).or_insert(0);
        *value = value
            .checked_add(delta)
            .ok_or_else(|| StoreError("counter overflow".into()))?;
        Ok(*value)
    }

    /// Under one lock: the batch is atomic here, which no caller may count on.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let values = self.lock_values()?;
        let counters = self.lock_counters()?;
        Ok(keys
            .iter()
            .filter_map(|key| {
                let value = values
                    .get(*key)
                    .cloned()
                    .or_else(|| counters.get(*key).map(|c| c.to_le_bytes().to_vec()))?;
                Some(((*key).to_string(), value))
            })
            .collect())
    }

    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut values = self.lock_values()?;
        for (key, value) in pairs {
            values.insert((*key).to_string(), value.to_vec());
        }
        Ok(())
    }

    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        let mut values = self.lock_values()?;
        let mut counters = self.lock_counters()?;
        for key in keys {
            values.remove(*key);
            counters.remove(*key);
        }
        Ok(())
    }

    /// Every key, values and counters, in one page.
    fn list_keys(&self, _cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        let mut keys: Vec<String> = self.lock_values()?.keys().cloned().collect();
        keys.extend(self.lock_counters()?.keys().cloned());
        Ok(KeyPage { keys, cursor: None })
    }
}

/// A [`MemoryStore`] that records the name of every call made on it, for tests that count a
/// step's calls (issue 18).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recording {
    pub(crate) store: MemoryStore,
    pub(crate) calls: std::cell::RefCell<Vec<&'static str>>,
}

#[cfg(test)]
impl Recording {
    fn note(&self, call: &'static str) {
        self.calls.borrow_mut().push(call);
    }

    /// The calls made since the last time this was asked.
    pub(crate) fn take(&self) -> Vec<&'static str> {
        std::mem::take(&mut *self.calls.borrow_mut())
    }
}

#[cfg(test)]
impl KeyValue for Recording {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.note("get");
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.note("set");
        self.store.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.note("delete");
        self.store.delete(key)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        self.note("compare_and_swap");
        self.store.compare_and_swap(key, expected, new)
    }
    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        self.note("read_and_swap");
        self.store.read_and_swap(key, next)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.note("increment");
        self.store.increment(key, delta)
    }
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        self.note("list_keys");
        self.store.list_keys(cursor)
    }
    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.note("get_many");
        self.store.get_many(keys)
    }
    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        self.note("set_many");
        self.store.set_many(pairs)
    }
    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        self.note("delete_many");
        self.store.delete_many(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_swap_conflicts_on_a_changed_value() {
        let store = MemoryStore::new();
        assert_eq!(
            store.compare_and_swap("k", None, b"a").unwrap(),
            Swap::Swapped
        );
        assert_eq!(
            store.compare_and_swap("k", None, b"b").unwrap(),
            Swap::Conflict
        );
        assert_eq!(
            store.compare_and_swap("k", Some(b"x"), b"b").unwrap(),
            Swap::Conflict
        );
        assert_eq!(
            store.compare_and_swap("k", Some(b"a"), b"b").unwrap(),
            Swap::Swapped
        );
        assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn read_and_swap_shows_the_value_and_writes_what_next_makes() {
        let store = MemoryStore::new();
        let mut seen = Vec::new();
        let swapped = store
            .read_and_swap("k", &mut |v| {
                seen.push(v.map(<[u8]>::to_vec));
                Some(b"a".to_vec())
            })
            .unwrap();
        assert_eq!(swapped, Some(Swap::Swapped));
        assert_eq!(store.read_and_swap("k", &mut |_| None).unwrap(), None);
        store
            .read_and_swap("k", &mut |v| {
                seen.push(v.map(<[u8]>::to_vec));
                Some(b"b".to_vec())
            })
            .unwrap();
        assert_eq!(seen, [None, Some(b"a".to_vec())]);
        assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"b"[..]));
    }

    #[test]
    fn batches_answer_only_keys_that_exist_and_write_every_pair() {
        let store = MemoryStore::new();
        store.set_many(&[("a", b"1"), ("b", b"2")]).unwrap();
        store.increment("c", 7).unwrap();
        let mut found = store.get_many(&["a", "absent", "c", "b"]).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                ("a".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
                ("c".to_string(), 7i64.to_le_bytes().to_vec()),
            ]
        );
        assert_eq!(store.get_many(&[]).unwrap(), []);
        store.delete_many(&["a", "c", "absent"]).unwrap();
        assert_eq!(
            store.get_many(&["a", "b", "c"]).unwrap(),
            [("b".to_string(), b"2".to_vec())]
        );
    }

    #[test]
    fn increment_counts_from_zero() {
        let store = MemoryStore::new();
        assert_eq!(store.increment("c", 1).unwrap(), 1);
        assert_eq!(store.increment("c", 1).unwrap(), 2);
        assert_eq!(store.increment("c", -5).unwrap(), -3);
    }
}
