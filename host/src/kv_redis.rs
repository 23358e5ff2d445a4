//! The Redis store, as Spin 4's `key-value-redis` crate implements `wasi:keyvalue` on it, so
//! that the bundle runs on the local host against the store its distributed deployments use
//! (`[key_value_store.default] type = "redis"` in a runtime configuration file):
//!
//! - `get`/`set`/`delete`/`exists`/`increment` are `GET`/`SET`/`DEL`/`EXISTS`/`INCRBY` on one
//!   multiplexed connection (a `ConnectionManager`) shared by every request;
//! - `list-keys` is `KEYS *`, every key at once (and the store's labels share one keyspace:
//!   Spin ignores the label on Redis);
//! - a compare-and-swap opens a **new** connection when the guest makes its handle; `current`
//!   is `WATCH key` then `GET key` on it, `swap` is `MULTI`/`SET`/`EXEC` then `UNWATCH key`.
//!   Redis's `UNWATCH` takes no argument, so that last command always fails, and Spin turns
//!   the failure into `cas-failed` whether or not `EXEC` wrote: every swap reports
//!   `cas-failed` (design.md, State), with a fresh handle that has opened another connection
//!   and already watched and read the key.
//!
//! The host's calls are synchronous; the Redis I/O runs on a small runtime of its own and the
//! calling thread waits for it, as it waits for the SQLite file.

use std::future::Future;

use anyhow::Context;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Client};

use crate::kv::{KvError, KvFaults};

/// What Spin lets one result take (`max_result_bytes`, 128 MiB): a larger value or key
/// listing is an error after it was read.
pub const MAX_RESULT_BYTES: usize = 128 * 1024 * 1024;

/// What `get-many` answers: each key with its value, if any.
pub type Pairs = Vec<(String, Option<Vec<u8>>)>;

/// Spin's Redis store.
pub struct RedisKv {
    client: Client,
    conn: ConnectionManager,
    io: Option<tokio::runtime::Runtime>,
    faults: KvFaults,
}

/// A compare-and-swap handle on Redis: its own connection, on which `current` watches the key.
pub struct RedisCas {
    key: String,
    conn: ConnectionManager,
}

fn redis_error(e: redis::RedisError) -> KvError {
    // Spin: `Error::Other(format!("{err:?}"))`.
    format!("{e:?}")
}

fn limit(bytes: usize) -> Result<(), KvError> {
    if bytes > MAX_RESULT_BYTES {
        Err(format!(
            "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
        ))
    } else {
        Ok(())
    }
}

fn value_size(value: &Option<Vec<u8>>) -> usize {
    std::mem::size_of::<Option<Vec<u8>>>() + value.as_ref().map_or(0, Vec::len)
}

impl RedisKv {
    /// Connects to `url` (`redis://host:port`), as Spin does when a component first opens
    /// the store.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client = Client::open(url).with_context(|| "Invalid Redis URL".to_string())?;
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redis-io")
            .enable_all()
            .build()?;
        let connect = client.clone();
        let conn = wait(&io, async move { connect.get_connection_manager().await })
            .map_err(anyhow::Error::msg)?
            .with_context(|| format!("cannot connect to the Redis store at {url}"))?;
        Ok(Self {
            client,
            conn,
            io: Some(io),
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

    /// Runs `f` on the shared connection and waits for it.
    fn run<T, F, Fut>(&self, f: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, KvError>> + Send + 'static,
        T: Send + 'static,
    {
        self.on(self.conn.clone(), f)
    }

    fn on<T, F, Fut>(&self, conn: ConnectionManager, f: F) -> Result<T, KvError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, KvError>> + Send + 'static,
        T: Send + 'static,
    {
        let io = self.io.as_ref().ok_or_else(|| "store closed".to_string())?;
        wait(io, f(conn))?
    }

    /// `GET key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_string();
        let value = self.run(|mut c| async move {
            c.get::<_, Option<Vec<u8>>>(key).await.map_err(redis_error)
        })?;
        limit(value_size(&value))?;
        Ok(value)
    }

    /// `SET key value`.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.run(|mut c| async move { c.set::<_, _, ()>(key, value).await.map_err(redis_error) })
    }

    /// `DEL key`.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        let key = key.to_string();
        self.run(|mut c| async move { c.del::<_, ()>(key).await.map_err(redis_error) })
    }

    /// `EXISTS key`.
    pub fn exists(&self, key: &str) -> Result<bool, KvError> {
        let key = key.to_string();
        self.run(|mut c| async move { c.exists::<_, bool>(key).await.map_err(redis_error) })
    }

    /// `KEYS *`: every key of the server, at once.
    pub fn keys(&self) -> Result<Vec<String>, KvError> {
        let keys = self
            .run(|mut c| async move { c.keys::<_, Vec<String>>("*").await.map_err(redis_error) })?;
        limit(
            std::mem::size_of::<Vec<String>>()
                + keys
                    .iter()
                    .map(|k| std::mem::size_of::<String>() + k.len())
                    .sum::<usize>(),
        )?;
        Ok(keys)
    }

