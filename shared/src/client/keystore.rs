//! Keys published at a `jwks_uri`: clients' `application.jwks` and the Directory's
//! `openbanking.jwks` (registration.md KEY-8, KEY-10…17).
//!
//! - [`AllowedOrigins`] is `jwks_allowed_hosts`, the origins anything may be fetched from
//!   (KEY-10); a [`JwksUri`] exists only for a URL on it, so no code can fetch another one.
//! - [`Keystore`] is the cache: one set per URI, in instance memory (shared by the requests an
//!   instance interleaves) and in the store under [`keys::jwks`], so that a new instance starts
//!   warm. A memory hit costs no store call and no outbound request (KEY-15).
//!
//! The rules, each in one place below: the fetch (GET, no redirect, 3 s, 256 KiB, 200 only, a
//! JSON object with `keys`: [`fetch_set`]); which keys are admitted ([`admit`], KEY-11); fresh
//! for `client_jwks_ttl` (Cache-Control `max-age` shortens it), usable through an outage until
//! an hour after the fetch ([`Lifetimes`], KEY-12); an unknown `kid` refetches at most once a
//! minute per URI (KEY-13); a failed fetch serves what is cached, or fails the request with 503
//! and waits 30 s before the next try (KEY-14); one fetch at a time per URI (KEY-15).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::fetch::{FetchError, FetchRequest};
use crate::clock::UnixTime;
use crate::config::{ConfigError, Variables, var};
use crate::endpoints::Deps;
use crate::error::ProtocolError;
use crate::jose::b64url;
use crate::jose::jwk::{KeyUse, PublicJwk, RawJwk};
use crate::store::{keys, purge, record};

/// `jwks_allowed_hosts` when the variable is empty: the Directory's production and sandbox
/// keystores (KEY-10, BR-DCR 9.2).
pub const DEFAULT_ALLOWED_HOSTS: &str = "https://keystore.directory.openbankingbrasil.org.br,\
                                         https://keystore.sandbox.directory.openbankingbrasil.org.br";

/// `client_jwks_ttl` when the variable is empty: 10 minutes (KEY-12).
pub const DEFAULT_TTL: i64 = 600;

/// The longest `client_jwks_ttl`: a set is never fresher than it can be stale.
pub const MAX_TTL: i64 = STALE_FOR;

/// How long after its fetch a set still verifies when its keystore cannot be reached: an hour,
/// the Directory's rescan period (KEY-12, KEY-14, BR-DCR 9.4).
pub const STALE_FOR: i64 = 3600;

/// An unknown `kid` refetches a URI at most once in this many seconds, whatever the kid
/// (KEY-13). It is also the shortest freshness a `max-age` can set: a keystore that says
/// `max-age=0` would otherwise make every request a fetch (KEY-15) [decision].
pub const REFETCH_EVERY: i64 = 60;

/// After a failed fetch, the URI is not tried again for this long; also the `Retry-After` of
/// the 503 (KEY-14).
pub const RETRY_AFTER: i64 = 30;

/// The most URIs an instance keeps in memory, with their sets and their refetch and retry
/// times: beyond it the least recently used goes. The stored copy is the second level, so
/// using an evicted URI again costs one store read, never a fetch while that copy is fresh
/// (KEY-12, KEY-15). Without a bound the cache grew with every distinct `jwks_uri` an
/// instance met (issue 17); 256 sets of a few keys each are a few hundred KiB.
pub const MAX_URIS: usize = 256;

/// The whole exchange of one fetch (KEY-10).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest JWK Set body read (KEY-10).
pub const MAX_SET_BYTES: usize = 256 * 1024;

