//! `POST /token` (TOK-1…3, TOK-20/21): client authentication, then the grant.

use super::Deps;
use crate::access_token::{self, AccessTokenRecord, Grant};
use crate::auth_req::{self, AuthReqId, AuthRequest, GrantTokens, Pace, State};
use crate::client::auth::{
    self as client_auth, AuthenticatedClient, ClientAuthSettings, authenticate,
};
use crate::client::keys::KeySource;
use crate::client::registration;
use crate::client::registry::{Clients, GrantType};
use crate::clock::UnixTime;
use crate::config::{
    ClientCertHeader, ConfigError, Issuer, Lifetimes, Variables, abuse_limit, required, var,
};
use crate::consent;
use crate::error::{Endpoint, ProtocolError};
use crate::form::Form;
use crate::http::{Method, Request, Response};
use crate::refresh_token::{self, RefreshTokenRecord};
use crate::store::prefetch::Prefetched;
use crate::store::{first_use, keys, record, release};

/// Scopes a `client_credentials` token may carry: the client-level ones (TOK-20, CONS-3).
pub const CLIENT_LEVEL_SCOPES: [&str; 2] = ["consents", "payments"];

fn store_error<E>(_: E) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

/// What the token endpoint is configured with.
#[derive(Debug)]
pub struct TokenEndpoint {
    issuer: Issuer,
    clients: Clients,
    client_cert_header: ClientCertHeader,
    lifetimes: Lifetimes,
    /// `client_credentials` grants per client per minute (issue 16).
    client_credentials_rate: u32,
    /// The clients' public keys (KEY-8).
    keys: KeySource,
}

