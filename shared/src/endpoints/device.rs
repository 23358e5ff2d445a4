//! `/device/...` (design.md, The device API; AD-2…9, HINT-13/15): the bank's authentication
//! device lists and reads a holder's requests, approves or denies them, issues AD-generated
//! hint ids and claims AS-generated requests. Every call carries the device token, compared
//! in constant time ([`crate::config::DeviceApiToken`]).
//!
//! `GET /device/holders` lists the account holders (`sub` and `name`), for a device that
//! lets its user pick one (the sandbox page, [`super::device_page`], which this endpoint
//! also serves when `device_page` is on).
//!
//! A request is addressed by its `auth_req_id` or by its `id` from the list (an opaque
//! reference, what a notification to the holder's phone should carry: AD-1). Errors: 400
//! `invalid_request` for malformed input, 401 without the device token, 403 `access_denied`
//! when an approval fails a check (the request is then denied), 404 for an unknown request,
//! 409 `invalid_grant` for a request in the wrong state, 410 `expired_token` once it expired.

use serde_json::{Map, Value, json};

use super::Deps;
use super::bc_authorize::holder_matches_consent;
use super::device_page::DevicePage;
use crate::auth_req::{
    self, AuthReqId, AuthRequest, Decision, DenialReason, HintKind, HolderSlots, State, WrongState,
};
use crate::client::auth::unverified_issuer;
use crate::client::certificate::ClientCertificate;
use crate::client::keys::KeySource;
use crate::clock::{SKEW, UnixTime};
use crate::config::{Config, ConfigError, DeviceApiCertificates, Variables};
use crate::consent::{Authorisation, Consent};
use crate::discovery::{ACR_LOA2, ACR_LOA3, LHT_AD_GENERATED};
use crate::error::{Endpoint, ProtocolError};
use crate::form::Form;
use crate::hint::{AD_HINT_TTL, issue_ad_hint};
use crate::http::{Method, Request, Response};
use crate::id_token::{self, IdTokenContent};
use crate::jose::jwe;
use crate::jose::jws::verify_ps256;
use crate::rate_limit;
use crate::store::{Swap, first_use_of_jti, keys, record, release, was_used};
use crate::users::User;

/// `typ` of the AS-generated login_hint_token's JWS (BR-CIBA-GH 5.2.4.1.1.1, HINT-15).
pub const CIBA_BR_JWT: &str = "cibabr+jwt";

/// Longest life of an AS-generated login_hint_token: 5 minutes (HINT-15, AMB-19).
const QR_MAX_LIFETIME: i64 = 300;

/// What the device API is configured with: everything (it signs id_tokens, decrypts QR
/// tokens and reads clients and holders), and whether it serves the sandbox page.
#[derive(Debug)]
pub struct DeviceEndpoint {
    config: Config,
    page: DevicePage,
    /// The size of a holder's list, from `holder_pending_limit` (AD-2, BCA-31).
    holder_slots: HolderSlots,
    certificates: DeviceApiCertificates,
    /// The clients' public keys, for the QR code's JWS (KEY-8, HINT-15).
    keys: KeySource,
}

fn bad(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidRequest(why)
}

fn store_error<E>(_: E) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

fn wrong_state(WrongState(state): WrongState) -> ProtocolError {
    match state {
        State::Expired => ProtocolError::ExpiredToken("the request has expired"),
        State::AwaitingClaim => {
            ProtocolError::InvalidGrant("the request waits for its QR code to be claimed")
        }
        State::Pending | State::Approved | State::Denied | State::Consumed => {
            ProtocolError::InvalidGrant("the request was already decided")
        }
    }
}