/// Members that only a private (or symmetric) key has: a set holding one is refused whole
/// (KEY-11 [decision]: a keystore that publishes a private key is broken or compromised).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// One origin, `scheme://host[:port]`, as Spin's `allowed_outbound_hosts` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    https: bool,
    /// Lower case; an IPv6 literal keeps its brackets.
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://authority` (`rest` of a URL is what follows the authority).
    fn parse_prefix(text: &str) -> Option<(Self, &str)> {
        let (scheme, rest) = text.split_once("://")?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return None;
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(end);
        let (host, port) = if authority.starts_with('[') {
            let close = authority.find(']')?;
            let (host, after) = authority.split_at(close + 1);
            let inner = &host[1..host.len() - 1];
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let host_ok = host.starts_with('[')
            || (!host.is_empty()
                && host.len() <= 253
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
        if !host_ok {
            return None;
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse().ok().filter(|p| *p != 0)?
            }
            Some(_) => return None,
        };
        Some((
            Self {
                https,
                host: host.to_ascii_lowercase(),
                port,
            },
            rest,
        ))
    }

    /// 127.0.0.0/8, `localhost` or `[::1]` (KEY-10): the only hosts plain http may reach. A
    /// name such as `127.attacker.example` is not one.
    fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
            || self
                .host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .and_then(|h| h.parse::<std::net::Ipv6Addr>().ok())
                .is_some_and(|ip| ip.is_loopback())
    }
}

/// `jwks_allowed_hosts`: the origins from which a `jwks_uri` may be fetched (KEY-10). Spin's
/// `allowed_outbound_hosts` must allow the same origins (spin.toml mirrors the variable), but
/// this list is the rule: Spin's refusal is only the second wall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<Origin>);

impl AllowedOrigins {
    /// Reads `jwks_allowed_hosts`; empty or absent means [`DEFAULT_ALLOWED_HOSTS`].
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let text = vars
            .get(var::JWKS_ALLOWED_HOSTS)?
            .filter(|t| !t.trim().is_empty());
        Self::parse(text.as_deref().unwrap_or(DEFAULT_ALLOWED_HOSTS))
            .map_err(|why| ConfigError::new(var::JWKS_ALLOWED_HOSTS, why))
    }

    /// Parses comma-separated origins `scheme://host[:port]`: https, or http for a loopback
    /// host only; no path, no wildcard. The error names the entry by position.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut origins = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).enumerate() {
            let origin = match Origin::parse_prefix(entry) {
                Some((origin, "")) => origin,
                _ => {
                    return Err(format!(
                        "entry {} is not an origin scheme://host[:port] (no path, no wildcard)",
                        i + 1
                    ));
                }
            };
            if !origin.https && !origin.is_loopback() {
                return Err(format!(
                    "entry {} must be https (plain http only for a loopback host)",
                    i + 1
                ));
            }
            origins.push(origin);
        }
        Ok(Self(origins))
    }

    /// The URL as a [`JwksUri`], if it is a plain absolute URL (no user info, no fragment,
    /// visible ASCII) whose origin is on the list (KEY-10).
    pub fn jwks_uri(&self, url: &str) -> Result<JwksUri, JwksUriError> {
        let origin = fetchable_origin(url)?;
        if !self.0.contains(&origin) {
            return Err(JwksUriError::NotAllowed);
        }
        Ok(JwksUri(url.to_string()))
    }
}

/// The origin of `url` if it has the form of a URL keys may be fetched from, whatever the
/// list: plain, absolute, https or loopback http (KEY-10).
fn fetchable_origin(url: &str) -> Result<Origin, JwksUriError> {
    if url.len() > 2048
        || url.bytes().any(|b| !(0x21..=0x7e).contains(&b))
        || url.contains(['#', '@', '\\'])
    {
        return Err(JwksUriError::Malformed);
    }
    let (origin, _) = Origin::parse_prefix(url).ok_or(JwksUriError::Malformed)?;
    if !origin.https && !origin.is_loopback() {
        return Err(JwksUriError::NotHttps);
    }
    Ok(origin)
}

/// Whether `url` has the form of a `jwks_uri` (KEY-10, REG-11): what a registration can
/// check without the allowed list.
pub fn check_jwks_uri_form(url: &str) -> Result<(), JwksUriError> {
    fetchable_origin(url).map(drop)
}

