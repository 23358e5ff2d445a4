//! The purge: what keeps the store from growing without bound under steady traffic, with only
//! the `wasi:keyvalue` calls Spin's SQLite and Redis stores implement (no TTL, no delete by
//! pattern, and a `list-keys` with no cursor that answers every key at once: Redis `KEYS *`;
//! design.md, State).
//!
//! Every record or counter that stops mattering at a known time is announced once, when it is
//! created, in a time-bucketed index ([`announce`]): an increment of the bucket's count gives
//! the announcer its slot, and the slot's entry names the keys to delete. The sweep keeps a
//! cursor (the last bucket fully swept) and walks the buckets whose end has passed, reading
//! each one's count and then its entries, deleting at most [`SWEEP_BUDGET`] keys a turn
//! ([`sweep`]): its cost depends on what expired since the last sweep, never on how many keys
//! live. No request path lists keys; the listing sweep of earlier versions is kept for the
//! keys they wrote, as an operator's command ([`sweep_listing`], `ciba-host sweep-legacy`).
//!
//! Who sweeps: requests that are not on the hot paths (a backchannel request, a consent
//! lodged, a `client_credentials` or `refresh_token` grant) each take a turn, one atomic
//! increment of a single counter, after their answer is decided; the request whose turn is a
//! multiple of [`SWEEP_EVERY`] sweeps ([`take_turn`]), and so does a store's first turn.
//! Pending polls and token issuance never take a turn. When a sweep leaves work behind (over
//! its budget), it moves the counter so that the very next turn sweeps again, until the
//! backlog is gone.
//!
//! A sweep is best effort: it runs after the answer is decided, and a store error stops it
//! without changing that answer. Nothing is deleted before its time: a bucket is swept once
//! its end (later than every time announced in it) is [`GRACE`] behind, and a record that was
//! rewritten to live longer than its entry said (a consent once authorised) is announced again
//! at its new time instead of being deleted. A key deleted twice (two sweeps at once) is no
//! harm; a sweep cut short leaves its cursor behind, and the next one does the rest again.

use super::{KeyValue, StoreError, keys, record};
use crate::clock::UnixTime;

/// A sweep runs on every this many turns (when it leaves no backlog).
pub const SWEEP_EVERY: i64 = 128;

/// The most deletions one sweep makes: the bound on a sweeping request's extra work.
pub const SWEEP_BUDGET: usize = 256;

/// The most index buckets one sweep walks (each a read when empty): how fast a sweep that
/// fell behind (a server idle for days, a clock moved in a test) catches up.
pub const MAX_BUCKETS: usize = 512;

/// How far behind `now` a bucket's end must be before it is swept: the skew between
/// instances' clocks and a request in flight that announces into a bucket about to end.
pub const GRACE: UnixTime = 120;

/// Where the first sweep of a store with no cursor starts: this far before `now`. A new store
/// sweeps on its first turn ([`take_turn`]), before almost anything is announced; a store
/// upgraded from a version without the index sweeps within [`SWEEP_EVERY`] turns of the
/// upgrade. Entries more than a week older than that first sweep would be missed (the
/// operator's listing sweep, [`sweep_listing`], drops their keys once expired).
pub const FIRST_LOOKBACK: UnixTime = 7 * 86_400;

/// Announces `keys`, which stop mattering at `until`, to the sweep: two writes, an increment
/// of the bucket's count then the entry. Call it before writing the keys (a fault in between
/// leaves an entry that deletes nothing), or, for a counter, on the increment that created it.
/// `until` is now or later (a key announced for a time already [`GRACE`] past may land in a
/// bucket already swept, and stay until the operator's listing sweep).
///
/// Through a [`Gathering`] store (every endpoint's), the announcement is gathered instead, and
/// written with the request's next write (issue 18).
pub fn announce(store: &dyn KeyValue, until: UnixTime, keys: &[&str]) -> Result<(), StoreError> {
    if let Some(gathered) = store.gather(until, keys) {
        return gathered;
    }
    let bucket = bucket_of(until)?;
    let (entry, names) = reserve(store, bucket, keys.iter().copied())?;
    store.set(&entry, &names)
}

fn bucket_of(until: UnixTime) -> Result<UnixTime, StoreError> {
    keys::purge_bucket(until).ok_or_else(|| StoreError("a purge time out of range".into()))
}

