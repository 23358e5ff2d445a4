//! `POST /register` and `GET|PUT|DELETE /register/{client_id}`: Dynamic Client Registration
//! and Management for Open Finance Brasil (BR-DCR 9.3; registration.md REG-1…37).
//!
//! POST runs REG-11's order: the certificate (REG-3), the body (REG-5), the SSA's trust
//! (REG-7…11), policy (REG-12, REG-14, REG-29), then the metadata (REG-16…27), and writes
//! the `software:` claim, the `rat:` record and the `client:` record, the client last, so a
//! failure leaves no client behind (REG-29…31). DCM runs mTLS, the RAT, the certificate
//! binding (REG-33, REG-15), then what the method needs.

use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::Deps;
use crate::client::certificate::ClientCertificate;
use crate::client::keystore::{AllowedOrigins, JwksUri, Keystore};
use crate::client::registration::{
    self, NEVER, RatRecord, Registration, RegistrationPolicy, var as reg_var,
};
use crate::client::registry::Clients;
use crate::client::ssa::{self, SsaHeader, SsaRules, VerifiedSoftwareStatement};
use crate::clock::UnixTime;
use crate::config::{ClientCertHeader, ConfigError, Issuer, Variables, required, var};
use crate::error::{Endpoint, ProtocolError};
use crate::http::{Method, Request, Response};
use crate::jose::b64url;
use crate::jose::jwk::KeyUse;
use crate::store::{KeyValue, Swap, keys, record};

use crate::discovery::REGISTER_PATH;

fn store_error<E>(_: E) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

/// A refusal, with what REG-6 adds to a 401: `WWW-Authenticate: Bearer`, with
/// `error="invalid_token"` when a token was sent and refused.
struct Refusal {
    error: ProtocolError,
    allow: Option<&'static str>,
}

impl From<ProtocolError> for Refusal {
    fn from(error: ProtocolError) -> Self {
        Self { error, allow: None }
    }
}

/// What the registration endpoint is configured with.
#[derive(Debug)]
pub struct RegisterEndpoint {
    issuer: Issuer,
    clients: Clients,
    client_cert_header: ClientCertHeader,
    ssa_issuer: String,
    ssa_jwks_uri: JwksUri,
    allowed: AllowedOrigins,
    keystore: Keystore,
    policy: RegistrationPolicy,
}

