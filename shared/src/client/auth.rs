//! Client authentication at bc-authorize and token (CLI-1…10): `private_key_jwt` with PS256
//! (OIDC 9, RFC 7523) or `tls_client_auth` by subject DN (RFC 8705 2.1). The only way to get
//! an [`AuthenticatedClient`] is [`authenticate`], so no endpoint can skip a check.

use std::borrow::Cow;

use crate::client::certificate::{ClientCertificate, ORGANIZATION_IDENTIFIER};
use crate::client::keys::KeySource;
use crate::client::registration;
use crate::client::registry::{AuthMethod, Client, Clients};
use crate::clock::{SKEW, UnixTime};
use crate::config::{ClientCertHeader, Issuer};
use crate::discovery::{BC_AUTHORIZE_PATH, TOKEN_PATH};
use crate::endpoints::Deps;
use crate::error::{Endpoint, ProtocolError};
use crate::form::Form;
use crate::http::{Request, Response};
use crate::jose::jws::{JwsError, verify_ps256};
use crate::store::{KeyValue, keys};

/// `client_assertion_type` for private_key_jwt (RFC 7523 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest lifetime accepted for a client assertion (CLI-5 [decision]).
const MAX_ASSERTION_LIFETIME: i64 = 600;

/// What client authentication needs from configuration.
#[derive(Debug, Clone, Copy)]
pub struct ClientAuthSettings<'a> {
    /// `issuer`: the base of the accepted audiences.
    pub issuer: &'a Issuer,
    /// `clients`.
    pub clients: &'a Clients,
    /// `client_cert_header`.
    pub client_cert_header: &'a ClientCertHeader,
    /// Where the clients' public keys come from (KEY-8).
    pub keys: &'a KeySource,
}

/// A client that proved who it is on this request, with the certificate it presented.
#[derive(Debug)]
pub struct AuthenticatedClient<'c> {
    client: Cow<'c, Client>,
    certificate: Option<ClientCertificate>,
}

impl<'c> AuthenticatedClient<'c> {
    /// The registration.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The certificate presented on this request, to bind tokens to (TOK-14, TKN-2).
    pub fn certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_ref()
    }
}

/// The response to a refused request at an endpoint that authenticates clients. RFC 6749
/// 5.2: when the client tried the `Authorization` header, `invalid_client` is a 401 whose
/// `WWW-Authenticate` names the scheme it used (`Basic`, CLI-2).
pub fn refusal(error: ProtocolError, request: &Request, endpoint: Endpoint) -> Response {
    let mut response = error.to_response(endpoint);
    if let ProtocolError::InvalidClient(_) = error {
        let scheme = request
            .header_values("authorization")
            .next()
            .and_then(|v| v.split_whitespace().next())
            .filter(|s| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+".contains(&b))
            });
        if let Some(scheme) = scheme {
            let scheme = if scheme.eq_ignore_ascii_case("basic") {
                "Basic"
            } else {
                scheme
            };
            response
                .headers
                .push(("www-authenticate", format!("{scheme} realm=\"token\"")));
        }
    }
    response
}

fn invalid(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidClient(why)
}

/// Authenticates the client of `request` at `endpoint`, using up its assertion's `jti`.
pub fn authenticate<'c>(
    request: &Request,
    form: &Form,
    settings: ClientAuthSettings<'c>,
    endpoint: Endpoint,
    deps: &Deps<'_>,
) -> Result<AuthenticatedClient<'c>, ProtocolError> {
    check(request, form, settings, endpoint, deps)?.confirm(deps.store)
}

/// A client whose every authentication check passed except the single use of its
/// assertion's `jti`. An endpoint that can still refuse the request for other reasons
/// (bc-authorize: the request object, the consent, the hint) keeps it until they all passed,
/// then [`CheckedClient::confirm`]s it: a refused request uses up nothing (CLI-6, design.md).
#[derive(Debug)]
pub struct CheckedClient<'c> {
    client: Cow<'c, Client>,
    certificate: Option<ClientCertificate>,
    replay: Option<keys::JtiMarker>,
}

impl<'c> CheckedClient<'c> {
    /// The registration.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The certificate presented on this request.
    pub fn certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_ref()
    }

    /// Uses up the assertion's `jti` (CLI-6): the client is authenticated once this passes.
    pub fn confirm(self, store: &dyn KeyValue) -> Result<AuthenticatedClient<'c>, ProtocolError> {
        if let Some(replay) = &self.replay {
            let first = crate::store::first_use_of_jti(store, replay)
                .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?;
            if !first {
                return Err(invalid("the client assertion jti was already used"));
            }
        }
        Ok(AuthenticatedClient {
            client: self.client,
            certificate: self.certificate,
        })
    }
}

