//! Dynamic client registrations (BR-DCR 7.1, 9.3; registration.md REG-16…31): the metadata
//! rules that turn a registration request and its verified SSA into what is registered, the
//! records kept in the store, and the one lookup every endpoint uses to find a client
//! (static `clients` first, then the store, REG-30).
//!
//! Nothing here caches a registered client in instance memory: each request reads its
//! record, so a deleted client stops at once on every instance (REG-36).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::client::certificate::ClientCertificate;
use crate::client::dn::DistinguishedName;
use crate::client::registry::{
    AuthMethod, Client, ClientKeys, Clients, GRANT_CIBA, GrantType, IdTokenEncryption,
};
use crate::client::ssa::VerifiedSoftwareStatement;
use crate::clock::UnixTime;
use crate::config::{ConfigError, Variables};
use crate::error::ProtocolError;
use crate::store::{KeyValue, StoreError, keys, record};

/// Variables of registration (design.md; registration.md Q12).
pub mod var {
    /// `ssa_issuer`: the `iss` of the Directory's SSAs (REG-9).
    pub const SSA_ISSUER: &str = "ssa_issuer";
    /// `ssa_jwks_uri`: the Directory's keystore of SSA signing keys (KEY-17).
    pub const SSA_JWKS_URI: &str = "ssa_jwks_uri";
    /// `role_scopes`: regulatory role to the scopes it may register (REG-22).
    pub const ROLE_SCOPES: &str = "role_scopes";
    /// `dcr_allow_tls_client_auth`: `on` lets registration choose `tls_client_auth` (REG-20).
    pub const DCR_ALLOW_TLS_CLIENT_AUTH: &str = "dcr_allow_tls_client_auth";
}

/// The production Directory's SSA issuer (REG-9, Q6).
pub const DEFAULT_SSA_ISSUER: &str = "Open Banking Open Banking Brasil production SSA issuer";

/// The production Directory's keystore of SSA keys (KEY-17, BR-DCR 9.2).
pub const DEFAULT_SSA_JWKS_URI: &str =
    "https://keystore.directory.openbankingbrasil.org.br/openbanking.jwks";

/// The scopes each regulatory role may register (BR-DCR 7.2, REG-22), as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleScopes(Vec<(String, Vec<String>)>);

/// REG-22's table, the default of `role_scopes`.
pub const DEFAULT_ROLE_SCOPES: &str = r#"{"DADOS":"openid accounts credit-cards-accounts consents customers invoice-financings financings loans unarranged-accounts-overdraft resources","PAGTO":"openid payments","CONTA":"openid","CCORR":"openid"}"#;

impl RoleScopes {
    /// Reads `role_scopes`; unset or empty is REG-22's table.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        match vars.get(var::ROLE_SCOPES)? {
            Some(text) if !text.trim().is_empty() => Self::parse(&text),
            _ => Self::parse(DEFAULT_ROLE_SCOPES),
        }
    }

    /// A JSON object from role to its scopes, space-separated; no scope holds `:` (a
    /// `consent:{id}` is requested, never registered).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::new(
                var::ROLE_SCOPES,
                "must be a JSON object from role to a space-separated string of plain scope names",
            )
        };
        let map: Map<String, Value> = serde_json::from_str(text).map_err(|_| bad())?;
        let mut roles = Vec::new();
        for (role, scopes) in map {
            let scopes: Vec<String> = scopes
                .as_str()
                .ok_or_else(bad)?
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if role.is_empty()
                || scopes.is_empty()
                || scopes.iter().any(|s| {
                    !s.bytes()
                        .all(|b| (0x21..=0x7e).contains(&b) && !b"\":\\".contains(&b))
                })
            {
                return Err(bad());
            }
            roles.push((role, scopes));
        }
        Ok(Self(roles))
    }

    /// Whether `role` is in the table.
    pub fn knows(&self, role: &str) -> bool {
        self.0.iter().any(|(r, _)| r == role)
    }

    /// Every scope of the table, role by role, duplicates included: what discovery lists
    /// (DISC-19).
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|(_, scopes)| scopes.iter().map(String::as_str))
    }

    /// The union of the scopes of `roles`, without duplicates (REG-23).
    pub fn union(&self, roles: &[&str]) -> Vec<String> {
        let mut union: Vec<String> = Vec::new();
        for (role, scopes) in &self.0 {
            if roles.contains(&role.as_str()) {
                for s in scopes {
                    if !union.contains(s) {
                        union.push(s.clone());
                    }
                }
            }
        }
        union
    }
}

