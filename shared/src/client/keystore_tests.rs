//! The keystore's rules (KEY-10…15) with a scripted fetcher, a counting store and the fixed
//! clock: no network, no sleeping.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use serde_json::{Value, json};

use super::*;
use crate::client::fetch::{Fetch, FetchResponse};
use crate::clock::{CountingRandom, FixedClock};
use crate::store::memory::MemoryStore;
use crate::store::{KeyPage, KeyValue, NextValue, StoreError, Swap};

const NOW: UnixTime = 1_800_000_000;
const URI: &str = "https://keystore.directory.openbankingbrasil.org.br/org/sw/application.jwks";

/// Public JWKs of fresh 2048-bit keys, made once per run.
fn jwk(kid: &str) -> Value {
    static KEYS: OnceLock<Vec<devkeys::rsa::RsaPublicKey>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        (0..2)
            .map(|_| devkeys::rsa::RsaPublicKey::from(&devkeys::rsa_key(2048).unwrap()))
            .collect()
    });
    let n = kid.bytes().map(usize::from).sum::<usize>() % keys.len();
    devkeys::public_jwk(&keys[n], kid, "sig", "PS256")
}

fn set(kids: &[&str]) -> Value {
    json!({ "keys": kids.iter().map(|k| jwk(k)).collect::<Vec<_>>() })
}

fn ok(body: &Value) -> Result<FetchResponse, FetchError> {
    Ok(FetchResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    })
}

/// A fetcher that answers from a script (the last answer repeats) and counts its calls.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Result<FetchResponse, FetchError>>>,
    hits: AtomicUsize,
    last_url: Mutex<Option<(String, Duration, usize)>>,
    delay: Option<Duration>,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = Result<FetchResponse, FetchError>>) -> Self {
        Self {
            answers: Mutex::new(answers.into_iter().collect()),
            ..Self::default()
        }
    }

    fn then(&self, answer: Result<FetchResponse, FetchError>) {
        let mut answers = self.answers.lock().unwrap();
        answers.clear();
        answers.push_back(answer);
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Fetch for Scripted {
    fn get(&self, request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
        self.hits.fetch_add(1, Ordering::SeqCst);
        *self.last_url.lock().unwrap() =
            Some((request.url.to_string(), request.timeout, request.max_body));
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
        let mut answers = self.answers.lock().unwrap();
        if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap_or(Err(FetchError::Timeout))
        }
    }
}

/// The in-memory store, counting calls.
#[derive(Default)]
struct Counting {
    inner: MemoryStore,
    calls: AtomicUsize,
}

impl Counting {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl KeyValue for Counting {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.count();
        self.inner.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.count();
        self.inner.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.count();
        self.inner.delete(key)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        self.count();
        self.inner.compare_and_swap(key, expected, new)
    }
    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        self.count();
        self.inner.read_and_swap(key, next)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.count();
        self.inner.increment(key, delta)
    }
    fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        self.count();
        self.inner.list_keys(cursor)
    }
}

/// One test's world: a store, a fetcher, and a way to ask at any time.
struct World {
    store: Counting,
    fetch: Scripted,
    random: CountingRandom,
    uri: JwksUri,
}

impl World {
    fn new(fetch: Scripted) -> Self {
        Self {
            store: Counting::default(),
            fetch,
            random: CountingRandom::default(),
            uri: allowed().jwks_uri(URI).unwrap(),
        }
    }

    fn key(
        &self,
        keystore: &Keystore,
        at: UnixTime,
        kid: &str,
    ) -> Result<Option<String>, KeystoreUnavailable> {
        self.key_for(keystore, at, kid, KeyUse::Signature)
    }

    fn key_for(
        &self,
        keystore: &Keystore,
        at: UnixTime,
        kid: &str,
        purpose: KeyUse,
    ) -> Result<Option<String>, KeystoreUnavailable> {
        let clock = FixedClock(at);
        let deps = Deps {
            store: &self.store,
            clock: &clock,
            random: &self.random,
            fetch: &self.fetch,
        };
        keystore
            .key(&deps, &self.uri, kid, purpose)
            .map(|k| k.map(|k| k.kid.clone()))
    }
}

