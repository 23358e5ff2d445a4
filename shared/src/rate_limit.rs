//! Abuse limits at `POST /bc-authorize` (BCA-31; FAPI-CIBA 7.2: no one may start unsolicited
//! authentication sessions in bursts). Four limits, each a counter in the key-value store:
//!
//! - a client's requests per minute, and its requests pending at once;
//! - requests naming one holder per hour, and the holder's requests pending at once.
//!
//! The client's rate counts every request once the client has authenticated, refused or
//! accepted ([`count_client_request`], issue 16): a refusal tells the client something (an
//! unknown holder, a consent that is not its own), so refusals must cost what acceptances
//! cost, or a client could probe for free. The other three count only requests about to be
//! accepted ([`admit`]): a refused request is not pending, and a refusal notifies no holder, so
//! counting it against a holder would only let a client lock that holder out.
//!
//! Every hint that reaches a holder's device names that holder (`id_token_hint`, `login_hint`
//! = the consent id, AD-generated hint ids), so the holder's limits are the per-hint limits
//! too. An AS-generated request names nobody until the holder scans its QR code, so it notifies
//! no one: it counts for its client only.
//!
//! Counting is one atomic [`KeyValue::increment`] per counter, add-then-check: the caller whose
//! addition passes the limit takes it back and is refused. That is exact on every store that
//! implements increments atomically (Spin's SQLite and Redis stores do), with no
//! compare-and-swap and no retry: concurrent requests can never all slip under a limit, and at
//! worst a request racing a refused one is refused too.
//!
//! Rate counters live in fixed windows. A request is pending from its creation until the holder
//! decides (the device API takes it back, [`release`]) or it expires, which writes nothing; so
//! pending counts live in buckets of [`PENDING_BUCKET`] seconds, the longest `auth_req_ttl`: a
//! request made in one bucket has expired by the end of the next, and the count at any time is
//! the current bucket's plus the previous one's. An ignored request thus keeps its place for
//! 6 to 12 minutes rather than its 5: the error is on the safe side.
//!
//! The same per-minute counting limits consent lodging and `client_credentials` grants per
//! client ([`per_minute`], issue 16), which otherwise grow the store without bound.
//!
//! Every key ends with `:<unix time>`, the moment from which it no longer counts: a purge
//! drops it without reading it (the `rate:` and `pending:` shapes of [`keys`]).

use crate::auth_req::{AuthRequest, HintKind};
use crate::clock::UnixTime;
use crate::config::AbuseLimits;
use crate::error::ProtocolError;
use crate::store::{KeyValue, StoreError, keys};

/// The window of a client's request rate, seconds.
pub const CLIENT_WINDOW: i64 = 60;
/// The window of a holder's request rate, seconds.
pub const HOLDER_WINDOW: i64 = 3600;
/// The span of one bucket of pending counts: the longest `auth_req_ttl` (BCA-26).
pub const PENDING_BUCKET: i64 = 360;

/// The end of the window of `length` seconds that holds `t`.
fn window_end(t: UnixTime, length: i64) -> UnixTime {
    t - t.rem_euclid(length) + length
}

/// When the pending count of a request made at `created` stops counting: the end of the
/// bucket after its own, by which the request has expired.
fn pending_until(created: UnixTime) -> UnixTime {
    window_end(created, PENDING_BUCKET) + PENDING_BUCKET
}

/// The holder a request counts for: the one its hint named at bc-authorize.
fn counted_holder(request: &AuthRequest) -> Option<&str> {
    match request.hint {
        HintKind::AsGenerated => None,
        HintKind::IdTokenHint | HintKind::LoginHint | HintKind::AdGenerated => {
            request.subject.as_deref()
        }
    }
}

/// The counts a request was admitted with, until it is stored. Taken back when it is refused
/// after all, so that a refused request uses none of the budget.
#[derive(Debug)]
#[must_use = "an admission is kept by storing the request, or taken back"]
pub struct Admission {
    counted: Vec<String>,
}

