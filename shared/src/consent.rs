//! The consent record shared by the Consents API and the AS (CONS-1), and its states:
//!
//! ```text
//!   POST ──> AWAITING_AUTHORISATION ──(holder approves, AD-5)──> AUTHORISED
//!                  │  │                                              │
//!   DELETE / deny ─┘  └─ 60 min pass: REJECTED (ASPSP, CONSENT_EXPIRED)│
//!                  v                                                 v
//!               REJECTED (USER, CUSTOMER_MANUALLY_REJECTED)   REJECTED (USER, CUSTOMER_MANUALLY_REVOKED)
//! ```
//!
//! Timers are not stored transitions: [`Consent::at`] gives the status a consent has at a
//! moment, so a consent read after its window reads as rejected without anyone writing.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::types::{Cnpj, Cpf};

/// How long a data consent may wait for authorisation (CONS; AD-7): 60 minutes.
pub const AUTHORISATION_WINDOW: i64 = 3600;

/// How long a consent that was never authorised stays readable after its window ends (CONS-1):
/// 90 days, so that the client, the holder's bank and an auditor can still `GET` it as
/// `REJECTED`, with its reason, for the disputes and reconciliations of a quarter; after that
/// it is purged ([`Consent::keep_until`]), so that consents lodged and never authorised cannot
/// grow the store without bound (issue 16).
pub const AUDIT_PERIOD: i64 = 90 * 86_400;

/// How long a consent that was authorised is kept after it can no longer change: a year past
/// its `expirationDateTime` (ten years from its creation when it has none).
pub const RETENTION: i64 = 365 * 86_400;

/// A consent's status (Consents API v3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Lodged, waiting for the holder.
    AwaitingAuthorisation,
    /// The holder approved.
    Authorised,
    /// Refused, revoked or expired.
    Rejected,
}

/// Who rejected a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectedBy {
    /// The account holder (directly or through the client).
    User,
    /// The account-holding institution (timers).
    Aspsp,
}

/// Why a consent was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionCode {
    /// Not authorised within its window.
    ConsentExpired,
    /// Refused before it was authorised.
    CustomerManuallyRejected,
    /// Revoked after it was authorised.
    CustomerManuallyRevoked,
    /// Its `expirationDateTime` passed.
    ConsentMaxDateReached,
}

/// `rejection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// `rejectedBy`.
    pub rejected_by: RejectedBy,
    /// `reason.code`.
    pub code: RejectionCode,
    /// When it happened.
    pub at: UnixTime,
}

/// A lodged consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The URN id.
    pub consent_id: String,
    /// The client that lodged it; only it may read or revoke it.
    pub client_id: String,
    /// `loggedUser.document.identification`.
    pub logged_user: Cpf,
    /// `businessEntity.document.identification`.
    pub business_entity: Option<Cnpj>,
    /// `permissions`.
    pub permissions: Vec<String>,
    /// `expirationDateTime`, none for a consent with no end date.
    pub expiration: Option<UnixTime>,
    /// `creationDateTime`.
    pub created: UnixTime,
    /// The stored status.
    pub status: Status,
    /// `statusUpdateDateTime` of the stored status.
    pub status_updated: UnixTime,
    /// Present when the stored status is `REJECTED`.
    pub rejection: Option<Rejection>,
}

/// An illegal transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The consent is already rejected.
    AlreadyRejected,
    /// The consent is no longer awaiting authorisation.
    NotAwaiting,
}

impl Consent {
    /// Until when the record is kept, for the status it is stored with: a consent that was
    /// never authorised (awaiting, or rejected before authorisation) for its window plus
    /// [`AUDIT_PERIOD`]; one that was authorised (even if revoked since) for [`RETENTION`]
    /// past the end of its validity. Write the record with it on every change of state.
    pub fn keep_until(&self) -> UnixTime {
        let window_end = self.created.saturating_add(AUTHORISATION_WINDOW);
        let authorised = match self.status {
            Status::Authorised => true,
            Status::AwaitingAuthorisation => false,
            Status::Rejected => self.rejection.is_some_and(|r| {
                matches!(
                    r.code,
                    RejectionCode::CustomerManuallyRevoked | RejectionCode::ConsentMaxDateReached
                )
            }),
        };
        if !authorised {
            return window_end.saturating_add(AUDIT_PERIOD);
        }
        self.expiration
            .unwrap_or(self.created.saturating_add(10 * RETENTION))
            .max(window_end)
            .saturating_add(RETENTION)
    }