/// What the operator decides about registration beyond the Directory.
#[derive(Debug, Clone)]
pub struct RegistrationPolicy {
    /// `role_scopes`.
    pub role_scopes: RoleScopes,
    /// `dcr_allow_tls_client_auth` (REG-20, Q2).
    pub allow_tls_client_auth: bool,
}

impl RegistrationPolicy {
    /// Reads `role_scopes` and `dcr_allow_tls_client_auth`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let allow = vars
            .get(var::DCR_ALLOW_TLS_CLIENT_AUTH)?
            .unwrap_or_default();
        let allow_tls_client_auth = match allow.trim() {
            "on" => true,
            "" | "off" => false,
            _ => {
                return Err(ConfigError::new(
                    var::DCR_ALLOW_TLS_CLIENT_AUTH,
                    "must be on, off or empty",
                ));
            }
        };
        Ok(Self {
            role_scopes: RoleScopes::load(vars)?,
            allow_tls_client_auth,
        })
    }
}

/// What is registered for a client (REG-16…27): the metadata that varies. The fixed members
/// (PS256 everywhere, poll mode, bound tokens, `response_types: []`) are added when the
/// registration is shown ([`Registration::body`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// `software_id`, from the SSA.
    pub software_id: String,
    /// `org_id`, from the SSA: the certificate must carry it (REG-15, CLI-10).
    pub org_id: String,
    /// `software_version`, from the SSA.
    pub software_version: Option<String>,
    /// `client_name` (the SSA's `software_client_name` wins, REG-16).
    pub client_name: Option<String>,
    /// `client_uri`.
    pub client_uri: Option<String>,
    /// `logo_uri`.
    pub logo_uri: Option<String>,
    /// `tos_uri`.
    pub tos_uri: Option<String>,
    /// `policy_uri`.
    pub policy_uri: Option<String>,
    /// `jwks_uri` = the SSA's `software_jwks_uri` (REG-17).
    pub jwks_uri: String,
    /// `redirect_uris`, as requested, deduplicated (REG-18).
    pub redirect_uris: Vec<String>,
    /// `webhook_uris` (REG-19).
    pub webhook_uris: Option<Vec<String>>,
    /// `token_endpoint_auth_method` (REG-20).
    pub token_endpoint_auth_method: String,
    /// `tls_client_auth_subject_dn`, with `tls_client_auth` only (REG-21).
    pub tls_client_auth_subject_dn: Option<String>,
    /// `scope` (REG-23).
    pub scope: Vec<String>,
    /// `grant_types` (REG-24).
    pub grant_types: Vec<String>,
    /// `id_token_encrypted_response_alg` and `_enc` (REG-26).
    pub id_token_encrypted_response_alg: Option<String>,
    /// `id_token_encrypted_response_enc`.
    pub id_token_encrypted_response_enc: Option<String>,
    /// `application_type` (REG-26).
    pub application_type: String,
    /// The last SSA, as sent (REG-28, REG-30).
    pub software_statement: String,
}

/// `client:{client_id}`: one registration (REG-30). No expiry while the client exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// `client_id`.
    pub client_id: String,
    /// `client_id_issued_at`, unchanged by updates (REG-34).
    pub client_id_issued_at: UnixTime,
    /// The hash of the registration access token (REG-31), to find its `rat:` record on
    /// DELETE.
    pub rat_hash: String,
    /// What is registered.
    pub metadata: Metadata,
}

/// `rat:{sha256}`: the client a registration access token manages (REG-30/31).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatRecord {
    /// `client_id`.
    pub client_id: String,
}

/// Registrations never expire by time: their records carry the largest expiry.
pub const NEVER: UnixTime = i64::MAX;

fn metadata_error(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidClientMetadata(why)
}