fn allowed() -> AllowedOrigins {
    AllowedOrigins::parse(DEFAULT_ALLOWED_HOSTS).unwrap()
}

#[test]
fn key_10_allowed_origins_are_https_or_loopback_http_and_nothing_else() {
    assert!(AllowedOrigins::parse(DEFAULT_ALLOWED_HOSTS).is_ok());
    for good in [
        "https://keystore.example",
        "https://keystore.example:8443, http://127.0.0.1:9000",
        "http://localhost:1",
        "http://[::1]:8080",
        "HTTPS://Keystore.Example",
    ] {
        assert!(AllowedOrigins::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "keystore.example",
        "http://keystore.example",
        "http://127.attacker.example",
        "https://keystore.example/path",
        "https://*.example",
        "https://keystore.example:0",
        "https://keystore.example:99999",
        "https://keystore.example:",
        "ftp://keystore.example",
        "https://keystore.example,",
        "https://user@keystore.example",
    ] {
        assert!(AllowedOrigins::parse(bad).is_err(), "{bad:?}");
    }
    let vars = std::collections::HashMap::from([(var::JWKS_ALLOWED_HOSTS, "http://x".into())]);
    let e = AllowedOrigins::load(&vars).unwrap_err();
    assert_eq!(e.variable, var::JWKS_ALLOWED_HOSTS);
    let empty = std::collections::HashMap::from([(var::JWKS_ALLOWED_HOSTS, " ".into())]);
    assert_eq!(AllowedOrigins::load(&empty).unwrap(), allowed(), "default");
}

#[test]
fn key_10_a_jwks_uri_exists_only_on_an_allowed_origin() {
    let list = AllowedOrigins::parse("https://keystore.example, http://127.0.0.1:9000").unwrap();
    for good in [
        "https://keystore.example/a/b/application.jwks",
        "https://KEYSTORE.example:443/openbanking.jwks",
        "https://keystore.example",
        "http://127.0.0.1:9000/x.jwks?v=1",
    ] {
        assert!(list.jwks_uri(good).is_ok(), "{good}");
    }
    for (bad, why) in [
        ("https://keystore.example:8443/x", JwksUriError::NotAllowed),
        ("https://other.example/x", JwksUriError::NotAllowed),
        (
            "https://keystore.example.attacker/x",
            JwksUriError::NotAllowed,
        ),
        ("http://keystore.example/x", JwksUriError::NotHttps),
        ("http://127.0.0.1:9001/x", JwksUriError::NotAllowed),
        ("http://127.0.0.1/x", JwksUriError::NotAllowed),
        ("https://user@keystore.example/x", JwksUriError::Malformed),
        ("https://keystore.example/x#f", JwksUriError::Malformed),
        ("https://keystore.example/a b", JwksUriError::Malformed),
        ("keystore.example/x", JwksUriError::Malformed),
        ("", JwksUriError::Malformed),
    ] {
        assert_eq!(list.jwks_uri(bad), Err(why), "{bad}");
    }
}

#[test]
fn key_10_fetch_is_one_bounded_get_of_the_uri() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    assert_eq!(w.key(&Keystore::new(600), NOW, "a"), Ok(Some("a".into())));
    assert_eq!(
        w.fetch.last_url.lock().unwrap().clone(),
        Some((URI.to_string(), Duration::from_secs(3), 256 * 1024))
    );
}