/// Why a URL is no [`JwksUri`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwksUriError {
    /// Not a plain absolute http(s) URL.
    Malformed,
    /// Plain http to a host that is not loopback.
    NotHttps,
    /// Its origin is not on `jwks_allowed_hosts`.
    NotAllowed,
}

impl std::fmt::Display for JwksUriError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "is not a plain absolute URL",
            Self::NotHttps => "must be https (plain http only for a loopback host)",
            Self::NotAllowed => "is not on jwks_allowed_hosts",
        })
    }
}

/// A URL this server may fetch keys from: built only by [`AllowedOrigins::jwks_uri`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JwksUri(String);

impl JwksUri {
    /// The URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `client_jwks_ttl`: seconds a fetched set stays fresh (KEY-12); empty means
/// [`DEFAULT_TTL`]. From [`REFETCH_EVERY`] to [`MAX_TTL`].
pub fn load_ttl(vars: &dyn Variables) -> Result<i64, ConfigError> {
    let Some(text) = vars
        .get(var::CLIENT_JWKS_TTL)?
        .filter(|t| !t.trim().is_empty())
    else {
        return Ok(DEFAULT_TTL);
    };
    text.trim()
        .parse::<i64>()
        .ok()
        .filter(|t| (REFETCH_EVERY..=MAX_TTL).contains(t))
        .ok_or_else(|| {
            ConfigError::new(
                var::CLIENT_JWKS_TTL,
                format!("must be a whole number of seconds from {REFETCH_EVERY} to {MAX_TTL}"),
            )
        })
}

/// No key set can be had: nothing was fetched, or the last one is past its stale time, and the
/// keystore does not answer (KEY-14). The request fails with 503 and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeystoreUnavailable;

impl From<KeystoreUnavailable> for ProtocolError {
    fn from(_: KeystoreUnavailable) -> Self {
        ProtocolError::RetryLater(
            "the key set of the client cannot be fetched now",
            RETRY_AFTER as u32,
        )
    }
}

/// A fetched set, as cached: its admitted keys and its times (KEY-12).
#[derive(Debug)]
struct CachedSet {
    keys: Vec<Arc<PublicJwk>>,
    fetched_at: UnixTime,
    fresh_until: UnixTime,
    stale_until: UnixTime,
}

/// Which key of a set a caller wants.
#[derive(Debug, Clone, Copy)]
enum Pick<'a> {
    /// The one with this `kid`: a JWS names its key (KEY-9).
    Kid(&'a str),
    /// The first in the set's order: the AS chooses the key it encrypts to (TKN-4).
    First,
}

impl CachedSet {
    /// The key `pick` names for `purpose` (KEY-9: `kid` and `use` select it; [`admit`]
    /// dropped any ambiguity).
    fn find(&self, pick: Pick<'_>, purpose: KeyUse) -> Option<Arc<PublicJwk>> {
        self.keys
            .iter()
            .filter(|k| k.key_use == purpose)
            .find(|k| match pick {
                Pick::Kid(kid) => k.kid == kid,
                Pick::First => true,
            })
            .cloned()
    }

    fn is_fresh(&self, now: UnixTime) -> bool {
        now < self.fresh_until
    }

    fn is_usable(&self, now: UnixTime) -> bool {
        now < self.stale_until
    }

