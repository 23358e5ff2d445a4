//! One batched read up front for the records a request is sure to read (design.md: count
//! key-value round trips): a [`Prefetched`] store answers the first `get` of each of those
//! keys from a single [`KeyValue::get_many`], and everything else from the store.
//!
//! A prefetched value is used once: a later read of the same key (a re-read after a lost
//! swap) goes to the store, and any write to a key drops what was prefetched for it. Reading
//! a record a few milliseconds early is what a request that started earlier would have seen;
//! a compare-and-swap on what it read still detects any change since.

use std::sync::Mutex;

use super::{KeyPage, KeyValue, NextValue, StoreError, Swap};

/// A store whose first reads of some keys come from one batched read.
pub struct Prefetched<'a> {
    inner: &'a dyn KeyValue,
    read: Mutex<Vec<(String, Option<Vec<u8>>)>>,
}

impl<'a> Prefetched<'a> {
    /// Reads `keys` from `inner` in one [`KeyValue::get_many`].
    pub fn new(inner: &'a dyn KeyValue, keys: &[&str]) -> Result<Self, StoreError> {
        let mut found = inner.get_many(keys)?;
        let read = keys
            .iter()
            .map(|key| {
                let value = found
                    .iter()
                    .position(|(k, _)| k == key)
                    .map(|i| found.swap_remove(i).1);
                ((*key).to_string(), value)
            })
            .collect();
        Ok(Self {
            inner,
            read: Mutex::new(read),
        })
    }

    fn take(&self, key: &str) -> Option<Option<Vec<u8>>> {
        let mut read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let i = read.iter().position(|(k, _)| k == key)?;
        Some(read.swap_remove(i).1)
    }

    fn forget(&self, key: &str) {
        let _ = self.take(key);
    }
}

impl KeyValue for Prefetched<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.take(key) {
            Some(value) => Ok(value),
            None => self.inner.get(key),
        }
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.forget(key);
        self.inner.set(key, value)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.forget(key);
        self.inner.delete(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        self.forget(key);
        self.inner.compare_and_swap(key, expected, new)
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        self.forget(key);
        self.inner.read_and_swap(key, next)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.forget(key);
        self.inner.increment(key, delta)
    }

    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        self.inner.list_keys(cursor)
    }

    /// The prefetched keys answer from the batch (once each, as [`Prefetched::get`]); the rest,
    /// if any, in one `get_many` of the store.
    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut rest = Vec::new();
        for key in keys {
            match self.take(key) {
                Some(Some(value)) => found.push(((*key).to_string(), value)),
                Some(None) => {}
                None => rest.push(*key),
            }
        }
        if !rest.is_empty() {
            found.extend(self.inner.get_many(&rest)?);
        }
        Ok(found)
    }

    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        for (key, _) in pairs {
            self.forget(key);
        }
        self.inner.set_many(pairs)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        for key in keys {
            self.forget(key);
        }
        self.inner.delete_many(keys)
    }

    /// Announcements go where the store beneath sends them (a request's
    /// [`super::purge::Gathering`]), so a prefetching request writes them as any other does.
    fn gather(
        &self,
        until: crate::clock::UnixTime,
        keys: &[&str],
    ) -> Option<Result<(), StoreError>> {
        self.inner.gather(until, keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn first_reads_come_from_the_batch_then_the_store() {
        let store = MemoryStore::new();
        store.set("a", b"1").unwrap();
        let p = Prefetched::new(&store, &["a", "b"]).unwrap();
        store.set("a", b"2").unwrap();
        store.set("b", b"3").unwrap();
        assert_eq!(p.get("a").unwrap(), Some(b"1".to_vec()), "from the batch");
        assert_eq!(p.get("b").unwrap(), None, "absent at the batch");
        assert_eq!(p.get("a").unwrap(), Some(b"2".to_vec()), "then the store");
        let p = Prefetched::new(&store, &["a"]).unwrap();
        p.set("a", b"4").unwrap();
        assert_eq!(p.get("a").unwrap(), Some(b"4".to_vec()), "a write drops it");
        let p = Prefetched::new(&store, &["a", "b", "c"]).unwrap();
        store.set("a", b"5").unwrap();
        let mut many = p.get_many(&["a", "c", "d"]).unwrap();
        many.sort();
        assert_eq!(
            many,
            vec![("a".to_string(), b"4".to_vec())],
            "prefetched keys from the batch, absent ones stay absent, the rest from the store"
        );
    }
}
