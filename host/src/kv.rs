//! The embedded key-value store: one SQLite file with Spin's schema and Spin's semantics
//! (`crates/key-value-spin`), opened as Spin opens it: every label's pairs in one table,
//! `increment` as an 8-byte little-endian integer inside a transaction, and compare-and-swap
//! as an `UPDATE … WHERE value = <value read by current>`, or an unconditional upsert when
//! the key was absent.
//!
//! Also [`KvFaults`]: the count of the key-value calls components make, and a fault injected
//! at the N-th (`ciba-host up --fail-kv-op N`, and the fault tests).

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rusqlite::{Connection, OptionalExtension, params};

/// A store failure, reported to the guest as `other(...)`.
pub type KvError = String;

/// The SQLite-backed store shared by every component instance.
pub struct SqliteKv {
    conn: Mutex<Connection>,
    faults: KvFaults,
}

fn sql(e: rusqlite::Error) -> KvError {
    format!("sqlite: {e}")
}

impl SqliteKv {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the key-value store {}", path.display()))?;
        // SQLite's defaults, as Spin opens its store (`Connection::open`, no pragma): a
        // rollback journal and `synchronous = FULL`, so every write is a transaction that
        // waits for the disk (about 0.9 ms each on the development machine, against 0.03 ms
        // in WAL mode), behind one lock for the whole store. The host once used WAL here and
        // so flattered every write-heavy endpoint (bench/BENCHMARKS.md, "Issue 8, last round").
        Self::init(conn)
    }

    /// A store that lives in memory only.
    pub fn in_memory() -> anyhow::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> anyhow::Result<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                store TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                PRIMARY KEY (store, key))",
            [],
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
            faults: KvFaults::default(),
        })
    }

    /// The same store, counting (and failing) components' calls through `faults`.
    pub fn with_faults(mut self, faults: KvFaults) -> Self {
        self.faults = faults;
        self
    }

    /// The count of components' calls, and the fault to inject.
    pub fn faults(&self) -> &KvFaults {
        &self.faults
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, KvError> {
        self.conn
            .lock()
            .map_err(|_| "store lock poisoned".to_string())
    }

    /// The value under `key` in `store`.
    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.conn()?
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![store, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)
    }

    /// Writes `value` under `key`.
    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.conn()?
            .execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value = ?3",
                params![store, key, value],
            )
            .map(drop)
            .map_err(sql)
    }

    /// Removes `key`.
    pub fn delete(&self, store: &str, key: &str) -> Result<(), KvError> {
        self.conn()?
            .execute(
                "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![store, key],
            )
            .map(drop)
            .map_err(sql)
    }

    /// The values of those of `keys` that exist, as Spin's `get_many` answers them: one
    /// `SELECT … WHERE key IN (…)`, the rows found and nothing for absent keys. (Spin binds the
    /// keys as one `rarray`; the same statement with a placeholder per key spares the host
    /// rusqlite's `array` feature.)
    pub fn get_many(
        &self,
        store: &str,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key, value FROM spin_key_value WHERE store = ?1 AND key IN ({})",
                placeholders(keys.len())
            ))
            .map_err(sql)?;
        let params = std::iter::once(store).chain(keys.iter().map(String::as_str));
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .map_err(sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(sql)
    }

    /// Writes every pair in one transaction, as Spin's `set_many` does: one wait for the disk.
    pub fn set_many(&self, store: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(sql)?;
        for (key, value) in pairs {
            tx.execute(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT(store, key) DO UPDATE SET value = ?3",
                params![store, key, value],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// Removes every key of `keys` in one statement, as Spin's `delete_many` does.
    pub fn delete_many(&self, store: &str, keys: &[String]) -> Result<(), KvError> {
        if keys.is_empty() {
            return Ok(());
        }
        let params = std::iter::once(store).chain(keys.iter().map(String::as_str));
        self.conn()?
            .execute(
                &format!(
                    "DELETE FROM spin_key_value WHERE store = ?1 AND key IN ({})",
                    placeholders(keys.len())
                ),
                rusqlite::params_from_iter(params),
            )
            .map(drop)
            .map_err(sql)
    }

    /// Whether `key` exists.
    pub fn exists(&self, store: &str, key: &str) -> Result<bool, KvError> {
        Ok(self.get(store, key)?.is_some())
    }

    /// Every key of `store`.
    pub fn keys(&self, store: &str) -> Result<Vec<String>, KvError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT key FROM spin_key_value WHERE store = ?1")
            .map_err(sql)?;
        let rows = stmt
            .query_map(params![store], |row| row.get(0))
            .map_err(sql)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(sql)
    }

    /// Adds `delta` to the 8-byte little-endian counter under `key`, in one transaction.
    pub fn increment(&self, store: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(sql)?;
        let current: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2",
                params![store, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)?;
        let current = match current {
            None => 0,
            Some(bytes) => i64::from_le_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| "the value under this key is not a counter".to_string())?,
            ),
        };
        let new = current
            .checked_add(delta)
            .ok_or_else(|| "counter overflow".to_string())?;
        tx.execute(
            "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(store, key) DO UPDATE SET value = ?3",
            params![store, key, new.to_le_bytes().to_vec()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(new)
    }

    /// The second half of a compare-and-swap: writes `new` if the value is still `seen` (what
    /// `current` returned). With nothing seen, Spin upserts unconditionally. `Ok(false)` is a
    /// lost race.
    pub fn swap(
        &self,
        store: &str,
        key: &str,
        seen: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, KvError> {
        match seen {
            Some(old) => self
                .conn()?
                .execute(
                    "UPDATE spin_key_value SET value = ?3 WHERE store = ?1 AND key = ?2 AND value = ?4",
                    params![store, key, new, old],
                )
                .map(|changed| changed == 1)
                .map_err(sql),
            None => self.set(store, key, new).map(|()| true),
        }
    }
}

/// `?2, ?3, …`: one placeholder per key after the store's `?1`.
fn placeholders(n: usize) -> String {
    (2..n + 2)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One label of a [`SqliteKv`] as the shared crate's [`ciba::store::KeyValue`]: what the
/// operator's commands run on the file directly (`ciba-host sweep-legacy`), with no component
/// in between. Counters and compare-and-swap as Spin's store does them.
pub struct Label<'a> {
    /// The store.
    pub kv: &'a SqliteKv,
    /// The label (`default`).
    pub label: &'a str,
}

fn store_error(e: KvError) -> ciba::store::StoreError {
    ciba::store::StoreError(e)
}

impl ciba::store::KeyValue for Label<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ciba::store::StoreError> {
        self.kv.get(self.label, key).map_err(store_error)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), ciba::store::StoreError> {
        self.kv.set(self.label, key, value).map_err(store_error)
    }

    fn delete(&self, key: &str) -> Result<(), ciba::store::StoreError> {
        self.kv.delete(self.label, key).map_err(store_error)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<ciba::store::Swap, ciba::store::StoreError> {
        let swapped = self.read_and_swap(key, &mut |current| {
            (current == expected).then(|| new.to_vec())
        })?;
        Ok(swapped.unwrap_or(ciba::store::Swap::Conflict))
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut ciba::store::NextValue<'_>,
    ) -> Result<Option<ciba::store::Swap>, ciba::store::StoreError> {
        let seen = self.get(key)?;
        let Some(new) = next(seen.as_deref()) else {
            return Ok(None);
        };
        let swapped = self
            .kv
            .swap(self.label, key, seen.as_deref(), &new)
            .map_err(store_error)?;
        Ok(Some(if swapped {
            ciba::store::Swap::Swapped
        } else {
            ciba::store::Swap::Conflict
        }))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, ciba::store::StoreError> {
        self.kv
            .increment(self.label, key, delta)
            .map_err(store_error)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, ciba::store::StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        self.kv.get_many(self.label, &keys).map_err(store_error)
    }

    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), ciba::store::StoreError> {
        let pairs: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.to_vec()))
            .collect();
        self.kv.set_many(self.label, &pairs).map_err(store_error)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<(), ciba::store::StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        self.kv.delete_many(self.label, &keys).map_err(store_error)
    }

    fn list_keys(
        &self,
        _cursor: Option<&str>,
    ) -> Result<ciba::store::KeyPage, ciba::store::StoreError> {
        Ok(ciba::store::KeyPage {
            keys: self.kv.keys(self.label).map_err(store_error)?,
            cursor: None,
        })
    }
}

