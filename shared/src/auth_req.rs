//! The backchannel authentication request and its `auth_req_id` (CIBA 7.3, BCA-24…27), with
//! its lifecycle as an explicit state machine (style 7; TOK-4…11, AD-4…8):
//!
//! ```text
//!  bc-authorize ──(as-generated hint)──> AWAITING_CLAIM ──(device claims, AD-8)──┐
//!       │                                                                        v
//!       └──(id_token_hint, login_hint, ad-generated)──────────────────────────> PENDING
//!                                                                                │  │
//!                        APPROVED <──(device approves, AD-5 passes)──────────────┘  │
//!                           │                 DENIED <──(device denies, or AD-5 fails)
//!            (first poll wins, TOK-10)
//!                           v
//!                        CONSUMED
//!
//!  Any state but DENIED and CONSUMED reads as EXPIRED once `expires_at` passes (AD-7, TOK-9);
//!  nothing is written for that: [`AuthRequest::state`] applies the clock.
//! ```
//!
//! The record lives under the hash of the `auth_req_id` (BCA-25), and stays readable for
//! [`EXPIRED_ANSWERABLE`] seconds after expiry so that a late poll learns `expired_token`
//! rather than `invalid_grant` (TOK-9).
//!
//! The grant's tokens are fixed before anyone polls: the access and refresh tokens are
//! derived from the `auth_req_id` (which only the client holds) and a random salt (which
//! only the store holds, until redemption drops it), so the id_token, which carries the
//! access token's `at_hash`, is signed when the holder approves, off the polling path
//! (design.md, Performance), and neither a copy of the store nor a leaked `auth_req_id`
//! alone yields a token.

use serde::{Deserialize, Serialize};

use crate::clock::{Random, UnixTime};
use crate::jose::b64url;
use crate::store::keys::digest;

/// How long after its expiry a request still answers `expired_token` (TOK-9 [decision]: at
/// least 10 minutes).
pub const EXPIRED_ANSWERABLE: i64 = 600;

/// An `auth_req_id`: 256 random bits, base64url (BCA-25: ≥ 160 bits, `[A-Za-z0-9_-]`). A
/// bearer secret of the client: printed as `[redacted]`, stored only as its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthReqId(String);

impl std::fmt::Debug for AuthReqId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthReqId([redacted])")
    }
}

impl AuthReqId {
    /// A fresh id.
    pub fn generate(random: &dyn Random) -> Result<Self, crate::store::StoreError> {
        let mut bytes = [0u8; 32];
        random.fill(&mut bytes)?;
        Ok(Self(b64url(&bytes)))
    }

    /// An id as a client or device presents it: only the shape is checked here, the store
    /// decides whether it exists.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = (16..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        ok.then(|| Self(text.to_string()))
    }

    /// The id, for the response body only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The reference that names the request everywhere but to its client: the store key
    /// and the id the device API lists (AD-1: a notification to the holder's phone carries
    /// an opaque reference, never the `auth_req_id`).
    pub fn reference(&self) -> String {
        digest(&self.0)
    }
}

/// Which hint named the holder (BCA-15, HINT-*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HintKind {
    /// `id_token_hint` (BR-CIBA 5.2.2-16).
    IdTokenHint,
    /// `login_hint`, the consent id (HINT-16).
    LoginHint,
    /// `login_hint_token` of the AD-generated type (HINT-12).
    AdGenerated,
    /// `login_hint_token` of the AS-generated type: the holder is bound by a claim (HINT-14).
    AsGenerated,
}

/// A stored status; `EXPIRED` is never stored (see [`State`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Waiting for the holder to scan the QR code (as-generated).
    AwaitingClaim,
    /// Waiting for the holder's decision.
    Pending,
    /// The holder approved; the tokens wait, sealed, for the first poll.
    Approved,
    /// The holder refused, or an approval check failed (AD-5).
    Denied,
    /// The tokens were handed out (TOK-10).
    Consumed,
}

/// The state a request is in at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// See [`Status::AwaitingClaim`].
    AwaitingClaim,
    /// See [`Status::Pending`].
    Pending,
    /// See [`Status::Approved`].
    Approved,
    /// See [`Status::Denied`].
    Denied,
    /// `expires_at` passed before the tokens were handed out (TOK-9, AD-7).
    Expired,
    /// See [`Status::Consumed`].
    Consumed,
}

/// A claim asked for in the `claims` parameter (OIDC 5.5.1; BCA-22). Its values are CPFs or
/// CNPJs: `Debug` counts them and prints none.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// `essential`.
    pub essential: bool,
    /// `value`, or the members of `values`.
    pub values: Vec<String>,
}

