//! `POST /token` (TOK-1…3, TOK-20/21): client authentication, then the grant.

use super::Deps;
use crate::access_token::{self, AccessTokenRecord, Grant};
use crate::client_auth::{AuthenticatedClient, ClientAuthSettings, authenticate};
use crate::clients::{Clients, GrantType};
use crate::config::{ClientCertHeader, ConfigError, Issuer, Lifetimes, Variables, required, var};
use crate::error::{Endpoint, ProtocolError};
use crate::fapi;
use crate::form::Form;
use crate::http::{Method, Request, Response};

/// Scopes a `client_credentials` token may carry: the client-level ones (TOK-20, CONS-3).
pub const CLIENT_LEVEL_SCOPES: [&str; 2] = ["consents", "payments"];

/// What the token endpoint is configured with.
#[derive(Debug)]
pub struct TokenEndpoint {
    issuer: Issuer,
    clients: Clients,
    client_cert_header: ClientCertHeader,
    lifetimes: Lifetimes,
}

impl TokenEndpoint {
    /// Reads the variables the token endpoint needs.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            clients: Clients::load(vars)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            lifetimes: Lifetimes::load(vars)?,
        })
    }

    /// Answers one request; every response carries `x-fapi-interaction-id`.
    pub fn handle(&self, request: &Request, deps: &Deps<'_>) -> Response {
        let interaction_id = fapi::echo_or_new(request, deps.random);
        let mut response = self
            .respond(request, deps)
            .unwrap_or_else(|e| e.to_response(Endpoint::Token));
        response.headers.push((fapi::HEADER, interaction_id));
        response
    }

    fn respond(&self, request: &Request, deps: &Deps<'_>) -> Result<Response, ProtocolError> {
        if request.method != Method::Post {
            return Err(ProtocolError::MethodNotAllowed(
                "the token endpoint answers POST only",
            ));
        }
        let form = Form::parse(request)?;
        let settings = ClientAuthSettings {
            issuer: &self.issuer,
            clients: &self.clients,
            client_cert_header: &self.client_cert_header,
        };
        let client = authenticate(
            request,
            &form,
            settings,
            Endpoint::Token,
            deps.store,
            deps.clock.now(),
        )?;
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
            GrantType::Ciba | GrantType::RefreshToken => Err(ProtocolError::UnsupportedGrantType(
                "this grant_type is not available yet",
            )),
        }
    }

    /// TOK-20/21: a certificate-bound token for client-level scopes, no refresh or id token.
    fn client_credentials(
        &self,
        form: &Form,
        client: &AuthenticatedClient<'_>,
        deps: &Deps<'_>,
    ) -> Result<Response, ProtocolError> {
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
        };
        let exp = deps.clock.now() + i64::from(expires_in);
        let token = access_token::issue(deps.store, deps.random, &record, exp)?;
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