    /// Whether an unknown `kid` may refetch now (KEY-13): the last fetch is a minute old.
    fn may_refetch(&self, now: UnixTime) -> bool {
        now.saturating_sub(self.fetched_at) >= REFETCH_EVERY
    }
}

/// The stored copy, `jwks:{sha256(uri)}` (KEY-12), in a versioned record that expires at
/// `stale_until`. Its keys are written back as public JWKs and admitted again when read.
#[derive(Serialize, Deserialize)]
struct StoredSet {
    keys: Vec<Value>,
    fetched_at: UnixTime,
    fresh_until: UnixTime,
    stale_until: UnixTime,
}

impl StoredSet {
    fn of(set: &CachedSet) -> Self {
        use rsa::traits::PublicKeyParts;
        Self {
            keys: set
                .keys
                .iter()
                .map(|k| {
                    serde_json::json!({
                        "kty": "RSA",
                        "kid": k.kid,
                        "use": k.key_use.name(),
                        "alg": k.key_use.alg(),
                        "n": b64url(&k.key.n().to_bytes_be()),
                        "e": b64url(&k.key.e().to_bytes_be()),
                    })
                })
                .collect(),
            fetched_at: set.fetched_at,
            fresh_until: set.fresh_until,
            stale_until: set.stale_until,
        }
    }

    fn into_cached(self) -> Option<CachedSet> {
        Some(CachedSet {
            keys: admit(self.keys).ok()?.keys,
            fetched_at: self.fetched_at,
            fresh_until: self.fresh_until,
            stale_until: self.stale_until,
        })
    }
}

/// What an instance knows of one URI.
#[derive(Default)]
struct Slot {
    /// The newest set this instance has, and when the URI may be fetched again after a failure.
    state: Mutex<SlotState>,
    /// Held through a fetch: one fetch at a time per URI (KEY-15).
    fetching: Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    set: Option<Arc<CachedSet>>,
    retry_not_before: UnixTime,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves a slot half-written (each write is one assignment).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Slot {
    fn set(&self) -> Option<Arc<CachedSet>> {
        lock(&self.state).set.clone()
    }

    /// Keeps `set` unless this instance already has a newer one.
    fn adopt(&self, set: Arc<CachedSet>) {
        let mut state = lock(&self.state);
        if state
            .set
            .as_ref()
            .is_none_or(|mine| mine.fetched_at <= set.fetched_at)
        {
            state.set = Some(set);
        }
    }
}

/// The per-instance cache of JWK Sets by URI, backed by the store (KEY-12…15). Safe to share
/// between the requests one instance interleaves (design.md: a WASIp3 instance serves up to
/// 16 at once); a component keeps one for its lifetime.
pub struct Keystore {
    ttl: i64,
    slots: Mutex<Slots>,
}

/// The instance's slots by URI, at most [`MAX_URIS`] of them, each with the tick of its last
/// use.
#[derive(Default)]
struct Slots {
    by_uri: HashMap<JwksUri, (Arc<Slot>, u64)>,
    tick: u64,
}

impl Slots {
    /// The slot of `uri`, made if absent; the least recently used gives way beyond
    /// [`MAX_URIS`].
    fn get(&mut self, uri: &JwksUri) -> Arc<Slot> {
        // One tick per lookup: 2^64 of them never wrap.
        self.tick = self.tick.saturating_add(1);
        let tick = self.tick;
        if let Some((slot, used)) = self.by_uri.get_mut(uri) {
            *used = tick;
            return slot.clone();
        }
        if self.by_uri.len() >= MAX_URIS {
            self.evict();
        }
        let slot = Arc::<Slot>::default();
        self.by_uri.insert(uri.clone(), (slot.clone(), tick));
        slot
    }

    /// Drops the least recently used slot that no request holds: a request that holds one
    /// may be fetching its URI, and a second slot for that URI would let a second fetch start
    /// (KEY-15). An instance serves at most 16 requests at once (design.md), so one is free.
    fn evict(&mut self) {
        let victim = self
            .by_uri
            .iter()
            .filter(|(_, (slot, _))| Arc::strong_count(slot) == 1)
            .min_by_key(|(_, (_, used))| *used)
            .map(|(uri, _)| uri.clone());
        if let Some(uri) = victim {
            self.by_uri.remove(&uri);
        }
    }
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystore")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Why a fetch gave no set; logged, never sent.
#[derive(Debug)]
enum FetchFailure {
    Transport(FetchError),
    Status(u16),
    NotAJwkSet,
    PrivateMembers,
}

impl std::fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "{e}"),
            Self::Status(s) if (300..400).contains(s) => {
                write!(f, "status {s} (redirects are not followed)")
            }
            Self::Status(s) => write!(f, "status {s} (only 200 is accepted)"),
            Self::NotAJwkSet => f.write_str("the body is not a JSON object with a keys array"),
            Self::PrivateMembers => f.write_str("the set holds private key members"),
        }
    }
}