impl std::fmt::Debug for ClaimRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimRequest")
            .field("essential", &self.essential)
            .field("values", &format_args!("[{} redacted]", self.values.len()))
            .finish()
    }
}

/// The claims asked for one target (`id_token` or `userinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequests {
    /// `cpf` (TKN-9).
    pub cpf: Option<ClaimRequest>,
    /// `cnpj` (TKN-9).
    pub cnpj: Option<ClaimRequest>,
}

/// The authentication the holder must reach (BCA-21, AD-5e).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcrRequest {
    /// The acr values asked for, in order of preference, supported ones only.
    pub values: Vec<String>,
    /// Whether reaching one of them is essential: `claims.id_token.acr` essential *with*
    /// `value`/`values`. An essential acr without values only asks that an acr be returned,
    /// and is stored as not essential, so that AD-5e has a level to compare with (BCA-21).
    pub essential: bool,
}

/// What the holder's authentication device reported when approving (AD-3/4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The holder who decided.
    pub sub: String,
    /// The acr reached.
    pub acr: String,
    /// The methods used.
    pub amr: Vec<String>,
    /// When the holder authenticated.
    pub auth_time: UnixTime,
}

/// Why a request was denied, for the device API's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DenialReason {
    /// The holder refused (AD-6).
    HolderDenied,
    /// The authenticated holder is not the consent's `loggedUser` (AD-5a).
    CpfMismatch,
    /// The holder does not act for the consent's `businessEntity` (AD-5c).
    CnpjMismatch,
    /// An essential `cpf` or `cnpj` claim value is not the holder's (AD-5d).
    ClaimMismatch,
    /// The essential acr was not reached (AD-5e).
    AcrNotReached,
    /// The consent was no longer awaiting authorisation when the holder approved.
    ConsentUnavailable,
}

/// A backchannel authentication request as stored. Its `Debug` leaves out the token salt and
/// the id_token (secrets of the grant, TKN-1); every other field is an identifier or a choice.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The client it is bound to (TOK-4).
    pub client_id: String,
    /// The consent it asks the holder to authorise (BCA-13).
    pub consent_id: String,
    /// The scope asked for, `openid` and `consent:<id>` included.
    pub scope: Vec<String>,
    /// The hint that named the holder.
    pub hint: HintKind,
    /// The holder, once known (at bc-authorize, or at the claim for as-generated).
    pub subject: Option<String>,
    /// `binding_message`, as the devices show it.
    pub binding_message: Option<String>,
    /// The acr asked for.
    pub acr: AcrRequest,
    /// Claims asked for in the id_token.
    pub id_token_claims: ClaimRequests,
    /// Claims asked for at userinfo.
    pub userinfo_claims: ClaimRequests,
    /// When it was made.
    pub created: UnixTime,
    /// When the holder's chance to decide ends (BCA-26).
    pub expires_at: UnixTime,
    /// The stored status.
    pub status: Status,
    /// The holder's approval, once given.
    pub decision: Option<Decision>,
    /// Why it was denied, once denied.
    pub denial: Option<DenialReason>,
    /// The salt the grant's tokens are derived with, with the `auth_req_id`; dropped once
    /// they are handed out.
    pub token_salt: Option<String>,
    /// `at_hash` of the access token this request will hand out (TKN-7).
    pub at_hash: String,
    /// The id_token signed at approval (TKN-4…9).
    pub id_token: Option<String>,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field must be placed here, printed or redacted.
        let Self {
            client_id,
            consent_id,
            scope,
            hint,
            subject,
            binding_message,
            acr,
            id_token_claims,
            userinfo_claims,
            created,
            expires_at,
            status,
            decision,
            denial,
            token_salt,
            at_hash,
            id_token,
        } = self;
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "[redacted]");
        f.debug_struct("AuthRequest")
            .field("client_id", client_id)
            .field("consent_id", consent_id)
            .field("scope", scope)
            .field("hint", hint)
            .field("subject", subject)
            .field("binding_message", binding_message)
            .field("acr", acr)
            .field("id_token_claims", id_token_claims)
            .field("userinfo_claims", userinfo_claims)
            .field("created", created)
            .field("expires_at", expires_at)
            .field("status", status)
            .field("decision", decision)
            .field("denial", denial)
            .field("token_salt", &redacted(token_salt))
            .field("at_hash", at_hash)
            .field("id_token", &redacted(id_token))
            .finish()
    }
}