    /// Spin's `get_many` on Redis, as its code makes it: `KEYS k1 k2 …`, the keys sent as
    /// `KEYS` patterns (not `MGET`), the answer read as `(key, value)` pairs. Redis refuses
    /// `KEYS` with more than one argument; with one, it answers the names matching it as a
    /// glob pattern, which the redis crate (0.32) cannot read as pairs: it panics when the key
    /// exists (here the panic stays on the I/O thread and the guest gets a store error), and
    /// answers nothing when it does not. So on Spin 4.1's Redis store no `get-many` answers
    /// a value: the bundle must not rely on it there.
    pub fn get_many(&self, keys: &[String]) -> Result<Pairs, KvError> {
        let keys = keys.to_vec();
        let values =
            self.run(|mut c| async move { c.keys::<_, Pairs>(keys).await.map_err(redis_error) })?;
        limit(
            std::mem::size_of::<Pairs>()
                + values
                    .iter()
                    .map(|(k, v)| {
                        std::mem::size_of::<(String, Option<Vec<u8>>)>()
                            + k.len()
                            + v.as_ref().map_or(0, Vec::len)
                    })
                    .sum::<usize>(),
        )?;
        Ok(values)
    }

    /// `MSET k1 v1 k2 v2 …`.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), KvError> {
        let pairs = pairs.to_vec();
        self.run(|mut c| async move { c.mset::<_, _, ()>(&pairs).await.map_err(redis_error) })
    }

    /// `DEL k1 k2 …`.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), KvError> {
        let keys = keys.to_vec();
        self.run(|mut c| async move { c.del::<_, ()>(keys).await.map_err(redis_error) })
    }

    /// `INCRBY key delta`: Redis keeps the counter as decimal text (the SQLite store keeps 8
    /// little-endian bytes), so a counter read back with `get` differs between the two.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        let key = key.to_string();
        self.run(|mut c| async move { c.incr::<_, _, i64>(key, delta).await.map_err(redis_error) })
    }

    /// A compare-and-swap handle on `key`, with a new connection of its own (Spin:
    /// `new_compare_and_swap`, so that a `WATCH` is scoped to it).
    pub fn cas(&self, key: &str) -> Result<RedisCas, KvError> {
        let client = self.client.clone();
        let conn = self
            .run(|_| async move { client.get_connection_manager().await.map_err(redis_error) })?;
        Ok(RedisCas {
            key: key.to_string(),
            conn,
        })
    }

    /// `WATCH key`, then `GET key`, on the handle's connection.
    pub fn cas_current(&self, cas: &RedisCas) -> Result<Option<Vec<u8>>, KvError> {
        let key = cas.key.clone();
        let value = self.on(cas.conn.clone(), |mut c| async move {
            redis::cmd("WATCH")
                .arg(&key)
                .exec_async(&mut c)
                .await
                .map_err(redis_error)?;
            c.get::<_, Option<Vec<u8>>>(&key).await.map_err(redis_error)
        })?;
        limit(value_size(&value))?;
        Ok(value)
    }

    /// `MULTI`, `SET key value`, `EXEC`, then `UNWATCH key`, on the handle's connection. `EXEC`
    /// writes unless the watched key changed since `current` (or always, if `current` was
    /// never called); `UNWATCH key` is refused by Redis (the command takes no argument), and
    /// Spin reports that refusal as a lost race. So this is `Err` (cas-failed) every time,
    /// whether the value was written or not, as on Spin 4.1; the `Err` says which.
    pub fn cas_swap(&self, cas: RedisCas, value: Vec<u8>) -> Result<(), KvError> {
        let key = cas.key;
        self.on(cas.conn, |mut c| async move {
            let written: Result<(), redis::RedisError> = redis::pipe()
                .atomic()
                .set(&key, value)
                .query_async(&mut c)
                .await;
            redis::cmd("UNWATCH")
                .arg(&key)
                .exec_async(&mut c)
                .await
                .map_err(redis_error)?;
            written.map_err(redis_error)
        })
    }
}

impl Drop for RedisKv {
    fn drop(&mut self) {
        // A runtime may not be dropped where blocking is not allowed (inside the server's).
        if let Some(io) = self.io.take() {
            io.shutdown_background();
        }
    }
}

/// Runs `fut` on `io` and waits for it on this thread (from inside another runtime too).
fn wait<T: Send + 'static>(
    io: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, KvError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    io.spawn(async move {
        let _ = tx.send(fut.await);
    });
    // No answer: the call panicked on the I/O thread (the redis crate does, reading `KEYS`'
    // answer as pairs in `get_many`), or the store is shutting down.
    rx.recv()
        .map_err(|_| "the Redis call failed without an answer (it panicked)".to_string())
}