impl Admission {
    /// The request was refused after its admission (a single-use input was already used, or
    /// the store failed before the request was written): its counts are taken back. A
    /// take-back that fails leaves a count too high until its window ends, never too low.
    pub fn take_back(self, store: &dyn KeyValue) {
        for key in &self.counted {
            let _ = store.increment(key, -1);
        }
    }

    /// The request is stored: its counts stay.
    pub fn keep(self) {}
}

/// One limit: the counter to add to, the counter before it (pending buckets) and what a
/// refusal says.
struct Limit {
    add_to: String,
    add_to_until: UnixTime,
    previous: Option<(String, UnixTime)>,
    max: u32,
    refusal: &'static str,
}

/// BCA-31, issue 16: counts one request of `client_id` against the client's per-minute rate,
/// as soon as the client has authenticated and before anything about the request is checked.
/// Over the limit: 429 `access_denied` with `Retry-After`, and the addition is taken back (a
/// request refused by the rate itself uses nothing, so the same signed request is accepted
/// once the minute ends). Otherwise the count stays, whatever the request's outcome.
pub fn count_client_request(
    store: &dyn KeyValue,
    limits: &AbuseLimits,
    client_id: &str,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    per_minute(
        store,
        |until| keys::client_rate(client_id, until),
        limits.client_rate,
        "the client sent too many backchannel requests, retry later",
        now,
    )
}

/// Counts one request against a per-minute limit of `max` on the counter `key(end of the
/// minute)`: one atomic increment, add-then-check; over the limit, the addition is taken back
/// and the answer is 429 with `Retry-After` (the seconds left in the minute) and `refusal`.
pub fn per_minute(
    store: &dyn KeyValue,
    key: impl Fn(UnixTime) -> String,
    max: u32,
    refusal: &'static str,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    let until = window_end(now, CLIENT_WINDOW);
    let limit = Limit {
        add_to: key(until),
        add_to_until: until,
        previous: None,
        max,
        refusal,
    };
    let mut admission = Admission {
        counted: Vec::new(),
    };
    match count(store, &mut admission, &limit, now) {
        Ok(None) => {
            admission.keep();
            Ok(())
        }
        Ok(Some(retry_after)) => {
            admission.take_back(store);
            Err(ProtocolError::TooManyRequests(refusal, retry_after))
        }
        Err(_) => {
            admission.take_back(store);
            Err(ProtocolError::ServerError("the store is unavailable"))
        }
    }
}

/// BCA-31: counts `request` against the limits of requests about to be accepted, in order
/// (the holder's rate, the client's pending requests, the holder's), and refuses it with 429
/// `access_denied` and a `Retry-After` when one is full; nothing of these stays counted then.
/// Called once every other check has passed, so requests refused for other reasons count
/// here nothing (the client's rate counted them already, [`count_client_request`]).
pub fn admit(
    store: &dyn KeyValue,
    limits: &AbuseLimits,
    request: &AuthRequest,
    now: UnixTime,
) -> Result<Admission, ProtocolError> {
    let mut admission = Admission {
        counted: Vec::new(),
    };
    for limit in limits_for(limits, request, now) {
        match count(store, &mut admission, &limit, now) {
            Ok(None) => {}
            Ok(Some(retry_after)) => {
                admission.take_back(store);
                return Err(ProtocolError::TooManyRequests(limit.refusal, retry_after));
            }
            Err(_) => {
                admission.take_back(store);
                return Err(ProtocolError::ServerError("the store is unavailable"));
            }
        }
    }
    Ok(admission)
}