impl DeviceEndpoint {
    /// Reads every variable, `device_page` and `device_api_certificates`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let config = Config::load(vars)?;
        let certificates = DeviceApiCertificates::load(vars, config.client_cert_header.mtls())?;
        Ok(Self {
            keys: KeySource::load_for(vars, &config.clients)?,
            config,
            page: DevicePage::load(vars)?,
            holder_slots: HolderSlots::load(vars)?,
            certificates,
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        super::gathering(deps, |deps| {
            self.respond(request, deps)
                .unwrap_or_else(|e| e.to_response(Endpoint::Device))
        })
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        // The page's files are public (they hold no data); everything they do goes through
        // the calls below, with the device token.
        if let Some(page) = self.page.serve(request) {
            return Ok(page);
        }
        self.authorize(request)?;
        let now = deps.clock.now();
        // Each segment percent-decoded (`%2D` is `-`), strictly UTF-8.
        let decoded: Vec<String> = request
            .path_info
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|s| s.into_owned())
            })
            .collect::<Result<_, _>>()
            .map_err(|_| ProtocolError::NotFound("no such device API call"))?;
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        match (request.method, segments.as_slice()) {
            (Method::Get, ["holders"]) => Ok(self.holders()),
            (Method::Get, ["requests"]) => self.list(request, deps, now),
            (Method::Get, ["requests", id]) => {
                let (reference, stored) = self.find(id, deps, now)?;
                let request = redeemed(stored.data, &reference, deps, now)?;
                Ok(Response::json(
                    200,
                    &self.view(&request, id, deps.store, now),
                ))
            }
            (Method::Post, ["requests", id, "approve"]) => self.approve(request, id, deps, now),
            (Method::Post, ["requests", id, "deny"]) => self.deny(id, deps, now),
            (Method::Post, ["hints"]) => self.hint(request, deps, now),
            (Method::Post, ["claims"]) => self.claim(request, deps, now),
            (Method::Post, ["id-tokens", "revoke"]) => self.cancel_id_tokens(request, deps, now),
            (_, ["requests"] | ["requests", _] | ["requests", _, "approve" | "deny"])
            | (_, ["holders"] | ["hints"] | ["claims"] | ["id-tokens", "revoke"]) => Err(
                ProtocolError::MethodNotAllowed("this device API call takes another method"),
            ),
            _ => Err(ProtocolError::NotFound("no such device API call")),
        }
    }

    /// The device token, `Authorization: Bearer`, compared in constant time; with mTLS on,
    /// also the caller's certificate.
    fn authorize(&self, request: &Request) -> Result<(), ProtocolError> {
        let missing = ProtocolError::InvalidToken("the device API token is required");
        let mut values = request.header_values("authorization");
        let header = values.next().ok_or(missing)?;
        if values.next().is_some() {
            return Err(bad("more than one Authorization header"));
        }
        let token = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or(missing)?;
        if !self.config.device_api_token.matches(token) {
            return Err(ProtocolError::InvalidToken("the device API token is wrong"));
        }
        // With mTLS on, the token alone is not enough: the bank backend's certificate, as the
        // proxy forwards it, must be one of `device_api_certificates` (design.md). Without
        // mTLS (sandboxes) the token alone stands.
        if self.config.client_cert_header.mtls() {
            let listed = ClientCertificate::presented(request, &self.config.client_cert_header)
                .ok()
                .flatten()
                .is_some_and(|c| self.certificates.lists(c.x5t_s256()));
            if !listed {
                return Err(ProtocolError::InvalidToken(
                    "the device API requires a certificate listed in device_api_certificates",
                ));
            }
        }
        Ok(())
    }

    /// The holder named by a body's `subject`.
    fn holder(&self, subject: Option<&str>) -> Result<&User, ProtocolError> {
        let sub = subject.ok_or(bad("subject is required"))?;
        self.config
            .users
            .by_sub(sub)
            .ok_or(bad("subject is not a known account holder"))
    }

    /// `GET /device/holders`: who may be picked, `sub` and `name` only (never a CPF or a
    /// CNPJ), in the order of `users`.
    fn holders(&self) -> Response {
        let holders: Vec<Value> = self
            .config
            .users
            .iter()
            .map(|u| json!({ "sub": u.sub, "name": u.name }))
            .collect();
        Response::json(200, &json!({ "holders": holders }))
    }

    /// A request by its `auth_req_id` or its reference.
    fn find(
        &self,
        id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<(String, record::Stored<AuthRequest>), ProtocolError> {
        let not_found = ProtocolError::NotFound("no such request");
        let id = AuthReqId::parse(id).ok_or(not_found)?;
        for reference in [id.reference(), id.expose().to_string()] {
            if let Some(stored) =
                record::get::<AuthRequest>(deps.store, &keys::auth_request(&reference), now)
                    .map_err(store_error)?
            {
                // REG-36: a deleted registration's pending requests are gone with it.
                if !self.client_exists(&stored.data.client_id, deps, now)? {
                    return Err(not_found);
                }
                return Ok((reference, stored));
            }
        }
        Err(not_found)
    }

    /// Whether the request's client is still registered, static or dynamic (REG-30/36): no
    /// store call for a static client.
    fn client_exists(
        &self,
        client_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<bool, ProtocolError> {
        crate::client::registration::lookup(&self.config.clients, deps.store, client_id, now)
            .map(|c| c.is_some())
            .map_err(store_error)
    }

    fn consent(
        &self,
        consent_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Consent, ProtocolError> {
        record::get::<Consent>(deps.store, &keys::consent(consent_id), now)
            .map_err(store_error)?
            .map(|c| c.data)
            .ok_or(ProtocolError::InvalidGrant("the request's consent is gone"))
    }

    /// AD-2: what the holder must see to decide.
    fn view(
        &self,
        request: &AuthRequest,
        reference: &str,
        store: &dyn crate::store::KeyValue,
        now: UnixTime,
    ) -> Value {
        // Static or registered (REG-30); a registration that cannot be read shows no name.
        let client = crate::client::registration::lookup(
            &self.config.clients,
            store,
            &request.client_id,
            now,
        )
        .ok()
        .flatten();
        let client = client.as_deref();
        let mut view = json!({
            "id": reference,
            "status": request.state(now),
            "client_id": request.client_id,
            "client_name": client.and_then(|c| c.client_name.clone()),
            "organisation_id": client.and_then(|c| c.org_id.clone()),
            "binding_message": request.binding_message,
            "scope": request.scope.join(" "),
            "consent_id": request.consent_id,
            "acr_values": request.acr.values,
            "acr_essential": request.acr.essential,
            "subject": request.subject,
            "created_at": crate::time::format(request.created),
            "expires_at": crate::time::format(request.expires_at),
            "expires_in": (request.expires_at - now).max(0),
        });
        if let Some(d) = request.denial {
            view["denial_reason"] = json!(d);
        }
        view
    }

    /// The view with the consent's permissions and dates (AD-2).
    fn view_with_consent(
        &self,
        request: &AuthRequest,
        reference: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Value, ProtocolError> {
        let mut view = self.view(request, reference, deps.store, now);
        if let Ok(consent) = self.consent(&request.consent_id, deps, now) {
            let consent = consent.at(now);
            view["consent"] = json!({
                "consentId": consent.consent_id,
                "status": consent.status,
                "permissions": consent.permissions,
                "expirationDateTime": consent.expiration.map(crate::time::format),
                "businessEntity": consent.business_entity.as_ref().map(|c| c.as_str()),
            });
        }
        Ok(view)
    }

    /// `GET /device/requests?subject=<sub>`: the holder's requests still waiting (AD-2).
    fn list(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        // The query string decodes like a form: `+`, percent-escapes, strict UTF-8.
        let query = Form::parse_body(request.query.as_deref().unwrap_or_default().as_bytes())?;
        let subject = query
            .get("subject")
            .ok_or(bad("the subject query parameter is required"))?
            .to_string();
        let mut requests = Vec::new();
        for reference in auth_req::recent_for_holder(deps.store, &subject, self.holder_slots, now)
            .map_err(store_error)?
        {
            if let Some(stored) =
                record::get::<AuthRequest>(deps.store, &keys::auth_request(&reference), now)
                    .map_err(store_error)?
                && stored.data.state(now) == State::Pending
                && stored.data.subject.as_deref() == Some(subject.as_str())
                && self.client_exists(&stored.data.client_id, deps, now)?
            {
                requests.push(self.view_with_consent(&stored.data, &reference, deps, now)?);
            }
        }
        Ok(Response::json(200, &json!({ "requests": requests })))
    }

    /// `POST /device/requests/<id>/approve` (AD-3…5): the holder approved. Any AD-5 check
    /// that fails denies the request instead (403 `access_denied`).
    fn approve(
        &self,
        request: &Request,
        id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let body = json_object(request)?;
        let acr = string_member(&body, "acr")?.ok_or(bad("acr is required"))?;
        if acr != ACR_LOA2 && acr != ACR_LOA3 {
            return Err(bad("acr must be urn:brasil:openbanking:loa2 or loa3"));
        }
        let amr = match body.get("amr") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(bad("amr must be an array of strings"))?,
            Some(_) => return Err(bad("amr must be an array of strings")),
        };
        let (reference, stored) = self.find(id, deps, now)?;
        let auth_request = &stored.data;
        if auth_request.state(now) != State::Pending {
            return Err(self.decided(&reference, auth_request, deps, now));
        }
        let sub = match (&auth_request.subject, string_member(&body, "subject")?) {
            (Some(known), Some(given)) if known != given => {
                return Err(bad("subject is not the holder this request names"));
            }
            (Some(known), _) => known.clone(),
            (None, Some(given)) => given.to_string(),
            (None, None) => return Err(bad("subject is required")),
        };
        let user = self.holder(Some(&sub))?;
        let consent = self.consent(&auth_request.consent_id, deps, now)?;
        if let Err(reason) = approval_checks(auth_request, &reference, user, &consent, acr, now) {
            return Err(self.refuse(&reference, &stored, reason, &consent, deps, now));
        }
        let decision = Decision {
            sub: user.sub.clone(),
            acr: acr.to_string(),
            amr,
            auth_time: now,
        };
        let mut jti = [0u8; 16];
        deps.random.fill(&mut jti).map_err(store_error)?;
        let id_token = id_token::sign(
            &IdTokenContent {
                issuer: &self.config.issuer,
                request: auth_request,
                decision: &decision,
                user,
                at_hash: &auth_request.at_hash,
                jti: &uuid::Builder::from_random_bytes(jti)
                    .into_uuid()
                    .to_string(),
                iat: now,
                lifetime: self.config.lifetimes.id_token,
            },
            &self.config.keys.signing,
        )?;
        let approved = auth_request
            .approve(decision, id_token, now)
            .map_err(wrong_state)?;
        // AD-5, CONS-1: the consent's move to AUTHORISED is the step that decides, one
        // compare-and-swap: of two requests on one consent, or this approval and the client's
        // DELETE, exactly one wins. The request is approved only after it, so an approved
        // request always has its consent authorised by it; a fault between the two writes
        // leaves the request pending and the consent this request's, which the device's retry
        // completes (nothing can be redeemed meanwhile).
        let authorised = match crate::consent::authorise_for(
            deps.store,
            &auth_request.consent_id,
            &reference,
            now,
            deps.random,
        )
        .map_err(store_error)?
        {
            Authorisation::Granted(consent) => consent,
            Authorisation::Refused(standing) => {
                return Err(self.refuse(
                    &reference,
                    &stored,
                    DenialReason::ConsentUnavailable,
                    &standing,
                    deps,
                    now,
                ));
            }
            Authorisation::Gone => {
                return Err(ProtocolError::InvalidGrant("the request's consent is gone"));
            }
        };
        if let Err(e) = self.write(&reference, &stored, &approved, deps) {
            // The request was decided meanwhile (the holder's denial won its own race): the
            // consent follows the decision that stands.
            if matches!(e, ProtocolError::InvalidGrant(_))
                && let Ok((_, current)) = self.find(id, deps, now)
            {
                return Err(self.decided(&reference, &current.data, deps, now));
            }
            return Err(e);
        }
        let mut view = self.view(&approved, &reference, deps.store, now);
        view["consent_status"] = json!(authorised.status);
        Ok(Response::json(200, &view))
    }

    /// An approval that failed an AD-5 check: the request is denied (if it still can be) and
    /// the device is told why, with the consent's real state when that is the reason.
    fn refuse(
        &self,
        reference: &str,
        stored: &record::Stored<AuthRequest>,
        reason: DenialReason,
        consent: &Consent,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> ProtocolError {
        let denied = match stored.data.deny(reason, now) {
            Ok(denied) => denied,
            Err(e) => return wrong_state(e),
        };
        if let Err(e) = self.write(reference, stored, &denied, deps) {
            return e;
        }
        match reason {
            DenialReason::ConsentUnavailable => {
                ProtocolError::AccessDenied(consent_denial_text(&consent.at(now)))
            }
            other => ProtocolError::AccessDenied(denial_text(other)),
        }
    }

    /// `POST /device/requests/<id>/deny` (AD-6).
    fn deny(&self, id: &str, deps: &Deps<'_>, now: UnixTime) -> Result<Response, ProtocolError> {
        let (reference, stored) = self.find(id, deps, now)?;
        let denied = match stored.data.deny(DenialReason::HolderDenied, now) {
            Ok(denied) => denied,
            Err(_) => return Err(self.decided(&reference, &stored.data, deps, now)),
        };
        self.write(&reference, &stored, &denied, deps)?;
        crate::consent::follow_decision(deps.store, &denied, &reference, now, deps.random)
            .map_err(store_error)?;
        Ok(Response::json(
            200,
            &self.view(&denied, &reference, deps.store, now),
        ))
    }

    /// Swaps in the request's next state; a concurrent decision makes this one lose (AD-4:
    /// the first decision wins). The winning decision frees the request's places in the
    /// pending limits (BCA-31); if that fails, the counts stay high until their bucket ends,
    /// which refuses more rather than less, so the decision stands.
    fn write(
        &self,
        reference: &str,
        stored: &record::Stored<AuthRequest>,
        next: &AuthRequest,
        deps: &Deps<'_>,
    ) -> Result<(), ProtocolError> {
        match record::replace(
            deps.store,
            &keys::auth_request(reference),
            stored,
            next,
            stored.exp,
            deps.random,
        )
        .map_err(store_error)?
        {
            Swap::Swapped => {
                if matches!(
                    next.status,
                    auth_req::Status::Approved | auth_req::Status::Denied
                ) {
                    let _ = rate_limit::release(deps.store, &stored.data, deps.clock.now());
                }
                Ok(())
            }
            Swap::Conflict => Err(ProtocolError::InvalidGrant(
                "the request was already decided",
            )),
        }
    }

    /// The answer to a decision on a request that is no longer pending (AD-4: the first
    /// decision wins). The consent is first moved after the decision that stands
    /// ([`crate::consent::follow_decision`]), in case the call that made it stopped between
    /// its two writes (a store fault): a device that retries after a 500 completes it, and is
    /// then told the request was decided.
    fn decided(
        &self,
        reference: &str,
        request: &AuthRequest,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> ProtocolError {
        match crate::consent::follow_decision(deps.store, request, reference, now, deps.random) {
            Ok(_) => wrong_state(WrongState(request.state(now))),
            Err(e) => store_error(e),
        }
    }

    /// `POST /device/hints {"subject"}` (AD-9, HINT-13): a short-lived, single-use id for the
    /// AD-generated login_hint_token.
    fn hint(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let body = json_object(request)?;
        let user = self.holder(string_member(&body, "subject")?)?;
        let id = issue_ad_hint(user, deps.store, deps.random, now).map_err(store_error)?;
        let login_hint_token = json!({ "format": LHT_AD_GENERATED, "id": id }).to_string();
        Ok(Response::json(
            201,
            &json!({ "id": id, "expires_in": AD_HINT_TTL, "login_hint_token": login_hint_token }),
        ))
    }

    /// `POST /device/claims {"login_hint_token", "subject"}` (AD-8, HINT-15): the holder
    /// scanned an AS-generated request's QR code.
    fn claim(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let body = json_object(request)?;
        let token =
            string_member(&body, "login_hint_token")?.ok_or(bad("login_hint_token is required"))?;
        let user = self.holder(string_member(&body, "subject")?)?;
        let qr = self.verify_qr(token, deps, now)?;
        let id = AuthReqId::parse(&qr.auth_request_id).ok_or(ProtocolError::InvalidGrant(
            "no such request awaits a claim",
        ))?;
        let reference = id.reference();
        let stored = record::get::<AuthRequest>(deps.store, &keys::auth_request(&reference), now)
            .map_err(store_error)?
            .filter(|s| s.data.client_id == qr.client_id && s.data.hint == HintKind::AsGenerated)
            .ok_or(ProtocolError::InvalidGrant(
                "no such request awaits a claim",
            ))?;
        let claimed = stored.data.claim(&user.sub, now).map_err(|e| match e {
            WrongState(State::Expired) => ProtocolError::ExpiredToken("the request has expired"),
            WrongState(_) => ProtocolError::InvalidGrant("the request was already claimed"),
        })?;
        let consent = self.consent(&stored.data.consent_id, deps, now)?;
        holder_matches_consent(user, &consent)?;
        let jti_marker = keys::login_hint_token_jti(&qr.client_id, &qr.jti, qr.exp + SKEW, now);
        if !first_use_of_jti(deps.store, &jti_marker).map_err(store_error)? {
            return Err(ProtocolError::InvalidGrant(
                "the login_hint_token was already used",
            ));
        }
        // The holder's slot before the claim, so that a claimed request is always listed
        // (AD-2). If either write fails, the jti is given back and the holder can scan the
        // same code again (HINT-15: one claim, not one attempt); the slot a failed claim left
        // lists nothing, as the list shows only the holder's pending requests, each once.
        let claimed_and_listed = auth_req::remember_for_holder(
            deps.store,
            &user.sub,
            &reference,
            stored.exp,
            self.holder_slots,
            deps.random,
        )
        .map_err(store_error)
        .and_then(|()| self.write(&reference, &stored, &claimed, deps));
        if let Err(e) = claimed_and_listed {
            if matches!(e, ProtocolError::ServerError(_)) {
                let _ = release(deps.store, &jti_marker.key, jti_marker.forget_after);
            }
            return Err(e);
        }
        let view = self.view_with_consent(&claimed, &reference, deps, now)?;
        Ok(Response::json(200, &view))
    }

    /// `POST /device/id-tokens/revoke` `{"jti"}` or `{"subject", "not_before"}` (BR-CIBA
    /// 5.2.2-20, HINT-10): the holder institution cancels issued id_tokens (fraud, security);
    /// they stop working as `id_token_hint`. `not_before` is a NumericDate or an RFC 3339 UTC
    /// date-time.
    fn cancel_id_tokens(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let body = json_object(request)?;
        let jti = string_member(&body, "jti")?;
        let subject = string_member(&body, "subject")?;
        match (jti, subject) {
            (Some(jti), None) if !body.contains_key("not_before") => {
                id_token::cancel_jti(deps.store, jti, now, deps.random).map_err(store_error)?;
                Ok(Response::json(
                    200,
                    &json!({ "jti": jti, "cancelled": true }),
                ))
            }
            (None, Some(sub)) => {
                let not_before = not_before(body.get("not_before"), now)?;
                let in_force =
                    id_token::cancel_before(deps.store, sub, not_before, now, deps.random)
                        .map_err(store_error)?;
                Ok(Response::json(
                    200,
                    &json!({ "subject": sub, "not_before": in_force }),
                ))
            }
            _ => Err(bad("send either jti, or subject with not_before")),
        }
    }

    /// HINT-15: decrypt with an AS encryption key, then verify the client's PS256 JWS.
    fn verify_qr(
        &self,
        token: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<QrToken, ProtocolError> {
        let plaintext = jwe::decrypt(token, &self.config.keys.encryption, deps.random)
            .map_err(|_| bad("the login_hint_token cannot be decrypted"))?;
        let jws = std::str::from_utf8(&plaintext)
            .map_err(|_| bad("the login_hint_token does not hold a JWS"))?;
        let client_id = unverified_issuer(jws).ok_or(bad("the login_hint_token has no iss"))?;
        let client = self
            .config
            .clients
            .get(&client_id)
            .ok_or(ProtocolError::InvalidGrant(
                "no such request awaits a claim",
            ))?;
        // KEY-14: the client's key set out of reach is 503, not a bad token.
        let verifiers = self.keys.verifiers(deps, client, jws)?;
        let verified = verify_ps256(jws, verifiers.iter()).map_err(|_| {
            bad("the login_hint_token signature does not verify with the client's keys")
        })?;
        if !verified
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(CIBA_BR_JWT))
        {
            return Err(bad("the login_hint_token typ must be cibabr+jwt"));
        }
        if verified.str("iss") != Some(client.client_id.as_str()) {
            return Err(bad("the login_hint_token iss is not the client"));
        }
        let aud_ok = match verified.claims.get("aud") {
            Some(Value::String(a)) => a == self.config.issuer.as_str(),
            Some(Value::Array(l)) => l
                .iter()
                .any(|a| a.as_str() == Some(self.config.issuer.as_str())),
            _ => false,
        };
        if !aud_ok {
            return Err(bad("the login_hint_token aud must be the issuer"));
        }
        let jti = verified
            .str("jti")
            .filter(|j| is_uuid_v4(j))
            .ok_or(bad("the login_hint_token jti must be a UUIDv4"))?
            .to_string();
        let iat = verified.iat.ok_or(bad("the login_hint_token has no iat"))?;
        let exp = verified.exp.ok_or(bad("the login_hint_token has no exp"))?;
        if iat > now + SKEW {
            return Err(bad("the login_hint_token is issued in the future"));
        }
        if exp - iat > QR_MAX_LIFETIME || exp > now + QR_MAX_LIFETIME + SKEW {
            return Err(bad("the login_hint_token lives longer than 5 minutes"));
        }
        if exp <= now {
            return Err(ProtocolError::ExpiredToken(
                "the login_hint_token has expired",
            ));
        }
        let auth_request_id = verified
            .str("auth_request_id")
            .ok_or(bad("the login_hint_token has no auth_request_id"))?
            .to_string();
        Ok(QrToken {
            client_id: client.client_id.clone(),
            jti,
            exp,
            auth_request_id,
        })
    }
}

/// The request as its client stands with it (TOK-10): an approved request whose redemption
/// marker is taken was handed out. The marker decides; the record's own `CONSUMED` is a last,
/// best-effort write that a store fault may have stopped (the client has its tokens by then).
fn redeemed(
    request: AuthRequest,
    reference: &str,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<AuthRequest, ProtocolError> {
    if request.state(now) == State::Approved
        && was_used(deps.store, &keys::auth_request_redeemed(reference)).map_err(store_error)?
    {
        return request.consume(now).map_err(wrong_state);
    }
    Ok(request)
}

/// `not_before` of a cancellation (HINT-10): a whole NumericDate or an RFC 3339 UTC
/// date-time, after 1970 and no later than now plus the longest id_token lifetime (a time
/// further on would cancel id_tokens not issued yet, for years past any this server makes).
/// Anything else is 400: a huge number once overflowed the record's expiry and erased the
/// earlier cancellation.
fn not_before(value: Option<&Value>, now: UnixTime) -> Result<UnixTime, ProtocolError> {
    let time = match value {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(t)) => crate::time::parse(t),
        _ => None,
    }
    .ok_or(bad(
        "not_before must be a NumericDate or an RFC 3339 UTC date-time",
    ))?;
    let latest = now
        .checked_add(id_token::LONGEST_LIFETIME)
        .ok_or(ProtocolError::ServerError("the clock is out of range"))?;
    if time <= 0 || time > latest {
        return Err(bad(
            "not_before must be after 1970 and no later than now plus the longest id_token lifetime",
        ));
    }
    Ok(time)
}

/// A verified AS-generated login_hint_token.
struct QrToken {
    client_id: String,
    jti: String,
    exp: UnixTime,
    auth_request_id: String,
}

fn is_uuid_v4(text: &str) -> bool {
    crate::fapi::is_uuid_text(text) && text.as_bytes()[14] == b'4'
}

/// AD-5: the checks an approval must pass; the first that fails is the denial's reason.
fn approval_checks(
    request: &AuthRequest,
    reference: &str,
    user: &User,
    consent: &Consent,
    acr: &str,
    now: UnixTime,
) -> Result<(), DenialReason> {
    if user.cpf != consent.logged_user {
        return Err(DenialReason::CpfMismatch);
    }
    if let Some(cnpj) = &consent.business_entity
        && !user.cnpj.contains(cnpj)
    {
        return Err(DenialReason::CnpjMismatch);
    }
    let claims = &request.id_token_claims;
    if let Some(cpf) = claims
        .cpf
        .as_ref()
        .filter(|c| c.essential && !c.values.is_empty())
        && !cpf.values.iter().any(|v| v == user.cpf.as_str())
    {
        return Err(DenialReason::ClaimMismatch);
    }
    if let Some(cnpj) = claims
        .cnpj
        .as_ref()
        .filter(|c| c.essential && !c.values.is_empty())
        && !cnpj
            .values
            .iter()
            .all(|v| user.cnpj.iter().any(|c| c.as_str() == v))
    {
        return Err(DenialReason::ClaimMismatch);
    }
    if !request.acr.reached_by(acr) {
        return Err(DenialReason::AcrNotReached);
    }
    // Awaiting, or already moved by this request (even if revoked or expired since): an
    // approval whose request write failed after the consent's move (a store fault), or that
    // is still on its way to it, is completed by the device's retry or a concurrent approval
    // of the same request, so a consent revoked after its move always goes with an approved
    // request (CONS-1: the client's DELETE came second).
    if consent.at(now).status != crate::consent::Status::AwaitingAuthorisation
        && !consent.moved_by(reference)
    {
        return Err(DenialReason::ConsentUnavailable);
    }
    Ok(())
}

/// The device's answer when the consent is not the request's to authorise: its real state
/// (AD-5, AD-7, CONS-1).
fn consent_denial_text(consent: &Consent) -> &'static str {
    use crate::consent::{RejectionCode, Status};
    match (consent.status, consent.rejection.map(|r| r.code)) {
        (Status::Authorised, _) => {
            "the consent was already authorised through another request: the request is denied"
        }
        (Status::Rejected, Some(RejectionCode::CustomerManuallyRejected)) => {
            "the consent was rejected (CUSTOMER_MANUALLY_REJECTED): the request is denied"
        }
        (Status::Rejected, Some(RejectionCode::CustomerManuallyRevoked)) => {
            "the consent was revoked (CUSTOMER_MANUALLY_REVOKED): the request is denied"
        }
        (Status::Rejected, Some(RejectionCode::ConsentExpired)) => {
            "the consent's authorisation window passed (CONSENT_EXPIRED): the request is denied"
        }
        (Status::Rejected, _) => "the consent is rejected: the request is denied",
        (Status::AwaitingAuthorisation, _) => denial_text(DenialReason::ConsentUnavailable),
    }
}

fn denial_text(reason: DenialReason) -> &'static str {
    match reason {
        DenialReason::HolderDenied => "the holder denied the request",
        DenialReason::CpfMismatch => {
            "the holder is not the consent's loggedUser: the request is denied"
        }
        DenialReason::CnpjMismatch => {
            "the holder does not act for the consent's businessEntity: the request is denied"
        }
        DenialReason::ClaimMismatch => {
            "an essential cpf or cnpj claim is not the holder's: the request is denied"
        }
        DenialReason::AcrNotReached => "the essential acr was not reached: the request is denied",
        DenialReason::ConsentUnavailable => {
            "the consent is no longer awaiting authorisation: the request is denied"
        }
    }
}

/// A JSON object body.
fn json_object(request: &Request) -> Result<Map<String, Value>, ProtocolError> {
    let json = request
        .header_values("content-type")
        .next()
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(bad("the body must be application/json"));
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(bad("the body must be a JSON object")),
    }
}

/// A string member, absent when missing, null or empty; another type is refused.
fn string_member<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ProtocolError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad("a member has the wrong type")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::clock::{CountingRandom, FixedClock};
    use crate::config::var;
    use crate::fixtures::variables;
    use crate::store::memory::MemoryStore;

    fn endpoint(page: Option<&str>) -> DeviceEndpoint {
        let mut vars = variables();
        vars.insert(
            var::USERS,
            json!([
                { "sub": "u1", "cpf": "52998224725", "name": "Ana" },
                { "sub": "u2", "cpf": "11144477735" },
            ])
            .to_string(),
        );
        if let Some(page) = page {
            vars.insert(var::DEVICE_PAGE, page.to_string());
        }
        DeviceEndpoint::load(&vars).unwrap()
    }

    fn call(endpoint: &DeviceEndpoint, method: Method, path: &str, token: bool) -> Response {
        let mut headers = Vec::new();
        if token {
            headers.push(("authorization".into(), format!("Bearer {}", "d".repeat(43))));
            headers.push((
                "x-ssl-client-cert".into(),
                crate::fixtures::device_certificate().0.clone(),
            ));
        }
        send(endpoint, method, path, headers)
    }

    fn send(
        endpoint: &DeviceEndpoint,
        method: Method,
        path: &str,
        headers: Vec<(String, String)>,
    ) -> Response {
        let request = Request {
            method,
            path_info: path.to_string(),
            query: None,
            headers,
            body: Vec::new(),
        };
        endpoint.handle(
            &request,
            &Deps {
                store: &MemoryStore::new(),
                clock: &FixedClock(1_800_000_000),
                random: &CountingRandom::default(),
                fetch: &crate::client::fetch::NoFetch,
            },
        )
    }

    #[test]
    fn the_page_off_its_paths_answer_as_today() {
        let off = endpoint(None);
        for path in ["/", "/app.js", "/app.css"] {
            assert_eq!(call(&off, Method::Get, path, false).status, 401, "{path}");
            let with_token = call(&off, Method::Get, path, true);
            assert_eq!(with_token.status, 404, "{path}");
            assert_eq!(with_token.header("content-security-policy"), None);
        }
    }

    #[test]
    fn the_page_on_its_files_need_no_token_and_the_api_still_does() {
        let on = endpoint(Some("on"));
        for path in ["/", "/app.js", "/app.css"] {
            let response = call(&on, Method::Get, path, false);
            assert_eq!(response.status, 200, "{path}");
            assert!(response.header("content-security-policy").is_some());
        }
        assert_eq!(call(&on, Method::Get, "/holders", false).status, 401);
        assert_eq!(call(&on, Method::Get, "/requests", false).status, 401);
        assert_eq!(call(&on, Method::Post, "/", true).status, 404);
        assert_eq!(call(&on, Method::Get, "/index.html", true).status, 404);
        assert_eq!(
            endpoint(Some("off")).page,
            DevicePage::Off,
            "off is a valid value"
        );
    }

    #[test]
    fn holders_lists_sub_and_name_only_behind_the_token() {
        let off = endpoint(None);
        let denied = call(&off, Method::Get, "/holders", false);
        assert_eq!(denied.status, 401);
        let response = call(&off, Method::Get, "/holders", true);
        assert_eq!(response.status, 200);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(
            body,
            json!({ "holders": [
                { "sub": "u1", "name": "Ana" },
                { "sub": "u2", "name": null },
            ]})
        );
        assert_eq!(call(&off, Method::Post, "/holders", true).status, 405);
    }

    fn with_headers(endpoint: &DeviceEndpoint, headers: Vec<(String, String)>) -> Response {
        send(endpoint, Method::Get, "/holders", headers)
    }

    #[test]
    fn ad_2_with_mtls_on_the_device_token_alone_is_refused() {
        let on = endpoint(None);
        let token = (
            "authorization".to_string(),
            format!("Bearer {}", "d".repeat(43)),
        );
        let cert = |value: &str| ("x-ssl-client-cert".to_string(), value.to_string());
        let listed = crate::fixtures::device_certificate().0.clone();
        let (other, _) = crate::fixtures::certificate("CN=someone-else");
        assert_eq!(
            with_headers(&on, vec![token.clone(), cert(&listed)]).status,
            200
        );
        for headers in [
            vec![token.clone()],
            vec![token.clone(), cert(&other)],
            vec![token.clone(), cert("not a certificate")],
            // Two values, one of them the listed certificate: refused, never picked from.
            // (An empty value beside it is item 9 of issue 16, in `ClientCertificate::presented`.)
            vec![token.clone(), cert(&other), cert(&listed)],
        ] {
            let response = with_headers(&on, headers.clone());
            assert_eq!(response.status, 401, "{:?}", headers.len());
            let body: Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["error"], json!("invalid_token"));
        }
        // The certificate without the token is not enough either.
        assert_eq!(with_headers(&on, vec![cert(&listed)]).status, 401);
    }

    #[test]
    fn ad_2_without_mtls_the_device_token_alone_works() {
        let mut vars = variables();
        vars.remove(var::CLIENT_CERT_HEADER);
        vars.remove(var::DEVICE_API_CERTIFICATES);
        let sandbox = DeviceEndpoint::load(&vars).unwrap();
        let token = (
            "authorization".to_string(),
            format!("Bearer {}", "d".repeat(43)),
        );
        assert_eq!(with_headers(&sandbox, vec![token]).status, 200);
        assert_eq!(with_headers(&sandbox, vec![]).status, 401);
    }

    #[test]
    fn device_api_certificates_is_required_and_checked_while_mtls_is_on() {
        for (value, mtls, ok) in [
            (None, true, false),
            (Some(""), true, false),
            (Some("[]"), true, false),
            (Some("nonsense"), true, false),
            (Some(r#"["not-a-thumbprint"]"#), true, false),
            (Some(r#"[42]"#), true, false),
            (Some(r#"{"x5t#S256": "x"}"#), true, false),
            (None, false, true),
            (Some("[]"), false, true),
            (Some(r#"["short"]"#), false, false),
        ] {
            let mut vars = variables();
            match value {
                Some(v) => {
                    vars.insert(var::DEVICE_API_CERTIFICATES, v.to_string());
                }
                None => {
                    vars.remove(var::DEVICE_API_CERTIFICATES);
                }
            }
            if !mtls {
                vars.remove(var::CLIENT_CERT_HEADER);
            }
            match DeviceEndpoint::load(&vars) {
                Ok(_) => assert!(ok, "{value:?} {mtls}: accepted"),
                Err(e) => {
                    assert!(!ok, "{value:?} {mtls}: {e}");
                    assert_eq!(e.variable, var::DEVICE_API_CERTIFICATES);
                }
            }
        }
    }
}
