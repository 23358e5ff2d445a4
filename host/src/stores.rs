//! Which store backs the `default` label, as Spin chooses it: Spin's SQLite file without a
//! runtime configuration, or what `--runtime-config-file` names (`[key_value_store.default]
//! type = "redis"`, `url = ...`); and one dispatch over the two for the host's linker.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::kv::{KvError, KvFaults, SqliteKv};
use crate::kv_redis::{Pairs, RedisCas, RedisKv};

/// The store the components' `default` label opens.
pub enum Kv {
    /// Spin's SQLite file (or memory).
    Sqlite(SqliteKv),
    /// A Redis server, as Spin's `key-value-redis`.
    Redis(RedisKv),
}

/// A compare-and-swap handle's state.
pub enum CasState {
    /// SQLite: what `current` read, if it was called.
    Sqlite(Option<Vec<u8>>),
    /// Redis: the handle's own connection.
    Redis(RedisCas),
}

/// How a swap ended.
pub enum Swapped {
    /// Written (SQLite only).
    Yes,
    /// `cas-failed`, with a fresh handle that has read the key again (Spin makes one on every
    /// failed swap).
    Failed(CasState),
}

impl Kv {
    /// The count of components' calls, and the fault to inject.
    pub fn faults(&self) -> &KvFaults {
        match self {
            Self::Sqlite(kv) => kv.faults(),
            Self::Redis(kv) => kv.faults(),
        }
    }

    /// The value under `key`.
    pub fn get(&self, label: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match self {
            Self::Sqlite(kv) => kv.get(label, key),
            Self::Redis(kv) => kv.get(key),
        }
    }

    /// Writes `value` under `key`.
    pub fn set(&self, label: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        match self {
            Self::Sqlite(kv) => kv.set(label, key, value),
            Self::Redis(kv) => kv.set(key, value),
        }
    }

    /// Removes `key`.
    pub fn delete(&self, label: &str, key: &str) -> Result<(), KvError> {
        match self {
            Self::Sqlite(kv) => kv.delete(label, key),
            Self::Redis(kv) => kv.delete(key),
        }
    }

    /// Whether `key` exists.
    pub fn exists(&self, label: &str, key: &str) -> Result<bool, KvError> {
        match self {
            Self::Sqlite(kv) => kv.exists(label, key),
            Self::Redis(kv) => kv.exists(key),
        }
    }

    /// Every key.
    pub fn keys(&self, label: &str) -> Result<Vec<String>, KvError> {
        match self {
            Self::Sqlite(kv) => kv.keys(label),
            Self::Redis(kv) => kv.keys(),
        }
    }

    /// `batch.get-many`: the pairs the store answers (SQLite: the keys that exist).
    pub fn get_many(&self, label: &str, keys: &[String]) -> Result<Pairs, KvError> {
        match self {
            Self::Sqlite(kv) => Ok(kv
                .get_many(label, keys)?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect()),
            Self::Redis(kv) => kv.get_many(keys),
        }
    }

    /// `batch.set-many`.
    pub fn set_many(&self, label: &str, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        match self {
            Self::Sqlite(kv) => kv.set_many(label, pairs),
            Self::Redis(kv) => kv.set_many(pairs),
        }
    }

    /// `batch.delete-many`.
    pub fn delete_many(&self, label: &str, keys: &[String]) -> Result<(), KvError> {
        match self {
            Self::Sqlite(kv) => kv.delete_many(label, keys),
            Self::Redis(kv) => kv.delete_many(keys),
        }
    }

    /// Adds `delta` to the counter under `key`.
    pub fn increment(&self, label: &str, key: &str, delta: i64) -> Result<i64, KvError> {
        match self {
            Self::Sqlite(kv) => kv.increment(label, key, delta),
            Self::Redis(kv) => kv.increment(key, delta),
        }
    }

    /// A new compare-and-swap handle on `key` (on Redis, a new connection).
    pub fn cas(&self, key: &str) -> Result<CasState, KvError> {
        match self {
            Self::Sqlite(_) => Ok(CasState::Sqlite(None)),
            Self::Redis(kv) => kv.cas(key).map(CasState::Redis),
        }
    }

    /// The handle's `current`: the value now, remembered (SQLite) or watched (Redis).
    pub fn cas_current(
        &self,
        label: &str,
        key: &str,
        cas: &mut CasState,
    ) -> Result<Option<Vec<u8>>, KvError> {
        match (self, cas) {
            (Self::Sqlite(kv), CasState::Sqlite(seen)) => {
                let value = kv.get(label, key)?;
                seen.clone_from(&value);
                Ok(value)
            }
            (Self::Redis(kv), CasState::Redis(cas)) => kv.cas_current(cas),
            _ => Err("compare-and-swap handle of another store".into()),
        }
    }

    /// The handle's `swap`; on `cas-failed`, a fresh handle that has read the key, as Spin
    /// answers it (on Redis: a new connection, `WATCH`, `GET`).
    pub fn cas_swap(
        &self,
        label: &str,
        key: &str,
        cas: CasState,
        value: &[u8],
    ) -> Result<Swapped, KvError> {
        let written = match (self, cas) {
            (Self::Sqlite(kv), CasState::Sqlite(seen)) => {
                kv.swap(label, key, seen.as_deref(), value)?
            }
            // Every Redis swap reports cas-failed, written or not (kv_redis.rs).
            (Self::Redis(kv), CasState::Redis(cas)) => {
                let _ = kv.cas_swap(cas, value.to_vec());
                false
            }
            _ => return Err("compare-and-swap handle of another store".into()),
        };
        if written {
            return Ok(Swapped::Yes);
        }
        let mut fresh = self.cas(key)?;
        self.cas_current(label, key, &mut fresh)?;
        Ok(Swapped::Failed(fresh))
    }
}