/// Whether `client_id` has the shape of an id this server generates for registrations
/// (16 random bytes, base64url: 22 characters): other ids cost no store read.
pub fn is_registered_shape(client_id: &str) -> bool {
    client_id.len() == 22
        && client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The client `client_id`, wherever it is registered: the static `clients` variable first,
/// then a registration in the store (REG-30). Every endpoint finds clients through this one
/// function, and nothing caches a registered client, so a DELETE stops it at once (REG-36).
pub fn lookup<'c>(
    clients: &'c Clients,
    store: &dyn KeyValue,
    client_id: &str,
    now: UnixTime,
) -> Result<Option<Cow<'c, Client>>, StoreError> {
    if let Some(client) = clients.get(client_id) {
        return Ok(Some(Cow::Borrowed(client)));
    }
    if !is_registered_shape(client_id) {
        return Ok(None);
    }
    let registered = record::get::<Registration>(store, &keys::registered_client(client_id), now)?;
    Ok(registered.map(|r| Cow::Owned(r.data.client())))
}

impl Registration {
    /// The registration as the endpoints use a client.
    pub fn client(&self) -> Client {
        let m = &self.metadata;
        let auth_method = if m.token_endpoint_auth_method == AuthMethod::TlsClientAuth.name() {
            AuthMethod::TlsClientAuth
        } else {
            AuthMethod::PrivateKeyJwt
        };
        Client {
            client_id: self.client_id.clone(),
            client_name: m.client_name.clone(),
            keys: ClientKeys::JwksUri(m.jwks_uri.clone()),
            auth_method,
            tls_client_auth_subject_dn: m
                .tls_client_auth_subject_dn
                .as_deref()
                .and_then(DistinguishedName::parse),
            scopes: m.scope.clone(),
            grant_types: m
                .grant_types
                .iter()
                .filter_map(|g| GrantType::parse(g))
                .collect(),
            org_id: Some(m.org_id.clone()),
            // Stored only as REG-26 admits it, so anything set is RSA-OAEP / A256GCM.
            id_token_encryption: m
                .id_token_encrypted_response_alg
                .as_ref()
                .map(|_| IdTokenEncryption::RsaOaepA256Gcm),
        }
    }

    /// The REG-28 body: every registered value, the fixed members, the management URI and
    /// the registration access token (the one the caller holds: only its hash is stored).
    pub fn body(&self, registration_client_uri: &str, rat: &str) -> Value {
        let m = &self.metadata;
        let mut body = json!({
            "client_id": self.client_id,
            "client_id_issued_at": self.client_id_issued_at,
            "registration_access_token": rat,
            "registration_client_uri": registration_client_uri,
            "software_id": m.software_id,
            "jwks_uri": m.jwks_uri,
            "redirect_uris": m.redirect_uris,
            "token_endpoint_auth_method": m.token_endpoint_auth_method,
            "scope": m.scope.join(" "),
            "grant_types": m.grant_types,
            "response_types": [],
            "id_token_signed_response_alg": "PS256",
            "subject_type": "public",
            "tls_client_certificate_bound_access_tokens": true,
            "application_type": m.application_type,
            "backchannel_token_delivery_mode": "poll",
            "backchannel_authentication_request_signing_alg": "PS256",
            "backchannel_user_code_parameter": false,
            "software_statement": m.software_statement,
        });
        let optional = [
            ("software_version", &m.software_version),
            ("client_name", &m.client_name),
            ("client_uri", &m.client_uri),
            ("logo_uri", &m.logo_uri),
            ("tos_uri", &m.tos_uri),
            ("policy_uri", &m.policy_uri),
            ("tls_client_auth_subject_dn", &m.tls_client_auth_subject_dn),
            (
                "id_token_encrypted_response_alg",
                &m.id_token_encrypted_response_alg,
            ),
            (
                "id_token_encrypted_response_enc",
                &m.id_token_encrypted_response_enc,
            ),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                body[name] = json!(value);
            }
        }
        if let Some(webhooks) = &m.webhook_uris {
            body["webhook_uris"] = json!(webhooks);
        }
        if m.token_endpoint_auth_method == AuthMethod::PrivateKeyJwt.name() {
            body["token_endpoint_auth_signing_alg"] = json!("PS256");
        }
        body
    }
}

