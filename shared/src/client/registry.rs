//! Client registrations, from the `clients` variable (design.md; BR-DCR 7.1 for the metadata).
//!
//! Only what the profile allows can be registered: confidential clients with
//! `private_key_jwt` or `tls_client_auth` (CLI-2), poll mode (REG-2), PS256 (GEN-2).

use serde::Deserialize;

use crate::client::dn::DistinguishedName;
use crate::config::{ConfigError, Variables, required, var};
use crate::jose::jwk::{KeyUse, PublicJwk, RawJwkSet};

/// The CIBA grant type (CIBA 4).
pub const GRANT_CIBA: &str = "urn:openid:params:grant-type:ciba";

/// How a client authenticates (CLI-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `private_key_jwt` (OIDC 9), PS256 only.
    PrivateKeyJwt,
    /// `tls_client_auth` (RFC 8705 2.1), by subject DN.
    TlsClientAuth,
}

impl AuthMethod {
    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::TlsClientAuth => "tls_client_auth",
        }
    }
}

/// A grant the token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `urn:openid:params:grant-type:ciba`
    Ciba,
    /// `refresh_token`
    RefreshToken,
    /// `client_credentials`
    ClientCredentials,
}

impl GrantType {
    /// The registered name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ciba => GRANT_CIBA,
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    /// Parses a registered or requested name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Ciba, Self::RefreshToken, Self::ClientCredentials]
            .into_iter()
            .find(|g| g.name() == name)
    }
}

/// How a client's id_tokens are encrypted, when it registered
/// `id_token_encrypted_response_alg` (TKN-4, REG-26): one choice, the profile's only one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenEncryption {
    /// `RSA-OAEP` with `A256GCM` (FAPI-BR 6.2.1, GEN-2).
    RsaOaepA256Gcm,
}

impl IdTokenEncryption {
    /// REG-26, for registrations and for the `clients` variable alike:
    /// `id_token_encrypted_response_alg` RSA-OAEP only and `…_enc` A256GCM only; the alg
    /// without enc gets A256GCM (7.1.1-1 picks the strongest supported choice over OIDR's
    /// A128CBC-HS256 default); enc without alg is refused. `Ok(None)`: neither is set.
    pub fn parse(alg: Option<&str>, enc: Option<&str>) -> Result<Option<Self>, &'static str> {
        match (alg, enc) {
            (None, None) => Ok(None),
            (Some(crate::jose::RSA_OAEP), None | Some(crate::jose::jwe::A256GCM)) => {
                Ok(Some(Self::RsaOaepA256Gcm))
            }
            (None, Some(_)) => {
                Err("id_token_encrypted_response_enc needs id_token_encrypted_response_alg")
            }
            _ => Err("id_token encryption is RSA-OAEP with A256GCM only"),
        }
    }
}

/// Where a client's public keys come from (KEY-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeys {
    /// `jwks` by value, allowed for static registrations made by the operator: its signing
    /// keys and its `use: enc` keys, in the order written (each [`PublicJwk::key_use`] says
    /// which; KEY-9: only the signing ones verify, only the encryption ones encrypt).
    Jwks(Vec<PublicJwk>),
    /// `jwks_uri`, the SSA's `software_jwks_uri`.
    JwksUri(String),
}