/// Takes a slot in `bucket` (the increment) and returns the entry to write there.
fn reserve<'k>(
    store: &dyn KeyValue,
    bucket: UnixTime,
    keys: impl Iterator<Item = &'k str>,
) -> Result<(String, Vec<u8>), StoreError> {
    let n = store.increment(&keys::purge_count(bucket), 1)?;
    Ok((
        keys::purge_entry(bucket, n),
        keys.collect::<Vec<_>>().join("\n").into_bytes(),
    ))
}

/// One request's view of the store that gathers its purge announcements (issue 18): every key
/// it announces that ends in one hourly bucket goes in **one** entry, and the entries are
/// written in one `set-many` with the request's next `set` or `set-many` (the records they
/// announce, so on Spin's SQLite store in one transaction with them, and on Redis in one
/// `MSET`), after one increment per bucket for their slots. A counter's announcement (a `jti`
/// marker's, an abuse-limit counter's) waits for that write, or for [`Gathering::flush`] at
/// the end of the request. Everything else goes straight to the store.
///
/// What a fault leaves: an entry is never written without the write it came with, so a
/// record is never stored without its entry (both or neither, on Spin's stores); a counter
/// whose entry was lost to a fault (or to an instance that died before the flush) is named
/// with its time ([`keys::forget_after`]) and dropped by the operator's listing sweep
/// ([`sweep_listing`]), as before the index.
pub struct Gathering<'a> {
    store: &'a dyn KeyValue,
    /// Keys per bucket end, in the order first announced.
    pending: std::cell::RefCell<Vec<(UnixTime, Vec<String>)>>,
}

impl std::fmt::Debug for Gathering<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathering")
            .field("buckets", &self.pending.borrow().len())
            .finish_non_exhaustive()
    }
}

impl<'a> Gathering<'a> {
    /// Gathers the announcements of one request made on `store`.
    pub fn new(store: &'a dyn KeyValue) -> Self {
        Self {
            store,
            pending: std::cell::RefCell::new(Vec::new()),
        }
    }

    /// Takes the slots of what was gathered (one increment per bucket) and returns the
    /// entries to write. What was gathered is taken even when this fails.
    fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        pending
            .iter()
            .map(|(bucket, names)| reserve(self.store, *bucket, names.iter().map(String::as_str)))
            .collect()
    }

    /// Writes what is still gathered: the end of every request on this view. No call when
    /// nothing is.
    pub fn flush(&self) -> Result<(), StoreError> {
        let entries = self.entries()?;
        let pairs: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        match pairs.as_slice() {
            [] => Ok(()),
            [(key, value)] => self.store.set(key, value),
            _ => self.store.set_many(&pairs),
        }
    }
}

impl KeyValue for Gathering<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(key)
    }

    /// With announcements gathered: one `set-many`, the entries first.
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.set_many(&[(key, value)])
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store.delete(key)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<super::Swap, StoreError> {
        self.store.compare_and_swap(key, expected, new)
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut super::NextValue<'_>,
    ) -> Result<Option<super::Swap>, StoreError> {
        self.store.read_and_swap(key, next)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.store.increment(key, delta)
    }

    fn list_keys(&self, cursor: Option<&str>) -> Result<super::KeyPage, StoreError> {
        self.store.list_keys(cursor)
    }

    fn get_many(&self, keys: &[&str]) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.store.get_many(keys)
    }

    /// The gathered entries first, then `pairs`, in one call.
    fn set_many(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let entries = self.entries()?;
        let all: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .chain(pairs.iter().copied())
            .collect();
        match all.as_slice() {
            [] => Ok(()),
            [(key, value)] => self.store.set(key, value),
            _ => self.store.set_many(&all),
        }
    }

    fn delete_many(&self, keys: &[&str]) -> Result<(), StoreError> {
        self.store.delete_many(keys)
    }

    fn gather(&self, until: UnixTime, keys: &[&str]) -> Option<Result<(), StoreError>> {
        let bucket = match bucket_of(until) {
            Ok(bucket) => bucket,
            Err(e) => return Some(Err(e)),
        };
        let mut pending = self.pending.borrow_mut();
        let names = keys.iter().map(|k| (*k).to_string());
        match pending.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, gathered)) => gathered.extend(names),
            None => pending.push((bucket, names.collect())),
        }
        Some(Ok(()))
    }
}

/// What a sweep of the index did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Buckets walked (whose end had passed).
    pub buckets: usize,
    /// Entries read.
    pub entries: usize,
    /// Deletions made (keys, entries and counts).
    pub deleted: usize,
    /// Records that now live longer than their entry said, announced again.
    pub kept: usize,
    /// Whether work was left for the next sweep.
    pub backlog: bool,
}