/// A warning for the operator. The URL is a public keystore address, never a secret.
fn warn(uri: &JwksUri, what: std::fmt::Arguments<'_>) {
    eprintln!("keystore {:?}: {what}", uri.as_str());
}

impl Keystore {
    /// An empty cache whose sets stay fresh for `ttl` seconds (`client_jwks_ttl`).
    pub fn new(ttl: i64) -> Self {
        Self {
            ttl: ttl.clamp(REFETCH_EVERY, MAX_TTL),
            slots: Mutex::new(Slots::default()),
        }
    }

    /// Reads `client_jwks_ttl`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self::new(load_ttl(vars)?))
    }

    fn slot(&self, uri: &JwksUri) -> Arc<Slot> {
        lock(&self.slots).get(uri)
    }

    /// How many URIs this instance keeps in memory (at most [`MAX_URIS`]).
    pub fn cached_uris(&self) -> usize {
        lock(&self.slots).by_uri.len()
    }

    /// The key `kid` for `purpose` published at `uri` (KEY-8, KEY-12…15).
    ///
    /// `Ok(None)`: the keystore was asked (or was asked less than a minute ago) and has no such
    /// key: the endpoint's own refusal (KEY-13). `Err`: no set can be had and the request must
    /// fail with 503 (KEY-14); so does an unknown `kid` when the refetch it needed failed, since
    /// the key may well be new. A fresh set in memory with the `kid` costs nothing else.
    pub fn key(
        &self,
        deps: &Deps<'_>,
        uri: &JwksUri,
        kid: &str,
        purpose: KeyUse,
    ) -> Result<Option<Arc<PublicJwk>>, KeystoreUnavailable> {
        self.pick(deps, uri, Pick::Kid(kid), purpose)
    }

    /// The first key for `purpose` published at `uri`: the key a client's id_tokens are
    /// encrypted to (TKN-4). Fetched, cached and refetched as [`Keystore::key`] does: a set
    /// with no such key counts as an unknown `kid`, so a key the client has just published is
    /// found by one forced refetch, at most once a minute (KEY-13).
    pub fn first_key(
        &self,
        deps: &Deps<'_>,
        uri: &JwksUri,
        purpose: KeyUse,
    ) -> Result<Option<Arc<PublicJwk>>, KeystoreUnavailable> {
        self.pick(deps, uri, Pick::First, purpose)
    }

    fn pick(
        &self,
        deps: &Deps<'_>,
        uri: &JwksUri,
        pick: Pick<'_>,
        purpose: KeyUse,
    ) -> Result<Option<Arc<PublicJwk>>, KeystoreUnavailable> {
        let now = deps.clock.now();
        let slot = self.slot(uri);
        if let Some(set) = slot.set().filter(|s| s.is_fresh(now)) {
            if let Some(key) = set.find(pick, purpose) {
                return Ok(Some(key));
            }
            if !set.may_refetch(now) {
                // Another instance may have refetched since: its copy is in the store.
                let newer = read_stored(deps, uri, now)
                    .set
                    .filter(|s| s.fetched_at > set.fetched_at);
                return Ok(newer.and_then(|newer| {
                    let newer = Arc::new(newer);
                    slot.adopt(newer.clone());
                    newer.find(pick, purpose)
                }));
            }
        }
        // KEY-15: one fetch at a time. Whoever waited here finds the set the fetch brought.
        let _fetching = lock(&slot.fetching);
        let mut best = slot.set();
        if let Some(set) = best.as_ref().filter(|s| s.is_fresh(now))
            && let Some(key) = set.find(pick, purpose)
        {
            return Ok(Some(key));
        }
        let stored = read_stored(deps, uri, now);
        if let Some(set) = stored.set
            && best.as_ref().is_none_or(|b| b.fetched_at < set.fetched_at)
        {
            let set = Arc::new(set);
            slot.adopt(set.clone());
            best = Some(set);
        }
        if let Some(set) = best.as_ref().filter(|s| s.is_fresh(now)) {
            if let Some(key) = set.find(pick, purpose) {
                return Ok(Some(key));
            }
            if !set.may_refetch(now) {
                return Ok(None);
            }
        }
        // A fetch is due: the set is stale or absent, or an unknown kid may refetch (KEY-13).
        let in_backoff = lock(&slot.state).retry_not_before > now;
        let failed = if in_backoff {
            None
        } else {
            match fetch_set(deps, uri) {
                Ok((keys, max_age)) => {
                    let fresh_for = max_age.map_or(self.ttl, |m| m.clamp(REFETCH_EVERY, self.ttl));
                    let set = Arc::new(CachedSet {
                        keys,
                        fetched_at: now,
                        fresh_until: now.saturating_add(fresh_for),
                        stale_until: now.saturating_add(STALE_FOR),
                    });
                    write_stored(deps, uri, &set, stored.present);
                    slot.adopt(set.clone());
                    return Ok(set.find(pick, purpose));
                }
                Err(why) => Some(why),
            }
        };
        if let Some(why) = &failed {
            lock(&slot.state).retry_not_before = now.saturating_add(RETRY_AFTER);
            warn(uri, format_args!("fetch failed: {why}"));
        }
        // KEY-14: verify with what is cached, until its stale time.
        match best.filter(|s| s.is_usable(now)) {
            Some(set) => {
                let key = set.find(pick, purpose).ok_or(KeystoreUnavailable)?;
                if failed.is_some() {
                    warn(
                        uri,
                        format_args!(
                            "serving the set fetched at {} until {}",
                            set.fetched_at, set.stale_until
                        ),
                    );
                }
                Ok(Some(key))
            }
            None => Err(KeystoreUnavailable),
        }
    }
}

