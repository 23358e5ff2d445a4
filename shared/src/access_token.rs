//! Access tokens: opaque, 256 random bits (TKN-1), stored only under their hash with the
//! client, scopes, expiry and certificate binding (TKN-2/3; design.md, State).
//!
//! A token is base64url of its 256-bit secret followed by the Unix time its record may be
//! dropped (8 bytes, big-endian): 54 characters. The end names the record's key, so the purge
//! drops it without reading it ([`crate::store::keys::access_token`]); it is no secret (the
//! client has `expires_in`), and a token whose end was changed is another, unknown token.

use serde::{Deserialize, Serialize};

use crate::client::registry::Clients;
use crate::clock::{Random, UnixTime};
use crate::error::ProtocolError;
use crate::http::Request;
use crate::jose::b64url;
use crate::store::{KeyValue, StoreError, keys, record};

/// A bearer secret: printed as `[redacted]`, never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl AccessToken {
    /// A token made elsewhere (derived for a CIBA grant, [`crate::auth_req::GrantTokens`]).
    pub fn from_secret(secret: String) -> Self {
        Self(secret)
    }

    /// The token, for the response body only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Which grant issued a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// `client_credentials`: may only manage consents (CONS-3).
    ClientCredentials,
    /// The CIBA grant or a refresh of it.
    Ciba,
}

/// What the store keeps about an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The granted scopes.
    pub scope: Vec<String>,
    /// `cnf.x5t#S256`: the certificate it is bound to (TKN-2), when mTLS is on.
    pub cnf_x5t_s256: Option<String>,
    /// The grant.
    pub grant: Grant,
    /// The consent it is tied to (CONS-2), for CIBA tokens.
    pub consent_id: Option<String>,
    /// The account holder, for CIBA tokens.
    pub sub: Option<String>,
    /// The acr the holder reached, for CIBA tokens (TKN-3).
    #[serde(default)]
    pub acr: Option<String>,
    /// The claims the client asked for at userinfo (BCA-22, UI-6).
    #[serde(default)]
    pub userinfo_claims: crate::auth_req::ClaimRequests,
}

fn server_error(_: StoreError) -> ProtocolError {
    ProtocolError::ServerError("the store is unavailable")
}

/// The longest an access token lives: the top of `access_token_ttl`'s range (TKN-3: 300–900
/// s). A CIBA grant's token is made before it is issued, so its end is its request's expiry
/// plus this ([`crate::auth_req::GrantTokens`]).
pub const LONGEST_LIFETIME: UnixTime = 900;

/// The token of `secret` whose record may be dropped at `end`.
pub fn with_end(secret: &[u8; 32], end: UnixTime) -> AccessToken {
    let mut bytes = [0u8; 40];
    bytes[..32].copy_from_slice(secret);
    bytes[32..].copy_from_slice(&end.to_be_bytes());
    AccessToken(b64url(&bytes))
}

/// The end a token of [`with_end`] carries; `None` for any other string.
pub fn end_of(token: &str) -> Option<UnixTime> {
    let bytes = crate::jose::b64url_decode(token)?;
    let end: [u8; 8] = bytes
        .get(32..)
        .filter(|_| bytes.len() == 40)?
        .try_into()
        .ok()?;
    Some(UnixTime::from_be_bytes(end))
}

/// Mints a token for `data`, valid until `exp`, and stores it under its hash.
pub fn issue(
    store: &dyn KeyValue,
    random: &dyn Random,
    data: &AccessTokenRecord,
    exp: UnixTime,
) -> Result<AccessToken, ProtocolError> {
    let mut secret = [0u8; 32];
    random.fill(&mut secret).map_err(server_error)?;
    let token = with_end(&secret, exp);
    store_token(store, random, &token, data, exp)?;
    Ok(token)
}

