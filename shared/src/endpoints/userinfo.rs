//! `GET, POST /userinfo` (UI-1…7): the account holder's claims for a CIBA access token.
//!
//! Steps, in order: the method (UI-1); the token only in the `Authorization` header (UI-2);
//! the certificate and the token bound to it (UI-3); a CIBA token with `openid` (UI-5); its
//! consent still `AUTHORISED` and its holder still known (UI-4, CONS-2); the body (UI-6).
//! The answer is plain JSON (clients cannot register `userinfo_signed_response_alg`, so no
//! signed userinfo is ever owed); `x-fapi-interaction-id` is added to every response by the
//! adapter and `Date` by the HTTP server in front of the component (UI-7).

use serde_json::{Map, Value};

use super::Deps;
use crate::access_token::{AccessTokenRecord, Grant, validate_bound_bearer};
use crate::client::registry::Clients;
use crate::clock::UnixTime;
use crate::config::{ClientCertHeader, ConfigError, Issuer, Variables, required, var};
use crate::error::{Endpoint, ProtocolError};
use crate::http::{Method, Request, Response};
use crate::users::{User, Users};

/// What the UserInfo endpoint is configured with.
#[derive(Debug)]
pub struct UserInfoEndpoint {
    clients: Clients,
    users: Users,
    client_cert_header: ClientCertHeader,
}

impl UserInfoEndpoint {
    /// Reads the variables the UserInfo endpoint needs. `issuer` is checked like at every
    /// other endpoint, so a bad one is reported here too, though a JSON userinfo response
    /// does not carry it.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Issuer::parse(&required(vars, var::ISSUER)?)?;
        Ok(Self {
            clients: Clients::load(vars)?,
            users: Users::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        self.respond(request, deps)
            .unwrap_or_else(|e| e.to_response(Endpoint::UserInfo))
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        check_method(request)?;
        token_only_in_header(request)?;
        let record = self.bound_token(request, deps, now)?;
        check_scope(&record)?;
        let user = self.authorised_holder(&record, deps, now)?;
        Ok(Response::json(200, &Value::Object(claims(&record, user))))
    }

    /// UI-3: with mTLS on, a certificate is required and the token must be bound to it
    /// (`cnf.x5t#S256`, RFC 8705 3); an unbound token never matches a presented
    /// certificate. The token must exist, be unexpired and belong to a registered client
    /// (UI-4). Failures are 401 `invalid_token`.
    fn bound_token(
        &self,
        request: &Request,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<AccessTokenRecord, ProtocolError> {
        let token = validate_bound_bearer(
            request,
            deps.store,
            &self.clients,
            &self.client_cert_header,
            now,
        )?;
        Ok(token.record)
    }

    /// UI-4, CONS-2: the token's consent is `AUTHORISED` now (not revoked, rejected or past
    /// its `expirationDateTime`) and its holder is still among the `users`; otherwise 401
    /// `invalid_token`.
    fn authorised_holder(
        &self,
        record: &AccessTokenRecord,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<&User, ProtocolError> {
        let (Some(consent_id), Some(sub)) = (&record.consent_id, &record.sub) else {
            return Err(ProtocolError::InvalidToken(
                "the access token has no consent or holder",
            ));
        };
        crate::consent::authorised(deps.store, consent_id, now)
            .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?
            .ok_or(ProtocolError::InvalidToken(
                "the consent of the access token is not authorised",
            ))?;
        self.users.by_sub(sub).ok_or(ProtocolError::InvalidToken(
            "the account holder of the access token is unknown",
        ))
    }
}

/// UI-1: GET and POST (OIDC 5.3.1); any other method is 405 with `Allow: GET, POST`.
fn check_method(request: &Request) -> Result<(), ProtocolError> {
    match request.method {
        Method::Get | Method::Post => Ok(()),
        Method::Put | Method::Delete | Method::Other => Err(ProtocolError::MethodNotAllowed(
            "the userinfo endpoint answers GET and POST only",
        )),
    }
}

/// UI-2: the token travels only in `Authorization: Bearer` (FAPI1-B 6.2.1-2/3): an
/// `access_token` parameter in the query or in the body (RFC 6750 2.2/2.3) is 400
/// `invalid_request`, even beside a header. The body is looked at whatever its content type
/// says, so that a form sent without one is refused too.
fn token_only_in_header(request: &Request) -> Result<(), ProtocolError> {
    if request
        .query
        .as_deref()
        .is_some_and(|q| names_access_token(q.as_bytes()))
    {
        return Err(ProtocolError::InvalidRequest(
            "the access token is accepted only in the Authorization header, not in the query",
        ));
    }
    if names_access_token(&request.body) {
        return Err(ProtocolError::InvalidRequest(
            "the access token is accepted only in the Authorization header, not in the body",
        ));
    }
    Ok(())
}

/// Whether form-encoded `bytes` hold a parameter named `access_token` (percent-decoded),
/// with any value, empty included.
fn names_access_token(bytes: &[u8]) -> bool {
    bytes.split(|b| *b == b'&').any(|pair| {
        let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
        percent_encoding::percent_decode(name).eq(b"access_token".iter().copied())
    })
}

/// UI-5, CONS-3: a `client_credentials` token, or a token without `openid`, is 403
/// `insufficient_scope` (RFC 6750 3.1).
fn check_scope(record: &AccessTokenRecord) -> Result<(), ProtocolError> {
    if record.grant == Grant::ClientCredentials {
        return Err(ProtocolError::InsufficientScope(
            "a client_credentials token cannot read userinfo",
        ));
    }
    if !record.scope.iter().any(|s| s == "openid") {
        return Err(ProtocolError::InsufficientScope(
            "the access token does not carry the openid scope",
        ));
    }
    Ok(())
}

/// UI-6: `sub` (the id_token's) and the claims asked for in `claims.userinfo` at
/// bc-authorize, cpf as a string and cnpj as an array (TKN-9).
fn claims(record: &AccessTokenRecord, user: &User) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), Value::String(user.sub.clone()));
    crate::id_token::document_claims(&record.userinfo_claims, user, &mut claims);
    claims
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::access_token::{AccessToken, issue};
    use crate::auth_req::{ClaimRequest, ClaimRequests};
    use crate::clock::{CountingRandom, FixedClock};
    use crate::consent::{Consent, Status};
    use crate::fixtures::variables;
    use crate::store::memory::MemoryStore;
    use crate::store::{keys, record};
    use crate::types::Cpf;