/// The stored copy as read: the set, if usable, and whether any value was there (a record
/// already announced to the purge index).
struct Read {
    set: Option<CachedSet>,
    present: bool,
}

/// Reads `jwks:{sha256(uri)}`. The store is a cache here: a fault reads as nothing stored.
fn read_stored(deps: &Deps<'_>, uri: &JwksUri, now: UnixTime) -> Read {
    match deps.store.get(&keys::jwks(uri.as_str())) {
        Ok(Some(raw)) => Read {
            set: record::decode::<StoredSet>(raw, now).and_then(|r| r.data.into_cached()),
            present: true,
        },
        Ok(None) => Read {
            set: None,
            present: false,
        },
        Err(e) => {
            // Announced again if written: an entry too many deletes nothing twice.
            warn(uri, format_args!("reading the stored copy failed: {e}"));
            Read {
                set: None,
                present: false,
            }
        }
    }
}

/// Writes the stored copy, expiring at its stale time; a new key is announced to the purge
/// index first (a rewritten one is announced again by the sweep, which reads its `exp`).
/// Last writer wins between instances (KEY-15). A fault is logged: memory still has the set.
fn write_stored(deps: &Deps<'_>, uri: &JwksUri, set: &CachedSet, present: bool) {
    let key = keys::jwks(uri.as_str());
    let written = (|| {
        if !present {
            purge::announce(deps.store, set.stale_until, &[&key])?;
        }
        record::put(
            deps.store,
            &key,
            &StoredSet::of(set),
            set.stale_until,
            deps.random,
        )
    })();
    if let Err(e) = written {
        warn(uri, format_args!("writing the stored copy failed: {e}"));
    }
}