/// Stores `token` (made elsewhere) for `data` under its hash, valid until `exp`, announced to
/// the purge first ([`crate::store::purge::announce`]).
pub fn store_token(
    store: &dyn KeyValue,
    random: &dyn Random,
    token: &AccessToken,
    data: &AccessTokenRecord,
    exp: UnixTime,
) -> Result<(), ProtocolError> {
    let mut batch = crate::store::Batch::new();
    gather_token(store, random, &mut batch, token, data, exp)?;
    batch.write(store).map_err(server_error)
}

/// [`store_token`] into `batch`: the purge slot taken now, the entry and the record written
/// with the batch (issue 18).
pub fn gather_token(
    store: &dyn KeyValue,
    random: &dyn Random,
    batch: &mut crate::store::Batch,
    token: &AccessToken,
    data: &AccessTokenRecord,
    exp: UnixTime,
) -> Result<(), ProtocolError> {
    let key = keys::access_token(&token.0);
    crate::store::purge::announce(store, exp, &[&key]).map_err(server_error)?;
    batch.put(&key, data, exp, random).map_err(server_error)
}

/// A bearer token that exists, has not expired, and is bound to the certificate presented
/// (RFC 6750, RFC 8705 3; UI-3/4 shapes the errors).
#[derive(Debug, Clone)]
pub struct ValidAccessToken {
    /// What was stored with it.
    pub record: AccessTokenRecord,
}

/// The bearer token of a request to a resource (userinfo, the Consents API), bound to the
/// certificate the request presents (UI-3, RFC 8705 3): with mTLS on a certificate is
/// required; every failure is 401 `invalid_token`.
pub fn validate_bound_bearer(
    request: &Request,
    store: &dyn KeyValue,
    clients: &Clients,
    client_cert_header: &crate::config::ClientCertHeader,
    now: UnixTime,
) -> Result<ValidAccessToken, ProtocolError> {
    let certificate =
        crate::client::certificate::ClientCertificate::presented(request, client_cert_header)
            .map_err(|_| ProtocolError::InvalidToken("the client certificate cannot be read"))?;
    if client_cert_header.mtls() && certificate.is_none() {
        return Err(ProtocolError::InvalidToken(
            "a client certificate is required (mTLS)",
        ));
    }
    validate_bearer(
        request,
        store,
        clients,
        now,
        certificate.as_ref().map(|c| c.x5t_s256()),
    )
}

/// Reads `Authorization: Bearer <token>` and checks it against the store, the registrations
/// (a client removed from `clients`, or a deleted registration, loses its tokens at once) and the certificate presented
/// on this request (`None` when mTLS is off).
pub fn validate_bearer(
    request: &Request,
    store: &dyn KeyValue,
    clients: &Clients,
    now: UnixTime,
    presented_x5t_s256: Option<&str>,
) -> Result<ValidAccessToken, ProtocolError> {
    let mut values = request.header_values("authorization");
    let header = values.next().ok_or(ProtocolError::InvalidToken(
        "a bearer access token is required",
    ))?;
    if values.next().is_some() {
        return Err(ProtocolError::InvalidRequest(
            "more than one Authorization header",
        ));
    }
    let token = header
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
        .ok_or(ProtocolError::InvalidToken(
            "a bearer access token is required",
        ))?;
    let stored = record::get::<AccessTokenRecord>(store, &keys::access_token(token), now)
        .map_err(server_error)?
        .ok_or(ProtocolError::InvalidToken(
            "the access token is unknown or expired",
        ))?;
    // A deleted registration loses its tokens at once (REG-36): one read, for registered
    // clients only.
    if crate::client::registration::lookup(clients, store, &stored.data.client_id, now)
        .map_err(server_error)?
        .is_none()
    {
        return Err(ProtocolError::InvalidToken(
            "the access token is unknown or expired",
        ));
    }
    if stored.data.cnf_x5t_s256.as_deref() != presented_x5t_s256 {
        return Err(ProtocolError::InvalidToken(
            "the access token is bound to another certificate",
        ));
    }
    Ok(ValidAccessToken {
        record: stored.data,
    })
}
