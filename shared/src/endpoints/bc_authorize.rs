//! `POST /bc-authorize` (CIBA 7; BCA-1…31, HINT-1…17): the backchannel authentication
//! request. A linear list of named steps; every check comes before anything is written, so a
//! refused request changes no state (design.md, Errors), but for one count: once the client
//! has authenticated, the request counts against its rate, refused or not (BCA-31, issue 16).

use serde_json::json;

use super::Deps;
use crate::auth_req::{self, AuthReqId, AuthRequest, GrantTokens, HintKind, HolderSlots, Status};
use crate::client::auth::{self as client_auth, CheckedClient, ClientAuthSettings};
use crate::client::keys::KeySource;
use crate::client::registry::{Client, Clients, GrantType};
use crate::clock::{SKEW, UnixTime};
use crate::config::{
    AbuseLimits, ClientCertHeader, ConfigError, Issuer, Lifetimes, Variables, required, var,
};
use crate::consent::{Consent, Status as ConsentStatus};
use crate::error::{Endpoint, ProtocolError};
use crate::form::Form;
use crate::hint::{self, HintContext, ResolvedHint};
use crate::http::{Method, Request, Response};
use crate::id_token::at_hash;
use crate::jose::jwk::KeyUse;
use crate::jose::keys::KeySet;
use crate::rate_limit;
use crate::request_object::{self, BackchannelRequest};
use crate::store::{first_use_of_jti, jti_was_used, keys, record};
use crate::users::{User, Users};

/// What the backchannel authentication endpoint is configured with.
#[derive(Debug)]
pub struct BcAuthorizeEndpoint {
    issuer: Issuer,
    clients: Clients,
    users: Users,
    client_cert_header: ClientCertHeader,
    /// The signing keys, current and retired: they verify `id_token_hint`s (HINT-5).
    signing_keys: KeySet,
    lifetimes: Lifetimes,
    /// BCA-31.
    limits: AbuseLimits,
    /// The clients' public keys (KEY-8).
    keys: KeySource,
}

fn store_error<E>(_: E) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