/// One registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// `client_id`.
    pub client_id: String,
    /// `client_name`, shown to the holder on the authentication device (AD-2).
    pub client_name: Option<String>,
    /// Its keys.
    pub keys: ClientKeys,
    /// `token_endpoint_auth_method`.
    pub auth_method: AuthMethod,
    /// `tls_client_auth_subject_dn`, required with `tls_client_auth` (CLI-8); parsed once,
    /// when the configuration is loaded.
    pub tls_client_auth_subject_dn: Option<DistinguishedName>,
    /// The registered scopes.
    pub scopes: Vec<String>,
    /// The registered grants.
    pub grant_types: Vec<GrantType>,
    /// The Directory organisation id: when set, the client's certificate must carry
    /// `organizationIdentifier` `OFBBR-<org_id>` at the token endpoint (CLI-10).
    pub org_id: Option<String>,
    /// Whether, and how, its id_tokens are encrypted (TKN-4, REG-26).
    pub id_token_encryption: Option<IdTokenEncryption>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: String,
    client_name: Option<String>,
    jwks: Option<RawJwkSet>,
    jwks_uri: Option<String>,
    token_endpoint_auth_method: String,
    token_endpoint_auth_signing_alg: Option<String>,
    tls_client_auth_subject_dn: Option<String>,
    scope: String,
    grant_types: Vec<String>,
    backchannel_token_delivery_mode: Option<String>,
    backchannel_authentication_request_signing_alg: Option<String>,
    backchannel_user_code_parameter: Option<bool>,
    backchannel_client_notification_endpoint: Option<serde::de::IgnoredAny>,
    id_token_signed_response_alg: Option<String>,
    id_token_encrypted_response_alg: Option<String>,
    id_token_encrypted_response_enc: Option<String>,
    tls_client_certificate_bound_access_tokens: Option<bool>,
    org_id: Option<String>,
    software_id: Option<String>,
}

/// Every registered client, with unique `client_id`s.
#[derive(Debug, Clone, Default)]
pub struct Clients(Vec<Client>);

impl Clients {
    /// Reads `clients`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Self::parse(&required(vars, var::CLIENTS)?)
    }

    /// Parses the JSON array; problems name the entry by position.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: Vec<RawClient> = serde_json::from_str(text).map_err(|e| {
            ConfigError::new(
                var::CLIENTS,
                format!(
                    "not a JSON array of client registrations (known members only): \
                     problem at line {}, column {}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let mut clients: Vec<Client> = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            let client = check(r)
                .map_err(|why| ConfigError::new(var::CLIENTS, format!("clients[{i}]: {why}")))?;
            if clients.iter().any(|c| c.client_id == client.client_id) {
                return Err(ConfigError::new(
                    var::CLIENTS,
                    format!("clients[{i}]: client_id is not unique"),
                ));
            }
            clients.push(client);
        }
        Ok(Self(clients))
    }

    /// The client with `client_id`.
    pub fn get(&self, client_id: &str) -> Option<&Client> {
        self.0.iter().find(|c| c.client_id == client_id)
    }

    /// Every client.
    pub fn all(&self) -> &[Client] {
        &self.0
    }
}

