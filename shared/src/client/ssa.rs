//! The software statement (SSA) a TPP registers with, signed by the Directory of Participants
//! (BR-DCR 8.1, 9.2; registration.md REG-7…15). Parse, don't validate: the only way to a
//! [`VerifiedSoftwareStatement`] is [`verify`], which checks the PS256 signature with a key
//! of the Directory's keystore before any claim is read, then `iss`, `iat`, `exp` and the
//! required claims. [`VerifiedSoftwareStatement::approve`] (REG-12) and
//! [`VerifiedSoftwareStatement::check_certificate`] (REG-13/14) are the policy on top.

use serde_json::{Map, Value};

use crate::client::certificate::{ClientCertificate, ORGANIZATION_IDENTIFIER};
use crate::clock::UnixTime;
use crate::error::ProtocolError;
use crate::jose::jws::{JwsError, verify_ps256};
use crate::jose::ps256::Ps256VerifyingKey;
use crate::jose::{PS256, b64url_decode};

/// OID of `UID` (RFC 4519 2.39), where the certificate carries the `software_id` (REG-13).
pub const UID: &str = "0.9.2342.19200300.100.1.1";

/// OID of `OU`, where a legacy certificate carries the bare `org_id` (REG-14).
pub const ORGANIZATIONAL_UNIT: &str = "2.5.4.11";

/// How far in the past an SSA's `iat` may lie (REG-10, BR-DCR 7.1-3: five minutes).
pub const MAX_AGE: i64 = 300;

/// How far in the future an SSA's `iat` may lie: clock skew (REG-10).
pub const FUTURE_SKEW: i64 = 60;

fn untrusted(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidSoftwareStatement(why)
}

fn unapproved(why: &'static str) -> ProtocolError {
    ProtocolError::UnapprovedSoftwareStatement(why)
}

/// The protected header of an SSA, read before any key is looked up: `alg` exactly PS256 and
/// the `kid` that names the Directory's key (REG-8). Keys named by `jku`, `jwk`, `x5u` or
/// `x5c` are never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsaHeader {
    kid: String,
}

impl SsaHeader {
    /// Reads the header of `compact`; anything but a compact JWS with `alg: PS256` and a
    /// `kid` is `invalid_software_statement`.
    pub fn read(compact: &str) -> Result<Self, ProtocolError> {
        let mut parts = compact.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(untrusted("the software statement is not a compact JWS"));
        };
        let header: Map<String, Value> = b64url_decode(header)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(untrusted("the software statement is not a compact JWS"))?;
        if header.get("alg").and_then(Value::as_str) != Some(PS256) {
            return Err(untrusted(
                "the software statement must be signed with PS256",
            ));
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or(untrusted("the software statement header has no kid"))?;
        Ok(Self {
            kid: kid.to_string(),
        })
    }

    /// The `kid` of the Directory key that must verify it.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// One entry of `software_statement_roles` (BR-DCR 7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsaRole {
    /// `role`: DADOS, PAGTO, CONTA, CCORR, …
    pub role: String,
    /// `status`: only `Active` counts.
    pub active: bool,
}

/// An SSA whose signature verified with a Directory key and whose `iss`, `iat`, `exp` and
/// required claims passed (REG-8…11). Only [`verify`] builds one: the private field keeps
/// even the rest of this crate from making one (`#[non_exhaustive]` would not).
#[allow(clippy::manual_non_exhaustive)]
#[derive(Debug, Clone)]
pub struct VerifiedSoftwareStatement {
    /// The JWS as sent, returned unchanged in the registration (REG-28).
    pub compact: String,
    /// `org_id`.
    pub org_id: String,
    /// `org_status`, if present.
    pub org_status: Option<String>,
    /// `software_id`.
    pub software_id: String,
    /// `software_version`, a string or a number in Directory SSAs.
    pub software_version: Option<String>,
    /// `software_jwks_uri`: where the client's keys are (KEY-8, REG-17).
    pub software_jwks_uri: String,
    /// `software_redirect_uris`, non-empty.
    pub software_redirect_uris: Vec<String>,
    /// `software_api_webhook_uris` (REG-19), empty when absent.
    pub software_api_webhook_uris: Vec<String>,
    /// `software_statement_roles`.
    pub roles: Vec<SsaRole>,
    /// `software_client_name`, `software_client_uri`, `software_logo_uri`,
    /// `software_tos_uri`, `software_policy_uri`, when present (REG-16).
    pub client_name: Option<String>,
    /// `software_client_uri`.
    pub client_uri: Option<String>,
    /// `software_logo_uri`.
    pub logo_uri: Option<String>,
    /// `software_tos_uri`.
    pub tos_uri: Option<String>,
    /// `software_policy_uri`.
    pub policy_uri: Option<String>,
    _verified: (),
}

/// What [`verify`] checks the claims against.
#[derive(Clone, Copy)]
pub struct SsaRules<'a> {
    /// `ssa_issuer` (REG-9).
    pub issuer: &'a str,
    /// Whether `software_jwks_uri` may be registered: https, or http on a loopback origin
    /// of `jwks_allowed_hosts` (REG-11, KEY-10).
    pub jwks_uri_allowed: &'a dyn Fn(&str) -> bool,
}