impl Sweep {
    /// What counts against the budget: deletions and records announced again.
    fn work(&self) -> usize {
        self.deleted + self.kept
    }
}

/// The cursor: the last bucket fully swept, and how many entries of the next one are done.
fn cursor(store: &dyn KeyValue, now: UnixTime) -> Result<(UnixTime, i64), StoreError> {
    let parsed = store.get(keys::PURGE_CURSOR)?.and_then(|raw| {
        let text = String::from_utf8(raw).ok()?;
        let (bucket, done) = text.split_once(':')?;
        Some((bucket.parse().ok()?, done.parse().ok()?))
    });
    Ok(parsed.unwrap_or_else(|| {
        let start = now.saturating_sub(FIRST_LOOKBACK);
        (start - start.rem_euclid(keys::PURGE_BUCKET), 0)
    }))
}

/// Walks the index from its cursor through the buckets whose end is [`GRACE`] behind `now`,
/// deleting the keys of their entries (then the entries, then the bucket's count) within
/// `budget` deletions and [`MAX_BUCKETS`] buckets. Its cost depends on what expired since the
/// last sweep, never on the store's size.
pub fn sweep(store: &dyn KeyValue, now: UnixTime, budget: usize) -> Result<Sweep, StoreError> {
    let (mut swept, mut done) = cursor(store, now)?;
    let start = (swept, done);
    let mut report = Sweep::default();
    let result = walk(store, now, budget, &mut swept, &mut done, &mut report);
    // Progress is kept even when a store error stopped the walk.
    if (swept, done) != start {
        store.set(keys::PURGE_CURSOR, format!("{swept}:{done}").as_bytes())?;
    }
    result.map(|()| report)
}

fn walk(
    store: &dyn KeyValue,
    now: UnixTime,
    budget: usize,
    swept: &mut UnixTime,
    done: &mut i64,
    report: &mut Sweep,
) -> Result<(), StoreError> {
    loop {
        let Some(bucket) = swept.checked_add(keys::PURGE_BUCKET) else {
            return Ok(());
        };
        if bucket.saturating_add(GRACE) > now {
            return Ok(());
        }
        if report.buckets == MAX_BUCKETS || report.work() >= budget {
            report.backlog = true;
            return Ok(());
        }
        report.buckets += 1;
        let count_key = keys::purge_count(bucket);
        // A count exists once incremented; read without a write (issue 18).
        let count = super::read_counter(store, &count_key)?.unwrap_or(0);
        while *done < count {
            let n = *done + 1;
            let entry = keys::purge_entry(bucket, n);
            report.entries += 1;
            if let Some(raw) = store.get(&entry)? {
                let names = String::from_utf8_lossy(&raw).into_owned();
                let names: Vec<&str> = names.split('\n').filter(|k| !k.is_empty()).collect();
                if report.work() + names.len() + 1 > budget && report.work() > 0 {
                    report.backlog = true;
                    return Ok(());
                }
                for name in names {
                    report.deleted += drop_key(store, now, name, report)?;
                }
                store.delete(&entry)?;
                report.deleted += 1;
            }
            *done = n;
            if report.work() >= budget && *done < count {
                report.backlog = true;
                return Ok(());
            }
        }
        if count > 0 {
            store.delete(&count_key)?;
            report.deleted += 1;
        }
        *swept = bucket;
        *done = 0;
    }
}

/// Deletes `name`, unless it is a record that now lives past `now` (rewritten to live
/// longer): that one is announced again at its time. Returns the deletions made.
fn drop_key(
    store: &dyn KeyValue,
    now: UnixTime,
    name: &str,
    report: &mut Sweep,
) -> Result<usize, StoreError> {
    if let Some(exp) = store.get(name)?.as_deref().and_then(record::expiry)
        && exp > now
    {
        // Written now, even through a [`Gathering`] store: the entry that named the record
        // is deleted next, and a record no entry names would never be swept.
        let (entry, names) = reserve(store, bucket_of(exp)?, std::iter::once(name))?;
        store.set(&entry, &names)?;
        report.kept += 1;
        return Ok(0);
    }
    store.delete(name)?;
    Ok(1)
}

/// What a listing sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listing {
    /// Keys listed.
    pub listed: usize,
    /// Keys whose time had passed.
    pub expired: usize,
    /// Deletions made (a tag counts its records and itself).
    pub deleted: usize,
    /// Whether expired keys were left for the next sweep.
    pub backlog: bool,
}

/// The most pages of keys one listing sweep reads (Spin answers with one).
const MAX_PAGES: usize = 64;

