//! The key schema, one function per key shape. Secrets and client-chosen strings never
//! appear in a key as they are: they are hashed.
//!
//! The store has no TTL (design.md, State). Every record or counter that stops mattering at a
//! known time is announced, when it is created, in the purge index ([`purge_count`],
//! [`purge_entry`]), which the sweep of [`super::purge`] walks bucket by bucket. Keys of the
//! [`TIMED`] shapes also end with `:<unix time>` ([`forget_after`]), and earlier versions
//! wrote purge tags ([`purge_tag`]) for records whose readers hold only an id: the operator's
//! listing sweep ([`super::purge::sweep_listing`]) reads those names, for the keys written
//! before the index. The few keys left (a holder's counters and not-before, the sweep's turn
//! and cursor) are one per holder or one in all.

use crate::clock::UnixTime;
use crate::jose::b64url;

/// The prefixes of the key shapes that end with `:<unix time>` ([`forget_after`]). A new
/// shape joins by ending with that time and being listed here (BCA-31's counters do).
pub const TIMED: [&str; 8] = [
    "at:", "rt:", "purge:", "rate:", "pending:", "jti:", "req_jti:", "lht_jti:",
];

/// The time in the name of a key of a [`TIMED`] shape: from then on, nothing reads it and the
/// sweep may drop it. `None` for every other key (and for the untimed keys that older versions
/// wrote under these prefixes).
pub fn forget_after(key: &str) -> Option<UnixTime> {
    if !TIMED.iter().any(|prefix| key.starts_with(prefix)) {
        return None;
    }
    let (_, time) = key.rsplit_once(':')?;
    unix_time(time)
}

/// A decimal Unix time as names and tokens carry it: digits only, at most 12 of them.
fn unix_time(text: &str) -> Option<UnixTime> {
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The end a token of this server carries (access and refresh tokens,
/// [`crate::access_token::end_of`]): what names its record with a time.
fn token_end(token: &str) -> Option<UnixTime> {
    crate::access_token::end_of(token).filter(|end| *end >= 0)
}

/// The records a purge tag stands for: each shares the tag's id (a digest) and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A backchannel request, its pace and its redemption marker, under its reference.
    Request,
    /// An AD-generated hint id and its use marker (HINT-13).
    AdHint,
    /// A consent (CONS-1).
    Consent,
    /// An id_token cancellation by `jti` (HINT-10).
    IdTokenCancelled,
    /// The single-use marker of a client assertion's `jti` (CLI-6). Markers now carry their
    /// time ([`JtiMarker`]) and get no tag; the tags an earlier version wrote are still read,
    /// so that the sweep drops its markers.
    AssertionJti,
    /// The same, of a request object's `jti` (BCA-11).
    RequestObjectJti,
    /// The same, of an AS-generated login_hint_token's `jti` (HINT-15).
    LoginHintTokenJti,
}

impl Family {
    const ALL: [Family; 7] = [
        Family::Request,
        Family::AdHint,
        Family::Consent,
        Family::IdTokenCancelled,
        Family::AssertionJti,
        Family::RequestObjectJti,
        Family::LoginHintTokenJti,
    ];

    fn name(self) -> &'static str {
        match self {
            Family::Request => "req",
            Family::AdHint => "ad_hint",
            Family::Consent => "consent",
            Family::IdTokenCancelled => "idt_cancelled",
            Family::AssertionJti => "jti",
            Family::RequestObjectJti => "req_jti",
            Family::LoginHintTokenJti => "lht_jti",
        }
    }

    /// The prefixes of the family's keys; each is followed by the tag's id.
    fn prefixes(self) -> &'static [&'static str] {
        match self {
            Family::Request => &["auth_req:", "auth_req_poll:", "auth_req_redeemed:"],
            Family::AdHint => &["ad_hint:", "ad_hint_used:"],
            Family::Consent => &["consent:"],
            Family::IdTokenCancelled => &["idt_cancelled:"],
            Family::AssertionJti => &["jti:"],
            Family::RequestObjectJti => &["req_jti:"],
            Family::LoginHintTokenJti => &["lht_jti:"],
        }
    }
}