/// A move the state machine does not allow from the state the request is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongState(pub State);

impl AuthRequest {
    /// The state at `now`, expiry applied.
    pub fn state(&self, now: UnixTime) -> State {
        match self.status {
            Status::Denied => State::Denied,
            Status::Consumed => State::Consumed,
            _ if now >= self.expires_at => State::Expired,
            Status::AwaitingClaim => State::AwaitingClaim,
            Status::Pending => State::Pending,
            Status::Approved => State::Approved,
        }
    }

    /// When the record may be forgotten: [`EXPIRED_ANSWERABLE`] after expiry.
    pub fn keep_until(&self) -> UnixTime {
        self.expires_at + EXPIRED_ANSWERABLE
    }

    fn expect(&self, now: UnixTime, wanted: State) -> Result<(), WrongState> {
        match self.state(now) {
            s if s == wanted => Ok(()),
            s => Err(WrongState(s)),
        }
    }

    /// AWAITING_CLAIM → PENDING: the holder scanned the QR code (AD-8).
    pub fn claim(&self, subject: &str, now: UnixTime) -> Result<Self, WrongState> {
        self.expect(now, State::AwaitingClaim)?;
        Ok(Self {
            status: Status::Pending,
            subject: Some(subject.to_string()),
            ..self.clone()
        })
    }

    /// PENDING → APPROVED, with the id_token signed for it (AD-5).
    pub fn approve(
        &self,
        decision: Decision,
        id_token: String,
        now: UnixTime,
    ) -> Result<Self, WrongState> {
        self.expect(now, State::Pending)?;
        Ok(Self {
            status: Status::Approved,
            subject: Some(decision.sub.clone()),
            decision: Some(decision),
            id_token: Some(id_token),
            ..self.clone()
        })
    }

    /// PENDING → DENIED (AD-5 failure, AD-6).
    pub fn deny(&self, reason: DenialReason, now: UnixTime) -> Result<Self, WrongState> {
        self.expect(now, State::Pending)?;
        Ok(Self {
            status: Status::Denied,
            denial: Some(reason),
            ..self.clone()
        })
    }

    /// APPROVED → CONSUMED (TOK-10); the salt and the id_token are dropped with it.
    pub fn consume(&self, now: UnixTime) -> Result<Self, WrongState> {
        self.expect(now, State::Approved)?;
        Ok(Self {
            status: Status::Consumed,
            token_salt: None,
            id_token: None,
            ..self.clone()
        })
    }
}

/// The secret of a bearer token of the grant, derived from the `auth_req_id` and the
/// request's salt.
fn derive(label: &str, id: &AuthReqId, salt: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"ciba grant token v1\0");
    h.update(label.as_bytes());
    h.update(b"\0");
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(id.0.as_bytes());
    h.finalize().into()
}

/// The access and refresh tokens a request hands out (TKN-1: 256 bits each).
#[derive(Clone, PartialEq, Eq)]
pub struct GrantTokens {
    /// The access token.
    pub access_token: crate::access_token::AccessToken,
    /// The refresh token.
    pub refresh_token: crate::access_token::AccessToken,
}

impl std::fmt::Debug for GrantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantTokens([redacted])")
    }
}

impl GrantTokens {
    /// The tokens of `id` with `salt`, for a request that expires at `expires_at`, the refresh
    /// token's record kept until `refresh_until`. Each ends with the time its record may be
    /// dropped ([`crate::access_token`]): the access token is fixed (and its `at_hash` signed)
    /// before it is issued, so its end is the latest it can expire, `expires_at` plus the
    /// longest access-token lifetime.
    pub fn derive(
        id: &AuthReqId,
        salt: &str,
        expires_at: UnixTime,
        refresh_until: UnixTime,
    ) -> Self {
        Self {
            access_token: Self::access_token(id, salt, expires_at),
            refresh_token: crate::access_token::with_end(&derive("rt", id, salt), refresh_until),
        }
    }

    /// The access token alone (bc-authorize needs it for its `at_hash`, TKN-7).
    pub fn access_token(
        id: &AuthReqId,
        salt: &str,
        expires_at: UnixTime,
    ) -> crate::access_token::AccessToken {
        crate::access_token::with_end(
            &derive("at", id, salt),
            expires_at + crate::access_token::LONGEST_LIFETIME,
        )
    }

    /// A fresh salt.
    pub fn new_salt(random: &dyn Random) -> Result<String, crate::store::StoreError> {
        let mut salt = [0u8; 32];
        random.fill(&mut salt)?;
        Ok(b64url(&salt))
    }
}