    const NOW: UnixTime = 1_800_000_000;
    const CONSENT: &str = "urn:ofbciba:c1";

    struct Fixture {
        endpoint: UserInfoEndpoint,
        store: MemoryStore,
        random: CountingRandom,
    }

    impl Fixture {
        /// Without mTLS (certificate binding is tested over HTTP), one holder `u1`, and an
        /// authorised consent.
        fn new() -> Self {
            let mut vars = variables();
            vars.remove(var::CLIENT_CERT_HEADER);
            let f = Self {
                endpoint: UserInfoEndpoint::load(&vars).unwrap(),
                store: MemoryStore::new(),
                random: CountingRandom::default(),
            };
            f.put_consent(Status::Authorised);
            f
        }

        fn put_consent(&self, status: Status) {
            let consent = Consent {
                consent_id: CONSENT.into(),
                client_id: "tpp-1".into(),
                logged_user: Cpf::parse("52998224725").unwrap(),
                business_entity: None,
                permissions: vec!["ACCOUNTS_READ".into(), "RESOURCES_READ".into()],
                expiration: None,
                created: NOW - 100,
                status,
                status_updated: NOW - 50,
                rejection: None,
                authorised_by: None,
            };
            record::put(
                &self.store,
                &keys::consent(CONSENT),
                &consent,
                NOW + 86_400,
                &self.random,
            )
            .unwrap();
        }

        fn token(&self, record: &AccessTokenRecord) -> AccessToken {
            issue(&self.store, &self.random, record, NOW + 900).unwrap()
        }

        fn call(&self, method: Method, query: Option<&str>, token: &AccessToken) -> Response {
            self.send(Request {
                method,
                path_info: String::new(),
                query: query.map(str::to_string),
                headers: vec![("authorization".into(), format!("Bearer {}", token.expose()))],
                body: Vec::new(),
            })
        }

        fn send(&self, request: Request) -> Response {
            self.endpoint.handle(
                &request,
                &Deps {
                    store: &self.store,
                    clock: &FixedClock(NOW),
                    random: &self.random,
                    fetch: &crate::client::fetch::NoFetch,
                },
            )
        }
    }