fn limits_for(limits: &AbuseLimits, request: &AuthRequest, now: UnixTime) -> Vec<Limit> {
    let client = &request.client_id;
    let pending_now = pending_until(now);
    let pending_before = pending_now - PENDING_BUCKET;
    let mut out = Vec::with_capacity(3);
    let holder = counted_holder(request);
    if let Some(sub) = holder {
        let rate_holder = window_end(now, HOLDER_WINDOW);
        out.push(Limit {
            add_to: keys::holder_rate(sub, rate_holder),
            add_to_until: rate_holder,
            previous: None,
            max: limits.holder_rate,
            refusal: "too many backchannel requests named this holder, retry later",
        });
    }
    out.push(Limit {
        add_to: keys::client_pending(client, pending_now),
        add_to_until: pending_now,
        previous: Some((keys::client_pending(client, pending_before), pending_before)),
        max: limits.client_pending,
        refusal: "the client has too many pending backchannel requests, retry later",
    });
    if let Some(sub) = holder {
        out.push(Limit {
            add_to: keys::holder_pending(sub, pending_now),
            add_to_until: pending_now,
            previous: Some((keys::holder_pending(sub, pending_before), pending_before)),
            max: limits.holder_pending,
            refusal: "the holder has too many pending backchannel requests, retry later",
        });
    }
    out
}

/// Adds one to `limit`'s counter; `Some(retry_after)` when that passes the limit (the caller
/// takes the addition back with the rest).
fn count(
    store: &dyn KeyValue,
    admission: &mut Admission,
    limit: &Limit,
    now: UnixTime,
) -> Result<Option<u32>, StoreError> {
    let after = store.increment(&limit.add_to, 1)?;
    admission.counted.push(limit.add_to.clone());
    if after == 1 {
        // This increment made the counter: announced to the purge, once.
        crate::store::purge::announce(store, limit.add_to_until, &[&limit.add_to])?;
    }
    // Negative counts (requests made before these counters existed, then decided) count as 0.
    let mut total = after.max(1);
    let mut frees_at = limit.add_to_until;
    if let Some((key, until)) = &limit.previous {
        // Read only if it exists: an increment would create a counter nobody announced to
        // the purge.
        let before = crate::store::read_counter(store, key)?.unwrap_or(0).max(0);
        total += before;
        if before > 0 {
            frees_at = *until;
        }
    }
    if total <= i64::from(limit.max) {
        return Ok(None);
    }
    Ok(Some(
        u32::try_from((frees_at - now).max(1)).unwrap_or(u32::MAX),
    ))
}

/// The holder decided `request` (approved, denied, or an approval check denied it): it is no
/// longer pending, so its pending counts are taken back (AD-4…6). Call it once, after the
/// decision won its compare-and-swap, with the request as it was before.
pub fn release(
    store: &dyn KeyValue,
    request: &AuthRequest,
    now: UnixTime,
) -> Result<(), StoreError> {
    let until = pending_until(request.created);
    if until <= now {
        // Its bucket no longer counts (and may be purged): nothing to take back.
        return Ok(());
    }
    take_one(store, &keys::client_pending(&request.client_id, until))?;
    if let Some(sub) = counted_holder(request) {
        take_one(store, &keys::holder_pending(sub, until))?;
    }
    Ok(())
}

