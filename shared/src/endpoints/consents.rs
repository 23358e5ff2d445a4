//! `POST, GET, DELETE /open-banking/consents/v3/consents[/<consentId>]`: the Lodging Intent
//! (CONS-1…3). Every call needs a `client_credentials` access token with scope `consents`,
//! bound to the certificate presented, and an `x-fapi-interaction-id` that is echoed.

use serde_json::{Value, json};

use super::Deps;
use crate::access_token::{Grant, ValidAccessToken, validate_bound_bearer};
use crate::client::registry::Clients;
use crate::clock::UnixTime;
use crate::config::{ClientCertHeader, ConfigError, Issuer, Variables, abuse_limit, required, var};
use crate::consent::{Consent, Status, TransitionError};
use crate::error::{Endpoint, ProtocolError};
use crate::fapi;
use crate::http::{Method, Request, Response};
use crate::store::{Swap, keys, record};
use crate::types::{Cnpj, Cpf};

/// The route (design.md).
pub const PATH: &str = "/open-banking/consents/v3/consents";

/// The permissions of the Consents API v3 (data sharing).
pub const PERMISSIONS: [&str; 36] = [
    "ACCOUNTS_READ",
    "ACCOUNTS_BALANCES_READ",
    "ACCOUNTS_TRANSACTIONS_READ",
    "ACCOUNTS_OVERDRAFT_LIMITS_READ",
    "CREDIT_CARDS_ACCOUNTS_READ",
    "CREDIT_CARDS_ACCOUNTS_BILLS_READ",
    "CREDIT_CARDS_ACCOUNTS_BILLS_TRANSACTIONS_READ",
    "CREDIT_CARDS_ACCOUNTS_LIMITS_READ",
    "CREDIT_CARDS_ACCOUNTS_TRANSACTIONS_READ",
    "CUSTOMERS_PERSONAL_IDENTIFICATIONS_READ",
    "CUSTOMERS_PERSONAL_ADITTIONALINFO_READ",
    "CUSTOMERS_BUSINESS_IDENTIFICATIONS_READ",
    "CUSTOMERS_BUSINESS_ADITTIONALINFO_READ",
    "FINANCINGS_READ",
    "FINANCINGS_SCHEDULED_INSTALMENTS_READ",
    "FINANCINGS_PAYMENTS_READ",
    "FINANCINGS_WARRANTIES_READ",
    "INVOICE_FINANCINGS_READ",
    "INVOICE_FINANCINGS_SCHEDULED_INSTALMENTS_READ",
    "INVOICE_FINANCINGS_PAYMENTS_READ",
    "INVOICE_FINANCINGS_WARRANTIES_READ",
    "LOANS_READ",
    "LOANS_SCHEDULED_INSTALMENTS_READ",
    "LOANS_PAYMENTS_READ",
    "LOANS_WARRANTIES_READ",
    "UNARRANGED_ACCOUNTS_OVERDRAFT_READ",
    "UNARRANGED_ACCOUNTS_OVERDRAFT_SCHEDULED_INSTALMENTS_READ",
    "UNARRANGED_ACCOUNTS_OVERDRAFT_PAYMENTS_READ",
    "UNARRANGED_ACCOUNTS_OVERDRAFT_WARRANTIES_READ",
    "BANK_FIXED_INCOMES_READ",
    "CREDIT_FIXED_INCOMES_READ",
    "FUNDS_READ",
    "VARIABLE_INCOMES_READ",
    "TREASURE_TITLES_READ",
    "EXCHANGES_READ",
    "RESOURCES_READ",
];

/// What the Consents API is configured with.
#[derive(Debug)]
pub struct ConsentsEndpoint {
    issuer: Issuer,
    clients: Clients,
    client_cert_header: ClientCertHeader,
    /// Consent lodging requests per client per minute (`consent_rate_limit`, issue 16).
    rate_limit: u32,
}

fn bad(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidRequest(why)
}

fn store_error<E>(_: E) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