impl BcAuthorizeEndpoint {
    /// Reads the variables bc-authorize needs.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let clients = Clients::load(vars)?;
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            keys: KeySource::load_for(vars, &clients)?,
            clients,
            users: Users::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            signing_keys: KeySet::parse(
                var::SIGNING_KEYS,
                &required(vars, var::SIGNING_KEYS)?,
                KeyUse::Signature,
            )?,
            lifetimes: Lifetimes::load(vars)?,
            limits: AbuseLimits::load(vars)?,
        })
    }

    /// Answers one request. A refusal after client authentication carries its client (and,
    /// where the answer hides it, why) for the adapter's log line (issue 16).
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        let refusal = |e| client_auth::refusal(e, request, Endpoint::BackchannelAuthentication);
        let now = deps.clock.now();
        let (form, client) = match self.authenticate(request, deps) {
            Ok(authenticated) => authenticated,
            Err(e) => return refusal(e),
        };
        let client_id = client.client().client_id.clone();
        super::gathering(deps, |deps| {
            self.respond(&form, client, deps, now)
                .unwrap_or_else(|refused| {
                    let mut response = refusal(refused.error);
                    response.client = Some(client_id);
                    response.detail = refused.detail;
                    response
                })
        })
    }

    /// Until the client is authenticated: nothing is counted, as the request may not be the
    /// client's (a refusal here cannot be charged to anyone).
    fn authenticate(
        &self,
        request: &Request,
        deps: &Deps<'_>,
    ) -> Result<(Form, CheckedClient<'_>), ProtocolError> {
        if request.method != Method::Post {
            return Err(ProtocolError::MethodNotAllowed(
                "the backchannel authentication endpoint answers POST only",
            ));
        }
        let form = Form::parse(request)?;
        let client = self.authenticate_client(request, &form, deps)?;
        Ok((form, client))
    }

    /// Every step after client authentication. The first counts the request against the
    /// client's rate (BCA-31, issue 16), so that every refusal below costs the client what an
    /// acceptance costs: an unknown holder, a consent that is not this client's, a replay.
    fn respond(
        &self,
        form: &Form,
        client: CheckedClient<'_>,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, Refused> {
        rate_limit::count_client_request(
            deps.store,
            &self.limits,
            &client.client().client_id,
            now,
        )?;
        check_registered_for_ciba(client.client())?;
        let compact = request_object::from_form(form)?;
        let verified =
            request_object::verify(compact, client.client(), &self.issuer, &self.keys, deps)?;
        let backchannel = BackchannelRequest::parse(verified, client.client())?;
        check_not_replayed(&backchannel, client.client(), deps, now)?;
        let consent = check_consent(&backchannel, client.client(), deps, now)?;
        let hint = self.resolve_hint(&backchannel, client.client(), &consent, deps, now)?;
        if let Some(user) = hint.user {
            check_holder_for_request(user, &consent)?;
        }
        let id = self.persist(client, &backchannel, &hint, deps, now)?;
        super::purge_turn(deps);
        Ok(Response::json(
            200,
            &json!({
                "auth_req_id": id.expose(),
                "expires_in": self.lifetimes.auth_req,
                "interval": self.lifetimes.poll_interval,
            }),
        ))
    }

    /// CLI-1…9: every check but the assertion's single use, which waits for the rest.
    fn authenticate_client(
        &self,
        request: &Request,
        form: &Form,
        deps: &Deps<'_>,
    ) -> Result<CheckedClient<'_>, ProtocolError> {
        let settings = ClientAuthSettings {
            issuer: &self.issuer,
            clients: &self.clients,
            client_cert_header: &self.client_cert_header,
            keys: &self.keys,
        };
        client_auth::check(
            request,
            form,
            settings,
            Endpoint::BackchannelAuthentication,
            deps,
        )
    }

    /// HINT-*.
    fn resolve_hint<'u>(
        &'u self,
        backchannel: &BackchannelRequest,
        client: &Client,
        consent: &Consent,
        deps: &Deps<'u>,
        now: UnixTime,
    ) -> Result<ResolvedHint<'u>, ProtocolError> {
        let ctx = HintContext {
            users: &self.users,
            signing_keys: &self.signing_keys,
            issuer: &self.issuer,
            store: deps.store,
        };
        hint::resolve(&backchannel.hint, &client.client_id, consent, &ctx, now)
    }

    /// Counts the request against the limits of accepted requests (BCA-31), uses up the
    /// single-use inputs, then stores the request (BCA-24…27, CLI-6, BCA-11, HINT-13). Nothing
    /// before this step wrote anything but the client's rate count, and a refusal here takes
    /// back the counts of this step.
    fn persist(
        &self,
        client: CheckedClient<'_>,
        backchannel: &BackchannelRequest,
        hint: &ResolvedHint<'_>,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<AuthReqId, ProtocolError> {
        let replayed = ProtocolError::InvalidRequest("the request object jti was already used");
        let jti_marker = keys::request_object_jti(
            &client.client().client_id,
            &backchannel.jti,
            backchannel.exp + SKEW,
            now,
        );
        let id = AuthReqId::generate(deps.random).map_err(store_error)?;
        let salt = GrantTokens::new_salt(deps.random).map_err(store_error)?;
        let expires_at = now + i64::from(self.lifetimes.auth_req);
        let access_token = GrantTokens::access_token(&id, &salt, expires_at);
        let auth_request = AuthRequest {
            client_id: client.client().client_id.clone(),
            consent_id: backchannel.consent_id.clone(),
            scope: backchannel.scope.clone(),
            hint: hint.kind,
            subject: hint.user.map(|u| u.sub.clone()),
            binding_message: backchannel
                .binding_message
                .as_ref()
                .map(|b| b.as_str().to_string()),
            acr: backchannel.acr.clone(),
            id_token_claims: backchannel.id_token_claims.clone(),
            userinfo_claims: backchannel.userinfo_claims.clone(),
            created: now,
            expires_at,
            status: match hint.kind {
                HintKind::AsGenerated => Status::AwaitingClaim,
                HintKind::IdTokenHint | HintKind::LoginHint | HintKind::AdGenerated => {
                    Status::Pending
                }
            },
            decision: None,
            denial: None,
            token_salt: Some(salt),
            at_hash: at_hash(access_token.expose()),
            id_token: None,
        };
        let admission = rate_limit::admit(deps.store, &self.limits, &auth_request, now)?;
        let reference = id.reference();
        let stored = (|| {
            client.confirm(deps.store)?;
            if !first_use_of_jti(deps.store, &jti_marker).map_err(store_error)? {
                return Err(replayed);
            }
            if !hint.use_up(deps.store, now).map_err(store_error)? {
                return Err(ProtocolError::ExpiredLoginHintToken(
                    "the login_hint_token was already used",
                ));
            }
            // HINT-13: a request that could not be stored gives its AD-generated id back. The
            // holder's slot (AD-2) is written with the request, in one set-many (issue 18).
            let holder = hint.user.map(|user| {
                (
                    user.sub.as_str(),
                    HolderSlots::for_limit(self.limits.holder_pending),
                )
            });
            auth_req::store_new(deps.store, &reference, &auth_request, holder, deps.random)
                .map_err(store_error)
                .inspect_err(|_| hint.give_back(deps.store, now))
        })();
        match stored {
            Ok(()) => admission.keep(),
            Err(e) => {
                admission.take_back(deps.store);
                return Err(e);
            }
        }
        Ok(id)
    }
}