/// REG-36: removes a registration: the client record first (the client stops at once: every
/// endpoint reads it to authenticate, and access tokens are checked against it), then its RAT
/// and its software claim. Its access and refresh tokens and pending requests die with the
/// record: each use looks the client up. `DELETE /register/{client_id}` and the operator's
/// delete ([`deregister`]) both remove a registration through this one function.
pub fn remove(store: &dyn KeyValue, registered: &Registration) -> Result<(), StoreError> {
    store.delete(&keys::registered_client(&registered.client_id))?;
    // Best effort, in one call: a RAT left behind names a client that no longer exists
    // (REG-33 refuses it), and a software claim left behind is what REG-29 would refuse (the
    // operator's delete by software removes one, [`deregister`]).
    let _ = store.delete_many(&[
        &keys::registration_access_token_by_hash(&registered.rat_hash),
        &keys::software(&registered.metadata.software_id),
    ]);
    Ok(())
}

/// Which registration the operator removes (registration.md Q4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deregister<'a> {
    /// The registration of this `client_id`.
    ClientId(&'a str),
    /// The registration of this `software_id` (REG-29: at most one).
    SoftwareId(&'a str),
}

/// What the operator's delete removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deregistered {
    /// A registration, with its RAT and software claim ([`remove`]).
    Registration(Box<Registration>),
    /// A software claim with no registration left (a DELETE whose best-effort removal of the
    /// claim failed): REG-29 refused the software's registrations until now.
    SoftwareClaim,
}

/// The operator-only delete (registration.md Q4): one live registration per `software_id`
/// (REG-29) means a TPP that lost its registration access token can never register again, so
/// the bank's operator removes the registration without a RAT, exactly as REG-36's DELETE
/// does ([`remove`]). By `client_id` it reads one record; by `software_id` it lists the
/// store's keys (the `software:` claim holds no client id), so it is an operator's command,
/// never a request's. `Ok(None)` when there is nothing to remove: static clients live in the
/// `clients` variable, not in the store.
pub fn deregister(
    store: &dyn KeyValue,
    which: &Deregister<'_>,
    now: UnixTime,
) -> Result<Option<Deregistered>, StoreError> {
    let found = match which {
        Deregister::ClientId(client_id) => {
            record::get::<Registration>(store, &keys::registered_client(client_id), now)?
                .map(|r| r.data)
        }
        Deregister::SoftwareId(software_id) => registration_of(store, software_id, now)?,
    };
    if let Some(registered) = found {
        remove(store, &registered)?;
        return Ok(Some(Deregistered::Registration(Box::new(registered))));
    }
    if let Deregister::SoftwareId(software_id) = which {
        let claim = keys::software(software_id);
        if store.get(&claim)?.is_some() {
            store.delete(&claim)?;
            return Ok(Some(Deregistered::SoftwareClaim));
        }
    }
    Ok(None)
}

/// The registration of `software_id`, found by listing the `client:` records.
fn registration_of(
    store: &dyn KeyValue,
    software_id: &str,
    now: UnixTime,
) -> Result<Option<Registration>, StoreError> {
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_keys(cursor.as_deref())?;
        for key in page.keys.iter().filter(|k| k.starts_with("client:")) {
            if let Some(r) = record::get::<Registration>(store, key, now)?
                && r.data.metadata.software_id == software_id
            {
                return Ok(Some(r.data));
            }
        }
        match page.cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(None),
        }
    }
}

/// A registration request's body (REG-5): a JSON object without duplicated members.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, ProtocolError> {
    let json = content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(metadata_error("the body must be application/json"));
    }
    unique_object(body).ok_or(metadata_error(
        "the body must be one JSON object without duplicated members",
    ))
}

/// A JSON object whose members (at the top level) are unique.
fn unique_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    struct Unique(Map<String, Value>);
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Unique;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut access: A,
                ) -> Result<Unique, A::Error> {
                    let mut map = Map::new();
                    while let Some((k, v)) = access.next_entry::<String, Value>()? {
                        if map.insert(k, v).is_some() {
                            return Err(serde::de::Error::custom("duplicated member"));
                        }
                    }
                    Ok(Unique(map))
                }
            }
            d.deserialize_map(Visitor)
        }
    }
    serde_json::from_slice::<Unique>(bytes).ok().map(|u| u.0)
}