/// The answer to a poll of a request still waiting for the holder (TOK-6/7/12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// At or after the interval: `authorization_pending`.
    Allowed,
    /// Sooner than the interval, or at the same moment as another poll: `slow_down`, and the
    /// request's interval is now this many seconds.
    SlowDown(u32),
}

/// When a request was last polled, and the interval its client must now keep.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Polls {
    last: UnixTime,
    interval: u32,
}

/// TOK-7/12: measures the time since the previous poll, not since issuance, so the first poll
/// is always allowed; a poll sooner than the current interval raises it by 5 s (CIBA 7.3).
///
/// `seen` is the pace record as the poll read it, with the request (one `get-many`). The next
/// record is a plain write, never a compare-and-swap (issue 18: a pending poll is the hottest
/// path, and on Redis every swap opens a connection): polls that overlap at the store may
/// each be measured against the same previous poll, so both can be told
/// `authorization_pending` (TOK-7's source, the conformance suite, accepts that on rapid
/// polls), and the last write stands. What a client is told stays safe: the stored interval
/// is raised only by a poll that answered `slow_down` with it, and the stored time is a
/// poll's own, so a client that waits the interval its answers imply is never slowed down.
pub fn pace(
    store: &dyn crate::store::KeyValue,
    reference: &str,
    seen: Option<Vec<u8>>,
    base_interval: u32,
    keep_until: UnixTime,
    now: UnixTime,
    random: &dyn Random,
) -> Result<Pace, crate::store::StoreError> {
    use crate::store::{keys, record};
    let current = seen.and_then(|raw| record::decode::<Polls>(raw, now));
    let (next, pace) = match current.map(|c| c.data) {
        Some(p) if now < p.last + i64::from(p.interval) => {
            let interval = p.interval.saturating_add(5);
            (
                Polls {
                    last: now,
                    interval,
                },
                Pace::SlowDown(interval),
            )
        }
        Some(p) => (
            Polls {
                last: now,
                interval: p.interval,
            },
            Pace::Allowed,
        ),
        None => (
            Polls {
                last: now,
                interval: base_interval,
            },
            Pace::Allowed,
        ),
    };
    record::put(
        store,
        &keys::auth_request_polls(reference),
        &next,
        keep_until,
        random,
    )?;
    Ok(pace)
}

/// Stores a new request under its reference (BCA-25), after announcing it to the purge
/// ([`crate::store::purge::announce`]): the request, its pace record and its redemption
/// marker all stop mattering at [`AuthRequest::keep_until`]. Announced first, so that a
/// request can never be stored without it (an entry whose request was never written deletes
/// nothing).
///
/// With `holder` (the request names its holder), the holder's slot for it
/// ([`remember_for_holder`]) is taken first and written in the same set-many, so that a
/// stored request is listed on the holder's device (AD-2) and no request costs a write more.
pub fn store_new(
    store: &dyn crate::store::KeyValue,
    reference: &str,
    request: &AuthRequest,
    holder: Option<(&str, HolderSlots)>,
    random: &dyn Random,
) -> Result<(), crate::store::StoreError> {
    use crate::store::keys;
    let keep_until = request.keep_until();
    let slot = match holder {
        Some((sub, slots)) => Some(holder_slot(store, sub, slots)?),
        None => None,
    };
    let key = keys::auth_request(reference);
    // Issue 18: the entry and the request in one set-many (one transaction on Spin's SQLite).
    let mut batch = crate::store::Batch::new();
    crate::store::purge::announce(
        store,
        keep_until,
        &[
            &key,
            &keys::auth_request_polls(reference),
            &keys::auth_request_redeemed(reference),
        ],
    )?;
    batch.put(&key, request, keep_until, random)?;
    if let Some(slot) = slot {
        batch.put(
            &slot,
            &HolderSlot {
                reference: reference.to_string(),
            },
            keep_until,
            random,
        )?;
    }
    batch.write(store)
}

/// The fewest of a holder's latest requests the device API looks through (AD-2).
pub const HOLDER_WINDOW: i64 = 16;