#[test]
fn key_10_key_14_a_bad_answer_with_nothing_cached_is_unavailable_and_writes_nothing() {
    let redirect = FetchResponse {
        status: 302,
        headers: vec![("location".into(), "https://elsewhere.example/".into())],
        body: Vec::new(),
    };
    let with = |status: u16, body: &[u8]| {
        Ok(FetchResponse {
            status,
            headers: Vec::new(),
            body: body.to_vec(),
        })
    };
    let answers: Vec<Result<FetchResponse, FetchError>> = vec![
        Ok(redirect),
        with(500, br#"{"keys":[]}"#),
        with(204, b""),
        with(200, b"not json"),
        with(200, b"[]"),
        with(200, br#"{"keys":{}}"#),
        with(200, br#"{"no_keys":[]}"#),
        with(200, &vec![b' '; MAX_SET_BYTES + 1]),
        Err(FetchError::Timeout),
        Err(FetchError::TooLarge),
        Err(FetchError::NotAllowed),
        Err(FetchError::Failed("connection refused".into())),
    ];
    for answer in answers {
        let shown = format!("{answer:?}").chars().take(60).collect::<String>();
        let w = World::new(Scripted::new([answer]));
        assert_eq!(
            w.key(&Keystore::new(600), NOW, "a"),
            Err(KeystoreUnavailable),
            "{shown}"
        );
        assert!(w.store.inner.is_empty(), "{shown}: nothing written");
    }
}

#[test]
fn key_11_only_rsa_2048_ps256_signature_and_rsa_oaep_encryption_keys_are_admitted() {
    let small = devkeys::rsa::RsaPublicKey::from(&devkeys::rsa_key(1024).unwrap());
    let mut no_kid = jwk("x");
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut no_use_no_alg = jwk("bare");
    no_use_no_alg.as_object_mut().unwrap().remove("use");
    no_use_no_alg.as_object_mut().unwrap().remove("alg");
    let mut enc = jwk("enc");
    enc["use"] = json!("enc");
    enc["alg"] = json!("RSA-OAEP");
    let mut rs256 = jwk("rs256");
    rs256["alg"] = json!("RS256");
    let mut oaep256 = jwk("oaep256");
    oaep256["use"] = json!("enc");
    oaep256["alg"] = json!("RSA-OAEP-256");
    let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
    let body = json!({"keys": [
        jwk("good"),
        no_use_no_alg,
        enc,
        devkeys::public_jwk(&small, "small", "sig", "PS256"),
        no_kid,
        rs256,
        oaep256,
        ec,
        "not an object",
        jwk("twice"),
        jwk("twice"),
    ]});
    let w = World::new(Scripted::new([ok(&body)]));
    let ks = Keystore::new(600);
    assert_eq!(w.key(&ks, NOW, "good"), Ok(Some("good".into())));
    assert_eq!(w.key(&ks, NOW, "bare"), Ok(Some("bare".into())));
    assert_eq!(
        w.key_for(&ks, NOW, "enc", KeyUse::Encryption),
        Ok(Some("enc".into()))
    );
    // Within the minute after the fetch, the unknown kids cost no refetch (KEY-13).
    for refused in ["enc", "small", "x", "rs256", "ec", "twice"] {
        assert_eq!(w.key(&ks, NOW, refused), Ok(None), "{refused}");
    }
    for refused in ["good", "oaep256"] {
        assert_eq!(
            w.key_for(&ks, NOW, refused, KeyUse::Encryption),
            Ok(None),
            "{refused}"
        );
    }
    assert_eq!(w.fetch.hits(), 1);
}

#[test]
fn key_11_a_set_with_private_members_is_a_failed_fetch() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
        let mut private = jwk("leaky");
        private[member] = json!("AQAB");
        let w = World::new(Scripted::new([ok(&json!({"keys": [jwk("a"), private]}))]));
        assert_eq!(
            w.key(&Keystore::new(600), NOW, "a"),
            Err(KeystoreUnavailable),
            "{member}"
        );
    }
}

#[test]
fn key_12_key_15_a_fresh_set_in_memory_costs_no_fetch_and_no_store_call() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(600);
    assert_eq!(w.key(&ks, NOW, "a"), Ok(Some("a".into())));
    let (hits, calls) = (w.fetch.hits(), w.store.calls());
    assert_eq!(hits, 1);
    for t in 0..600 {
        assert_eq!(w.key(&ks, NOW + t, "a"), Ok(Some("a".into())));
    }
    assert_eq!(w.fetch.hits(), hits, "no fetch while fresh");
    assert_eq!(w.store.calls(), calls, "no store call while fresh");
    // At 10 minutes the set is stale: one fetch, and the store copy is read and rewritten.
    assert_eq!(w.key(&ks, NOW + 600, "a"), Ok(Some("a".into())));
    assert_eq!(w.fetch.hits(), 2);
}