impl ConsentsEndpoint {
    /// Reads the variables the Consents API needs.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            clients: Clients::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            rate_limit: abuse_limit(vars, var::CONSENT_RATE_LIMIT)?,
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        super::gathering(deps, |deps| {
            fapi::require(request)
                .and_then(|()| self.respond(request, deps))
                .unwrap_or_else(|e| e.to_response(Endpoint::Consents))
        })
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        let token = self.authorize(request, deps, now)?;
        let client_id = token.record.client_id.as_str();
        let id = request.path_info.trim_start_matches('/');
        match (id.is_empty(), request.method) {
            (true, Method::Post) => {
                self.count_lodging(client_id, deps, now)?;
                self.create(request, client_id, deps, now)
            }
            (false, Method::Get) => {
                let (consent, _) = self.find(id, client_id, deps, now)?;
                Ok(Response::json(200, &self.render(&consent.at(now), now)))
            }
            (false, Method::Delete) => self.revoke(id, client_id, deps, now),
            _ => Err(ProtocolError::MethodNotAllowed(
                "POST on the collection, GET or DELETE on a consent",
            )),
        }
    }

    /// CONS-3: a `client_credentials` token with scope `consents`, bound to this request's
    /// certificate (TKN-2, RFC 8705 3).
    fn authorize(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<ValidAccessToken, ProtocolError> {
        let token = validate_bound_bearer(
            request,
            deps.store,
            &self.clients,
            &self.client_cert_header,
            now,
        )?;
        if token.record.grant != Grant::ClientCredentials
            || !token.record.scope.iter().any(|s| s == "consents")
        {
            return Err(ProtocolError::InsufficientScope(
                "a client_credentials token with scope consents is required",
            ));
        }
        Ok(token)
    }

    /// Issue 16: every consent lodged is a record kept past its window, so a client's
    /// lodging requests are limited per minute (`consent_rate_limit`): one atomic increment
    /// per request, counted before the body is read, whatever its outcome; over the limit,
    /// 429 with `Retry-After` in the Consents API's error shape, and nothing else written.
    fn count_lodging(
        &self,
        client_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<(), ProtocolError> {
        crate::rate_limit::per_minute(
            deps.store,
            |until| keys::consent_rate(client_id, until),
            self.rate_limit,
            "the client lodged too many consents, retry later",
            now,
        )
    }

    fn create(
        &self,
        request: &Request,
        client_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let json_body = request
            .header_values("content-type")
            .next()
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json_body {
            return Err(bad("the body must be application/json"));
        }
        let body: Value =
            serde_json::from_slice(&request.body).map_err(|_| bad("the body is not JSON"))?;
        let data = body
            .get("data")
            .filter(|d| d.is_object())
            .ok_or(bad("data is required"))?;
        let logged_user = document(data.get("loggedUser"), "CPF")
            .and_then(Cpf::parse)
            .ok_or(bad(
                "data.loggedUser.document must be a valid CPF with rel CPF",
            ))?;
        let business_entity = match data.get("businessEntity") {
            None | Some(Value::Null) => None,
            some => Some(document(some, "CNPJ").and_then(Cnpj::parse).ok_or(bad(
                "data.businessEntity.document must be a valid CNPJ with rel CNPJ",
            ))?),
        };
        let permissions = permissions(data.get("permissions"))?;
        let expiration = match data.get("expirationDateTime") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_str()
                    .and_then(crate::time::parse)
                    .filter(|t| *t > now)
                    .ok_or(bad(
                        "data.expirationDateTime must be a future UTC date-time",
                    ))?,
            ),
        };
        let mut id = [0u8; 16];
        deps.random.fill(&mut id).map_err(store_error)?;
        let consent = Consent {
            consent_id: format!(
                "urn:ofbciba:{}",
                uuid::Builder::from_random_bytes(id)
                    .into_uuid()
                    .hyphenated()
            ),
            client_id: client_id.to_string(),
            logged_user,
            business_entity,
            permissions,
            expiration,
            created: now,
            status: Status::AwaitingAuthorisation,
            status_updated: now,
            rejection: None,
            authorised_by: None,
        };
        // CONS-1: kept for its window plus the audit period until it is authorised, which
        // rewrites it with a longer keep-until (consent::follow_decision). Announced to the
        // purge with it, in one set-many (issue 18), so that no consent is ever stored without
        // it.
        let keep_until = consent.keep_until();
        let key = keys::consent(&consent.consent_id);
        let mut batch = crate::store::Batch::new();
        crate::store::purge::announce(deps.store, keep_until, &[&key]).map_err(store_error)?;
        batch
            .put(&key, &consent, keep_until, deps.random)
            .map_err(store_error)?;
        batch.write(deps.store).map_err(store_error)?;
        super::purge_turn(deps);
        Ok(Response::json(201, &self.render(&consent, now)))
    }

    fn find(
        &self,
        id: &str,
        client_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<(Consent, record::Stored<Consent>), ProtocolError> {
        let id = percent_encoding::percent_decode_str(id)
            .decode_utf8()
            .map_err(|_| ProtocolError::NotFound("no such consent"))?;
        let stored = record::get::<Consent>(deps.store, &keys::consent(&id), now)
            .map_err(store_error)?
            .ok_or(ProtocolError::NotFound("no such consent"))?;
        if stored.data.client_id != client_id {
            return Err(ProtocolError::Forbidden(
                "the consent belongs to another client",
            ));
        }
        Ok((stored.data.clone(), stored))
    }

    fn revoke(
        &self,
        id: &str,
        client_id: &str,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        // A concurrent change (the holder approving) makes the swap fail: read again.
        for _ in 0..3 {
            let (consent, stored) = self.find(id, client_id, deps, now)?;
            let revoked = consent.revoke(now).map_err(|e| match e {
                TransitionError::AlreadyRejected | TransitionError::NotAwaiting => {
                    ProtocolError::ConsentAlreadyRejected("the consent is already rejected")
                }
            })?;
            match record::replace(
                deps.store,
                &keys::consent(&consent.consent_id),
                &stored,
                &revoked,
                stored.exp,
                deps.random,
            )
            .map_err(store_error)?
            {
                Swap::Swapped => return Ok(Response::no_content()),
                Swap::Conflict => continue,
            }
        }
        Err(ProtocolError::TemporarilyUnavailable(
            "the consent is changing: try again",
        ))
    }

    fn render(&self, consent: &Consent, now: UnixTime) -> Value {
        let mut data = json!({
            "consentId": consent.consent_id,
            "creationDateTime": crate::time::format(consent.created),
            "status": consent.status,
            "statusUpdateDateTime": crate::time::format(consent.status_updated),
            "permissions": consent.permissions,
        });
        if let Some(e) = consent.expiration {
            data["expirationDateTime"] = json!(crate::time::format(e));
        }
        if let Some(r) = consent.rejection {
            data["rejection"] =
                json!({ "rejectedBy": r.rejected_by, "reason": { "code": r.code } });
        }
        let self_link = format!(
            "{}/{}",
            self.issuer.url(PATH),
            percent_encoding::utf8_percent_encode(
                &consent.consent_id,
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        json!({
            "data": data,
            "links": { "self": self_link },
            "meta": { "totalRecords": 1, "totalPages": 1, "requestDateTime": crate::time::format(now) },
        })
    }
}

/// `{"document": {"identification": "...", "rel": "<rel>"}}` -> the identification.
fn document<'a>(holder: Option<&'a Value>, rel: &str) -> Option<&'a str> {
    let document = holder?.get("document")?;
    (document.get("rel")?.as_str()? == rel).then_some(())?;
    document.get("identification")?.as_str()
}

/// Known permissions, no repeats, `RESOURCES_READ` among them (Consents API v3).
fn permissions(value: Option<&Value>) -> Result<Vec<String>, ProtocolError> {
    let list = value
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or(bad("data.permissions is required"))?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for p in list {
        let p = p
            .as_str()
            .filter(|p| PERMISSIONS.contains(p))
            .ok_or(bad("data.permissions holds an unknown permission"))?;
        if out.iter().any(|o| o == p) {
            return Err(bad("data.permissions holds a permission twice"));
        }
        out.push(p.to_string());
    }
    if !out.iter().any(|p| p == "RESOURCES_READ") || out.len() < 2 {
        return Err(bad(
            "data.permissions must include RESOURCES_READ and a data permission",
        ));
    }
    Ok(out)
}