/// A member that must be a string when present (`null` counts as absent).
fn optional_str<'a>(
    body: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ProtocolError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata_error("a metadata member has the wrong type")),
    }
}

/// A member that must be PS256 when present (REG-20, REG-25, REG-26, REG-27).
fn ps256_if_present(body: &Map<String, Value>, name: &str) -> Result<(), ProtocolError> {
    match optional_str(body, name)? {
        None | Some("PS256") => Ok(()),
        Some(_) => Err(metadata_error("every signing algorithm must be PS256")),
    }
}

/// Short names RFC 4514 §3 defines; every other attribute is written as a dotted OID
/// (REG-21, BR-DCR 7.1.2).
const RFC_4514_NAMES: [&str; 9] = ["CN", "L", "ST", "O", "OU", "C", "STREET", "DC", "UID"];

/// REG-21's format: each attribute a name of RFC 4514 §3 or a dotted OID.
fn dn_names_allowed(dn: &str) -> bool {
    // Attribute types follow the start or an unescaped `,` or `+`.
    let mut names = Vec::new();
    let mut start = 0;
    let bytes = dn.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    let mut in_value = false;
    while i < bytes.len() {
        let b = bytes[i];
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if !in_value && b == b'=' {
            names.push(dn[start..i].trim());
            in_value = true;
        } else if in_value && (b == b',' || b == b'+') {
            in_value = false;
            start = i + 1;
        }
        i += 1;
    }
    !names.is_empty()
        && names.iter().all(|n| {
            RFC_4514_NAMES.iter().any(|k| k.eq_ignore_ascii_case(n))
                || (!n.is_empty()
                    && n.split('.').count() > 1
                    && n.split('.')
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
        })
}

/// The REG-19 shape of a webhook URI: https, at most 255 characters, no `?`, no trailing `/`.
fn webhook_shape(uri: &str) -> bool {
    uri.len() <= 255
        && uri
            .strip_prefix("https://")
            .is_some_and(|rest| !rest.is_empty() && rest.contains('.'))
        && !uri.contains('?')
        && !uri.ends_with('/')
        && !uri.contains(char::is_whitespace)
}

/// Turns a registration request into what is registered (REG-16…27), in REG-11's order
/// within the metadata. `active_roles` are those REG-12 approved; `certificate` is the one
/// presented (REG-21's DN match).
pub fn metadata(
    body: &Map<String, Value>,
    ssa: &VerifiedSoftwareStatement,
    active_roles: &[&str],
    policy: &RegistrationPolicy,
    certificate: &ClientCertificate,
) -> Result<Metadata, ProtocolError> {
    // REG-17: keys only from the Directory.
    if body.get("jwks").is_some_and(|v| !v.is_null()) {
        return Err(metadata_error(
            "jwks is not accepted: keys come from the software_jwks_uri",
        ));
    }
    if let Some(uri) = optional_str(body, "jwks_uri")?
        && uri != ssa.software_jwks_uri
    {
        return Err(metadata_error(
            "jwks_uri must be the software statement's software_jwks_uri",
        ));
    }
    // REG-18.
    let redirect_uris = redirect_uris(body, ssa)?;
    // REG-19.
    let webhook_uris = webhook_uris(body, ssa)?;
    // REG-20/21.
    let (auth_method, subject_dn) = auth_method(body, policy, certificate)?;
    // REG-23.
    let scope = scope(body, &policy.role_scopes.union(active_roles))?;
    // REG-24.
    let grant_types = grant_types(body)?;
    // REG-25.
    ps256_if_present(body, "request_object_signing_alg")?;
    // REG-26.
    ps256_if_present(body, "id_token_signed_response_alg")?;
    let (enc_alg, enc_enc) = (
        optional_str(body, "id_token_encrypted_response_alg")?,
        optional_str(body, "id_token_encrypted_response_enc")?,
    );
    let (id_token_encrypted_response_alg, id_token_encrypted_response_enc) =
        match IdTokenEncryption::parse(enc_alg, enc_enc).map_err(metadata_error)? {
            None => (None, None),
            Some(IdTokenEncryption::RsaOaepA256Gcm) => {
                (Some("RSA-OAEP".to_string()), Some("A256GCM".to_string()))
            }
        };
    if optional_str(body, "subject_type")?.is_some_and(|s| s != "public") {
        return Err(metadata_error("subject_type must be public"));
    }
    match body.get("tls_client_certificate_bound_access_tokens") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => {}
        Some(_) => {
            return Err(metadata_error(
                "tls_client_certificate_bound_access_tokens must be true",
            ));
        }
    }
    let application_type = match optional_str(body, "application_type")? {
        None => "web",
        Some(t @ ("web" | "native")) => t,
        Some(_) => return Err(metadata_error("application_type must be web or native")),
    };
    // REG-27: poll mode only.
    if optional_str(body, "backchannel_token_delivery_mode")?.is_some_and(|m| m != "poll") {
        return Err(metadata_error(
            "backchannel_token_delivery_mode must be poll",
        ));
    }
    if body
        .get("backchannel_client_notification_endpoint")
        .is_some_and(|v| !v.is_null())
    {
        return Err(metadata_error(
            "backchannel_client_notification_endpoint is not used in poll mode",
        ));
    }
    ps256_if_present(body, "backchannel_authentication_request_signing_alg")?;
    match body.get("backchannel_user_code_parameter") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(_) => {
            return Err(metadata_error(
                "backchannel_user_code_parameter is not supported",
            ));
        }
    }
    Ok(Metadata {
        software_id: ssa.software_id.clone(),
        org_id: ssa.org_id.clone(),
        software_version: ssa.software_version.clone(),
        // REG-16: the SSA's values win; the request's are used where the SSA has none.
        client_name: ssa
            .client_name
            .clone()
            .or(optional_str(body, "client_name")?.map(str::to_string)),
        client_uri: ssa
            .client_uri
            .clone()
            .or(optional_str(body, "client_uri")?.map(str::to_string)),
        logo_uri: ssa
            .logo_uri
            .clone()
            .or(optional_str(body, "logo_uri")?.map(str::to_string)),
        tos_uri: ssa
            .tos_uri
            .clone()
            .or(optional_str(body, "tos_uri")?.map(str::to_string)),
        policy_uri: ssa
            .policy_uri
            .clone()
            .or(optional_str(body, "policy_uri")?.map(str::to_string)),
        jwks_uri: ssa.software_jwks_uri.clone(),
        redirect_uris,
        webhook_uris,
        token_endpoint_auth_method: auth_method.name().to_string(),
        tls_client_auth_subject_dn: subject_dn,
        scope,
        grant_types,
        id_token_encrypted_response_alg,
        id_token_encrypted_response_enc,
        application_type: application_type.to_string(),
        software_statement: ssa.compact.clone(),
    })
}