#[test]
fn key_12_the_stored_copy_warms_a_new_instance() {
    let w = World::new(Scripted::new([ok(&set(&["a", "b"]))]));
    assert_eq!(w.key(&Keystore::new(600), NOW, "a"), Ok(Some("a".into())));
    let raw = w.store.inner.get(&keys::jwks(URI)).unwrap().unwrap();
    let stored: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        stored["exp"],
        json!(NOW + 3600),
        "expires when it stops being usable"
    );
    assert_eq!(stored["data"]["fetched_at"], json!(NOW));
    assert_eq!(stored["data"]["fresh_until"], json!(NOW + 600));
    assert_eq!(stored["data"]["stale_until"], json!(NOW + 3600));
    // Another instance: no fetch, one store read.
    let other = Keystore::new(600);
    let calls = w.store.calls();
    assert_eq!(w.key(&other, NOW + 100, "b"), Ok(Some("b".into())));
    assert_eq!(w.fetch.hits(), 1);
    assert_eq!(w.store.calls(), calls + 1);
}

#[test]
fn key_12_the_stored_copy_is_announced_to_the_purge_index_once() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(600);
    w.key(&ks, NOW, "a").unwrap();
    let bucket = keys::purge_bucket(NOW + 3600).unwrap();
    let entry = w.store.inner.get(&keys::purge_entry(bucket, 1)).unwrap();
    assert_eq!(entry, Some(keys::jwks(URI).into_bytes()));
    // A refresh rewrites it without a second entry (the sweep reads the new exp).
    w.key(&ks, NOW + 700, "a").unwrap();
    let later = keys::purge_bucket(NOW + 700 + 3600).unwrap();
    assert_eq!(later, bucket, "(the same bucket, so one count tells)");
    assert_eq!(
        w.store.inner.increment(&keys::purge_count(bucket), 0),
        Ok(1)
    );
}

#[test]
fn key_12_max_age_shortens_freshness_never_lengthens_it() {
    for (cache_control, fresh_for) in [
        ("max-age=120", 120),
        ("public, max-age=300", 300),
        ("max-age=86400", 600),
        ("max-age=0", REFETCH_EVERY),
        ("no-store", REFETCH_EVERY),
        ("max-age=nonsense", 600),
        ("", 600),
    ] {
        let mut answer = ok(&set(&["a"])).unwrap();
        answer
            .headers
            .push(("cache-control".into(), cache_control.into()));
        let w = World::new(Scripted::new([Ok(answer)]));
        let ks = Keystore::new(600);
        w.key(&ks, NOW, "a").unwrap();
        w.key(&ks, NOW + fresh_for - 1, "a").unwrap();
        assert_eq!(w.fetch.hits(), 1, "{cache_control}: fresh");
        w.key(&ks, NOW + fresh_for, "a").unwrap();
        assert_eq!(w.fetch.hits(), 2, "{cache_control}: refetched");
    }
}

#[test]
fn key_12_client_jwks_ttl_sets_freshness_within_its_range() {
    let ttl = |v: &str| {
        load_ttl(&std::collections::HashMap::from([(
            var::CLIENT_JWKS_TTL,
            v.into(),
        )]))
    };
    assert_eq!(ttl(""), Ok(DEFAULT_TTL));
    assert_eq!(ttl("60"), Ok(60));
    assert_eq!(ttl("3600"), Ok(3600));
    for bad in ["59", "3601", "-1", "ten", "1e3"] {
        assert!(ttl(bad).is_err(), "{bad}");
    }
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(120);
    w.key(&ks, NOW, "a").unwrap();
    w.key(&ks, NOW + 119, "a").unwrap();
    assert_eq!(w.fetch.hits(), 1);
    w.key(&ks, NOW + 120, "a").unwrap();
    assert_eq!(w.fetch.hits(), 2);
}

#[test]
fn key_12_key_13_rotation_new_kid_after_one_refetch_and_a_dropped_kid_stops_at_once() {
    let w = World::new(Scripted::new([ok(&set(&["old"]))]));
    let ks = Keystore::new(600);
    assert_eq!(w.key(&ks, NOW, "old"), Ok(Some("old".into())));
    // The client adds a new key and drops the old one.
    w.fetch.then(ok(&set(&["new"])));
    // Less than a minute after the fetch: the new kid is unknown, with no refetch.
    assert_eq!(w.key(&ks, NOW + 59, "new"), Ok(None));
    assert_eq!(w.fetch.hits(), 1);
    // From a minute on: one forced refetch, and the set is replaced whole.
    assert_eq!(w.key(&ks, NOW + 60, "new"), Ok(Some("new".into())));
    assert_eq!(w.fetch.hits(), 2);
    assert_eq!(w.key(&ks, NOW + 61, "old"), Ok(None), "dropped at once");
    assert_eq!(w.fetch.hits(), 2);
}