/// The purge tag of the `family` records under `id` (a digest: a request's reference, or the
/// digest of a consent id, hint id or `jti`), which stop mattering at `until`. Its value is
/// empty: the name says everything.
pub fn purge_tag(family: Family, id: &str, until: UnixTime) -> String {
    format!("purge:{}:{id}:{until}", family.name())
}

/// The keys a purge tag stands for, to delete before the tag itself; empty for any other key.
pub fn tagged(key: &str) -> Vec<String> {
    let Some(rest) = key.strip_prefix("purge:") else {
        return Vec::new();
    };
    let Some((kind, rest)) = rest.split_once(':') else {
        return Vec::new();
    };
    let Some((id, _)) = rest.rsplit_once(':') else {
        return Vec::new();
    };
    Family::ALL
        .iter()
        .find(|f| f.name() == kind)
        .map(|f| f.prefixes().iter().map(|p| format!("{p}{id}")).collect())
        .unwrap_or_default()
}

/// The width of the purge index's time buckets ([`super::purge::announce`]): an hour, so
/// that a sweep that fell behind (a quiet day) walks few empty buckets.
pub const PURGE_BUCKET: UnixTime = 3600;

/// The end of the purge-index bucket that holds a key which stops mattering at `until`:
/// strictly after `until`, so that nothing is swept before its time. `None` on overflow.
pub fn purge_bucket(until: UnixTime) -> Option<UnixTime> {
    until
        .div_euclid(PURGE_BUCKET)
        .checked_add(1)?
        .checked_mul(PURGE_BUCKET)
}

/// The number of entries announced in the purge-index bucket ending at `bucket_end`: a
/// counter, so that every announcer gets its own slot ([`super::purge::announce`]).
pub fn purge_count(bucket_end: UnixTime) -> String {
    format!("purge_n:{bucket_end}")
}

/// Entry `n` of the purge-index bucket ending at `bucket_end`: the keys, one a line, that the
/// sweep deletes once the bucket's end has passed.
pub fn purge_entry(bucket_end: UnixTime, n: i64) -> String {
    format!("purge_at:{bucket_end}:{n}")
}

/// How far the sweep of the purge index got: `<bucket_end>:<entries done in the next one>`
/// ([`super::purge::sweep`]).
pub const PURGE_CURSOR: &str = "purge_cursor";

/// The counter that decides which request sweeps ([`super::purge::take_turn`]): one key.
pub const SWEEP_TURN: &str = "sweep_turn";

/// SHA-256, base64url: how tokens and client-chosen ids appear in keys.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(text.as_bytes()))
}

/// The width of the time buckets of [`JtiMarker`]s: at least [`JTI_REACH`], so that every
/// marker still in force lies in one of two adjacent buckets.
pub const JTI_BUCKET: UnixTime = 900;

/// How far past `now` the marker of a JWT accepted now can stay in force: a lifetime of at
/// most 600 s (CLI-5, BCA-10; 300 s for QR tokens, HINT-15) from an `iat` or `nbf` at most
/// the skew ahead, plus the skew after `exp`; and a minute more for racing requests that
/// read another instance's clock.
pub const JTI_REACH: UnixTime = 600 + 2 * crate::clock::SKEW + 60;

const _: () = assert!(
    JTI_BUCKET >= JTI_REACH,
    "a marker in force spans two buckets at most"
);

/// The single-use marker of a `jti` of a JWT a client made (assertion, request object, QR
/// token). CLI-6 asks for "a replay cache on (client_id, jti) until exp": a second JWT with a
/// used `jti` is refused whatever its `exp`. The marker is a counter under (client, `jti`,
/// time bucket of its `forget_after`), named with the bucket's end so that the sweep drops it
/// by name, with no purge tag to write ([`TIMED`]); a JWT whose `exp` puts it in the other
/// bucket a marker in force can be in is caught by reading that bucket (`neighbours`).
///
/// Racing JWTs with one `jti` and the same `exp` contend on one counter
/// ([`super::first_use`]). With different buckets each increments its own and then reads the
/// other's: of two racers, at least the later reader sees the other's increment, so at most
/// one wins ([`super::first_use_of_jti`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JtiMarker {
    /// The counter ([`super::first_use`]), in the bucket of `forget_after`.
    pub key: String,
    /// The same counter in the other buckets a marker still in force can be in: one.
    pub neighbours: Vec<String>,
    /// When the JWT stops mattering (its `exp` plus the skew).
    pub forget_after: UnixTime,
}