/// How many of a holder's latest requests the device list looks through (AD-2), and so the
/// size of the ring of slots that remembers them: every request the holder may have pending
/// at once (`holder_pending_limit`, BCA-31), and at least [`HOLDER_WINDOW`].
///
/// A pending request then leaves the list only when newer requests the *holder* decided
/// pushed it out: other clients' pending requests cannot, as no more than the limit can be
/// pending together (issue 16: with a limit above the ring, a flood hid requests). The ring is
/// sized from the limit rather than a larger limit refused at load, because load tools lift
/// the limit for one demo holder with thousands of requests pending (`ciba-bench`): a listing
/// then reads up to that many slots, and with the shipped limit of 5 reads 16, as before.
/// Writers and the reader must agree: bc-authorize and the device API read the same variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HolderSlots(i64);

impl HolderSlots {
    /// The ring for a holder's pending limit of `holder_pending`.
    pub fn for_limit(holder_pending: u32) -> Self {
        Self(i64::from(holder_pending).max(HOLDER_WINDOW))
    }

    /// Reads `holder_pending_limit` (1–1,000,000, as [`crate::config::AbuseLimits`] reads it).
    pub fn load(vars: &dyn crate::config::Variables) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{abuse_limit, var};
        abuse_limit(vars, var::HOLDER_PENDING_LIMIT).map(Self::for_limit)
    }

    /// The number of slots.
    pub fn count(self) -> i64 {
        self.0
    }
}

/// One slot of a holder's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HolderSlot {
    reference: String,
}

/// Remembers that the holder `sub` has the request `reference` (AD-2). The slot number comes
/// from an atomic increment, so concurrent requests never overwrite each other's slot on
/// any store (no insert-if-absent, which Spin's stores do not make atomic). The slots are a
/// ring of `slots`: a request overwrites the slot of the one `slots` before it, which the
/// list no longer looks at, so a holder never has more slots than that (nothing to purge).
pub fn remember_for_holder(
    store: &dyn crate::store::KeyValue,
    sub: &str,
    reference: &str,
    keep_until: UnixTime,
    slots: HolderSlots,
    random: &dyn Random,
) -> Result<(), crate::store::StoreError> {
    use crate::store::record;
    record::put(
        store,
        &holder_slot(store, sub, slots)?,
        &HolderSlot {
            reference: reference.to_string(),
        },
        keep_until,
        random,
    )
}

/// The key of the holder's next slot: an atomic increment, so that concurrent requests never
/// share one ([`remember_for_holder`]).
fn holder_slot(
    store: &dyn crate::store::KeyValue,
    sub: &str,
    slots: HolderSlots,
) -> Result<String, crate::store::StoreError> {
    use crate::store::keys;
    let n = store.increment(&keys::holder_requests(sub), 1)?;
    Ok(keys::holder_request(sub, n.rem_euclid(slots.count())))
}