/// REG-18.
fn redirect_uris(
    body: &Map<String, Value>,
    ssa: &VerifiedSoftwareStatement,
) -> Result<Vec<String>, ProtocolError> {
    let bad = ProtocolError::InvalidRedirectUri(
        "redirect_uris must be a non-empty list of the software statement's redirect URIs",
    );
    let list = body
        .get("redirect_uris")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or(bad)?;
    let mut uris: Vec<String> = Vec::new();
    for uri in list {
        let uri = uri.as_str().filter(|u| u.len() <= 255).ok_or(bad)?;
        if !ssa.software_redirect_uris.iter().any(|s| s == uri) {
            return Err(bad);
        }
        if !uris.iter().any(|u| u == uri) {
            uris.push(uri.to_string());
        }
    }
    Ok(uris)
}

/// REG-19.
fn webhook_uris(
    body: &Map<String, Value>,
    ssa: &VerifiedSoftwareStatement,
) -> Result<Option<Vec<String>>, ProtocolError> {
    let bad = ProtocolError::InvalidWebhookUris(
        "webhook_uris must be https URIs listed in the software statement",
    );
    let list = match body.get("webhook_uris") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad),
    };
    let mut uris: Vec<String> = Vec::new();
    for uri in list {
        let uri = uri.as_str().filter(|u| webhook_shape(u)).ok_or(bad)?;
        if !ssa.software_api_webhook_uris.iter().any(|s| s == uri) {
            return Err(bad);
        }
        if !uris.iter().any(|u| u == uri) {
            uris.push(uri.to_string());
        }
    }
    Ok(Some(uris))
}