fn check(r: RawClient) -> Result<Client, String> {
    let _ = &r.software_id;
    if r.client_id.is_empty()
        || r.client_id.len() > 255
        || !r.client_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err("client_id must be 1 to 255 visible ASCII characters".into());
    }
    let auth_method = match r.token_endpoint_auth_method.as_str() {
        "private_key_jwt" => AuthMethod::PrivateKeyJwt,
        "tls_client_auth" => AuthMethod::TlsClientAuth,
        _ => {
            return Err(
                "token_endpoint_auth_method must be private_key_jwt or tls_client_auth (CLI-2)"
                    .into(),
            );
        }
    };
    let ps256_only = [
        &r.token_endpoint_auth_signing_alg,
        &r.backchannel_authentication_request_signing_alg,
        &r.id_token_signed_response_alg,
    ];
    if ps256_only
        .iter()
        .any(|a| a.as_deref().is_some_and(|a| a != "PS256"))
    {
        return Err("every signing algorithm must be PS256 (GEN-2)".into());
    }
    if r.backchannel_token_delivery_mode
        .as_deref()
        .is_some_and(|m| m != "poll")
        || r.backchannel_client_notification_endpoint.is_some()
    {
        return Err("backchannel_token_delivery_mode must be poll (REG-2)".into());
    }
    if r.backchannel_user_code_parameter == Some(true) {
        return Err("backchannel_user_code_parameter is not supported (REG-2)".into());
    }
    if r.tls_client_certificate_bound_access_tokens == Some(false) {
        return Err("tls_client_certificate_bound_access_tokens must be true".into());
    }
    // REG-26's checks, so that a bank can configure an encrypting client by hand (TKN-4).
    let id_token_encryption = IdTokenEncryption::parse(
        r.id_token_encrypted_response_alg.as_deref(),
        r.id_token_encrypted_response_enc.as_deref(),
    )
    .map_err(|why| format!("{why} (REG-26)"))?;
    let keys = match (r.jwks, r.jwks_uri) {
        (Some(set), None) => {
            // KEY-9: a client's real key set also holds its `use: enc` keys; only the
            // signing keys verify its assertions and request objects, and only the
            // encryption keys (KEY-11: `use` enc, `alg` RSA-OAEP or absent) encrypt its
            // id_tokens. An encryption key that is not one of those is skipped, as before,
            // unless the client encrypts and is left with none (below).
            let mut keys: Vec<PublicJwk> = Vec::new();
            for (k, jwk) in set.keys.into_iter().enumerate() {
                let key = if jwk.is_encryption_key() {
                    match jwk.into_public(KeyUse::Encryption) {
                        Ok(key) => key,
                        Err(_) => continue,
                    }
                } else {
                    jwk.into_public(KeyUse::Signature)
                        .map_err(|why| format!("jwks.keys[{k}]: {why}"))?
                };
                if keys
                    .iter()
                    .any(|o| o.kid == key.kid && o.key_use == key.key_use)
                {
                    return Err(format!("jwks.keys[{k}]: kid is not unique"));
                }
                keys.push(key);
            }
            if !keys.iter().any(|k| k.key_use == KeyUse::Signature) {
                return Err("jwks holds no signing key".into());
            }
            if id_token_encryption.is_some()
                && !keys.iter().any(|k| k.key_use == KeyUse::Encryption)
            {
                return Err(
                    "jwks holds no RSA-OAEP encryption key for id_token_encrypted_response_alg (TKN-4)"
                        .into(),
                );
            }
            ClientKeys::Jwks(keys)
        }
        (None, Some(uri)) => {
            // KEY-10: https (plain http for a loopback Directory only); the endpoints that
            // fetch also check it against `jwks_allowed_hosts`.
            crate::client::keystore::check_jwks_uri_form(&uri)
                .map_err(|why| format!("jwks_uri {why}"))?;
            ClientKeys::JwksUri(uri)
        }
        _ => return Err("exactly one of jwks and jwks_uri is required".into()),
    };
    let subject_dn =
        match r
            .tls_client_auth_subject_dn
            .filter(|dn| !dn.trim().is_empty())
        {
            Some(text) => Some(DistinguishedName::parse(&text).ok_or(
                "tls_client_auth_subject_dn is not an RFC 4514 distinguished name (CLI-8)",
            )?),
            None => None,
        };
    if auth_method == AuthMethod::TlsClientAuth && subject_dn.is_none() {
        return Err("tls_client_auth needs tls_client_auth_subject_dn (CLI-8)".into());
    }
    let scopes: Vec<String> = r
        .scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if scopes.iter().any(|s| {
        s.contains(':')
            || !s
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
    }) {
        return Err(
            "scope must list plain scope names (consent:<id> is requested, not registered)".into(),
        );
    }
    let mut grant_types = Vec::new();
    for g in &r.grant_types {
        let grant = GrantType::parse(g).ok_or_else(|| {
            "grant_types may hold only urn:openid:params:grant-type:ciba, refresh_token and client_credentials".to_string()
        })?;
        if !grant_types.contains(&grant) {
            grant_types.push(grant);
        }
    }
    Ok(Client {
        client_id: r.client_id,
        client_name: r.client_name.filter(|n| !n.is_empty()),
        keys,
        auth_method,
        tls_client_auth_subject_dn: subject_dn,
        scopes,
        grant_types,
        org_id: r.org_id.filter(|o| !o.is_empty()),
        id_token_encryption,
    })
}
