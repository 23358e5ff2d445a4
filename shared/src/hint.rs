//! Hint resolution (HINT-1…17): which holder a backchannel request names. A hint only
//! identifies; the holder always authenticates on the authentication device (HINT-1).
//!
//! Also the AD-generated hint ids that the device API issues (AD-9, HINT-13).

use serde::{Deserialize, Serialize};

use crate::auth_req::HintKind;
use crate::clock::{Random, UnixTime};
use crate::config::Issuer;
use crate::consent::Consent;
use crate::error::ProtocolError;
use crate::id_token::{is_cancelled, verify_hint};
use crate::jose::keys::KeySet;
use crate::request_object::Hint;
use crate::store::{KeyValue, StoreError, first_use, keys, record, release};
use crate::users::{User, Users};

/// How long an AD-generated hint id lives (HINT-13 [decision]: ≤ 300 s).
pub const AD_HINT_TTL: i64 = 300;

/// What an AD-generated hint id stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdHint {
    /// The holder the device issued it for.
    pub sub: String,
    /// When it stops being accepted; the record outlives it, so that a late use is told
    /// `expired_login_hint_token` rather than `unknown_user_id` (HINT-12).
    pub expires_at: UnixTime,
}

/// How long an AD-generated hint's record outlives the hint.
const AD_HINT_RETENTION: i64 = 600;

/// The holder a hint resolved to, or none yet (as-generated). `Debug` leaves out the
/// AD-generated id (single use: whoever holds it names the holder, HINT-13).
pub struct ResolvedHint<'u> {
    /// Which hint it was.
    pub kind: HintKind,
    /// The holder, unless the request waits for a claim.
    pub user: Option<&'u User>,
    /// An AD-generated id to use up once the request is accepted (HINT-13).
    ad_hint_id: Option<String>,
}

impl std::fmt::Debug for ResolvedHint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedHint")
            .field("kind", &self.kind)
            .field("user", &self.user)
            .field(
                "ad_hint_id",
                &self.ad_hint_id.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl ResolvedHint<'_> {
    /// Uses up the AD-generated id, if any: the last step before the request is stored, so
    /// a refused request leaves it usable. `false` when another request used it first.
    pub fn use_up(&self, store: &dyn KeyValue, now: UnixTime) -> Result<bool, StoreError> {
        match &self.ad_hint_id {
            Some(id) => first_use(
                store,
                &keys::ad_hint_used(id),
                now + AD_HINT_TTL + AD_HINT_RETENTION,
            ),
            None => Ok(true),
        }
    }

    /// Gives the AD-generated id back after [`ResolvedHint::use_up`] when the request could
    /// not be stored (a store fault): the client never learned of a request, so its retry may
    /// use the id, which is consumed only when the AS accepts a request (HINT-13).
    pub fn give_back(&self, store: &dyn KeyValue, now: UnixTime) {
        if let Some(id) = &self.ad_hint_id {
            let forget_after = now + AD_HINT_TTL + AD_HINT_RETENTION;
            let _ = release(store, &keys::ad_hint_used(id), forget_after);
        }
    }
}

/// What hint resolution reads.
pub struct HintContext<'a> {
    /// The holders.
    pub users: &'a Users,
    /// The AS signing keys, current and retired (HINT-5).
    pub signing_keys: &'a KeySet,
    /// The issuer (HINT-6).
    pub issuer: &'a Issuer,
    /// The store (AD-generated ids).
    pub store: &'a dyn KeyValue,
}

/// HINT-2: the same answer whether the holder is absent or unusable (bc-authorize gives it
/// also for a holder who does not act for the consent's businessEntity, issue 16).
pub fn unknown() -> ProtocolError {
    ProtocolError::UnknownUserId("the hint does not name a known account holder")
}