/// Drops, from the SQLite file, the keys of earlier versions that the purge index does not
/// know (names with their time, purge tags) once their time has passed at `now`: the listing
/// sweep of those versions ([`ciba::store::purge::sweep_listing`]), run until nothing expired
/// is left. An operator's command, once after an upgrade (`ciba-host sweep-legacy`); it lists
/// every key, so no request does it. How many keys it deleted.
pub fn sweep_legacy(kv: &SqliteKv, now: i64) -> Result<usize, KvError> {
    let store = Label {
        kv,
        label: "default",
    };
    let mut deleted = 0;
    loop {
        let done = ciba::store::purge::sweep_listing(&store, now, 10_000).map_err(|e| e.0)?;
        deleted += done.deleted;
        if !done.backlog {
            return Ok(deleted);
        }
    }
}

/// One key-value call a component makes through `wasi:keyvalue` (opening a bucket and making
/// a compare-and-swap handle touch no data and are not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvOp {
    /// `bucket.get`.
    Get,
    /// `bucket.set`.
    Set,
    /// `bucket.delete`.
    Delete,
    /// `bucket.exists`.
    Exists,
    /// `bucket.list-keys`.
    ListKeys,
    /// `atomics.increment`.
    Increment,
    /// `cas.current`.
    CasCurrent,
    /// `atomics.swap`.
    CasSwap,
    /// `batch.get-many` (one call whatever its number of keys).
    GetMany,
    /// `batch.set-many` (one call, one transaction on Spin's SQLite store).
    SetMany,
    /// `batch.delete-many` (one call, one statement on Spin's SQLite store).
    DeleteMany,
}