/// Every check of client authentication but the `jti`'s single use.
///
/// Order: the certificate (CLI-9), the method presented (CLI-2/3), then that method's checks,
/// then the organisation (CLI-10).
pub fn check<'c>(
    request: &Request,
    form: &Form,
    settings: ClientAuthSettings<'c>,
    endpoint: Endpoint,
    deps: &Deps<'_>,
) -> Result<CheckedClient<'c>, ProtocolError> {
    let now = deps.clock.now();
    let certificate = ClientCertificate::presented(request, settings.client_cert_header)?;
    if settings.client_cert_header.mtls() && certificate.is_none() {
        return Err(invalid("a client certificate is required (mTLS)"));
    }
    let assertion =
        form.get("client_assertion").is_some() || form.get("client_assertion_type").is_some();
    let secret = form.get("client_secret").is_some()
        || request.header_values("authorization").next().is_some();
    if assertion && secret {
        return Err(ProtocolError::InvalidRequest(
            "more than one client authentication method",
        ));
    }
    if secret {
        return Err(invalid(
            "client secrets are not accepted: use private_key_jwt or tls_client_auth",
        ));
    }
    let (client, replay) = if assertion {
        let (client, replay) = private_key_jwt(form, settings, endpoint, deps, now)?;
        (client, Some(replay))
    } else {
        (
            tls_client_auth(form, settings, certificate.as_ref(), deps, now)?,
            None,
        )
    };
    if endpoint == Endpoint::Token {
        check_organisation(&client, certificate.as_ref())?;
    }
    Ok(CheckedClient {
        client,
        certificate,
        replay,
    })
}

/// CLI-4…7, with the replay marker of an assertion that passed every other check (CLI-6):
/// kept until the assertion could no longer be accepted, its `exp` plus the skew.
fn private_key_jwt<'c>(
    form: &Form,
    settings: ClientAuthSettings<'c>,
    endpoint: Endpoint,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<(Cow<'c, Client>, keys::JtiMarker), ProtocolError> {
    if form.get("client_assertion_type") != Some(JWT_BEARER) {
        return Err(invalid(
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let assertion = form
        .get("client_assertion")
        .ok_or(invalid("client_assertion is required"))?;
    // The issuer names the client whose keys verify the assertion; nothing else is read
    // before the signature verifies.
    let claimed =
        unverified_issuer(assertion).ok_or(invalid("the client assertion is malformed"))?;
    let client = find(settings, &claimed, deps, now)?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(invalid("the client is not registered for private_key_jwt"));
    }
    // KEY-8, KEY-13/14: a key set that cannot be fetched is 503, never invalid_client.
    let verifiers = settings.keys.verifiers(deps, &client, assertion)?;
    let verified = verify_ps256(assertion, verifiers.iter()).map_err(|e| {
        invalid(match e {
            JwsError::AlgorithmNotAllowed => "the client assertion must be signed with PS256",
            JwsError::UnknownKey => "the client assertion kid is not a key of this client",
            JwsError::BadSignature => "the client assertion signature does not verify",
            JwsError::Encrypted
            | JwsError::Malformed
            | JwsError::CriticalHeader
            | JwsError::MalformedClaims => "the client assertion is malformed",
        })
    })?;
    let iss = verified.str("iss");
    if iss != Some(client.client_id.as_str()) || verified.str("sub") != iss {
        return Err(invalid(
            "the client assertion iss and sub must both be the client_id",
        ));
    }
    if form
        .get("client_id")
        .is_some_and(|id| id != client.client_id)
    {
        return Err(invalid("client_id does not match the client assertion"));
    }
    let mut audiences = vec![
        settings.issuer.as_str().to_string(),
        settings.issuer.url(TOKEN_PATH),
    ];
    if endpoint == Endpoint::BackchannelAuthentication {
        audiences.push(settings.issuer.url(BC_AUTHORIZE_PATH));
    }
    let aud_ok = match verified.claims.get("aud") {
        Some(serde_json::Value::String(a)) => audiences.contains(a),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a))),
        _ => false,
    };
    if !aud_ok {
        return Err(invalid(
            "the client assertion aud does not name this server",
        ));
    }
    let exp = verified
        .exp
        .ok_or(invalid("the client assertion has no exp"))?;
    if exp <= now - SKEW {
        return Err(invalid("the client assertion has expired"));
    }
    if verified.iat.is_some_and(|t| t > now + SKEW) || verified.nbf.is_some_and(|t| t > now + SKEW)
    {
        return Err(invalid("the client assertion is not valid yet"));
    }
    let lifetime = exp - verified.iat.unwrap_or(now);
    if lifetime > MAX_ASSERTION_LIFETIME {
        return Err(invalid(
            "the client assertion lives longer than 600 seconds",
        ));
    }
    let jti = verified
        .str("jti")
        .filter(|j| !j.is_empty())
        .ok_or(invalid("the client assertion has no jti"))?;
    let marker = keys::assertion_jti(&client.client_id, jti, exp + SKEW, now);
    Ok((client, marker))
}