/// Takes one from a pending count, never below zero: a request that was never counted (made
/// before the counters existed) must not leave room for an extra one. Two releases racing
/// over a count of 1 both subtract; the one that sees -1 adds its one back.
fn take_one(store: &dyn KeyValue, key: &str) -> Result<(), StoreError> {
    if store.increment(key, -1)? < 0 {
        store.increment(key, 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_req::{AcrRequest, ClaimRequests, Status};
    use crate::store::memory::MemoryStore;

    /// A whole hour, so also a whole minute and a whole 360 s bucket.
    const T0: UnixTime = 1_800_000_000;

    fn limits(
        client_rate: u32,
        client_pending: u32,
        holder_rate: u32,
        pending: u32,
    ) -> AbuseLimits {
        AbuseLimits {
            client_rate,
            client_pending,
            holder_rate,
            holder_pending: pending,
        }
    }

    fn request(
        client: &str,
        hint: HintKind,
        subject: Option<&str>,
        created: UnixTime,
    ) -> AuthRequest {
        AuthRequest {
            client_id: client.into(),
            consent_id: "urn:x:1".into(),
            scope: vec!["openid".into()],
            hint,
            subject: subject.map(str::to_string),
            binding_message: None,
            acr: AcrRequest {
                values: vec![],
                essential: false,
            },
            id_token_claims: ClaimRequests::default(),
            userinfo_claims: ClaimRequests::default(),
            created,
            expires_at: created + 300,
            status: Status::Pending,
            decision: None,
            denial: None,
            token_salt: None,
            at_hash: "h".into(),
            id_token: None,
        }
    }

    fn by_login_hint(client: &str, sub: &str, created: UnixTime) -> AuthRequest {
        request(client, HintKind::LoginHint, Some(sub), created)
    }

    fn refusal(result: Result<Admission, ProtocolError>) -> (&'static str, u32) {
        match result {
            Err(ProtocolError::TooManyRequests(why, retry_after)) => (why, retry_after),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn bca_31_every_counter_made_is_announced_to_the_purge_once_and_reads_make_none() {
        let store = MemoryStore::new();
        let l = limits(100, 100, 100, 100);
        let now = T0 + 10;
        admit(&store, &l, &by_login_hint("tpp-1", "u1", now), now)
            .unwrap()
            .keep();
        // The previous pending buckets were read, not made.
        let before = pending_until(now) - PENDING_BUCKET;
        for key in [
            keys::client_pending("tpp-1", before),
            keys::holder_pending("u1", before),
        ] {
            assert_eq!(store.get(&key), Ok(None), "{key}");
        }
        // Three counters (the client's rate is counted before admission), each announced
        // once: every one of them is in an entry.
        let entries = |store: &MemoryStore| -> Vec<String> {
            let mut all = Vec::new();
            for key in store.list_keys(None).unwrap().keys {
                if key.starts_with("purge_at:") {
                    let raw = store.get(&key).unwrap().unwrap();
                    all.push(String::from_utf8(raw).unwrap());
                }
            }
            all.sort();
            all
        };
        let mut made = vec![
            keys::holder_rate("u1", window_end(now, HOLDER_WINDOW)),
            keys::client_pending("tpp-1", pending_until(now)),
            keys::holder_pending("u1", pending_until(now)),
        ];
        made.sort();
        assert_eq!(entries(&store), made);
        admit(&store, &l, &by_login_hint("tpp-1", "u1", now + 1), now + 1)
            .unwrap()
            .keep();
        assert_eq!(
            entries(&store),
            made,
            "a counter's later increments announce nothing"
        );
    }

    #[test]
    fn bca_31_a_client_s_rate_is_counted_per_minute_and_its_own_refusals_count_nothing() {
        let store = MemoryStore::new();
        let l = limits(3, 100, 100, 100);
        let now = T0 + 10;
        for _ in 0..3 {
            count_client_request(&store, &l, "tpp-1", now).unwrap();
        }
        let over = count_client_request(&store, &l, "tpp-1", now);
        let Err(ProtocolError::TooManyRequests(why, retry_after)) = over else {
            panic!("expected a refusal, got {over:?}");
        };
        assert!(why.contains("client"), "{why}");
        assert_eq!(retry_after, 50, "until the minute ends");
        // Refused again: still 3 counted, not 5.
        let _ = count_client_request(&store, &l, "tpp-1", now);
        let key = keys::client_rate("tpp-1", T0 + 60);
        assert_eq!(store.increment(&key, 0), Ok(3));
        // Another client has its own budget; the next minute is a new window.
        count_client_request(&store, &l, "tpp-2", now).unwrap();
        count_client_request(&store, &l, "tpp-1", T0 + 60).unwrap();
    }

    #[test]
    fn bca_31_admission_counts_no_client_rate_the_client_s_count_already_did() {
        let store = MemoryStore::new();
        let l = limits(1, 100, 100, 100);
        let now = T0 + 10;
        for i in 0..5 {
            admit(
                &store,
                &l,
                &by_login_hint("tpp-1", &format!("u{i}"), now),
                now,
            )
            .unwrap()
            .keep();
        }
        let key = keys::client_rate("tpp-1", T0 + 60);
        assert_eq!(store.increment(&key, 0), Ok(0));
    }

    #[test]
    fn cons_and_tok_20_per_minute_limits_count_once_per_request_in_their_own_key() {
        let store = MemoryStore::new();
        let now = T0 + 45;
        let lodge = |store: &MemoryStore, client: &str| {
            per_minute(
                store,
                |until| keys::consent_rate(client, until),
                2,
                "too many consents",
                now,
            )
        };
        lodge(&store, "tpp-1").unwrap();
        lodge(&store, "tpp-1").unwrap();
        assert_eq!(
            lodge(&store, "tpp-1"),
            Err(ProtocolError::TooManyRequests("too many consents", 15))
        );
        assert_eq!(
            store.increment(&keys::consent_rate("tpp-1", T0 + 60), 0),
            Ok(2)
        );
        lodge(&store, "tpp-2").unwrap();
        // Another limit's counter is another key.
        assert_eq!(
            store.increment(&keys::client_credentials_rate("tpp-1", T0 + 60), 0),
            Ok(0)
        );
        for key in [
            keys::consent_rate("tpp-1", T0 + 60),
            keys::client_credentials_rate("tpp-1", T0 + 60),
        ] {
            assert_eq!(keys::forget_after(&key), Some(T0 + 60), "{key}");
            assert!(!key.contains("tpp-1"), "hashed: {key}");
        }
    }

    #[test]
    fn bca_31_a_holder_s_rate_and_pending_requests_are_limited_across_clients() {
        let store = MemoryStore::new();
        let l = limits(100, 100, 3, 2);
        let now = T0 + 100;
        let first = by_login_hint("tpp-1", "u1", now);
        let second = by_login_hint("tpp-2", "u1", now);
        admit(&store, &l, &first, now).unwrap().keep();
        admit(&store, &l, &second, now).unwrap().keep();
        let (why, _) = refusal(admit(&store, &l, &by_login_hint("tpp-1", "u1", now), now));
        assert!(why.contains("pending"), "{why}");
        // The holder decides one: a place frees, then the hourly rate is what refuses.
        release(&store, &first, now + 5).unwrap();
        admit(&store, &l, &by_login_hint("tpp-1", "u1", now + 6), now + 6)
            .unwrap()
            .keep();
        release(&store, &second, now + 7).unwrap();
        let (why, retry_after) = refusal(admit(
            &store,
            &l,
            &by_login_hint("tpp-1", "u1", now + 8),
            now + 8,
        ));
        assert!(why.contains("named this holder"), "{why}");
        assert_eq!(i64::from(retry_after), T0 + 3600 - (now + 8));
        // Another holder is not affected.
        admit(&store, &l, &by_login_hint("tpp-1", "u2", now), now)
            .unwrap()
            .keep();
    }

    #[test]
    fn bca_31_pending_requests_stop_counting_once_they_can_no_longer_be_pending() {
        let store = MemoryStore::new();
        let l = limits(100, 100, 100, 1);
        let made = T0 + 350;
        admit(&store, &l, &by_login_hint("tpp-1", "u1", made), made)
            .unwrap()
            .keep();
        // The next bucket still counts it (it lives until made + 300).
        let next_bucket = T0 + 400;
        let (_, retry_after) = refusal(admit(
            &store,
            &l,
            &by_login_hint("tpp-1", "u1", next_bucket),
            next_bucket,
        ));
        assert_eq!(i64::from(retry_after), T0 + 720 - next_bucket);
        // Once its bucket is out of the window, it counts no more, decided or not.
        let after = T0 + 720;
        assert!(made + 300 <= after);
        admit(&store, &l, &by_login_hint("tpp-1", "u1", after), after)
            .unwrap()
            .keep();
    }

    #[test]
    fn bca_31_as_generated_requests_count_for_their_client_only() {
        let store = MemoryStore::new();
        let l = limits(100, 2, 100, 1);
        let now = T0;
        let qr = request("tpp-1", HintKind::AsGenerated, None, now);
        admit(&store, &l, &qr, now).unwrap().keep();
        admit(&store, &l, &qr, now).unwrap().keep();
        let (why, _) = refusal(admit(&store, &l, &qr, now));
        assert!(why.contains("client has too many pending"), "{why}");
        // Claimed by a holder and then decided: only the client's count is taken back.
        let claimed = request("tpp-1", HintKind::AsGenerated, Some("u1"), now);
        release(&store, &claimed, now + 10).unwrap();
        assert_eq!(
            store.increment(&keys::holder_pending("u1", pending_until(now)), 0),
            Ok(0)
        );
        admit(&store, &l, &qr, now + 11).unwrap().keep();
    }

    #[test]
    fn bca_31_a_taken_back_admission_leaves_every_count_as_it_was() {
        let store = MemoryStore::new();
        let l = limits(10, 10, 10, 10);
        let now = T0 + 5;
        let r = by_login_hint("tpp-1", "u1", now);
        admit(&store, &l, &r, now).unwrap().take_back(&store);
        for key in [
            keys::holder_rate("u1", window_end(now, HOLDER_WINDOW)),
            keys::client_pending("tpp-1", pending_until(now)),
            keys::holder_pending("u1", pending_until(now)),
        ] {
            assert_eq!(store.increment(&key, 0), Ok(0), "{key}");
        }
    }

    #[test]
    fn bca_31_negative_counts_do_not_raise_a_limit() {
        let store = MemoryStore::new();
        let l = limits(100, 100, 100, 1);
        let now = T0;
        // Requests decided that were never counted (made before the counters existed).
        for _ in 0..3 {
            release(&store, &by_login_hint("tpp-1", "u1", now), now).unwrap();
        }
        admit(&store, &l, &by_login_hint("tpp-1", "u1", now), now)
            .unwrap()
            .keep();
        refusal(admit(&store, &l, &by_login_hint("tpp-1", "u1", now), now));
    }

    #[test]
    fn every_key_names_the_moment_it_stops_counting() {
        let now = T0 + 1;
        let r = by_login_hint("tpp-1", "u1", now);
        let keys: Vec<(String, UnixTime)> = limits_of(&r, now);
        assert_eq!(keys.len(), 5);
        for (key, until) in keys {
            let (_, end) = key.rsplit_once(':').unwrap();
            assert_eq!(end.parse::<UnixTime>(), Ok(until), "{key}");
            assert!(key.starts_with("rate:bca:") || key.starts_with("pending:bca:"));
            assert!(until > now);
            assert!(
                !key.contains(":tpp-1:") && !key.contains(":u1:"),
                "hashed: {key}"
            );
        }
    }

    #[test]
    fn bca_31_the_refusal_is_429_access_denied_with_retry_after() {
        use crate::error::Endpoint;
        let r = ProtocolError::TooManyRequests("the client sent too many", 42)
            .to_response(Endpoint::BackchannelAuthentication);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("42"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "error": "access_denied",
                "error_description": "the client sent too many",
            })
        );
    }

    #[test]
    fn bca_31_the_limits_are_read_from_their_variables_each_at_least_one() {
        use crate::config::var;
        let vars = crate::fixtures::variables();
        assert_eq!(AbuseLimits::load(&vars), Ok(AbuseLimits::SHIPPED));
        for name in [
            var::CLIENT_RATE_LIMIT,
            var::CLIENT_PENDING_LIMIT,
            var::HOLDER_RATE_LIMIT,
            var::HOLDER_PENDING_LIMIT,
        ] {
            for bad in ["", "0", "-1", "1.5", "ten", "1000001"] {
                let mut vars = vars.clone();
                vars.insert(name, bad.to_string());
                let err = AbuseLimits::load(&vars).unwrap_err();
                assert_eq!(err.variable, name, "{bad:?}");
            }
            let mut vars = vars.clone();
            vars.insert(name, " 1000000 ".to_string());
            assert!(AbuseLimits::load(&vars).is_ok());
        }
    }

    fn limits_of(r: &AuthRequest, now: UnixTime) -> Vec<(String, UnixTime)> {
        limits_for(&AbuseLimits::SHIPPED, r, now)
            .into_iter()
            .flat_map(|l| std::iter::once((l.add_to, l.add_to_until)).chain(l.previous))
            .collect()
    }
}