/// One fetch (KEY-10): GET through the runtime, no redirect, [`FETCH_TIMEOUT`],
/// [`MAX_SET_BYTES`], status 200 only, a JSON object with a `keys` array, whatever the content
/// type. Returns the admitted keys and the `max-age` the response allows, if any.
fn fetch_set(
    deps: &Deps<'_>,
    uri: &JwksUri,
) -> Result<(Vec<Arc<PublicJwk>>, Option<i64>), FetchFailure> {
    let response = deps
        .fetch
        .get(&FetchRequest {
            url: uri.as_str(),
            timeout: FETCH_TIMEOUT,
            max_body: MAX_SET_BYTES,
        })
        .map_err(FetchFailure::Transport)?;
    if response.status != 200 {
        return Err(FetchFailure::Status(response.status));
    }
    if response.body.len() > MAX_SET_BYTES {
        return Err(FetchFailure::Transport(FetchError::TooLarge));
    }
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(&response.body).map_err(|_| FetchFailure::NotAJwkSet)?;
    let admitted = admit(set.keys).map_err(|()| FetchFailure::PrivateMembers)?;
    if admitted.skipped > 0 {
        warn(
            uri,
            format_args!(
                "{} of the keys are not admitted (RSA of 2048 bits or more with a kid, \
                 PS256 for signatures, RSA-OAEP for encryption, unique kids; KEY-11)",
                admitted.skipped
            ),
        );
    }
    let max_age = response.header("cache-control").and_then(max_age);
    Ok((admitted.keys, max_age))
}

/// `max-age` of a `Cache-Control` value (RFC 9111 5.2.2.1); `no-store` and `no-cache` count
/// as 0. It may only shorten the configured freshness (KEY-12).
fn max_age(value: &str) -> Option<i64> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(0);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let seconds = seconds.trim().trim_matches('"');
        if seconds.is_empty() || !seconds.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // An absurd number is as good as "long": the configured freshness caps it anyway.
        Some(seconds.parse::<i64>().unwrap_or(i64::MAX))
    })
}

/// What [`admit`] kept, and how many keys it skipped (for the log).
struct Admitted {
    keys: Vec<Arc<PublicJwk>>,
    skipped: usize,
}

/// The keys a set may contribute (KEY-11): RSA, modulus ≥ 2048 bits, a `kid`; for signatures
/// `use` sig or absent and `alg` PS256 or absent; for id_token encryption (TKN-4) `use` enc and
/// `alg` RSA-OAEP or absent. The rest is skipped and counted. Two keys of one use sharing a
/// `kid` cannot be told apart (KEY-9): both are dropped. `Err` when any key holds a private
/// member.
fn admit(raw: Vec<Value>) -> Result<Admitted, ()> {
    if raw.iter().any(|jwk| {
        jwk.as_object()
            .is_some_and(|o| PRIVATE_MEMBERS.iter().any(|m| o.contains_key(*m)))
    }) {
        return Err(());
    }
    let total = raw.len();
    let mut admitted: Vec<PublicJwk> = Vec::new();
    let mut ambiguous: Vec<(String, KeyUse)> = Vec::new();
    for jwk in raw {
        let Ok(jwk) = serde_json::from_value::<RawJwk>(jwk) else {
            continue;
        };
        let purpose = if jwk.is_encryption_key() {
            KeyUse::Encryption
        } else {
            KeyUse::Signature
        };
        let Ok(key) = jwk.into_public(purpose) else {
            continue;
        };
        if admitted
            .iter()
            .any(|k| k.kid == key.kid && k.key_use == key.key_use)
        {
            ambiguous.push((key.kid, key.key_use));
            continue;
        }
        admitted.push(key);
    }
    let keys: Vec<Arc<PublicJwk>> = admitted
        .into_iter()
        .filter(|k| !ambiguous.contains(&(k.kid.clone(), k.key_use)))
        .map(Arc::new)
        .collect();
    Ok(Admitted {
        skipped: total - keys.len(),
        keys,
    })
}

#[cfg(test)]
#[path = "keystore_tests.rs"]
mod tests;