    /// The consent as it stands at `now`, timers applied.
    pub fn at(&self, now: UnixTime) -> Self {
        let mut view = self.clone();
        let expired_at = match self.status {
            Status::AwaitingAuthorisation if now >= self.created + AUTHORISATION_WINDOW => Some((
                self.created + AUTHORISATION_WINDOW,
                RejectionCode::ConsentExpired,
            )),
            Status::Authorised => self
                .expiration
                .filter(|e| now >= *e)
                .map(|e| (e, RejectionCode::ConsentMaxDateReached)),
            _ => None,
        };
        if let Some((at, code)) = expired_at {
            view.status = Status::Rejected;
            view.status_updated = at;
            view.rejection = Some(Rejection {
                rejected_by: RejectedBy::Aspsp,
                code,
                at,
            });
        }
        view
    }

    /// AWAITING_AUTHORISATION → AUTHORISED: the holder approved on the authentication device
    /// (AD-5).
    pub fn authorise(&self, now: UnixTime) -> Result<Self, TransitionError> {
        let current = self.at(now);
        match current.status {
            Status::AwaitingAuthorisation => Ok(Self {
                status: Status::Authorised,
                status_updated: now,
                ..current
            }),
            Status::Authorised => Err(TransitionError::NotAwaiting),
            Status::Rejected => Err(TransitionError::AlreadyRejected),
        }
    }

    /// AWAITING_AUTHORISATION → REJECTED (USER, CUSTOMER_MANUALLY_REJECTED): the holder
    /// refused on the authentication device (AD-6).
    pub fn reject_by_holder(&self, now: UnixTime) -> Result<Self, TransitionError> {
        match self.at(now).status {
            Status::AwaitingAuthorisation => self.revoke(now),
            Status::Authorised => Err(TransitionError::NotAwaiting),
            Status::Rejected => Err(TransitionError::AlreadyRejected),
        }
    }

    /// `DELETE` by the client on the holder's behalf (Consents API v3).
    pub fn revoke(&self, now: UnixTime) -> Result<Self, TransitionError> {
        let current = self.at(now);
        let code = match current.status {
            Status::Rejected => return Err(TransitionError::AlreadyRejected),
            Status::AwaitingAuthorisation => RejectionCode::CustomerManuallyRejected,
            Status::Authorised => RejectionCode::CustomerManuallyRevoked,
        };
        Ok(Self {
            status: Status::Rejected,
            status_updated: now,
            rejection: Some(Rejection {
                rejected_by: RejectedBy::User,
                code,
                at: now,
            }),
            ..current
        })
    }
}

/// The consent `consent_id` if it is `AUTHORISED` at `now` (CONS-2, TOK-11/16, UI-4): what
/// every token of a CIBA grant is checked against each time it is used, so that revoking or
/// rejecting the consent (or its `expirationDateTime` passing) stops its tokens on every
/// instance at once, with no list of tokens to walk. `Ok(None)` when it is not.
pub fn authorised(
    store: &dyn crate::store::KeyValue,
    consent_id: &str,
    now: UnixTime,
) -> Result<Option<Consent>, crate::store::StoreError> {
    use crate::store::{keys, record};
    Ok(
        record::get::<Consent>(store, &keys::consent(consent_id), now)?
            .map(|c| c.data.at(now))
            .filter(|c| c.status == Status::Authorised),
    )
}