impl JtiMarker {
    fn new(
        family: Family,
        client_id: &str,
        jti: &str,
        forget_after: UnixTime,
        now: UnixTime,
    ) -> Self {
        let id = format!(
            "{}{}:{}",
            family.prefixes()[0],
            digest(client_id),
            digest(jti)
        );
        let bucket = |t: UnixTime| t.div_euclid(JTI_BUCKET);
        // A marker in force ends in (now, now + JTI_REACH]: two buckets at most, as
        // JTI_BUCKET ≥ JTI_REACH.
        let first = bucket(now + 1);
        let own = bucket(forget_after);
        let key_of = |b: UnixTime| format!("{id}:{}", (b + 1) * JTI_BUCKET);
        Self {
            key: key_of(own),
            neighbours: [first, first + 1]
                .into_iter()
                .filter(|b| *b != own)
                .map(key_of)
                .collect(),
            forget_after,
        }
    }
}

/// The marker that makes a client assertion single-use (CLI-6), until `forget_after` (its
/// `exp` plus the skew).
pub fn assertion_jti(
    client_id: &str,
    jti: &str,
    forget_after: UnixTime,
    now: UnixTime,
) -> JtiMarker {
    JtiMarker::new(Family::AssertionJti, client_id, jti, forget_after, now)
}

/// An access token, under its hash (TKN-1, design.md State), and the end it carries: every
/// token this server issues carries one ([`crate::access_token`]). A token without one maps to
/// the untimed shape of older versions.
pub fn access_token(token: &str) -> String {
    match token_end(token) {
        Some(end) => format!("at:{}:{end}", digest(token)),
        None => format!("at:{}", digest(token)),
    }
}

/// A consent record (CONS-1).
pub fn consent(consent_id: &str) -> String {
    format!("consent:{}", digest(consent_id))
}

/// A backchannel authentication request, under its reference (the hash of its
/// `auth_req_id`, BCA-25).
pub fn auth_request(reference: &str) -> String {
    format!("auth_req:{reference}")
}

/// The polling pace of a request (TOK-7/12), apart from the request so that polls never
/// contend with the holder's decision.
pub fn auth_request_polls(reference: &str) -> String {
    format!("auth_req_poll:{reference}")
}

/// The marker that lets exactly one poll redeem an approved request (TOK-10).
pub fn auth_request_redeemed(reference: &str) -> String {
    format!("auth_req_redeemed:{reference}")
}

/// The marker that makes a request object single-use (BCA-11), until `forget_after` (its
/// `exp` plus the skew), as [`assertion_jti`].
pub fn request_object_jti(
    client_id: &str,
    jti: &str,
    forget_after: UnixTime,
    now: UnixTime,
) -> JtiMarker {
    JtiMarker::new(Family::RequestObjectJti, client_id, jti, forget_after, now)
}

/// The marker that makes an AS-generated login_hint_token single-use (HINT-15), until
/// `forget_after` (its `exp` plus the skew), as [`assertion_jti`].
pub fn login_hint_token_jti(
    client_id: &str,
    jti: &str,
    forget_after: UnixTime,
    now: UnixTime,
) -> JtiMarker {
    JtiMarker::new(Family::LoginHintTokenJti, client_id, jti, forget_after, now)
}

/// An AD-generated hint id (HINT-13, AD-9), under its hash.
pub fn ad_hint(id: &str) -> String {
    format!("ad_hint:{}", digest(id))
}

/// The marker that makes an AD-generated hint id single-use (HINT-13).
pub fn ad_hint_used(id: &str) -> String {
    format!("ad_hint_used:{}", digest(id))
}