impl TokenEndpoint {
    /// Reads the variables the token endpoint needs.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let clients = Clients::load(vars)?;
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            keys: KeySource::load_for(vars, &clients)?,
            clients,
            client_cert_header: ClientCertHeader::load(vars)?,
            lifetimes: Lifetimes::load(vars)?,
            client_credentials_rate: abuse_limit(vars, var::CLIENT_CREDENTIALS_RATE_LIMIT)?,
        })
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        super::gathering(deps, |deps| {
            self.respond(request, deps)
                .unwrap_or_else(|e| client_auth::refusal(e, request, Endpoint::Token))
        })
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        if request.method != Method::Post {
            return Err(ProtocolError::MethodNotAllowed(
                "the token endpoint answers POST only",
            ));
        }
        let form = Form::parse(request)?;
        let prefetched = self.prefetch(&form, deps)?;
        let batched;
        let deps = match &prefetched {
            Some(store) => {
                batched = Deps {
                    store,
                    clock: deps.clock,
                    random: deps.random,
                    fetch: deps.fetch,
                };
                &batched
            }
            None => deps,
        };
        let settings = ClientAuthSettings {
            issuer: &self.issuer,
            clients: &self.clients,
            client_cert_header: &self.client_cert_header,
            keys: &self.keys,
        };
        let client = authenticate(request, &form, settings, Endpoint::Token, deps)?;
        let grant_type = form.require("grant_type", "grant_type is required")?;
        let grant = GrantType::parse(grant_type).ok_or(ProtocolError::UnsupportedGrantType(
            "this grant_type is not supported",
        ))?;
        if !client.client().grant_types.contains(&grant) {
            return Err(ProtocolError::UnauthorizedClient(
                "the client is not registered for this grant_type",
            ));
        }
        match grant {
            GrantType::ClientCredentials => self.client_credentials(&form, &client, deps),
            GrantType::Ciba => self.ciba(&form, &client, deps),
            GrantType::RefreshToken => self.refresh(&form, &client, deps),
        }
    }

    /// Issue 17: a poll of a registered client reads its registration, its request and the
    /// request's pace record in one batched read, so that it costs no more round trips than a static client's poll
    /// (whose registration is in memory). Other requests read as they go.
    fn prefetch<'s>(
        &self,
        form: &Form,
        deps: &Deps<'s>,
    ) -> Result<Option<Prefetched<'s>>, ProtocolError> {
        if form.get("grant_type") != Some(crate::client::registry::GRANT_CIBA) {
            return Ok(None);
        }
        let claimed = form
            .get("client_assertion")
            .and_then(client_auth::unverified_issuer)
            .or_else(|| form.get("client_id").map(str::to_string));
        let Some(claimed) = claimed
            .filter(|id| self.clients.get(id).is_none() && registration::is_registered_shape(id))
        else {
            return Ok(None);
        };
        let Some(id) = form.get("auth_req_id").and_then(AuthReqId::parse) else {
            return Ok(None);
        };
        let client = keys::registered_client(&claimed);
        let reference = id.reference();
        let request = keys::auth_request(&reference);
        let polls = keys::auth_request_polls(&reference);
        Prefetched::new(deps.store, &[&client, &request, &polls])
            .map(Some)
            .map_err(store_error)
    }

    /// The CIBA grant (TOK-4…14), through the request's state machine ([`crate::auth_req`]),
    /// in node-oidc-provider's order: unknown or another client's, expired, consumed,
    /// denied, pending, approved.
    fn ciba(
        &self,
        form: &Form,
        client: &AuthenticatedClient<'_>,
        deps: &Deps<'_>,
    ) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        let unknown = ProtocolError::InvalidGrant("the auth_req_id is unknown");
        let id = form.require("auth_req_id", "auth_req_id is required")?;
        let id = AuthReqId::parse(id).ok_or(unknown)?;
        let reference = id.reference();
        // Issue 18: the request and its pace record in one read.
        let (request_key, polls_key) = (
            keys::auth_request(&reference),
            keys::auth_request_polls(&reference),
        );
        let mut found = deps
            .store
            .get_many(&[&request_key, &polls_key])
            .map_err(store_error)?;
        let mut take = |key: &str| {
            found
                .iter()
                .position(|(k, _)| k == key)
                .map(|i| found.swap_remove(i).1)
        };
        let stored = take(&request_key)
            .and_then(|raw| record::decode::<AuthRequest>(raw, now))
            .ok_or(unknown)?;
        let polls = take(&polls_key);
        let request = &stored.data;
        // TOK-4: another client's request reads as unknown.
        if request.client_id != client.client().client_id {
            return Err(unknown);
        }
        match request.state(now) {
            State::Expired => Err(ProtocolError::ExpiredToken("the auth_req_id has expired")),
            State::Consumed => Err(ProtocolError::InvalidGrant(
                "the auth_req_id was already used",
            )),
            State::Denied => {
                // AD-6: a denial whose consent write did not happen is completed here; the
                // answer is the same whether that works or not.
                let _ = consent::follow_decision(deps.store, request, &reference, now, deps.random);
                Err(ProtocolError::AccessDenied(
                    "the account holder denied the request",
                ))
            }
            State::AwaitingClaim | State::Pending => {
                match auth_req::pace(
                    deps.store,
                    &reference,
                    polls,
                    self.lifetimes.poll_interval,
                    request.keep_until(),
                    now,
                    deps.random,
                )
                .map_err(store_error)?
                {
                    Pace::Allowed => Err(ProtocolError::AuthorizationPending(
                        "the account holder has not decided yet",
                    )),
                    Pace::SlowDown(_) => Err(ProtocolError::SlowDown(
                        "polled sooner than the interval: the interval is now 5 seconds longer",
                    )),
                }
            }
            State::Approved => self.redeem(&id, &stored, client, deps, now),
        }
    }

    /// TOK-10/11/13/14: the one poll that wins the redemption marker gets the tokens; the
    /// access token is bound to the certificate of this request.
    ///
    /// Exactly once on every store: the marker is an atomic increment that only one caller
    /// can see at its first value ([`crate::store::first_use`]), not a compare-and-swap,
    /// because Spin's SQLite store upserts a swap into an absent key and Spin 4.1's Redis
    /// store reports written swaps as failed. The tokens are written only after winning: the
    /// racers derive the same tokens, and a loser must not rebind them to its certificate.
    fn redeem(
        &self,
        id: &AuthReqId,
        stored: &record::Stored<AuthRequest>,
        client: &AuthenticatedClient<'_>,
        deps: &Deps<'_>,
        now: UnixTime,
    ) -> Result<Response, ProtocolError> {
        let request = &stored.data;
        let consumed = ProtocolError::InvalidGrant("the auth_req_id was already used");
        let (Some(decision), Some(salt), Some(id_token)) =
            (&request.decision, &request.token_salt, &request.id_token)
        else {
            return Err(consumed);
        };
        let reference = id.reference();
        // TOK-11, AD-5, CONS-1: the consent must still be authorised, and by this request: one
        // consent, one grant. A record approved before the consent moved first is completed
        // here, by the same atomic step the device takes.
        let consent = consent::follow_decision(deps.store, request, &reference, now, deps.random)
            .map_err(store_error)?
            .filter(|c| c.authorised_for(&reference, now))
            .ok_or(ProtocolError::InvalidGrant(
                "the consent is no longer authorised",
            ))?;
        // TOK-19: the refresh token lives as long as the consent, or refresh_token_ttl for a
        // consent with no end date.
        let refresh_exp = consent
            .expiration
            .unwrap_or(now + i64::from(self.lifetimes.refresh_token));
        // TKN-4: encrypted for a client that registered it, before anything is written, so
        // that a missing key or a keystore outage leaves the request redeemable.
        let id_token = crate::id_token::for_client(id_token, client.client(), &self.keys, deps)?;
        let marker = keys::auth_request_redeemed(&reference);
        let won = first_use(deps.store, &marker, request.keep_until()).map_err(store_error)?;
        if !won {
            return Err(consumed);
        }
        let tokens = GrantTokens::derive(id, salt, request.expires_at, refresh_exp);
        let expires_in = self.lifetimes.access_token;
        // Issue 18: both tokens and their purge entries in one set-many (one transaction on
        // Spin's SQLite store), after their slots are taken.
        let mut batch = crate::store::Batch::new();
        let written = access_token::gather_token(
            deps.store,
            deps.random,
            &mut batch,
            &tokens.access_token,
            &AccessTokenRecord {
                client_id: request.client_id.clone(),
                scope: request.scope.clone(),
                cnf_x5t_s256: client.certificate().map(|c| c.x5t_s256().to_string()),
                grant: Grant::Ciba,
                consent_id: Some(request.consent_id.clone()),
                sub: Some(decision.sub.clone()),
                acr: Some(decision.acr.clone()),
                userinfo_claims: request.userinfo_claims.clone(),
            },
            now + i64::from(expires_in),
        )
        .and_then(|()| {
            refresh_token::gather_token(
                deps.store,
                deps.random,
                &mut batch,
                &tokens.refresh_token,
                &RefreshTokenRecord {
                    client_id: request.client_id.clone(),
                    consent_id: request.consent_id.clone(),
                    sub: decision.sub.clone(),
                    scope: request.scope.clone(),
                    acr: decision.acr.clone(),
                    userinfo_claims: request.userinfo_claims.clone(),
                },
                refresh_exp,
            )
        })
        .and_then(|()| batch.write(deps.store).map_err(store_error));
        // A token that could not be stored was never handed out: the redemption is given
        // back, so that the client's next poll gets the tokens (TOK-10 under a store fault)
        // rather than "already used".
        if let Err(e) = written {
            let _ = release(deps.store, &marker, request.keep_until());
            return Err(e);
        }
        // The marker already decided; this only drops the salt so the tokens cannot be
        // derived again. A plain write (issue 18: no compare-and-swap on the token path): once
        // approved, a request's record changes only here (the device answers a decided request
        // from its record and writes nothing).
        if let Ok(consumed) = request.consume(now) {
            let _ = record::put(
                deps.store,
                &keys::auth_request(&reference),
                &consumed,
                stored.exp,
                deps.random,
            );
        }
        Ok(Response::json(
            200,
            &serde_json::json!({
                "access_token": tokens.access_token.expose(),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": tokens.refresh_token.expose(),
                "id_token": id_token,
                "scope": request.scope.join(" "),
            }),
        ))
    }

    /// The refresh grant (TOK-15…19): a new access token, bound to the certificate of this
    /// request, while the consent stays authorised; the same refresh token back (no rotation,
    /// TOK-17) and no id_token (TOK-18 [decision]).
    fn refresh(
        &self,
        form: &Form,
        client: &AuthenticatedClient<'_>,
        deps: &Deps<'_>,
    ) -> Result<Response, ProtocolError> {
        let now = deps.clock.now();
        let unusable =
            ProtocolError::InvalidGrant("the refresh token is unknown, expired or revoked");
        let token = form.require("refresh_token", "refresh_token is required")?;
        let stored =
            record::get::<RefreshTokenRecord>(deps.store, &keys::refresh_token(token), now)
                .map_err(store_error)?
                .ok_or(unusable)?;
        let granted = &stored.data;
        // TOK-15: another client's refresh token reads as unknown.
        if granted.client_id != client.client().client_id {
            return Err(unusable);
        }
        // TOK-16, CONS-2: revoked, rejected or past its end date, the consent takes its
        // tokens with it.
        consent::authorised(deps.store, &granted.consent_id, now)
            .map_err(store_error)?
            .ok_or(ProtocolError::InvalidGrant(
                "the consent is no longer authorised",
            ))?;
        let scope = match form.get("scope") {
            None => granted.scope.clone(),
            Some(requested) => {
                let scope = crate::scope::parse(requested)?;
                if scope.iter().any(|s| !granted.scope.contains(s)) {
                    return Err(ProtocolError::InvalidScope(
                        "a refresh may only narrow the scope granted",
                    ));
                }
                scope
            }
        };
        let expires_in = self.lifetimes.access_token;
        let access_token = access_token::issue(
            deps.store,
            deps.random,
            &AccessTokenRecord {
                client_id: granted.client_id.clone(),
                scope: scope.clone(),
                cnf_x5t_s256: client.certificate().map(|c| c.x5t_s256().to_string()),
                grant: Grant::Ciba,
                consent_id: Some(granted.consent_id.clone()),
                sub: Some(granted.sub.clone()),
                acr: Some(granted.acr.clone()),
                userinfo_claims: granted.userinfo_claims.clone(),
            },
            now + i64::from(expires_in),
        )?;
        super::purge_turn(deps);
        Ok(Response::json(
            200,
            &serde_json::json!({
                "access_token": access_token.expose(),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "refresh_token": token,
                "scope": scope.join(" "),
            }),
        ))
    }

    /// TOK-20/21: a certificate-bound token for client-level scopes, no refresh or id token.
    fn client_credentials(
        &self,
        form: &Form,
        client: &AuthenticatedClient<'_>,
        deps: &Deps<'_>,
    ) -> Result<Response, ProtocolError> {
        // Issue 16: every token issued is a record kept until it expires, so a client's
        // grants are limited per minute: one atomic increment per request once the client
        // has authenticated, whatever the outcome; over the limit, 429 with `Retry-After`.
        let client_id = client.client().client_id.as_str();
        crate::rate_limit::per_minute(
            deps.store,
            |until| keys::client_credentials_rate(client_id, until),
            self.client_credentials_rate,
            "the client asked for too many client_credentials tokens, retry later",
            deps.clock.now(),
        )?;
        let registered: Vec<&str> = client
            .client()
            .scopes
            .iter()
            .map(String::as_str)
            .filter(|s| CLIENT_LEVEL_SCOPES.contains(s))
            .collect();
        let scope: Vec<String> = match form.get("scope") {
            None => registered.iter().map(|s| s.to_string()).collect(),
            Some(requested) => {
                let mut scope: Vec<String> = Vec::new();
                for s in requested.split(' ').filter(|s| !s.is_empty()) {
                    if !registered.contains(&s) {
                        return Err(ProtocolError::InvalidScope(
                            "client_credentials grants only the client's consents or payments scopes",
                        ));
                    }
                    if !scope.iter().any(|x| x == s) {
                        scope.push(s.to_string());
                    }
                }
                scope
            }
        };
        if scope.is_empty() {
            return Err(ProtocolError::InvalidScope(
                "no client-level scope is registered for this client",
            ));
        }
        let expires_in = self.lifetimes.access_token;
        let record = AccessTokenRecord {
            client_id: client.client().client_id.clone(),
            scope: scope.clone(),
            cnf_x5t_s256: client.certificate().map(|c| c.x5t_s256().to_string()),
            grant: Grant::ClientCredentials,
            consent_id: None,
            sub: None,
            acr: None,
            userinfo_claims: Default::default(),
        };
        let exp = deps.clock.now() + i64::from(expires_in);
        let token = access_token::issue(deps.store, deps.random, &record, exp)?;
        super::purge_turn(deps);
        Ok(Response::json(
            200,
            &serde_json::json!({
                "access_token": token.expose(),
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": scope.join(" "),
            }),
        ))
    }
}