impl KvOp {
    /// Whether the call writes: `set`, `delete`, `increment`, a swap, and each batch write as
    /// **one** write whatever its number of keys, as Spin's SQLite store commits it (one
    /// transaction that waits for the disk). Reads (`get`, `exists`, `list-keys`,
    /// `current`, `get-many`) do not.
    pub fn is_write(self) -> bool {
        match self {
            Self::Set
            | Self::Delete
            | Self::Increment
            | Self::CasSwap
            | Self::SetMany
            | Self::DeleteMany => true,
            Self::Get | Self::Exists | Self::ListKeys | Self::CasCurrent | Self::GetMany => false,
        }
    }
}

/// The most calls [`KvFaults::ops`] remembers between two arms.
const OPS_KEPT: usize = 4096;

#[derive(Default)]
struct FaultPlan {
    /// Calls counted since the last [`KvFaults::arm`] or [`KvFaults::count`].
    ops: Vec<KvOp>,
    counted: u64,
    fail_at: Option<u64>,
    injected: u64,
}

/// Counts the key-value calls of every component of one host and fails the N-th, once: the
/// call then does nothing and the guest gets `error::other("injected fault ...")`, as from a
/// store that is down. Clones share the count.
#[derive(Clone, Default)]
pub struct KvFaults(Arc<Mutex<FaultPlan>>);

impl KvFaults {
    fn plan(&self) -> std::sync::MutexGuard<'_, FaultPlan> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts from zero again, and fails the `n`-th call from now (`n` ≥ 1).
    pub fn arm(&self, n: u64) {
        let mut plan = self.plan();
        plan.ops.clear();
        plan.counted = 0;
        plan.fail_at = Some(n);
    }

    /// Counts from zero again, failing nothing.
    pub fn count(&self) {
        let mut plan = self.plan();
        plan.ops.clear();
        plan.counted = 0;
        plan.fail_at = None;
    }

    /// The calls counted since the last [`KvFaults::arm`] or [`KvFaults::count`] (the first
    /// few thousand).
    pub fn ops(&self) -> Vec<KvOp> {
        self.plan().ops.clone()
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.plan().injected
    }