impl RegisterEndpoint {
    /// Reads the variables registration needs; problems name the variable.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let text = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            Ok(vars
                .get(name)?
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()))
        };
        // KEY-17: the Directory's keystore is fetched under the same rules as clients' (KEY-10).
        let allowed = AllowedOrigins::load(vars)?;
        let ssa_jwks_uri = allowed
            .jwks_uri(&text(
                reg_var::SSA_JWKS_URI,
                registration::DEFAULT_SSA_JWKS_URI,
            )?)
            .map_err(|why| ConfigError::new(reg_var::SSA_JWKS_URI, why.to_string()))?;
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            clients: Clients::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            ssa_issuer: text(reg_var::SSA_ISSUER, registration::DEFAULT_SSA_ISSUER)?,
            ssa_jwks_uri,
            allowed,
            keystore: Keystore::load(vars)?,
            policy: RegistrationPolicy::load(vars)?,
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        let token_sent = request.header_values("authorization").next().is_some();
        match self.respond(request, deps) {
            Ok(response) => response,
            Err(refusal) => {
                let mut response = refusal.error.to_response(Endpoint::Registration);
                if let Some(allow) = refusal.allow {
                    response.headers.retain(|(n, _)| *n != "allow");
                    response.headers.push(("allow", allow.to_string()));
                }
                if response.status == 401 {
                    let challenge = match refusal.error {
                        ProtocolError::InvalidToken(_) if token_sent => {
                            "Bearer error=\"invalid_token\""
                        }
                        _ => "Bearer",
                    };
                    response
                        .headers
                        .push(("www-authenticate", challenge.to_string()));
                }
                response
            }
        }
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, Refusal> {
        let path = request.path_info.as_str();
        let client_id = match path.strip_prefix('/') {
            None | Some("") => None,
            Some(id) if !id.contains('/') => Some(id),
            Some(_) => return Err(ProtocolError::NotFound("no such registration").into()),
        };
        match (client_id, request.method) {
            (None, Method::Post) => Ok(self.register(request, deps)?),
            (None, _) => Err(Refusal {
                error: ProtocolError::MethodNotAllowed("registration answers POST"),
                allow: Some("POST"),
            }),
            (Some(id), Method::Get | Method::Put | Method::Delete) => {
                Ok(self.manage(request, id, deps)?)
            }
            (Some(_), _) => Err(Refusal {
                error: ProtocolError::MethodNotAllowed(
                    "registration management answers GET, PUT and DELETE",
                ),
                allow: Some("GET, PUT, DELETE"),
            }),
        }
    }

    /// REG-3: a certificate the proxy forwarded. Without mTLS configured, registration is
    /// off [decision]; a missing or unreadable certificate is 401 `invalid_client`.
    fn certificate(&self, request: &Request) -> Result<ClientCertificate, ProtocolError> {
        if !self.client_cert_header.mtls() {
            return Err(ProtocolError::InvalidClient(
                "registration needs mTLS, which this server does not run",
            ));
        }
        ClientCertificate::presented(request, &self.client_cert_header)?.ok_or(
            ProtocolError::InvalidClient("a client certificate is required (mTLS)"),
        )
    }

    /// `POST /register` (REG-28).
    fn register(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        let certificate = self.certificate(request)?;
        let body = self.body(request)?;
        let ssa = self.verify_ssa(&body, deps, now)?;
        let roles = ssa.approve(|r| self.policy.role_scopes.knows(r))?;
        ssa.check_certificate(&certificate)?;
        check_software_free(deps.store, &ssa.software_id)?;
        let metadata = registration::metadata(&body, &ssa, &roles, &self.policy, &certificate)?;
        let client_id = self.new_client_id(deps)?;
        let rat = random_token(deps, 32)?;
        let registration = Registration {
            client_id: client_id.clone(),
            client_id_issued_at: now,
            rat_hash: keys::digest(&rat),
            metadata,
        };
        persist_new(deps, &registration, &rat)?;
        let uri = self.client_uri(&client_id);
        Ok(Response::json(201, &registration.body(&uri, &rat)))
    }

    /// `GET|PUT|DELETE /register/{client_id}` (REG-33…37).
    fn manage(
        &self,
        request: &Request,
        client_id: &str,
        deps: &Deps<'_>,
    ) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        let certificate = self.certificate(request)?;
        let rat = bearer(request)?;
        let stored = self.authorize(deps.store, client_id, rat, now)?;
        // REG-15: the certificate is the registered software's.
        let registered = &stored.data;
        if !ssa::binds(
            &certificate,
            &registered.metadata.software_id,
            &registered.metadata.org_id,
        ) {
            return Err(ProtocolError::InvalidClient(
                "the client certificate is not of the registered software",
            ));
        }
        let uri = self.client_uri(client_id);
        match request.method {
            Method::Get => Ok(Response::json(200, &registered.body(&uri, rat))),
            Method::Delete => {
                delete(deps.store, registered)?;
                Ok(Response::no_content())
            }
            Method::Put => {
                let updated = self.update(request, &stored, &certificate, deps, now)?;
                Ok(Response::json(200, &updated.body(&uri, rat)))
            }
            Method::Post | Method::Other => Err(ProtocolError::MethodNotAllowed(
                "registration management answers GET, PUT and DELETE",
            )),
        }
    }

    /// REG-35: PUT replaces the registration as a whole, with a fresh SSA of the same
    /// software; a compare-and-swap on the record, so any failure leaves it unchanged.
    fn update(
        &self,
        request: &Request,
        stored: &record::Stored<Registration>,
        certificate: &ClientCertificate,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Registration, ProtocolError> {
        let registered = &stored.data;
        let body = self.body(request)?;
        let ssa = self.verify_ssa(&body, deps, now)?;
        let roles = ssa.approve(|r| self.policy.role_scopes.knows(r))?;
        ssa.check_certificate(certificate)?;
        if !ssa
            .software_id
            .eq_ignore_ascii_case(&registered.metadata.software_id)
            || !ssa.org_id.eq_ignore_ascii_case(&registered.metadata.org_id)
        {
            return Err(ProtocolError::UnapprovedSoftwareStatement(
                "the software statement is for another software",
            ));
        }
        if body.get("client_id").and_then(Value::as_str) != Some(registered.client_id.as_str()) {
            return Err(ProtocolError::InvalidClientMetadata(
                "client_id must be the registration's",
            ));
        }
        let metadata = registration::metadata(&body, &ssa, &roles, &self.policy, certificate)?;
        let updated = Registration {
            metadata,
            ..registered.clone()
        };
        let key = keys::registered_client(&registered.client_id);
        match record::replace(deps.store, &key, stored, &updated, NEVER, deps.random)
            .map_err(store_error)?
        {
            Swap::Swapped => Ok(updated),
            Swap::Conflict => Err(ProtocolError::TemporarilyUnavailable(
                "the registration changed meanwhile: try again",
            )),
        }
    }

    /// REG-33: the RAT is known, not deleted, and issued for the client of the path.
    fn authorize(
        &self,
        store: &dyn KeyValue,
        client_id: &str,
        rat: &str,
        now: UnixTime,
    ) -> Result<record::Stored<Registration>, ProtocolError> {
        let refused = ProtocolError::InvalidToken("the registration access token is not valid");
        let owner = record::get::<RatRecord>(store, &keys::registration_access_token(rat), now)
            .map_err(store_error)?
            .ok_or(refused)?;
        if owner.data.client_id != client_id {
            return Err(refused);
        }
        let stored = record::get::<Registration>(store, &keys::registered_client(client_id), now)
            .map_err(store_error)?
            .ok_or(refused)?;
        let presented = keys::digest(rat);
        if !bool::from(stored.data.rat_hash.as_bytes().ct_eq(presented.as_bytes())) {
            return Err(refused);
        }
        Ok(stored)
    }

    /// REG-5: a JSON object of at most 64 KiB (the adapter caps the body), members unique.
    fn body(&self, request: &Request) -> Result<Map<String, Value>, ProtocolError> {
        registration::parse_body(request.header_values("content-type").next(), &request.body)
    }

    /// REG-7…11: the SSA is present, signed by a Directory key, and its claims hold.
    fn verify_ssa(
        &self,
        body: &Map<String, Value>,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<VerifiedSoftwareStatement, ProtocolError> {
        let compact = body
            .get("software_statement")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(ProtocolError::InvalidClientMetadata(
                "software_statement is required",
            ))?;
        let header = SsaHeader::read(compact)?;
        // KEY-17: an unknown kid forces one refetch (KEY-13); an outage beyond the stale
        // window is 503 (KEY-14).
        let key = self
            .keystore
            .key(deps, &self.ssa_jwks_uri, header.kid(), KeyUse::Signature)?
            .ok_or(ProtocolError::InvalidSoftwareStatement(
                "the software statement kid is not a Directory key",
            ))?;
        // REG-11, KEY-10: the software's keystore is on `jwks_allowed_hosts`.
        let allowed = |uri: &str| self.allowed.jwks_uri(uri).is_ok();
        ssa::verify(
            compact,
            &header,
            &key.verifier,
            SsaRules {
                issuer: &self.ssa_issuer,
                jwks_uri_allowed: &allowed,
            },
            now,
        )
    }

    /// `registration_client_uri`: the path form (REG-1, REG-28).
    fn client_uri(&self, client_id: &str) -> String {
        self.issuer.url(&format!("{REGISTER_PATH}/{client_id}"))
    }

    /// REG-28: 128 random bits, never a static client's id.
    fn new_client_id(&self, deps: &Deps<'_>) -> Result<String, ProtocolError> {
        for _ in 0..4 {
            let id = random_token(deps, 16)?;
            if self.clients.get(&id).is_none() {
                return Ok(id);
            }
        }
        Err(ProtocolError::ServerError("no fresh client_id"))
    }
}

/// `n` random bytes as base64url (REG-28, REG-31).
fn random_token(deps: &Deps<'_>, n: usize) -> Result<String, ProtocolError> {
    let mut bytes = vec![0u8; n];
    deps.random
        .fill(&mut bytes)
        .map_err(|_| ProtocolError::ServerError("no random source"))?;
    Ok(b64url(&bytes))
}

/// `Authorization: Bearer <RAT>`, the header form only (REG-5, REG-33). Without one: 401
/// with a bare `Bearer` challenge.
fn bearer(request: &Request) -> Result<&str, ProtocolError> {
    let mut values = request.header_values("authorization");
    let header = values.next().ok_or(ProtocolError::InvalidToken(
        "a registration access token is required",
    ))?;
    if values.next().is_some() {
        return Err(ProtocolError::InvalidToken(
            "more than one Authorization header",
        ));
    }
    header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(ProtocolError::InvalidToken(
            "the registration access token is not valid",
        ))
}

fn already_registered() -> ProtocolError {
    ProtocolError::UnapprovedSoftwareStatement(
        "this software is already registered: manage it at its registration_client_uri",
    )
}

/// REG-29's policy check, in REG-11's order: a software with a live registration. The claim
/// ([`persist_new`]) is a counter, and counters are encoded differently by each store, so only
/// its presence is read: it exists exactly while a registration holds the software.
fn check_software_free(store: &dyn KeyValue, software_id: &str) -> Result<(), ProtocolError> {
    if store
        .get(&keys::software(software_id))
        .map_err(store_error)?
        .is_some()
    {
        return Err(already_registered());
    }
    Ok(())
}

/// REG-29…31: claims the software, then writes the RAT record, then the client, last. The
/// claim is a counter that only one registration can take from 0 to 1, on any store
/// ([`KeyValue::increment`] is atomic, where a compare-and-swap on an absent key is an upsert
/// on Spin's SQLite store); a loser leaves it as it is (the software is taken either way). A
/// failure after the claim takes back what was written, the claim last.
fn persist_new(
    deps: &Deps<'_>,
    registration: &Registration,
    rat: &str,
) -> Result<(), ProtocolError> {
    let software = keys::software(&registration.metadata.software_id);
    let claimed = deps.store.increment(&software, 1).map_err(store_error)?;
    if claimed != 1 {
        return Err(already_registered());
    }
    let rat_key = keys::registration_access_token(rat);
    let written = record::put(
        deps.store,
        &rat_key,
        &RatRecord {
            client_id: registration.client_id.clone(),
        },
        NEVER,
        deps.random,
    )
    .and_then(|()| {
        record::put(
            deps.store,
            &keys::registered_client(&registration.client_id),
            registration,
            NEVER,
            deps.random,
        )
    });
    if let Err(e) = written {
        let _ = deps
            .store
            .delete(&keys::registered_client(&registration.client_id));
        let _ = deps.store.delete(&rat_key);
        let _ = deps.store.delete(&software);
        return Err(store_error(e));
    }
    Ok(())
}

/// REG-36: the registration's records go ([`registration::remove`], shared with the
/// operator's delete).
fn delete(store: &dyn KeyValue, registered: &Registration) -> Result<(), ProtocolError> {
    registration::remove(store, registered).map_err(store_error)
}
