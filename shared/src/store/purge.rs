//! The purge: what keeps the store from growing without bound under steady traffic, with only
//! the `wasi:keyvalue` calls Spin's SQLite and Redis stores implement (no TTL, no delete by
//! pattern; design.md, State).
//!
//! Every key that stops mattering at a known time says so in its name
//! ([`keys::forget_after`]); records whose readers hold only an id are named by a purge tag
//! ([`keys::purge_tag`]). A sweep lists the keys once, and deletes the ones whose time has
//! passed, oldest first, tags after the records they name, without reading a value, within a
//! budget of calls ([`sweep`]).
//!
//! Who sweeps: requests that are not on the hot paths (a backchannel request, a consent
//! lodged, a `client_credentials` or `refresh_token` grant) each take a turn, one atomic
//! increment of a single counter, after their answer is decided; the request whose turn is a
//! multiple of [`SWEEP_EVERY`] sweeps ([`take_turn`]). Pending polls and token issuance never
//! take a turn. When a sweep leaves expired keys behind (over its budget), it moves the counter
//! so that the very next turn sweeps again, until the backlog is gone. Deterministic, so a test
//! (or an operator) knows when a sweep runs; and the sweeping request does a bounded amount of
//! work: one listing and at most [`SWEEP_BUDGET`] deletions.
//!
//! A sweep is best effort: it runs after the answer is decided, and a store error stops it
//! without changing that answer. A key deleted twice (two sweeps at once) is no harm, and a
//! sweep cut short leaves a tag whose records the next sweep deletes again.

use super::{KeyValue, StoreError, keys};
use crate::clock::UnixTime;

/// A sweep runs on every this many turns (when it leaves no backlog). Each sweep lists every
/// key of the store, so this sets the purge's share of the load: at 16 the load benchmark's
/// refresh and consent scenarios (a store of some 20,000 keys) ran at half their speed; at 128
/// the listing is paid by fewer than 1 % of the turns (bench/BENCHMARKS.md).
pub const SWEEP_EVERY: i64 = 128;

/// The most deletions one sweep makes: the bound on a sweeping request's extra work.
pub const SWEEP_BUDGET: usize = 256;

/// The most pages of keys one sweep reads (Spin answers with one).
const MAX_PAGES: usize = 64;

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Keys listed.
    pub listed: usize,
    /// Keys whose time had passed.
    pub expired: usize,
    /// Deletions made (a tag counts its records and itself).
    pub deleted: usize,
    /// Whether expired keys were left for the next sweep.
    pub backlog: bool,
}

/// Lists the store's keys and deletes those whose time is `now` or earlier, oldest first,
/// within `budget` deletions. A tag's records go before the tag, so a sweep cut short leaves
/// the tag for the next one.
pub fn sweep(store: &dyn KeyValue, now: UnixTime, budget: usize) -> Result<Sweep, StoreError> {
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
    let mut done = Sweep {
        listed,
        expired: expired.len(),
        ..Sweep::default()
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
    if turn % SWEEP_EVERY != 0 {
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
    fn a_sweep_drops_what_expired_and_keeps_the_rest() {
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

        let done = sweep(&store, 99, SWEEP_BUDGET).unwrap();
        assert_eq!((done.expired, done.deleted, done.backlog), (0, 0, false));
        assert_eq!(done.listed, 10);

        let done = sweep(&store, 200, SWEEP_BUDGET).unwrap();
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

        sweep(&store, 1_000, SWEEP_BUDGET).unwrap();
        assert_eq!(keys_of(&store), [keys::holder_requests("h")]);
    }

    #[test]
    fn a_sweep_keeps_to_its_budget_oldest_first_and_reports_the_backlog() {
        let store = MemoryStore::new();
        for t in 1..=10 {
            store.increment(&timed(&t.to_string(), t), t).unwrap();
        }
        let tag = purge_tag(Family::Request, "ref", 5);
        store.set(&tag, b"").unwrap();
        store.set(&keys::auth_request("ref"), b"r").unwrap();
        let done = sweep(&store, 100, 6).unwrap();
        // The markers of 1…5 (five calls), then the tag of 5 needs four more: over budget.
        assert_eq!((done.expired, done.deleted, done.backlog), (11, 5, true));
        assert!(store.get(&tag).unwrap().is_some());
        assert!(store.get(&keys::auth_request("ref")).unwrap().is_some());
        assert!(store.get(&timed("5", 5)).unwrap().is_none());
        let done = sweep(&store, 100, SWEEP_BUDGET).unwrap();
        assert_eq!((done.expired, done.deleted, done.backlog), (6, 9, false));
        assert!(store.is_empty());
    }

    #[test]
    fn every_sweep_every_th_turn_sweeps_and_a_backlog_sweeps_on_the_next() {
        let store = MemoryStore::new();
        for t in 0..(SWEEP_BUDGET as i64 + 10) {
            store.increment(&timed(&t.to_string(), 50), 50).unwrap();
        }
        for _ in 1..SWEEP_EVERY {
            assert_eq!(take_turn(&store, 100).unwrap(), None);
        }
        let first = take_turn(&store, 100)
            .unwrap()
            .expect("the SWEEP_EVERY-th turn sweeps");
        assert_eq!((first.deleted, first.backlog), (SWEEP_BUDGET, true));
        let second = take_turn(&store, 100)
            .unwrap()
            .expect("a backlog sweeps next turn");
        assert_eq!((second.deleted, second.backlog), (10, false));
        assert_eq!(take_turn(&store, 100).unwrap(), None);
        assert_eq!(keys_of(&store), [keys::SWEEP_TURN]);
    }
}