/// HINT-3…17 for a request of `client_id` about `consent`.
pub fn resolve<'u>(
    hint: &Hint,
    client_id: &str,
    consent: &Consent,
    ctx: &HintContext<'u>,
    now: UnixTime,
) -> Result<ResolvedHint<'u>, ProtocolError> {
    let resolved = |kind, user| ResolvedHint {
        kind,
        user: Some(user),
        ad_hint_id: None,
    };
    match hint {
        // HINT-16: only the consent id itself, resolved through the consent's loggedUser.
        Hint::LoginHint(value) => {
            if *value != consent.consent_id {
                return Err(unknown());
            }
            let user = ctx.users.by_cpf(&consent.logged_user).ok_or_else(unknown)?;
            Ok(resolved(HintKind::LoginHint, user))
        }
        Hint::IdTokenHint(compact) => {
            let verified = verify_hint(compact, ctx.signing_keys, ctx.issuer, client_id, now)?;
            // HINT-10: cancelled by the holder institution.
            if is_cancelled(&verified, ctx.store, now)
                .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?
            {
                return Err(ProtocolError::InvalidIdTokenHint(
                    "the id_token_hint was cancelled",
                ));
            }
            let user = ctx.users.by_sub(&verified.sub).ok_or_else(unknown)?;
            Ok(resolved(HintKind::IdTokenHint, user))
        }
        Hint::AdGenerated(id) => {
            let stored = record::get::<AdHint>(ctx.store, &keys::ad_hint(id), now)
                .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?;
            let Some(stored) = stored else {
                return Err(unknown());
            };
            if now >= stored.data.expires_at {
                return Err(ProtocolError::ExpiredLoginHintToken(
                    "the login_hint_token has expired",
                ));
            }
            let used = crate::store::was_used(ctx.store, &keys::ad_hint_used(id))
                .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?;
            if used {
                return Err(ProtocolError::ExpiredLoginHintToken(
                    "the login_hint_token was already used",
                ));
            }
            let user = ctx.users.by_sub(&stored.data.sub).ok_or_else(unknown)?;
            Ok(ResolvedHint {
                kind: HintKind::AdGenerated,
                user: Some(user),
                ad_hint_id: Some(id.clone()),
            })
        }
        Hint::AsGenerated => Ok(ResolvedHint {
            kind: HintKind::AsGenerated,
            user: None,
            ad_hint_id: None,
        }),
    }
}

/// AD-9, HINT-13: a fresh AD-generated hint id for `user`: 20 random digits (≈ 66 bits),
/// single-use, living [`AD_HINT_TTL`] seconds.
pub fn issue_ad_hint(
    user: &User,
    store: &dyn KeyValue,
    random: &dyn Random,
    now: UnixTime,
) -> Result<String, StoreError> {
    let mut bytes = [0u8; 20];
    random.fill(&mut bytes)?;
    // 250 = 25 × 10: bytes below it map evenly onto digits; the rest are drawn again.
    let mut digits = String::with_capacity(20);
    let mut pool = bytes.to_vec();
    while digits.len() < 20 {
        match pool.pop() {
            Some(b) if b < 250 => digits.push(char::from(b'0' + b % 10)),
            Some(_) => {}
            None => {
                let mut more = [0u8; 20];
                random.fill(&mut more)?;
                pool.extend_from_slice(&more);
            }
        }
    }
    // Announced to the purge with it, in one set-many (issue 18): the hint and its use marker
    // go once neither matters.
    let keep_until = now + AD_HINT_TTL + AD_HINT_RETENTION;
    let mut batch = crate::store::Batch::new();
    crate::store::purge::announce(
        store,
        keep_until,
        &[&keys::ad_hint(&digits), &keys::ad_hint_used(&digits)],
    )?;
    batch.put(
        &keys::ad_hint(&digits),
        &AdHint {
            sub: user.sub.clone(),
            expires_at: now + AD_HINT_TTL,
        },
        keep_until,
        random,
    )?;
    batch.write(store)?;
    Ok(digits)
}