/// BCA-11: a request object already accepted is refused as a replay before its consent, its
/// hint or the client's assertion is read or used up (an AD-generated id would otherwise answer
/// `expired_login_hint_token`). A read only: the single-use write is in `persist`, where two
/// replays racing each other meet. Parsing comes first because it reads no store and a replay
/// of an accepted request always parses.
fn check_not_replayed(
    backchannel: &BackchannelRequest,
    client: &Client,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<(), ProtocolError> {
    let marker = keys::request_object_jti(
        &client.client_id,
        &backchannel.jti,
        backchannel.exp + SKEW,
        now,
    );
    if jti_was_used(deps.store, &marker).map_err(store_error)? {
        return Err(ProtocolError::InvalidRequest(
            "the request object jti was already used",
        ));
    }
    Ok(())
}

/// BCA-2: the client is registered for the CIBA grant, in poll mode (the only mode a
/// registration can hold).
fn check_registered_for_ciba(client: &Client) -> Result<(), ProtocolError> {
    if client.grant_types.contains(&GrantType::Ciba) {
        Ok(())
    } else {
        Err(ProtocolError::UnauthorizedClient(
            "the client is not registered for the CIBA grant",
        ))
    }
}

/// BCA-14 [decision, AMB-13]: the consent exists, this client lodged it, and it still awaits
/// authorisation within its window; otherwise `invalid_scope`.
fn check_consent(
    backchannel: &BackchannelRequest,
    client: &Client,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<Consent, ProtocolError> {
    let stored = record::get::<Consent>(deps.store, &keys::consent(&backchannel.consent_id), now)
        .map_err(store_error)?
        .ok_or(ProtocolError::InvalidScope("the consent is unknown"))?;
    if stored.data.client_id != client.client_id {
        // The same answer as an unknown consent: another client's ids are not confirmed.
        return Err(ProtocolError::InvalidScope("the consent is unknown"));
    }
    let consent = stored.data.at(now);
    if consent.status != ConsentStatus::AwaitingAuthorisation {
        return Err(ProtocolError::InvalidScope(
            "the consent is not awaiting authorisation",
        ));
    }
    Ok(consent)
}

/// A refusal after client authentication, and why when the answer hides it (the log line).
#[derive(Debug)]
struct Refused {
    error: ProtocolError,
    detail: Option<&'static str>,
}

impl From<ProtocolError> for Refused {
    fn from(error: ProtocolError) -> Self {
        Self {
            error,
            detail: None,
        }
    }
}

/// BCA-16 at bc-authorize, with HINT-2 (issue 16): a holder who does not act for the consent's
/// `businessEntity` answers exactly as an unknown holder (400 `unknown_user_id`, the same
/// description). Otherwise a client that lodges consents for any CPF with a CNPJ, and names
/// them by `login_hint`, would learn from 403 against 400 that the CPF is this bank's customer,
/// and which CNPJs it acts for, without notifying anyone. The log line keeps the real reason.
/// A holder other than the consent's `loggedUser` stays 403 `access_denied` (BCA-16): only a
/// hint that already names a holder the client knows can get there (an `id_token_hint` issued
/// to it, an AD-generated id from the holder's device), as `login_hint` resolves through the
/// `loggedUser` itself.
fn check_holder_for_request(user: &User, consent: &Consent) -> Result<(), Refused> {
    match holder_mismatch(user, consent) {
        None => Ok(()),
        Some(Mismatch::NotForBusinessEntity) => Err(Refused {
            error: hint::unknown(),
            detail: Some(NOT_FOR_BUSINESS_ENTITY),
        }),
        Some(mismatch) => Err(mismatch.denied().into()),
    }
}

/// Why a holder does not fit a consent with a `businessEntity` (BCA-16).
const NOT_FOR_BUSINESS_ENTITY: &str = "the holder does not act for the consent's businessEntity";

/// How a holder fails BCA-16.
#[derive(Debug, Clone, Copy)]
enum Mismatch {
    /// Not the consent's `loggedUser`.
    NotLoggedUser,
    /// The `loggedUser`, but not acting for the consent's `businessEntity`.
    NotForBusinessEntity,
}

impl Mismatch {
    /// BCA-16's answer: 403 `access_denied`.
    fn denied(self) -> ProtocolError {
        match self {
            Self::NotLoggedUser => ProtocolError::AccessDenied(
                "the hint names someone other than the consent's loggedUser",
            ),
            Self::NotForBusinessEntity => ProtocolError::AccessDenied(NOT_FOR_BUSINESS_ENTITY),
        }
    }
}

/// BCA-16 [decision, AMB-13]: the holder the hint names is the consent's `loggedUser`, and
/// acts for its `businessEntity` if it has one; otherwise 403 `access_denied`, before anyone
/// is notified (bc-authorize hides the second, [`check_holder_for_request`]).
fn holder_mismatch(user: &User, consent: &Consent) -> Option<Mismatch> {
    if user.cpf != consent.logged_user {
        return Some(Mismatch::NotLoggedUser);
    }
    match &consent.business_entity {
        Some(cnpj) if !user.cnpj.contains(cnpj) => Some(Mismatch::NotForBusinessEntity),
        Some(_) | None => None,
    }
}

/// The holder checks of BCA-16, for the device API's claim step (AD-8): the holder is on the
/// device, so both mismatches answer 403 `access_denied`.
pub fn holder_matches_consent(user: &User, consent: &Consent) -> Result<(), ProtocolError> {
    holder_mismatch(user, consent).map_or(Ok(()), |m| Err(m.denied()))
}