/// The `iss` claim of a JWS whose signature has not been checked: used only to pick the keys.
pub fn unverified_issuer(compact: &str) -> Option<String> {
    let payload = compact.split('.').nth(1)?;
    let bytes = crate::jose::b64url_decode(payload)?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// CLI-8.
fn tls_client_auth<'c>(
    form: &Form,
    settings: ClientAuthSettings<'c>,
    certificate: Option<&ClientCertificate>,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<Cow<'c, Client>, ProtocolError> {
    let client_id = form
        .get("client_id")
        .ok_or(invalid("client authentication is required"))?;
    let client = find(settings, client_id, deps, now)?;
    if client.auth_method != AuthMethod::TlsClientAuth {
        return Err(invalid("the client is not registered for tls_client_auth"));
    }
    let certificate = certificate.ok_or(invalid("tls_client_auth needs a client certificate"))?;
    // Parsed when the configuration was loaded (CLI-8): a registration without one is
    // refused there.
    let registered = client
        .tls_client_auth_subject_dn
        .as_ref()
        .ok_or(invalid("the client is not registered for tls_client_auth"))?;
    if !registered.matches(certificate.subject()) {
        return Err(invalid(
            "the certificate subject does not match the registration",
        ));
    }
    Ok(client)
}

/// The client `client_id`, static or registered ([`registration::lookup`]): a deleted
/// registration is unknown at once (REG-36).
fn find<'c>(
    settings: ClientAuthSettings<'c>,
    client_id: &str,
    deps: &Deps<'_>,
    now: UnixTime,
) -> Result<Cow<'c, Client>, ProtocolError> {
    registration::lookup(settings.clients, deps.store, client_id, now)
        .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?
        .ok_or(invalid("unknown client"))
}