/// The sweep of earlier versions, for the keys they wrote (time in the name, purge tags):
/// lists the store's keys and deletes those whose time is `now` or earlier, oldest first,
/// within `budget` deletions. A tag's records go before the tag, so a sweep cut short leaves
/// the tag for the next one. It lists every key, so no request calls it: it is an operator's
/// command, run once after an upgrade (`ciba-host sweep-legacy`, README "Expiry and store
/// size").
pub fn sweep_listing(
    store: &dyn KeyValue,
    now: UnixTime,
    budget: usize,
) -> Result<Listing, StoreError> {
    let mut expired: Vec<(UnixTime, String)> = Vec::new();
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = store.list_keys(cursor.as_deref())?;
        listed += page.keys.len();
        expired.extend(page.keys.into_iter().filter_map(|key| {
            keys::forget_after(&key)
                .filter(|t| *t <= now)
                .map(|t| (t, key))
        }));
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    expired.sort_unstable();
    let mut done = Listing {
        listed,
        expired: expired.len(),
        ..Listing::default()
    };
    let mut purged = 0;
    for (_, key) in &expired {
        let records = keys::tagged(key);
        if done.deleted + records.len() + 1 > budget {
            break;
        }
        for record in &records {
            store.delete(record)?;
        }
        store.delete(key)?;
        done.deleted += records.len() + 1;
        purged += 1;
    }
    done.backlog = purged < expired.len();
    Ok(done)
}