/// Verifies `compact` with the Directory key `key` (the one `header.kid()` names), then its
/// claims (REG-8…11). Every failure is `invalid_software_statement`.
pub fn verify(
    compact: &str,
    header: &SsaHeader,
    key: &Ps256VerifyingKey,
    rules: SsaRules<'_>,
    now: UnixTime,
) -> Result<VerifiedSoftwareStatement, ProtocolError> {
    let verified = verify_ps256(compact, [(header.kid(), key)]).map_err(|e| {
        untrusted(match e {
            JwsError::AlgorithmNotAllowed => "the software statement must be signed with PS256",
            JwsError::UnknownKey => "the software statement kid is not a Directory key",
            JwsError::BadSignature => "the software statement signature does not verify",
            JwsError::Encrypted
            | JwsError::Malformed
            | JwsError::CriticalHeader
            | JwsError::MalformedClaims => "the software statement is malformed",
        })
    })?;
    // REG-9.
    if verified.str("iss") != Some(rules.issuer) {
        return Err(untrusted(
            "the software statement was not issued by the Directory",
        ));
    }
    // REG-10: clock skew only on the future side.
    let iat = verified
        .iat
        .ok_or(untrusted("the software statement has no iat"))?;
    if iat < now.saturating_sub(MAX_AGE) {
        return Err(untrusted(
            "the software statement is older than five minutes",
        ));
    }
    if iat > now.saturating_add(FUTURE_SKEW) {
        return Err(untrusted("the software statement is issued in the future"));
    }
    if verified.exp.is_some_and(|exp| exp <= now) {
        return Err(untrusted("the software statement has expired"));
    }
    let claims = &verified.claims;
    let text = |name: &str| -> Option<String> {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let required = "the software statement lacks a required claim";
    // REG-11.
    let org_id = text("org_id").ok_or(untrusted(required))?;
    let software_id = text("software_id").ok_or(untrusted(required))?;
    let software_jwks_uri = text("software_jwks_uri").ok_or(untrusted(required))?;
    if !(rules.jwks_uri_allowed)(&software_jwks_uri) {
        return Err(untrusted(
            "the software statement's software_jwks_uri is not an allowed keystore",
        ));
    }
    let software_redirect_uris = strings(claims.get("software_redirect_uris"))
        .filter(|uris| !uris.is_empty())
        .ok_or(untrusted(required))?;
    let roles = claims
        .get("software_statement_roles")
        .and_then(Value::as_array)
        .ok_or(untrusted(required))?
        .iter()
        .filter_map(|entry| {
            Some(SsaRole {
                role: entry.get("role")?.as_str()?.to_string(),
                active: entry.get("status").and_then(Value::as_str) == Some("Active"),
            })
        })
        .collect();
    let software_version = match claims.get("software_version") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    Ok(VerifiedSoftwareStatement {
        compact: compact.to_string(),
        org_id,
        org_status: text("org_status"),
        software_id,
        software_version,
        software_jwks_uri,
        software_redirect_uris,
        software_api_webhook_uris: strings(claims.get("software_api_webhook_uris"))
            .unwrap_or_default(),
        roles,
        client_name: text("software_client_name"),
        client_uri: text("software_client_uri"),
        logo_uri: text("software_logo_uri"),
        tos_uri: text("software_tos_uri"),
        policy_uri: text("software_policy_uri"),
        _verified: (),
    })
}

/// An array of strings, or `None`.
fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

impl VerifiedSoftwareStatement {
    /// REG-12: the organisation is `Active` and at least one role is `Active` and known to
    /// `role_scopes`; returns those roles. Otherwise `unapproved_software_statement`.
    pub fn approve(&self, known: impl Fn(&str) -> bool) -> Result<Vec<&str>, ProtocolError> {
        if self.org_status.as_deref() != Some("Active") {
            return Err(unapproved(
                "the organisation is not active in the Directory",
            ));
        }
        let active: Vec<&str> = self
            .roles
            .iter()
            .filter(|r| r.active && known(&r.role))
            .map(|r| r.role.as_str())
            .collect();
        if active.is_empty() {
            return Err(unapproved(
                "the software statement has no active regulatory role",
            ));
        }
        Ok(active)
    }

    /// REG-13/14: the client certificate's UID is the `software_id` and its
    /// `organizationIdentifier` is `OFBBR-<org_id>` (a legacy certificate without one: OU is
    /// the bare `org_id`); UUIDs compare without case.
    pub fn check_certificate(&self, certificate: &ClientCertificate) -> Result<(), ProtocolError> {
        if !binds(certificate, &self.software_id, &self.org_id) {
            return Err(unapproved(
                "the client certificate is not of this software and organisation",
            ));
        }
        Ok(())
    }
}

/// Whether `certificate` carries `software_id` in UID and `org_id` in
/// organizationIdentifier (`OFBBR-<org_id>`) or, lacking that, in OU (REG-14, REG-15).
pub fn binds(certificate: &ClientCertificate, software_id: &str, org_id: &str) -> bool {
    let subject = certificate.subject();
    // The DN's text values are already folded to lower case (dn.rs).
    let uid_ok = subject
        .text(UID)
        .is_some_and(|uid| uid.eq_ignore_ascii_case(software_id));
    let org_ok = match subject.text(ORGANIZATION_IDENTIFIER) {
        Some(oi) => oi.eq_ignore_ascii_case(&format!("OFBBR-{org_id}")),
        None => subject
            .text(ORGANIZATIONAL_UNIT)
            .is_some_and(|ou| ou.eq_ignore_ascii_case(org_id)),
    };
    uid_ok && org_ok
}