    /// Counts one call; `Err` when it is the one to fail.
    pub fn check(&self, op: KvOp) -> Result<(), KvError> {
        let mut plan = self.plan();
        plan.counted += 1;
        if plan.ops.len() < OPS_KEPT {
            plan.ops.push(op);
        }
        if plan.fail_at == Some(plan.counted) {
            plan.fail_at = None;
            plan.injected += 1;
            return Err(format!(
                "injected fault at key-value operation {} ({op:?})",
                plan.counted
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_fails_when_the_value_changed_since_current() {
        let kv = SqliteKv::in_memory().unwrap();
        kv.set("default", "k", b"v1").unwrap();
        let seen = kv.get("default", "k").unwrap();
        kv.set("default", "k", b"v2").unwrap();
        assert!(!kv.swap("default", "k", seen.as_deref(), b"v3").unwrap());
        assert_eq!(kv.get("default", "k").unwrap().unwrap(), b"v2");
        let seen = kv.get("default", "k").unwrap();
        assert!(kv.swap("default", "k", seen.as_deref(), b"v3").unwrap());
        assert_eq!(kv.get("default", "k").unwrap().unwrap(), b"v3");
    }

    #[test]
    fn batches_as_spin_does_them() {
        let kv = SqliteKv::in_memory().unwrap();
        let pairs = [("a", b"1"), ("b", b"2")].map(|(k, v)| (k.to_string(), v.to_vec()));
        kv.set_many("default", &pairs).unwrap();
        kv.set("other", "a", b"x").unwrap();
        kv.increment("default", "c", 7).unwrap();
        let keys = ["a", "absent", "c", "b"].map(String::from);
        let mut found = kv.get_many("default", &keys).unwrap();
        found.sort();
        assert_eq!(
            found,
            [
                ("a".to_string(), b"1".to_vec()),
                ("b".to_string(), b"2".to_vec()),
                ("c".to_string(), 7i64.to_le_bytes().to_vec()),
            ],
            "only the keys that exist, in this label"
        );
        assert_eq!(kv.get_many("default", &[]).unwrap(), []);
        kv.delete_many("default", &["a", "c", "absent"].map(String::from))
            .unwrap();
        assert_eq!(kv.keys("default").unwrap(), ["b"]);
        assert_eq!(
            kv.get("other", "a").unwrap().unwrap(),
            b"x",
            "another label"
        );
    }

    #[test]
    fn set_many_is_one_transaction() {
        let kv = SqliteKv::in_memory().unwrap();
        // A pair the database refuses fails the whole batch: nothing of it is written.
        kv.conn()
            .unwrap()
            .execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON spin_key_value
                 WHEN NEW.key = 'bad' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                [],
            )
            .unwrap();
        let pairs = [("x", b"1"), ("bad", b"2")].map(|(k, v)| (k.to_string(), v.to_vec()));
        assert!(kv.set_many("default", &pairs).is_err());
        assert_eq!(kv.get("default", "x").unwrap(), None, "rolled back");
    }

    #[test]
    fn increment_is_a_little_endian_counter_per_store() {
        let kv = SqliteKv::in_memory().unwrap();
        assert_eq!(kv.increment("default", "c", 1).unwrap(), 1);
        assert_eq!(kv.increment("default", "c", 2).unwrap(), 3);
        assert_eq!(kv.increment("other", "c", 1).unwrap(), 1);
        assert_eq!(kv.get("default", "c").unwrap().unwrap(), 3i64.to_le_bytes());
        kv.set("default", "s", b"text").unwrap();
        assert!(kv.increment("default", "s", 1).is_err());
        assert_eq!(kv.keys("default").unwrap().len(), 2);
    }

    #[test]
    fn sweep_legacy_drops_what_earlier_versions_wrote_once_its_time_passed() {
        let kv = SqliteKv::in_memory().unwrap();
        // An earlier version's keys: a timed marker, a consent with its purge tag, a live one.
        kv.increment("default", "jti:a:b:100", 100).unwrap();
        kv.set("default", "consent:d", b"c").unwrap();
        kv.set("default", "purge:consent:d:200", b"").unwrap();
        kv.set("default", "consent:e", b"c").unwrap();
        kv.set("default", "purge:consent:e:900", b"").unwrap();
        kv.set("default", "holder_seq:h", b"1").unwrap();
        assert_eq!(sweep_legacy(&kv, 99), Ok(0));
        assert_eq!(sweep_legacy(&kv, 200), Ok(3));
        let mut left = kv.keys("default").unwrap();
        left.sort();
        assert_eq!(
            left,
            ["consent:e", "holder_seq:h", "purge:consent:e:900"],
            "what is still in force stays"
        );
    }

    #[test]
    fn faults_fail_the_armed_call_once_and_count_every_call() {
        let faults = KvFaults::default();
        assert_eq!(faults.check(KvOp::Get), Ok(()));
        faults.arm(2);
        assert_eq!(faults.check(KvOp::Get), Ok(()));
        let failed = faults.check(KvOp::Increment).unwrap_err();
        assert!(failed.contains("operation 2 (Increment)"), "{failed}");
        assert_eq!(faults.check(KvOp::Set), Ok(()), "once only");
        assert_eq!(faults.ops(), [KvOp::Get, KvOp::Increment, KvOp::Set]);
        assert_eq!(faults.injected(), 1);
        faults.count();
        assert!(faults.ops().is_empty());
        assert_eq!(faults.check(KvOp::Get), Ok(()));
    }
}