/// CLI-10 [decision: enforced at the token endpoint]: a client registered with its
/// Directory `org_id` presents a certificate of that organisation.
fn check_organisation(
    client: &Client,
    certificate: Option<&ClientCertificate>,
) -> Result<(), ProtocolError> {
    let (Some(org_id), Some(certificate)) = (&client.org_id, certificate) else {
        return Ok(());
    };
    let expected = format!("ofbbr-{}", org_id.to_lowercase());
    if certificate.subject().text(ORGANIZATION_IDENTIFIER) != Some(expected.as_str()) {
        return Err(invalid("the certificate belongs to another organisation"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Boundaries that only a fixed clock can pin, against an in-memory store.

    use serde_json::{Value, json};

    use super::*;
    use crate::config::Config;
    use crate::fixtures::{client_jws, variables};
    use crate::store::memory::MemoryStore;

    const NOW: UnixTime = 1_800_000_000;
    const TOKEN_URL: &str = "https://auth.bank.example/token";

    fn claims(iat: i64, exp: i64) -> Value {
        json!({ "iss": "tpp-1", "sub": "tpp-1", "aud": TOKEN_URL, "iat": iat, "exp": exp, "jti": format!("{iat}-{exp}") })
    }

    fn run(
        config: &Config,
        store: &MemoryStore,
        assertion: &str,
        endpoint: Endpoint,
    ) -> Result<String, ProtocolError> {
        let body = format!(
            "client_assertion_type={}&client_assertion={assertion}",
            JWT_BEARER.replace(':', "%3A")
        );
        let form = Form::parse_body(body.as_bytes()).unwrap();
        let request = Request {
            method: crate::http::Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![],
            body: body.into_bytes(),
        };
        let settings = ClientAuthSettings {
            issuer: &config.issuer,
            clients: &config.clients,
            client_cert_header: &ClientCertHeader::load(&std::collections::HashMap::new()).unwrap(),
            keys: &crate::fixtures::key_source(),
        };
        let deps = Deps {
            store,
            clock: &crate::clock::FixedClock(NOW),
            random: &crate::clock::CountingRandom::default(),
            fetch: &crate::client::fetch::NoFetch,
        };
        authenticate(&request, &form, settings, endpoint, &deps)
            .map(|c| c.client().client_id.clone())
    }

    #[test]
    fn cli_5_expiry_boundaries_with_60_seconds_of_skew() {
        let config = Config::load(&variables()).unwrap();
        let store = MemoryStore::new();
        let ok = |iat, exp| {
            run(
                &config,
                &store,
                &client_jws("client-key-1", claims(iat, exp)),
                Endpoint::Token,
            )
        };
        assert!(
            ok(NOW - 120, NOW - 59).is_ok(),
            "exp 59 s ago is within the skew"
        );
        assert!(ok(NOW - 121, NOW - 60).is_err(), "exp 60 s ago is expired");
        assert!(
            ok(NOW + 60, NOW + 120).is_ok(),
            "iat 60 s ahead is within the skew"
        );
        assert!(
            ok(NOW + 61, NOW + 120).is_err(),
            "iat 61 s ahead is in the future"
        );
        assert!(
            ok(NOW, NOW + 600).is_ok(),
            "a 600 s lifetime is the maximum"
        );
        assert!(ok(NOW - 1, NOW + 600).is_err(), "601 s is too long");
    }

    #[test]
    fn cli_6_the_jti_is_consumed_only_when_everything_else_passed() {
        let config = Config::load(&variables()).unwrap();
        let store = MemoryStore::new();
        let mut bad_aud = claims(NOW, NOW + 60);
        bad_aud["aud"] = json!("https://elsewhere.example");
        let refused = run(
            &config,
            &store,
            &client_jws("client-key-1", bad_aud),
            Endpoint::Token,
        );
        assert_eq!(
            refused,
            Err(ProtocolError::InvalidClient(
                "the client assertion aud does not name this server"
            ))
        );
        assert!(
            store.is_empty(),
            "a refused assertion must not consume its jti"
        );
        let good = client_jws("client-key-1", claims(NOW, NOW + 60));
        assert_eq!(
            run(&config, &store, &good, Endpoint::Token),
            Ok("tpp-1".to_string())
        );
        assert_eq!(
            store.len(),
            3,
            "the jti marker, and its announcement to the purge (a count and an entry)"
        );
        assert_eq!(
            run(&config, &store, &good, Endpoint::Token),
            Err(ProtocolError::InvalidClient(
                "the client assertion jti was already used"
            ))
        );
    }

    #[test]
    fn cli_5_the_backchannel_url_is_an_audience_only_at_bc_authorize() {
        let config = Config::load(&variables()).unwrap();
        let store = MemoryStore::new();
        let mut c = claims(NOW, NOW + 60);
        c["aud"] = json!("https://auth.bank.example/bc-authorize");
        let jws = client_jws("client-key-1", c.clone());
        assert!(run(&config, &store, &jws, Endpoint::Token).is_err());
        c["jti"] = json!("other");
        let jws = client_jws("client-key-1", c);
        assert!(run(&config, &store, &jws, Endpoint::BackchannelAuthentication).is_ok());
    }

    /// CLI-6: the replay cache is on (client_id, jti): a second assertion with a used jti is
    /// refused even with another exp (a new signature, not a replayed one).
    #[test]
    fn cli_6_a_used_jti_is_refused_in_a_new_assertion_with_another_exp() {
        let config = Config::load(&variables()).unwrap();
        let store = MemoryStore::new();
        let first = client_jws("client-key-1", claims(NOW, NOW + 60));
        assert_eq!(
            run(&config, &store, &first, Endpoint::Token),
            Ok("tpp-1".to_string())
        );
        let mut again = claims(NOW + 5, NOW + 120);
        again["jti"] = claims(NOW, NOW + 60)["jti"].clone();
        let again = client_jws("client-key-1", again);
        assert_ne!(again, first);
        assert_eq!(
            run(&config, &store, &again, Endpoint::Token),
            Err(ProtocolError::InvalidClient(
                "the client assertion jti was already used"
            ))
        );
    }
}
