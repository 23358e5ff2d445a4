//! The operator's commands on the store the components use, with no component in between:
//! `ciba-host deregister` (registration.md Q4). They open the store as `ciba-host up` does
//! (Spin's SQLite file in the state directory, or what `--runtime-config-file` names) and run
//! the shared crate's rules on it through [`Store`].

use std::path::Path;

use anyhow::{Context, bail};
use ciba::client::registration::{Deregister, Deregistered, deregister};
use ciba::store::{KeyPage, KeyValue, NextValue, StoreError, Swap};

use crate::kv::SqliteKv;
use crate::kv_redis::RedisKv;
use crate::stores::{Kv, StoreChoice, Swapped};

/// The label every component of the bundle opens.
const LABEL: &str = "default";

/// Opens the store an operator's command works on: Redis when the runtime configuration says
/// so, else the SQLite file at `db`, which must exist (a command never creates an empty store
/// and reports that it found nothing in it).
pub fn open_store(choice: &StoreChoice, db: &Path) -> anyhow::Result<Kv> {
    match choice {
        StoreChoice::Redis(url) => Ok(Kv::Redis(RedisKv::open(url)?)),
        StoreChoice::Default if db.is_file() => Ok(Kv::Sqlite(SqliteKv::open(db)?)),
        StoreChoice::Default => bail!("no key-value store at {}", db.display()),
    }
}

/// The `default` label of a [`Kv`] as the shared crate's [`KeyValue`]. Reads one key at a
/// time: this is the store itself, not Spin's interface to it (whose `get-many` answers no
/// value on Redis, kv_redis.rs).
pub struct Store<'a>(pub &'a Kv);

fn store_error(e: String) -> StoreError {
    StoreError(e)
}

impl KeyValue for Store<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(LABEL, key).map_err(store_error)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.set(LABEL, key, value).map_err(store_error)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(LABEL, key).map_err(store_error)
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

    /// A compare-and-swap handle as Spin's; a reported failure is re-read (Redis reports
    /// every swap as failed, design.md State): the caller's unique value there means written.
    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        let mut cas = self.0.cas(key).map_err(store_error)?;
        let seen = self
            .0
            .cas_current(LABEL, key, &mut cas)
            .map_err(store_error)?;
        let Some(new) = next(seen.as_deref()) else {
            return Ok(None);
        };
        Ok(Some(
            match self
                .0
                .cas_swap(LABEL, key, cas, &new)
                .map_err(store_error)?
            {
                Swapped::Yes => Swap::Swapped,
                Swapped::Failed(_) if self.get(key)?.as_deref() == Some(new.as_slice()) => {
                    Swap::Swapped
                }
                Swapped::Failed(_) => Swap::Conflict,
            },
        ))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.0.increment(LABEL, key, delta).map_err(store_error)
    }

    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        self.0.delete_many(LABEL, &keys).map_err(store_error)
    }

    fn list_keys(&self, _cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        Ok(KeyPage {
            keys: self.0.keys(LABEL).map_err(store_error)?,
            cursor: None,
        })
    }
}

/// `ciba-host deregister`: removes a dynamic registration without its registration access
/// token, as `DELETE /register/{client_id}` does (registration.md Q4, REG-36), and says what
/// it removed: ids and names, never the RAT or its hash. An error when there is nothing to
/// remove. `now` is the wall clock (registrations do not expire; it reads the records).
pub fn deregister_command(kv: &Kv, which: &Deregister<'_>, now: i64) -> anyhow::Result<String> {
    let removed = deregister(&Store(kv), which, now)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the store failed; nothing is known to be removed")?;
    match removed {
        Some(Deregistered::Registration(r)) => {
            let m = &r.metadata;
            Ok(format!(
                "Removed the registration of client_id {} (software_id {}, org_id {}{}): \
                 its registration access token, its software claim, and with them its tokens \
                 and pending requests; the software may register again",
                r.client_id,
                m.software_id,
                m.org_id,
                m.client_name
                    .as_deref()
                    .map(|n| format!(", client_name {n:?}"))
                    .unwrap_or_default(),
            ))
        }
        Some(Deregistered::SoftwareClaim) => {
            let Deregister::SoftwareId(software_id) = which else {
                bail!("a software claim is removed only by software_id");
            };
            Ok(format!(
                "Removed the software claim of software_id {software_id}, which no \
                 registration held any more; the software may register again"
            ))
        }
        None => match which {
            Deregister::ClientId(id) => bail!(
                "no dynamic registration with client_id {id} in this store (clients of the \
                 `clients` variable are removed from that variable)"
            ),
            Deregister::SoftwareId(id) => {
                bail!("no registration and no software claim for software_id {id} in this store")
            }
        },
    }
}