/// The references of the holder's latest requests, newest first, each once (AD-2): a claim
/// retried after a store fault leaves two slots for one request.
pub fn recent_for_holder(
    store: &dyn crate::store::KeyValue,
    sub: &str,
    slots: HolderSlots,
    now: UnixTime,
) -> Result<Vec<String>, crate::store::StoreError> {
    use crate::store::{keys, read_counter, record};
    // Read without a write (issue 18); no counter, no request yet.
    let last = read_counter(store, &keys::holder_requests(sub))?.unwrap_or(0);
    let mut out = Vec::new();
    let window = usize::try_from(slots.count()).unwrap_or(usize::MAX);
    for n in (1..=last).rev().take(window) {
        let slot = keys::holder_request(sub, n.rem_euclid(slots.count()));
        if let Some(slot) = record::get::<HolderSlot>(store, &slot, now)?
            && !out.contains(&slot.data.reference)
        {
            out.push(slot.data.reference);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthRequest {
        AuthRequest {
            client_id: "tpp-1".into(),
            consent_id: "urn:x:1".into(),
            scope: vec!["openid".into(), "consent:urn:x:1".into()],
            hint: HintKind::AsGenerated,
            subject: None,
            binding_message: Some("Compra 1".into()),
            acr: AcrRequest {
                values: vec![],
                essential: false,
            },
            id_token_claims: ClaimRequests::default(),
            userinfo_claims: ClaimRequests::default(),
            created: 1000,
            expires_at: 1300,
            status: Status::AwaitingClaim,
            decision: None,
            denial: None,
            token_salt: Some("salt".into()),
            at_hash: "h".into(),
            id_token: None,
        }
    }

    fn decision() -> Decision {
        Decision {
            sub: "h".into(),
            acr: "urn:brasil:openbanking:loa2".into(),
            amr: vec![],
            auth_time: 1100,
        }
    }

    #[test]
    fn tok_10_the_lifecycle_allows_only_its_moves() {
        let r = request();
        assert_eq!(r.state(1000), State::AwaitingClaim);
        assert_eq!(
            r.approve(decision(), "s".into(), 1000),
            Err(WrongState(State::AwaitingClaim))
        );
        let pending = r.claim("h", 1010).unwrap();
        assert_eq!(pending.claim("h", 1010), Err(WrongState(State::Pending)));
        let approved = pending.approve(decision(), "s".into(), 1100).unwrap();
        assert_eq!(
            approved.deny(DenialReason::HolderDenied, 1100),
            Err(WrongState(State::Approved))
        );
        let consumed = approved.consume(1101).unwrap();
        assert_eq!(consumed.state(1101), State::Consumed);
        assert_eq!((&consumed.token_salt, &consumed.id_token), (&None, &None));
        assert_eq!(consumed.consume(1102), Err(WrongState(State::Consumed)));
    }

    #[test]
    fn tok_9_ad_4_expiry_is_read_from_the_clock_and_refuses_decisions() {
        let pending = request().claim("h", 1010).unwrap();
        assert_eq!(pending.state(1299), State::Pending);
        assert_eq!(pending.state(1300), State::Expired);
        assert_eq!(
            pending.approve(decision(), "s".into(), 1300),
            Err(WrongState(State::Expired))
        );
        let denied = pending.deny(DenialReason::HolderDenied, 1200).unwrap();
        assert_eq!(denied.state(5000), State::Denied, "a denial stays a denial");
        assert_eq!(denied.keep_until(), 1900);
    }

    #[test]
    fn bca_25_auth_req_ids_are_long_url_safe_and_redacted() {
        let random = crate::clock::CountingRandom::default();
        let id = AuthReqId::generate(&random).unwrap();
        assert_eq!(id.expose().len(), 43, "256 bits");
        assert!(AuthReqId::parse(id.expose()).is_some());
        assert!(AuthReqId::parse("short").is_none());
        assert!(AuthReqId::parse(&"a/b".repeat(10)).is_none());
        assert_eq!(format!("{id:?}"), "AuthReqId([redacted])");
        assert_ne!(id.reference(), id.expose());
    }

    #[test]
    fn tkn_1_grant_tokens_need_both_the_id_and_the_salt() {
        let id = AuthReqId::parse("an-auth-req-id-of-some-length").unwrap();
        let other = AuthReqId::parse("another-auth-req-id-of-length").unwrap();
        let t = GrantTokens::derive(&id, "salt-1", 1000, 9000);
        assert_eq!(t, GrantTokens::derive(&id, "salt-1", 1000, 9000));
        assert_ne!(t, GrantTokens::derive(&id, "salt-2", 1000, 9000));
        assert_ne!(t, GrantTokens::derive(&other, "salt-1", 1000, 9000));
        assert_eq!(
            t.access_token,
            GrantTokens::access_token(&id, "salt-1", 1000)
        );
        assert_ne!(t.access_token, t.refresh_token);
        assert_eq!(t.access_token.expose().len(), 54, "256 bits and the end");
        let end = crate::access_token::end_of;
        assert_eq!(end(t.access_token.expose()), Some(1000 + 900));
        assert_eq!(end(t.refresh_token.expose()), Some(9000));
    }

    /// TOK-7/12, issue 18: the interval is measured from the previous poll and raised by 5 s
    /// by a poll that comes sooner; each poll is one plain write of the pace record, never a
    /// compare-and-swap.
    #[test]
    fn tok_7_tok_12_polls_are_paced_with_one_plain_write_each() {
        use crate::store::{KeyValue, keys, memory::Recording};
        let store = Recording::default();
        let random = crate::clock::CountingRandom::default();
        let polls = keys::auth_request_polls("ref");
        let poll = |now: UnixTime| {
            let seen = store.get(&polls).unwrap();
            store.take();
            let pace = pace(&store, "ref", seen, 5, 10_000, now, &random).unwrap();
            assert_eq!(store.take(), ["set"], "one write, no swap");
            pace
        };
        assert_eq!(
            poll(1000),
            Pace::Allowed,
            "the first poll is always allowed"
        );
        assert_eq!(poll(1005), Pace::Allowed, "at the interval");
        assert_eq!(poll(1007), Pace::SlowDown(10), "sooner: 5 s more");
        assert_eq!(
            poll(1016),
            Pace::SlowDown(15),
            "from the last poll, not the first"
        );
        assert_eq!(poll(1031), Pace::Allowed);
        assert_eq!(poll(1040), Pace::SlowDown(20));
    }
}