#[test]
fn key_13_random_kids_refetch_at_most_once_a_minute() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(600);
    w.key(&ks, NOW, "a").unwrap();
    for t in 0..300 {
        assert_eq!(w.key(&ks, NOW + t, &format!("random-{t}")), Ok(None));
    }
    // Fetches at 0, 60, 120, 180, 240.
    assert_eq!(w.fetch.hits(), 5);
}

#[test]
fn key_13_another_instance_s_refetch_is_found_in_the_store() {
    let w = World::new(Scripted::new([ok(&set(&["old"]))]));
    let (one, two) = (Keystore::new(600), Keystore::new(600));
    w.key(&one, NOW, "old").unwrap();
    w.key(&two, NOW + 1, "old").unwrap();
    assert_eq!(w.fetch.hits(), 1, "the second instance read the store");
    w.fetch.then(ok(&set(&["old", "new"])));
    assert_eq!(w.key(&one, NOW + 70, "new"), Ok(Some("new".into())));
    assert_eq!(w.fetch.hits(), 2);
    // The second instance's set is 50 s old: no fetch of its own, the store has the new one.
    assert_eq!(w.key(&two, NOW + 50, "new"), Ok(Some("new".into())));
    assert_eq!(w.fetch.hits(), 2);
}

#[test]
fn key_14_an_outage_serves_the_cached_set_for_an_hour_then_503() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(600);
    w.key(&ks, NOW, "a").unwrap();
    w.fetch.then(Err(FetchError::Timeout));
    assert_eq!(w.key(&ks, NOW + 600, "a"), Ok(Some("a".into())), "stale");
    assert_eq!(w.fetch.hits(), 2);
    // No retry of the URI for 30 s.
    for t in 600..630 {
        assert_eq!(w.key(&ks, NOW + t, "a"), Ok(Some("a".into())));
    }
    assert_eq!(w.fetch.hits(), 2);
    assert_eq!(w.key(&ks, NOW + 630, "a"), Ok(Some("a".into())));
    assert_eq!(w.fetch.hits(), 3);
    // An unknown kid while the keystore is down: the key may be new, so 503, not a refusal.
    assert_eq!(w.key(&ks, NOW + 700, "new"), Err(KeystoreUnavailable));
    assert_eq!(w.key(&ks, NOW + 3599, "a"), Ok(Some("a".into())));
    assert_eq!(w.key(&ks, NOW + 3600, "a"), Err(KeystoreUnavailable));
    // The keystore is back.
    w.fetch.then(ok(&set(&["a"])));
    assert_eq!(w.key(&ks, NOW + 3630, "a"), Ok(Some("a".into())));
}

#[test]
fn key_14_no_retry_for_30_seconds_after_a_failure_with_nothing_cached() {
    let w = World::new(Scripted::new([Err(FetchError::Timeout)]));
    let ks = Keystore::new(600);
    for t in 0..30 {
        assert_eq!(w.key(&ks, NOW + t, "a"), Err(KeystoreUnavailable));
    }
    assert_eq!(w.fetch.hits(), 1);
    w.fetch.then(ok(&set(&["a"])));
    assert_eq!(w.key(&ks, NOW + 30, "a"), Ok(Some("a".into())));
    assert_eq!(w.fetch.hits(), 2);
    let e: ProtocolError = KeystoreUnavailable.into();
    let r = e.to_response(crate::error::Endpoint::Token);
    assert_eq!((r.status, r.header("retry-after")), (503, Some("30")));
}

#[test]
fn key_15_one_fetch_at_a_time_per_uri() {
    let mut fetch = Scripted::new([ok(&set(&["a"]))]);
    fetch.delay = Some(Duration::from_millis(200));
    let w = World::new(fetch);
    let ks = Keystore::new(600);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| assert_eq!(w.key(&ks, NOW, "a"), Ok(Some("a".into()))));
        }
    });
    assert_eq!(w.fetch.hits(), 1);
}

