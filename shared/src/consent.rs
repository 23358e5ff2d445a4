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
    /// The reference of the one backchannel request whose approval moved the consent to
    /// `AUTHORISED` (AD-5, CONS-1): only that request may be approved and redeemed. Never
    /// shown to the client (the Consents API renders its own fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorised_by: Option<String>,
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

    /// AWAITING_AUTHORISATION → AUTHORISED: the holder approved the request `by` on the
    /// authentication device (AD-5). The consent remembers which request it was: one consent,
    /// one grant.
    pub fn authorise(&self, by: &str, now: UnixTime) -> Result<Self, TransitionError> {
        let current = self.at(now);
        match current.status {
            Status::AwaitingAuthorisation => Ok(Self {
                status: Status::Authorised,
                status_updated: now,
                authorised_by: Some(by.to_string()),
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

    /// Whether the request `reference` is the one whose approval authorised the consent, and
    /// the consent still stands authorised at `now` (AD-5, TOK-11).
    pub fn authorised_for(&self, reference: &str, now: UnixTime) -> bool {
        self.at(now).status == Status::Authorised
            && self.authorised_by.as_deref() == Some(reference)
    }

    /// Whether the request `reference`'s approval moved the consent to `AUTHORISED`, whatever
    /// became of it since (revoked by its client, expired): that approval won the consent's
    /// race (AD-5, CONS-1), so the request is completed as approved, never denied after it.
    pub fn moved_by(&self, reference: &str) -> bool {
        self.authorised_by.as_deref() == Some(reference)
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

/// The outcome of [`authorise_for`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorisation {
    /// The consent is `AUTHORISED` by this request: moved now, or earlier by this same
    /// request (a retry, or a swap the store reported failed although it wrote).
    Granted(Consent),
    /// The consent is not this request's to authorise: how it stands at `now` (authorised
    /// through another request, rejected, expired).
    Refused(Box<Consent>),
    /// The consent record is gone.
    Gone,
}

/// AD-5, CONS-1: the atomic step that decides an approval. The consent moves from
/// `AWAITING_AUTHORISATION` to `AUTHORISED` by the request `reference` in one compare-and-swap
/// of a record that carries a unique marker ([`record::update`], design.md State); a failed
/// swap is followed by a re-read, and a consent already authorised by this same request is
/// this request's (Spin's Redis store reports swaps as failed even when it wrote them). Of two
/// requests on one consent, or a request and the client's `DELETE`, exactly one moves it.
pub fn authorise_for(
    store: &dyn crate::store::KeyValue,
    consent_id: &str,
    reference: &str,
    now: UnixTime,
    random: &dyn crate::clock::Random,
) -> Result<Authorisation, crate::store::StoreError> {
    use crate::store::{keys, record};
    // `Err(Some(_))`: the consent as it stands, ours or not; `Err(None)`: gone.
    let moved = record::update::<Consent, Option<Box<Consent>>>(
        store,
        &keys::consent(consent_id),
        now,
        random,
        |current| {
            let Some(current) = current else {
                return Err(None);
            };
            let standing = current.data.at(now);
            match standing.status {
                Status::AwaitingAuthorisation => current
                    .data
                    .authorise(reference, now)
                    .map(|next| with_keep_until(next, current.exp))
                    .map_err(|_| Some(Box::new(standing))),
                _ => Err(Some(Box::new(standing))),
            }
        },
    )?;
    Ok(match moved {
        Ok(next) => Authorisation::Granted(next.at(now)),
        // Our move landed, even when the store reported the swap lost (Spin 4.1's Redis) and
        // the client's DELETE revoked the consent before the re-read: the approval won, and
        // the poll then finds the consent revoked (invalid_grant). Found by ciba-soak on two
        // hosts on one Redis (approve-vs-consent-delete, 1 trial in 1,000).
        Err(Some(standing)) if standing.moved_by(reference) => Authorisation::Granted(*standing),
        Err(Some(standing)) => Authorisation::Refused(standing),
        Err(None) => Authorisation::Gone,
    })
}

/// A consent's next state with the keep-until its record is rewritten with: the one for its
/// new state, never shorter than the record's current one (CONS-1: an authorised consent is
/// kept longer than one never authorised).
fn with_keep_until(next: Consent, current_exp: UnixTime) -> (Consent, UnixTime) {
    let keep_until = next.keep_until().max(current_exp);
    (next, keep_until)
}

/// Moves the consent after its request's decision (AD-5: approved → `AUTHORISED` by that
/// request, [`authorise_for`]; AD-6: denied by the holder → `REJECTED`) if it still awaits
/// authorisation, and returns it as it stands at `now`. `Ok(None)` when the decision moves no
/// consent (none yet, or an AD-5 denial) or the consent is gone.
///
/// An approval moves the consent first and the request second (the consent's move is what
/// decides), so an approved request's consent has already moved; this completes only records
/// written before that order, and denials. A denial is two writes, the request first, then
/// the consent; a device call stopped between them by a store fault leaves the consent behind.
/// Whoever meets the pair next moves it along (the device's retry, the client's poll), so a
/// decision is never left half-applied. A consent that moved otherwise meanwhile (authorised
/// through another request, revoked by its client, its window passed) stays as it is; one
/// authorised by this request, whose approval then lost to the holder's denial, is rejected.
pub fn follow_decision(
    store: &dyn crate::store::KeyValue,
    request: &crate::auth_req::AuthRequest,
    reference: &str,
    now: UnixTime,
    random: &dyn crate::clock::Random,
) -> Result<Option<Consent>, crate::store::StoreError> {
    use crate::auth_req::{DenialReason, Status as Decided};
    use crate::store::{keys, record};
    match (request.status, request.denial) {
        (Decided::Approved | Decided::Consumed, _) => {
            return Ok(
                match authorise_for(store, &request.consent_id, reference, now, random)? {
                    Authorisation::Granted(c) => Some(c),
                    Authorisation::Refused(c) => Some(*c),
                    Authorisation::Gone => None,
                },
            );
        }
        (Decided::Denied, Some(DenialReason::HolderDenied)) => {}
        _ => return Ok(None),
    }
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
            // A consent authorised by this very request, which then ended denied (its
            // approval lost the request's own race to the holder's denial), granted nothing:
            // the holder's refusal stands for it too.
            let ours = standing.authorised_for(reference, now);
            if standing.status != Status::AwaitingAuthorisation && !ours {
                return Err(Some(Box::new(standing)));
            }
            let rejected = if ours {
                standing.revoke(now).map(|c| Consent {
                    rejection: c.rejection.map(|r| Rejection {
                        code: RejectionCode::CustomerManuallyRejected,
                        ..r
                    }),
                    ..c
                })
            } else {
                current.data.reject_by_holder(now)
            };
            rejected
                .map(|next| with_keep_until(next, current.exp))
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
            authorised_by: None,
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
        let authorised = c.authorise("ref-1", 2000).unwrap();
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
            ..c.authorise("ref-1", 2000).unwrap()
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

    /// The client's DELETE landing between an approval's swap and its re-read.
    fn revoked_by_the_client(store: &crate::store::memory::MemoryStore, key: &str) {
        let revoked = consent()
            .authorise("ref-a", 2000)
            .unwrap()
            .revoke(2000)
            .unwrap();
        let random = crate::clock::CountingRandom::default();
        crate::store::record::put(store, key, &revoked, 100_000, &random).unwrap();
    }

    #[test]
    fn ad_5_cons_1_an_approval_whose_move_landed_wins_even_when_a_revocation_follows_before_the_re_read()
     {
        let random = crate::clock::CountingRandom::default();
        let memory = crate::store::memory::MemoryStore::new();
        let store = crate::fixtures::Hooked {
            swaps_reported_lost: Some(revoked_by_the_client),
            ..crate::fixtures::Hooked::new(&memory)
        };
        stored(&store);
        match authorise_for(&store, "urn:ofbciba:1", "ref-a", 2000, &random).unwrap() {
            Authorisation::Granted(c) => {
                assert_eq!(c.authorised_by.as_deref(), Some("ref-a"));
                assert_eq!(c.status, Status::Rejected, "the consent as it now stands");
                assert!(
                    !c.authorised_for("ref-a", 2000),
                    "so the poll gets no tokens"
                );
            }
            other => panic!("the approval whose move landed was refused: {other:?}"),
        }
    }

    fn stored(store: &dyn crate::store::KeyValue) -> Consent {
        let random = crate::clock::CountingRandom::default();
        crate::store::record::put(
            store,
            &crate::store::keys::consent("urn:ofbciba:1"),
            &consent(),
            100_000,
            &random,
        )
        .unwrap();
        consent()
    }

    #[test]
    fn ad_5_cons_1_only_one_request_authorises_a_consent_even_when_swaps_report_failure() {
        let random = crate::clock::CountingRandom::default();
        for failing in [false, true] {
            let memory = crate::store::memory::MemoryStore::new();
            let beneath = crate::store::memory::MemoryStore::new();
            let lying = crate::fixtures::Hooked {
                swaps_reported_lost: Some(|_, _| {}),
                ..crate::fixtures::Hooked::new(&beneath)
            };
            let store: &dyn crate::store::KeyValue = if failing { &lying } else { &memory };
            stored(store);
            let first = authorise_for(store, "urn:ofbciba:1", "ref-a", 2000, &random).unwrap();
            let Authorisation::Granted(c) = first else {
                panic!("the first approval is refused: {first:?}");
            };
            assert_eq!(
                (c.status, c.authorised_by.as_deref()),
                (Status::Authorised, Some("ref-a"))
            );
            assert!(c.authorised_for("ref-a", 2000));
            assert!(!c.authorised_for("ref-b", 2000));
            // The same request again (a retry) is still its own; another request is refused
            // with the consent as it stands.
            assert!(matches!(
                authorise_for(store, "urn:ofbciba:1", "ref-a", 2001, &random).unwrap(),
                Authorisation::Granted(_)
            ));
            match authorise_for(store, "urn:ofbciba:1", "ref-b", 2001, &random).unwrap() {
                Authorisation::Refused(c) => {
                    assert_eq!(c.authorised_by.as_deref(), Some("ref-a"))
                }
                other => panic!("a second request authorised the consent: {other:?}"),
            }
            assert_eq!(
                authorise_for(store, "urn:ofbciba:2", "ref-a", 2001, &random).unwrap(),
                Authorisation::Gone
            );
        }
    }

    #[test]
    fn cons_1_a_rejected_consent_is_authorised_by_no_request() {
        let random = crate::clock::CountingRandom::default();
        let store = crate::store::memory::MemoryStore::new();
        let c = stored(&store);
        let key = crate::store::keys::consent("urn:ofbciba:1");
        let current = crate::store::record::get::<Consent>(&store, &key, 2000)
            .unwrap()
            .unwrap();
        let revoked = c.revoke(2000).unwrap();
        crate::store::record::replace(&store, &key, &current, &revoked, 100_000, &random).unwrap();
        match authorise_for(&store, "urn:ofbciba:1", "ref-a", 2001, &random).unwrap() {
            Authorisation::Refused(c) => assert_eq!(
                c.rejection.map(|r| r.code),
                Some(RejectionCode::CustomerManuallyRejected)
            ),
            other => panic!("a rejected consent was authorised: {other:?}"),
        }
        // Its window passed: refused as expired, never authorised.
        let late = crate::store::memory::MemoryStore::new();
        stored(&late);
        assert!(matches!(
            authorise_for(
                &late,
                "urn:ofbciba:1",
                "ref-a",
                1000 + AUTHORISATION_WINDOW,
                &random
            )
            .unwrap(),
            Authorisation::Refused(_)
        ));
    }
}