    fn ciba_record() -> AccessTokenRecord {
        AccessTokenRecord {
            client_id: "tpp-1".into(),
            scope: vec!["openid".into(), format!("consent:{CONSENT}")],
            cnf_x5t_s256: None,
            grant: Grant::Ciba,
            consent_id: Some(CONSENT.into()),
            sub: Some("u1".into()),
            acr: Some("urn:brasil:openbanking:loa2".into()),
            userinfo_claims: ClaimRequests {
                cpf: Some(ClaimRequest {
                    essential: false,
                    values: vec![],
                }),
                cnpj: None,
            },
        }
    }

    fn error_of(response: &Response) -> (u16, String) {
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        (response.status, body["error"].as_str().unwrap().to_string())
    }

    #[test]
    fn ui_1_ui_6_get_and_post_answer_sub_and_the_claims_asked_for() {
        let f = Fixture::new();
        let token = f.token(&ciba_record());
        for method in [Method::Get, Method::Post] {
            let r = f.call(method, None, &token);
            assert_eq!(r.status, 200);
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body, json!({ "sub": "u1", "cpf": "52998224725" }));
            assert_eq!(r.header("cache-control"), Some("no-store"));
        }
        let r = f.call(Method::Delete, None, &token);
        assert_eq!(error_of(&r), (405, "method_not_allowed".into()));
        assert_eq!(r.header("allow"), Some("GET, POST"));
    }

    #[test]
    fn ui_2_a_token_in_the_query_or_the_body_is_refused_even_beside_the_header() {
        let f = Fixture::new();
        let token = f.token(&ciba_record());
        for query in ["access_token=x", "a=1&access%5Ftoken=", "access_token"] {
            let r = f.call(Method::Get, Some(query), &token);
            assert_eq!(error_of(&r), (400, "invalid_request".into()), "{query}");
        }
        assert_eq!(f.call(Method::Get, Some("a=1"), &token).status, 200);
        let mut request = Request {
            method: Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![
                ("authorization".into(), format!("Bearer {}", token.expose())),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: format!("access_token={}", token.expose()).into_bytes(),
        };
        assert_eq!(
            error_of(&f.send(request.clone())),
            (400, "invalid_request".into())
        );
        request.body = b"scope=openid".to_vec();
        assert_eq!(f.send(request).status, 200);
    }

    #[test]
    fn ui_3_with_mtls_on_a_request_without_a_certificate_is_invalid_token() {
        let mut f = Fixture::new();
        f.endpoint = UserInfoEndpoint::load(&variables()).unwrap();
        let token = f.token(&ciba_record());
        let r = f.call(Method::Get, None, &token);
        assert_eq!(error_of(&r), (401, "invalid_token".into()));
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }

    #[test]
    fn ui_5_cons_3_client_credentials_or_no_openid_is_insufficient_scope() {
        let f = Fixture::new();
        let cc = AccessTokenRecord {
            scope: vec!["consents".into()],
            grant: Grant::ClientCredentials,
            consent_id: None,
            sub: None,
            ..ciba_record()
        };
        let no_openid = AccessTokenRecord {
            scope: vec![format!("consent:{CONSENT}")],
            ..ciba_record()
        };
        for record in [cc, no_openid] {
            let r = f.call(Method::Get, None, &f.token(&record));
            assert_eq!(error_of(&r), (403, "insufficient_scope".into()));
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer error=\"insufficient_scope\"")
            );
        }
    }

    #[test]
    fn ui_4_cons_2_unknown_tokens_unauthorised_consents_and_unknown_holders_are_invalid_token() {
        let f = Fixture::new();
        let unknown = AccessToken::from_secret("not-issued".into());
        assert_eq!(
            error_of(&f.call(Method::Get, None, &unknown)),
            (401, "invalid_token".into())
        );
        let gone_holder = AccessTokenRecord {
            sub: Some("u2".into()),
            ..ciba_record()
        };
        let no_consent = AccessTokenRecord {
            consent_id: None,
            ..ciba_record()
        };
        for record in [gone_holder, no_consent] {
            let r = f.call(Method::Get, None, &f.token(&record));
            assert_eq!(error_of(&r), (401, "invalid_token".into()));
        }
        let token = f.token(&ciba_record());
        f.put_consent(Status::Rejected);
        let r = f.call(Method::Get, None, &token);
        assert_eq!(error_of(&r), (401, "invalid_token".into()));
    }
}