#[test]
fn key_14_store_faults_do_not_fail_a_fetch() {
    struct Broken;
    impl KeyValue for Broken {
        fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Err(StoreError("down".into()))
        }
        fn set(&self, _: &str, _: &[u8]) -> Result<(), StoreError> {
            Err(StoreError("down".into()))
        }
        fn delete(&self, _: &str) -> Result<(), StoreError> {
            Err(StoreError("down".into()))
        }
        fn compare_and_swap(
            &self,
            _: &str,
            _: Option<&[u8]>,
            _: &[u8],
        ) -> Result<Swap, StoreError> {
            Err(StoreError("down".into()))
        }
        fn read_and_swap(
            &self,
            _: &str,
            _: &mut NextValue<'_>,
        ) -> Result<Option<Swap>, StoreError> {
            Err(StoreError("down".into()))
        }
        fn increment(&self, _: &str, _: i64) -> Result<i64, StoreError> {
            Err(StoreError("down".into()))
        }
        fn list_keys(&self, _: Option<&str>) -> Result<KeyPage, StoreError> {
            Err(StoreError("down".into()))
        }
    }
    let fetch = Scripted::new([ok(&set(&["a"]))]);
    let deps = Deps {
        store: &Broken,
        clock: &FixedClock(NOW),
        random: &CountingRandom::default(),
        fetch: &fetch,
    };
    let uri = allowed().jwks_uri(URI).unwrap();
    let ks = Keystore::new(600);
    let key = ks.key(&deps, &uri, "a", KeyUse::Signature).unwrap();
    assert_eq!(key.map(|k| k.kid.clone()), Some("a".into()));
}

/// KEY-12, KEY-15 (issue 17): an instance keeps at most [`MAX_URIS`] URIs in memory; beyond
/// it the least recently used goes, and using it again reads its stored copy (one store
/// call) without a fetch while that copy is fresh. The URIs still in memory cost nothing.
#[test]
fn key_12_key_15_memory_keeps_a_bounded_number_of_uris_and_an_evicted_one_reads_the_store() {
    let w = World::new(Scripted::new([ok(&set(&["a"]))]));
    let ks = Keystore::new(600);
    let uri = |i: usize| {
        allowed()
            .jwks_uri(&format!(
                "https://keystore.directory.openbankingbrasil.org.br/org/sw{i}/application.jwks"
            ))
            .unwrap()
    };
    let ask = |i: usize, at: UnixTime| {
        let clock = FixedClock(at);
        let deps = Deps {
            store: &w.store,
            clock: &clock,
            random: &w.random,
            fetch: &w.fetch,
        };
        ks.key(&deps, &uri(i), "a", KeyUse::Signature)
            .map(|k| k.map(|k| k.kid.clone()))
    };
    for i in 0..MAX_URIS {
        assert_eq!(ask(i, NOW), Ok(Some("a".into())));
    }
    assert_eq!((w.fetch.hits(), ks.cached_uris()), (MAX_URIS, MAX_URIS));
    // URI 0 is used again, so URI 1 is now the least recently used.
    let calls = w.store.calls();
    assert_eq!(ask(0, NOW + 1), Ok(Some("a".into())));
    assert_eq!(w.store.calls(), calls, "a memory hit");
    // One more URI: fetched, and URI 1 gives way.
    assert_eq!(ask(MAX_URIS, NOW + 2), Ok(Some("a".into())));
    assert_eq!((w.fetch.hits(), ks.cached_uris()), (MAX_URIS + 1, MAX_URIS));
    let calls = w.store.calls();
    assert_eq!(ask(0, NOW + 3), Ok(Some("a".into())));
    assert_eq!(w.store.calls(), calls, "URI 0 stayed in memory");
    // URI 1 again: its stored copy, one read, no fetch.
    assert_eq!(ask(1, NOW + 4), Ok(Some("a".into())));
    assert_eq!(
        w.fetch.hits(),
        MAX_URIS + 1,
        "no fetch while the copy is fresh"
    );
    assert_eq!(w.store.calls(), calls + 1, "one store read");
    assert_eq!(ks.cached_uris(), MAX_URIS);
}