/// How many requests a holder has had: the counter that numbers the holder's slots.
pub fn holder_requests(sub: &str) -> String {
    format!("holder_seq:{}", digest(sub))
}

/// Slot `n` of a holder's requests: the reference of one request (AD-2 lists them). The
/// slots are a ring ([`crate::auth_req::HOLDER_WINDOW`] of them), so a holder has a bounded
/// number whatever their history.
pub fn holder_request(sub: &str, n: i64) -> String {
    format!("holder_req:{}:{n}", digest(sub))
}

/// A refresh token, under its hash (design.md, State), and the end it carries, as
/// [`access_token`].
pub fn refresh_token(token: &str) -> String {
    match token_end(token) {
        Some(end) => format!("rt:{}:{end}", digest(token)),
        None => format!("rt:{}", digest(token)),
    }
}

/// The cancellation of one id_token, by its `jti` (BR-CIBA 5.2.2-20, HINT-10).
pub fn id_token_cancelled(jti: &str) -> String {
    format!("idt_cancelled:{}", digest(jti))
}

/// A holder's "not before": id_tokens issued to them earlier are cancelled (HINT-10).
pub fn id_token_not_before(sub: &str) -> String {
    format!("idt_not_before:{}", digest(sub))
}

/// The right to write a holder's first "not before" in time bucket `bucket`
/// ([`crate::id_token::cancel_before`]): a counter, one or two per holder ever cancelled.
pub fn id_token_not_before_first(sub: &str, bucket: i64) -> String {
    format!("idt_not_before_first:{}:{bucket}", digest(sub))
}

/// A client's count of backchannel requests in the minute that ends at `until` (BCA-31).
pub fn client_rate(client_id: &str, until: i64) -> String {
    format!("rate:bca:client:{}:{until}", digest(client_id))
}

/// A client's count of consent lodging requests in the minute that ends at `until` (CONS,
/// issue 16: the store grows with every consent lodged).
pub fn consent_rate(client_id: &str, until: i64) -> String {
    format!("rate:cons:client:{}:{until}", digest(client_id))
}

/// A client's count of `client_credentials` grants in the minute that ends at `until`
/// (TOK-20, issue 16: the store grows with every token issued).
pub fn client_credentials_rate(client_id: &str, until: i64) -> String {
    format!("rate:cc:client:{}:{until}", digest(client_id))
}

/// A holder's count of backchannel requests in the hour that ends at `until` (BCA-31).
pub fn holder_rate(sub: &str, until: i64) -> String {
    format!("rate:bca:holder:{}:{until}", digest(sub))
}

/// A client's count of pending requests made in one bucket, which counts until `until`
/// (BCA-31, [`crate::rate_limit`]).
pub fn client_pending(client_id: &str, until: i64) -> String {
    format!("pending:bca:client:{}:{until}", digest(client_id))
}

/// A holder's count of pending requests made in one bucket, which counts until `until`
/// (BCA-31, [`crate::rate_limit`]).
pub fn holder_pending(sub: &str, until: i64) -> String {
    format!("pending:bca:holder:{}:{until}", digest(sub))
}

/// A dynamic registration (REG-30): `client:{client_id}`, the id this server generated.
pub fn registered_client(client_id: &str) -> String {
    format!("client:{client_id}")
}

/// A registration access token, under its hash (REG-31).
pub fn registration_access_token(rat: &str) -> String {
    registration_access_token_by_hash(&digest(rat))
}

/// The same key, from the hash a registration keeps (REG-36 deletes it).
pub fn registration_access_token_by_hash(hash: &str) -> String {
    format!("rat:{hash}")
}

/// The registration of one `software_id` (REG-29): a counter that only one registration can
/// take from 0 to 1 ([`super::KeyValue::increment`]); DELETE removes it.
pub fn software(software_id: &str) -> String {
    format!("software:{}", digest(software_id))
}

/// The stored copy of the JWK Set fetched from a `jwks_uri` (KEY-12): one per URI, shared by
/// every client that uses it, under the URI's hash.
pub fn jwks(uri: &str) -> String {
    format!("jwks:{}", digest(uri))
}