/// Takes this request's turn (one increment), and sweeps when it is a sweeping turn. `None`
/// when it is not.
pub fn take_turn(store: &dyn KeyValue, now: UnixTime) -> Result<Option<Sweep>, StoreError> {
    let turn = store.increment(keys::SWEEP_TURN, 1)?;
    // The store's very first turn sweeps too: it sets the cursor up, before anything it
    // must find was announced (see FIRST_LOOKBACK).
    if turn % SWEEP_EVERY != 0 && turn != 1 {
        return Ok(None);
    }
    let done = sweep(store, now, SWEEP_BUDGET)?;
    if done.backlog {
        // The next turn is a multiple again: the backlog is worked off turn by turn.
        store.increment(keys::SWEEP_TURN, SWEEP_EVERY - 1)?;
    }
    Ok(Some(done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys::{Family, purge_tag};
    use crate::store::memory::MemoryStore;

    /// A key named with its time, as the abuse-limit counters are.
    fn timed(name: &str, until: UnixTime) -> String {
        format!("pending:test:{name}:{until}")
    }

    fn keys_of(store: &MemoryStore) -> Vec<String> {
        let mut keys = store.list_keys(None).unwrap().keys;
        keys.sort();
        keys
    }

    #[test]
    fn timed_keys_carry_their_time_and_others_none() {
        // CLI-6, BCA-11, HINT-15: a jti marker is named by (client, jti) and the end of the
        // time bucket of its forget_after, which the sweep reads; no tag.
        let now = 10 * keys::JTI_BUCKET + 100;
        for marker in [
            keys::assertion_jti("c", "j", now + 700, now),
            keys::request_object_jti("c", "j", now + 700, now),
            keys::login_hint_token_jti("c", "j", now + 700, now),
        ] {
            let end = keys::forget_after(&marker.key).unwrap();
            assert!(end >= now + 700 && end <= now + 700 + keys::JTI_BUCKET);
            assert_eq!(end % keys::JTI_BUCKET, 0);
            assert!(keys::tagged(&marker.key).is_empty());
        }
        assert_ne!(
            keys::assertion_jti("c", "j", now + 700, now).key,
            keys::request_object_jti("c", "j", now + 700, now).key
        );
        let token = |end| crate::access_token::with_end(&[7; 32], end);
        assert_eq!(
            keys::forget_after(&keys::access_token(token(1_800_000_000).expose())),
            Some(1_800_000_000)
        );
        assert_eq!(
            keys::forget_after(&keys::refresh_token(token(42).expose())),
            Some(42)
        );
        assert_eq!(
            keys::forget_after(&purge_tag(Family::Consent, "d", 9)),
            Some(9)
        );
        assert_eq!(keys::forget_after("rate:bca:client:d:120"), Some(120));
        assert_eq!(keys::forget_after("pending:bca:holder:d:720"), Some(720));
        for untimed in [
            keys::access_token("no-end-in-this-token"),
            keys::access_token(&crate::jose::b64url(&[7; 32])),
            keys::access_token(token(-1).expose()),
            keys::refresh_token(&crate::jose::b64url(&[7; 41])),
            keys::consent("urn:x:1"),
            keys::auth_request("ref"),
            keys::holder_requests("holder"),
            keys::holder_request("holder", 3),
            keys::SWEEP_TURN.to_string(),
            "jti:old-digest:old-digest".to_string(),
        ] {
            assert_eq!(keys::forget_after(&untimed), None, "{untimed}");
        }
    }

    #[test]
    fn a_tag_names_its_family() {
        assert_eq!(
            keys::tagged(&purge_tag(Family::Request, "ref", 10)),
            [
                keys::auth_request("ref"),
                keys::auth_request_polls("ref"),
                keys::auth_request_redeemed("ref"),
            ]
        );
        let id = keys::digest("12345678901234567890");
        assert_eq!(
            keys::tagged(&purge_tag(Family::AdHint, &id, 10)),
            [
                keys::ad_hint("12345678901234567890"),
                keys::ad_hint_used("12345678901234567890")
            ]
        );
        assert_eq!(
            keys::tagged(&purge_tag(Family::Consent, &keys::digest("urn:x:1"), 10)),
            [keys::consent("urn:x:1")]
        );
        assert_eq!(
            keys::tagged(&purge_tag(Family::IdTokenCancelled, &keys::digest("j"), 10)),
            [keys::id_token_cancelled("j")]
        );
        assert!(keys::tagged("purge:unknown:d:10").is_empty());
        assert!(keys::tagged(&keys::auth_request("ref")).is_empty());
    }

    #[test]
    fn a_listing_sweep_drops_what_expired_and_keeps_the_rest() {
        let store = MemoryStore::new();
        store.increment(&timed("old", 100), 100).unwrap();
        store.increment(&timed("new", 300), 300).unwrap();
        let token = crate::access_token::with_end(&[7; 32], 100);
        store
            .set(&keys::access_token(token.expose()), b"r")
            .unwrap();
        store.set(&keys::auth_request("ref"), b"r").unwrap();
        store.set(&keys::auth_request_polls("ref"), b"p").unwrap();
        store
            .increment(&keys::auth_request_redeemed("ref"), 1)
            .unwrap();
        store
            .set(&purge_tag(Family::Request, "ref", 200), b"")
            .unwrap();
        store.set(&keys::consent("urn:x:1"), b"c").unwrap();
        let consent_tag = purge_tag(Family::Consent, &keys::digest("urn:x:1"), 1_000);
        store.set(&consent_tag, b"").unwrap();
        store.increment(&keys::holder_requests("h"), 1).unwrap();

        let done = sweep_listing(&store, 99, SWEEP_BUDGET).unwrap();
        assert_eq!((done.expired, done.deleted, done.backlog), (0, 0, false));
        assert_eq!(done.listed, 10);

        let done = sweep_listing(&store, 200, SWEEP_BUDGET).unwrap();
        assert_eq!((done.expired, done.deleted, done.backlog), (3, 6, false));
        assert_eq!(
            keys_of(&store),
            {
                let mut k = vec![
                    timed("new", 300),
                    keys::consent("urn:x:1"),
                    consent_tag.clone(),
                    keys::holder_requests("h"),
                ];
                k.sort();
                k
            },
            "the request's family went with its tag; the rest is still to matter"
        );

        sweep_listing(&store, 1_000, SWEEP_BUDGET).unwrap();
        assert_eq!(keys_of(&store), [keys::holder_requests("h")]);
    }

    #[test]
    fn a_listing_sweep_keeps_to_its_budget_oldest_first_and_reports_the_backlog() {
        let store = MemoryStore::new();
        for t in 1..=10 {
            store.increment(&timed(&t.to_string(), t), t).unwrap();
        }
        let tag = purge_tag(Family::Request, "ref", 5);
        store.set(&tag, b"").unwrap();
        store.set(&keys::auth_request("ref"), b"r").unwrap();
        let done = sweep_listing(&store, 100, 6).unwrap();
        // The markers of 1…5 (five calls), then the tag of 5 needs four more: over budget.
        assert_eq!((done.expired, done.deleted, done.backlog), (11, 5, true));
        assert!(store.get(&tag).unwrap().is_some());
        assert!(store.get(&keys::auth_request("ref")).unwrap().is_some());
        assert!(store.get(&timed("5", 5)).unwrap().is_none());
        let done = sweep_listing(&store, 100, SWEEP_BUDGET).unwrap();
        assert_eq!((done.expired, done.deleted, done.backlog), (6, 9, false));
        assert!(store.is_empty());
    }

    /// A store whose calls fail after the first few.
    struct FailAfter<'a>(&'a MemoryStore, std::cell::Cell<usize>);

    impl FailAfter<'_> {
        fn tick(&self) -> Result<(), StoreError> {
            let left = self.1.get();
            if left == 0 {
                return Err(StoreError("down".into()));
            }
            self.1.set(left - 1);
            Ok(())
        }
    }

    impl KeyValue for FailAfter<'_> {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.tick()?;
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.tick()?;
            self.0.set(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.tick()?;
            self.0.delete(key)
        }
        fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&[u8]>,
            new: &[u8],
        ) -> Result<crate::store::Swap, StoreError> {
            self.tick()?;
            self.0.compare_and_swap(key, expected, new)
        }
        fn read_and_swap(
            &self,
            key: &str,
            next: &mut crate::store::NextValue<'_>,
        ) -> Result<Option<crate::store::Swap>, StoreError> {
            self.tick()?;
            self.0.read_and_swap(key, next)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
            self.tick()?;
            self.0.increment(key, delta)
        }
        fn list_keys(&self, cursor: Option<&str>) -> Result<crate::store::KeyPage, StoreError> {
            self.tick()?;
            self.0.list_keys(cursor)
        }
    }

    /// A time well after the first sweep's lookback, on a bucket boundary.
    const T0: UnixTime = 1_800_000_000 - 1_800_000_000 % keys::PURGE_BUCKET;

    /// The keys of the index itself (counts, entries, cursor) and the sweep's turn.
    fn is_index(key: &str) -> bool {
        key.starts_with("purge_n:")
            || key.starts_with("purge_at:")
            || key == keys::PURGE_CURSOR
            || key == keys::SWEEP_TURN
    }

    fn live(store: &MemoryStore) -> Vec<String> {
        keys_of(store)
            .into_iter()
            .filter(|k| !is_index(k))
            .collect()
    }

    /// A store with `n` live keys announced for `until`, and the sweep's cursor at `T0`.
    fn announced(n: usize, until: UnixTime) -> MemoryStore {
        let store = MemoryStore::new();
        assert_eq!(sweep(&store, T0, SWEEP_BUDGET).unwrap().deleted, 0);
        for i in 0..n {
            let key = format!("at:{i}:{until}");
            announce(&store, until, &[&key]).unwrap();
            store.set(&key, b"x").unwrap();
        }
        store
    }

    #[test]
    fn nothing_is_swept_before_its_time_and_everything_after() {
        let store = announced(3, T0 + 100);
        // A counter created with its announcement, and a family under one entry.
        announce(
            &store,
            T0 + 50,
            &["rate:c:1", "auth_req:r", "auth_req_poll:r"],
        )
        .unwrap();
        store.increment("rate:c:1", 1).unwrap();
        store.set("auth_req:r", b"junk, no record").unwrap();
        store.set("auth_req_poll:r", b"p").unwrap();
        for now in [
            T0 + 100,
            T0 + keys::PURGE_BUCKET,
            T0 + keys::PURGE_BUCKET + GRACE - 1,
        ] {
            let done = sweep(&store, now, SWEEP_BUDGET).unwrap();
            assert_eq!(done.deleted, 0, "at {now}");
            assert_eq!(live(&store).len(), 6);
        }
        let done = sweep(&store, T0 + keys::PURGE_BUCKET + GRACE, SWEEP_BUDGET).unwrap();
        // Six keys, four entries and one count.
        assert_eq!((done.buckets, done.entries, done.deleted), (1, 4, 11));
        assert!(!done.backlog);
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);
    }

    #[test]
    fn cons_1_a_record_rewritten_to_live_longer_is_announced_again_not_deleted() {
        let store = MemoryStore::new();
        sweep(&store, T0, SWEEP_BUDGET).unwrap();
        let random = crate::clock::CountingRandom::default();
        record::put(&store, "consent:c", &1u8, T0 + 100, &random).unwrap();
        announce(&store, T0 + 100, &["consent:c"]).unwrap();
        // Authorised meanwhile: the record now lives ten days.
        let long = T0 + 10 * 86_400;
        store.set("consent:c", b"").unwrap();
        record::put(&store, "consent:c", &2u8, long, &random).unwrap();
        let done = sweep(&store, T0 + 2 * keys::PURGE_BUCKET, SWEEP_BUDGET).unwrap();
        assert_eq!((done.kept, done.backlog), (1, false));
        assert!(store.get("consent:c").unwrap().is_some());
        sweep(&store, long, SWEEP_BUDGET).unwrap();
        assert!(
            store.get("consent:c").unwrap().is_some(),
            "not before its time"
        );
        sweep(&store, long + keys::PURGE_BUCKET + GRACE, SWEEP_BUDGET).unwrap();
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);
    }

    /// Issue 18: a sweep through a request's [`Gathering`] store announces a record it keeps
    /// at once, before it deletes the entry that named it: a store fault on the sweep's later
    /// writes must not leave the record named by no entry.
    #[test]
    fn cons_1_a_kept_record_is_announced_again_before_its_old_entry_goes_even_when_gathering() {
        let recording = crate::store::memory::Recording::default();
        sweep(&recording.store, T0, SWEEP_BUDGET).unwrap();
        let random = crate::clock::CountingRandom::default();
        announce(&recording.store, T0 + 100, &["consent:c"]).unwrap();
        record::put(
            &recording.store,
            "consent:c",
            &2u8,
            T0 + 10 * 86_400,
            &random,
        )
        .unwrap();
        let gathering = Gathering::new(&recording);
        recording.take();
        let done = sweep(&gathering, T0 + 2 * keys::PURGE_BUCKET, SWEEP_BUDGET).unwrap();
        assert_eq!(done.kept, 1);
        let calls = recording.take();
        let announced = calls.iter().position(|c| *c == "set");
        let old_entry_gone = calls.iter().position(|c| *c == "delete");
        assert!(
            announced.is_some() && announced < old_entry_gone,
            "{calls:?}"
        );
    }

    #[test]
    fn a_sweep_s_cost_is_what_expired_not_what_lives() {
        let small = announced(10, T0 + 100);
        let large = announced(10, T0 + 100);
        for i in 0..20_000 {
            let key = format!("at:live{i}:{}", T0 + 86_400);
            announce(&large, T0 + 86_400, &[&key]).unwrap();
            large.set(&key, b"x").unwrap();
        }
        let now = T0 + 2 * keys::PURGE_BUCKET;
        let a = sweep(&small, now, SWEEP_BUDGET).unwrap();
        let b = sweep(&large, now, SWEEP_BUDGET).unwrap();
        assert_eq!(a, b, "the same work with 20,000 more live keys");
        assert_eq!(a.deleted, 10 + 10 + 1);
        assert_eq!(live(&large).len(), 20_000);
    }

    #[test]
    fn a_sweep_keeps_to_its_budget_and_the_next_goes_on_from_its_cursor() {
        let store = announced(SWEEP_BUDGET, T0 + 100);
        let now = T0 + 2 * keys::PURGE_BUCKET;
        let first = sweep(&store, now, SWEEP_BUDGET).unwrap();
        assert!(first.backlog);
        assert!(first.deleted <= SWEEP_BUDGET);
        let second = sweep(&store, now, SWEEP_BUDGET).unwrap();
        assert!(!second.backlog);
        assert!(
            second.entries <= SWEEP_BUDGET / 2 + 1,
            "went on where the first stopped"
        );
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);
    }

    #[test]
    fn two_sweeps_at_once_and_a_sweep_cut_short_do_no_harm() {
        let store = announced(40, T0 + 100);
        let now = T0 + 2 * keys::PURGE_BUCKET;
        // Two sweepers that read the same cursor: the same deletions twice.
        let cursor_before = store.get(keys::PURGE_CURSOR).unwrap();
        sweep(&store, now, SWEEP_BUDGET).unwrap();
        store
            .set(keys::PURGE_CURSOR, &cursor_before.unwrap())
            .unwrap();
        let again = sweep(&store, now, SWEEP_BUDGET).unwrap();
        assert!(!again.backlog);
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);

        // A sweep stopped by a store fault after some deletions: the next one finishes.
        let store = announced(40, T0 + 100);
        let failing = FailAfter(&store, std::cell::Cell::new(30));
        assert!(sweep(&failing, now, SWEEP_BUDGET).is_err());
        assert!(!live(&store).is_empty());
        sweep(&store, now, SWEEP_BUDGET).unwrap();
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);
    }

    #[test]
    fn a_sweep_far_behind_walks_a_bounded_number_of_buckets_a_turn() {
        let store = announced(1, T0 + 100);
        let later = T0 + 3 * MAX_BUCKETS as i64 * keys::PURGE_BUCKET;
        let first = sweep(&store, later, SWEEP_BUDGET).unwrap();
        assert_eq!((first.buckets, first.backlog), (MAX_BUCKETS, true));
        let mut sweeps = 1;
        loop {
            sweeps += 1;
            if !sweep(&store, later, SWEEP_BUDGET).unwrap().backlog {
                break;
            }
        }
        assert_eq!(sweeps, 3, "512 buckets a sweep");
        assert_eq!(keys_of(&store), [keys::PURGE_CURSOR]);
    }

    #[test]
    fn every_sweep_every_th_turn_sweeps_and_a_backlog_sweeps_on_the_next() {
        let store = announced(SWEEP_BUDGET + 10, T0 + 100);
        let now = T0 + 2 * keys::PURGE_BUCKET;
        assert!(
            take_turn(&store, T0).unwrap().is_some(),
            "a store's first turn sweeps, and sets the cursor up"
        );
        for _ in 2..SWEEP_EVERY {
            assert_eq!(take_turn(&store, now).unwrap(), None);
        }
        let first = take_turn(&store, now)
            .unwrap()
            .expect("the SWEEP_EVERY-th turn sweeps");
        assert!(first.backlog);
        let mut turns = 0;
        while take_turn(&store, now).unwrap().is_some_and(|s| s.backlog) {
            turns += 1;
            assert!(
                turns < 10,
                "a backlog sweeps on the next turn until it is gone"
            );
        }
        assert_eq!(take_turn(&store, now).unwrap(), None);
        assert!(live(&store).is_empty());
    }

    /// Issue 18: a request's announcements, one entry per hourly bucket, written in the one
    /// set-many that stores its records, after one increment per bucket; the sweep then finds
    /// every key.
    #[test]
    fn issue_18_a_request_s_announcements_share_one_entry_per_bucket_with_its_records() {
        let recording = crate::store::memory::Recording::default();
        assert_eq!(sweep(&recording, T0, SWEEP_BUDGET).unwrap().deleted, 0);
        recording.take();
        let gathering = Gathering::new(&recording);
        let (a, b) = (T0 + 100, T0 + 2 * keys::PURGE_BUCKET + 5);
        announce(&gathering, a, &["r:1", "r:2"]).unwrap();
        announce(&gathering, a + 60, &["r:3"]).unwrap();
        announce(&gathering, b, &["r:4"]).unwrap();
        assert!(recording.take().is_empty(), "nothing written yet");
        let pairs: Vec<(&str, &[u8])> = ["r:1", "r:2", "r:3", "r:4"]
            .into_iter()
            .map(|k| (k, &b"v"[..]))
            .collect();
        gathering.set_many(&pairs).unwrap();
        assert_eq!(
            recording.take(),
            ["increment", "increment", "set_many"],
            "one slot per bucket, one write"
        );
        let bucket = keys::purge_bucket(a).unwrap();
        assert_eq!(
            recording.store.get(&keys::purge_entry(bucket, 1)).unwrap(),
            Some(b"r:1\nr:2\nr:3".to_vec())
        );
        gathering.flush().unwrap();
        assert!(recording.take().is_empty(), "nothing left to flush");
        let after_b = keys::purge_bucket(b).unwrap() + GRACE;
        let done = sweep(&recording.store, after_b, SWEEP_BUDGET).unwrap();
        assert_eq!(
            done.deleted,
            4 + 2 + 2,
            "four keys, two entries, two counts"
        );
        assert!(live(&recording.store).is_empty());
    }

    /// Issue 18: an announcement no write took (a counter's, on a request that writes nothing
    /// else) is written at the request's end; a plain `set` takes what is gathered with it.
    #[test]
    fn issue_18_what_no_write_took_is_flushed_and_a_set_carries_the_rest() {
        let recording = crate::store::memory::Recording::default();
        let gathering = Gathering::new(&recording);
        recording.increment("jti:c:j:900", 900).unwrap();
        announce(&gathering, 900, &["jti:c:j:900"]).unwrap();
        recording.take();
        gathering.flush().unwrap();
        assert_eq!(recording.take(), ["increment", "set"]);
        announce(&gathering, 900, &["r:1"]).unwrap();
        gathering.set("r:1", b"v").unwrap();
        assert_eq!(recording.take(), ["increment", "set_many"]);
        gathering.set("r:2", b"v").unwrap();
        assert_eq!(recording.take(), ["set"], "nothing gathered: a plain set");
        // Straight to a store that does not gather: the count and the entry at once.
        announce(&recording, 900, &["r:3"]).unwrap();
        assert_eq!(recording.take(), ["increment", "set"]);
    }
}