/// REG-20/21.
fn auth_method(
    body: &Map<String, Value>,
    policy: &RegistrationPolicy,
    certificate: &ClientCertificate,
) -> Result<(AuthMethod, Option<String>), ProtocolError> {
    if body.keys().any(|k| k.starts_with("tls_client_auth_san_")) {
        return Err(metadata_error("tls_client_auth_san_* is not accepted"));
    }
    for name in [
        "introspection_endpoint_auth_method",
        "revocation_endpoint_auth_method",
    ] {
        if optional_str(body, name)?.is_some_and(|m| m != "private_key_jwt") {
            return Err(metadata_error(
                "endpoint authentication methods must be private_key_jwt",
            ));
        }
    }
    ps256_if_present(body, "token_endpoint_auth_signing_alg")?;
    let method = match optional_str(body, "token_endpoint_auth_method")? {
        None | Some("private_key_jwt") => AuthMethod::PrivateKeyJwt,
        Some("tls_client_auth") if policy.allow_tls_client_auth => AuthMethod::TlsClientAuth,
        Some(_) => {
            return Err(metadata_error(
                "token_endpoint_auth_method must be private_key_jwt",
            ));
        }
    };
    if method == AuthMethod::PrivateKeyJwt {
        return Ok((method, None));
    }
    let text = optional_str(body, "tls_client_auth_subject_dn")?
        .filter(|t| !t.trim().is_empty())
        .ok_or(metadata_error(
            "tls_client_auth needs tls_client_auth_subject_dn",
        ))?;
    if !dn_names_allowed(text) {
        return Err(metadata_error(
            "tls_client_auth_subject_dn must name attributes as RFC 4514 or by OID",
        ));
    }
    let dn = DistinguishedName::parse(text).ok_or(metadata_error(
        "tls_client_auth_subject_dn is not an RFC 4514 distinguished name",
    ))?;
    if !dn.matches(certificate.subject()) {
        return Err(metadata_error(
            "tls_client_auth_subject_dn does not match the client certificate",
        ));
    }
    Ok((method, Some(text.to_string())))
}

/// REG-23: absent, the union of the active roles' scopes; present, a subset of it.
fn scope(body: &Map<String, Value>, allowed: &[String]) -> Result<Vec<String>, ProtocolError> {
    let Some(requested) = optional_str(body, "scope")? else {
        return Ok(allowed.to_vec());
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in requested.split(' ').filter(|s| !s.is_empty()) {
        if !allowed.iter().any(|a| a == s) {
            return Err(metadata_error(
                "scope asks for more than the software's roles allow",
            ));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    if scopes.is_empty() {
        return Err(metadata_error("scope is empty"));
    }
    Ok(scopes)
}

/// REG-24: the supported grants; the redirect-flow ones dropped silently.
fn grant_types(body: &Map<String, Value>) -> Result<Vec<String>, ProtocolError> {
    let supported = [GRANT_CIBA, "client_credentials", "refresh_token"];
    let list = match body.get("grant_types") {
        None | Some(Value::Null) => return Ok(supported.map(str::to_string).to_vec()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(metadata_error("grant_types must be a list")),
    };
    let mut grants: Vec<String> = Vec::new();
    for g in list {
        match g.as_str() {
            Some("authorization_code" | "implicit") => {}
            Some(g) if supported.contains(&g) => {
                if !grants.iter().any(|x| x == g) {
                    grants.push(g.to_string());
                }
            }
            _ => {
                return Err(metadata_error(
                    "grant_types may hold only the CIBA grant, client_credentials and refresh_token",
                ));
            }
        }
    }
    if grants.is_empty() {
        return Err(metadata_error("grant_types holds no supported grant"));
    }
    Ok(grants)
}