/// Moves the consent after its request's decision (AD-5: approved → `AUTHORISED`; AD-6:
/// denied by the holder → `REJECTED`) if it still awaits authorisation, and returns it as it
/// stands at `now`. `Ok(None)` when the decision moves no consent (none yet, or an AD-5
/// denial) or the consent is gone.
///
/// The decision is two writes, the request first (AD-4: it is the one that must happen once),
/// then the consent; a device call stopped between them by a store fault leaves the consent
/// behind. Whoever meets the pair next moves it along (the device's retry, the client's
/// poll), so a decision is never left half-applied. A consent that moved otherwise meanwhile
/// (revoked by its client, its window passed) stays as it is.
pub fn follow_decision(
    store: &dyn crate::store::KeyValue,
    request: &crate::auth_req::AuthRequest,
    now: UnixTime,
    random: &dyn crate::clock::Random,
) -> Result<Option<Consent>, crate::store::StoreError> {
    use crate::auth_req::{DenialReason, Status as Decided};
    use crate::store::{keys, record};
    let change: fn(&Consent, UnixTime) -> Result<Consent, TransitionError> =
        match (request.status, request.denial) {
            (Decided::Approved | Decided::Consumed, _) => Consent::authorise,
            (Decided::Denied, Some(DenialReason::HolderDenied)) => Consent::reject_by_holder,
            _ => return Ok(None),
        };
    // One read when the consent already moved; a compare-and-swap only when it did not.
    // The consent as it stands rides in the error of a change not made (boxed: it is large).
    let moved = record::update::<Consent, Option<Box<Consent>>>(
        store,
        &keys::consent(&request.consent_id),
        now,
        random,
        |current| {
            let Some(current) = current else {
                return Err(None);
            };
            let standing = current.data.at(now);
            if standing.status != Status::AwaitingAuthorisation {
                return Err(Some(Box::new(standing)));
            }
            // An authorised consent is kept longer than one never authorised (CONS-1): the
            // record is rewritten with its new keep-until, never a shorter one.
            change(&current.data, now)
                .map(|next| {
                    let keep_until = next.keep_until().max(current.exp);
                    (next, keep_until)
                })
                .map_err(|_| Some(Box::new(standing)))
        },
    )?;
    Ok(match moved {
        Ok(next) => Some(next.at(now)),
        Err(standing) => standing.map(|c| *c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn consent() -> Consent {
        Consent {
            consent_id: "urn:ofbciba:1".into(),
            client_id: "tpp".into(),
            logged_user: Cpf::parse("52998224725").unwrap(),
            business_entity: None,
            permissions: vec!["ACCOUNTS_READ".into(), "RESOURCES_READ".into()],
            expiration: Some(10_000),
            created: 1000,
            status: Status::AwaitingAuthorisation,
            status_updated: 1000,
            rejection: None,
        }
    }

    #[test]
    fn cons_1_a_data_consent_not_authorised_in_60_minutes_reads_as_expired() {
        let c = consent();
        assert_eq!(c.at(1000 + 3599).status, Status::AwaitingAuthorisation);
        let late = c.at(1000 + 3600);
        assert_eq!(late.status, Status::Rejected);
        let r = late.rejection.unwrap();
        assert_eq!(
            (r.rejected_by, r.code),
            (RejectedBy::Aspsp, RejectionCode::ConsentExpired)
        );
        assert_eq!(c.revoke(5000), Err(TransitionError::AlreadyRejected));
    }

    #[test]
    fn cons_1_a_consent_never_authorised_is_kept_its_window_plus_the_audit_period() {
        let c = consent();
        let short = 1000 + AUTHORISATION_WINDOW + AUDIT_PERIOD;
        assert_eq!(c.keep_until(), short);
        assert_eq!(
            c.revoke(2000).unwrap().keep_until(),
            short,
            "rejected by the user"
        );
        assert_eq!(
            c.at(1000 + 3600).keep_until(),
            short,
            "expired unauthorised"
        );
        let authorised = c.authorise(2000).unwrap();
        assert_eq!(authorised.keep_until(), 10_000 + RETENTION);
        assert_eq!(
            authorised.revoke(3000).unwrap().keep_until(),
            10_000 + RETENTION,
            "an authorised consent keeps its retention when revoked"
        );
        let no_end = Consent {
            expiration: None,
            ..authorised
        };
        assert_eq!(no_end.keep_until(), 1000 + 11 * RETENTION);
        let far = Consent {
            expiration: Some(i64::MAX - 5),
            ..c.authorise(2000).unwrap()
        };
        assert_eq!(far.keep_until(), i64::MAX, "saturates, never wraps");
    }

    #[test]
    fn cons_1_revoking_rejects_once() {
        let c = consent();
        let revoked = c.revoke(2000).unwrap();
        assert_eq!(revoked.status, Status::Rejected);
        assert_eq!(
            revoked.rejection.unwrap().code,
            RejectionCode::CustomerManuallyRejected
        );
        assert_eq!(revoked.revoke(2001), Err(TransitionError::AlreadyRejected));
        let authorised = Consent {
            status: Status::Authorised,
            ..c
        };
        assert_eq!(
            authorised.revoke(2000).unwrap().rejection.unwrap().code,
            RejectionCode::CustomerManuallyRevoked
        );
        assert_eq!(
            authorised.at(10_000).rejection.unwrap().code,
            RejectionCode::ConsentMaxDateReached
        );
    }
}