/// Where the `default` store is, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// Spin's SQLite file in the state directory (no runtime configuration, or `type =
    /// "spin"` without a path).
    Default,
    /// `type = "redis"`, `url = ...`.
    Redis(String),
}

/// Reads the `default` label's store from a Spin runtime configuration file (`spin up
/// --runtime-config-file FILE`), e.g. the repository's runtime-config.redis.toml. Only what
/// this bundle uses is understood: `[key_value_store.default]` of type `redis` (with `url`)
/// or `spin` (without `path`); anything else is refused rather than ignored.
pub fn read_runtime_config(path: &Path) -> anyhow::Result<StoreChoice> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the runtime configuration {}", path.display()))?;
    parse_runtime_config(&text).with_context(|| format!("in {}", path.display()))
}

/// [`read_runtime_config`] on the file's text.
pub fn parse_runtime_config(text: &str) -> anyhow::Result<StoreChoice> {
    let doc: toml::Table = text.parse().context("not TOML")?;
    let Some(stores) = doc.get("key_value_store") else {
        return Ok(StoreChoice::Default);
    };
    let stores = stores
        .as_table()
        .context("key_value_store must be a table of labels")?;
    let mut choice = StoreChoice::Default;
    for (label, store) in stores {
        if label != "default" {
            bail!("key_value_store.{label}: the local host backs only the `default` label");
        }
        let store = store
            .as_table()
            .context("key_value_store.default: a table")?;
        let kind = store
            .get("type")
            .and_then(toml::Value::as_str)
            .context("key_value_store.default: `type` is missing")?;
        for field in store.keys() {
            let known = match kind {
                "redis" => ["type", "url"].contains(&field.as_str()),
                _ => field == "type",
            };
            if !known {
                bail!(
                    "key_value_store.default: `{field}` is not supported for type {kind} by the local host"
                );
            }
        }
        choice = match kind {
            "redis" => StoreChoice::Redis(
                store
                    .get("url")
                    .and_then(toml::Value::as_str)
                    .context("key_value_store.default: type redis needs a `url`")?
                    .to_string(),
            ),
            "spin" => StoreChoice::Default,
            other => bail!(
                "key_value_store.default: type {other} is not supported by the local host (redis, spin)"
            ),
        };
    }
    Ok(choice)
}

/// The schema Spin 4.1's `key-value-spin` crate creates, byte for byte.
pub const SPIN_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS spin_key_value (
                           store TEXT NOT NULL,
                           key   TEXT NOT NULL,
                           value BLOB NOT NULL,

                           PRIMARY KEY (store, key)
                        )";

/// Creates Spin's key-value file at `path` with Spin's schema, in WAL mode when `wal` (a
/// database's journal mode is kept in the file: Spin, which opens it with no pragma, then
/// runs it in WAL mode, and so does this host). Refuses an existing file unless `replace`.
pub fn create_store(path: &Path, wal: bool, replace: bool) -> anyhow::Result<PathBuf> {
    if path.exists() {
        if !replace {
            bail!(
                "{} exists; it is left alone (--force replaces it, deleting its data)",
                path.display()
            );
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::remove_file(&file)
                    .with_context(|| format!("cannot remove {}", file.display()))?;
            }
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if wal {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!("{}: SQLite refused WAL mode ({mode})", path.display());
        }
    }
    conn.execute(SPIN_SCHEMA, [])?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_config_selects_redis_for_the_default_label() {
        let example = include_str!("../../runtime-config.redis.toml");
        assert_eq!(
            parse_runtime_config(example).unwrap(),
            StoreChoice::Redis("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            parse_runtime_config("[key_value_store.default]\ntype = \"spin\"\n").unwrap(),
            StoreChoice::Default
        );
        assert_eq!(parse_runtime_config("").unwrap(), StoreChoice::Default);
    }

    #[test]
    fn runtime_config_refuses_what_the_host_cannot_do() {
        for text in [
            "[key_value_store.default]\ntype = \"redis\"\n",
            "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
            "[key_value_store.other]\ntype = \"redis\"\nurl = \"redis://x\"\n",
            "[key_value_store.default]\ntype = \"spin\"\npath = \"x.db\"\n",
            "[key_value_store.default]\nurl = \"redis://x\"\n",
            "not toml =",
        ] {
            assert!(parse_runtime_config(text).is_err(), "{text}");
        }
    }

    fn journal_mode(path: &Path) -> String {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn create_store_makes_spins_file_in_wal_mode_and_keeps_existing_files() {
        let dir = std::env::temp_dir().join(format!("ciba-create-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let db = dir.join("sqlite_key_value.db");
        create_store(&db, true, false).unwrap();
        assert_eq!(journal_mode(&db), "wal");
        let schema: String = rusqlite::Connection::open(&db)
            .unwrap()
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'spin_key_value'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(schema, SPIN_SCHEMA.replace("IF NOT EXISTS ", ""));
        SqliteKv::open(&db)
            .unwrap()
            .set("default", "k", b"v")
            .unwrap();
        assert!(
            create_store(&db, false, false).is_err(),
            "an existing file stays"
        );
        assert_eq!(journal_mode(&db), "wal");
        create_store(&db, false, true).unwrap();
        assert_eq!(journal_mode(&db), "delete");
        assert_eq!(SqliteKv::open(&db).unwrap().get("default", "k"), Ok(None));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
