//! The signed backchannel authentication request (CIBA 7.1.1; FAPI-CIBA 5.2.2-6; BCA-3…23).
//!
//! Two steps, two types: [`VerifiedRequestObject`] exists only once the PS256 signature has
//! verified with the *authenticated* client's keys and the registered claims (`iss`, `aud`,
//! `exp`, `nbf`, `iat`, `jti`) passed (BCA-5…10); only then are the other claims read into a
//! [`BackchannelRequest`] (BCA-12…23). Nothing from the form is ever merged in (BCA-4).

use serde_json::{Map, Value};

use crate::auth_req::{AcrRequest, ClaimRequest, ClaimRequests};
use crate::binding_message::BindingMessage;
use crate::client::keys::KeySource;
use crate::client::registry::Client;
use crate::clock::{SKEW, UnixTime};
use crate::config::Issuer;
use crate::discovery::{ACR_LOA2, ACR_LOA3, LHT_AD_GENERATED, LHT_AS_GENERATED};
use crate::endpoints::Deps;
use crate::error::ProtocolError;
use crate::form::Form;
use crate::jose::jws::{JwsError, verify_ps256};

/// Longest `exp − nbf` of a request object: 10 minutes (BR-CIBA 5.2.2-12, BCA-10).
pub const MAX_LIFETIME: i64 = 600;

/// The form parameters bc-authorize accepts besides the request object (BCA-4).
const FORM_PARAMETERS: [&str; 4] = [
    "request",
    "client_id",
    "client_assertion",
    "client_assertion_type",
];

fn bad(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidRequest(why)
}

/// BCA-3/4: the `request` parameter, and nothing outside it but client authentication.
pub fn from_form(form: &Form) -> Result<&str, ProtocolError> {
    if form.get("request_uri").is_some() {
        return Err(bad(
            "request_uri is not supported: send the request object by value",
        ));
    }
    if form.names().any(|n| !FORM_PARAMETERS.contains(&n)) {
        return Err(bad(
            "only request and client authentication may be sent outside the signed request",
        ));
    }
    form.get("request").ok_or(bad(
        "request is required: only signed requests are accepted",
    ))
}

/// A request object whose signature verified with its client's keys and whose registered
/// claims passed; its other claims may now be read. Its claims carry hints (an id_token, a
/// hint id) and claim values (a CPF, a CNPJ): `Debug` names them without their values.
#[derive(Clone)]
pub struct VerifiedRequestObject {
    claims: Map<String, Value>,
    /// `jti`, single-use (BCA-11).
    pub jti: String,
    /// `exp`: the `jti` is remembered until then, plus the skew.
    pub exp: UnixTime,
}

impl std::fmt::Debug for VerifiedRequestObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedRequestObject")
            .field("claims", &crate::jose::jws::ClaimNames(&self.claims))
            .field("jti", &self.jti)
            .field("exp", &self.exp)
            .finish()
    }
}

/// BCA-5…10: verifies `compact` as the request object of `client`, with its keys from
/// `keys` (KEY-8; a key set that cannot be fetched is 503, KEY-14).
pub fn verify(
    compact: &str,
    client: &Client,
    issuer: &Issuer,
    keys: &KeySource,
    deps: &Deps<'_>,
) -> Result<VerifiedRequestObject, ProtocolError> {
    let now = deps.clock.now();
    let verifiers = keys.verifiers(deps, client, compact)?;
    let verified = verify_ps256(compact, verifiers.iter()).map_err(|e| {
        bad(match e {
            JwsError::Encrypted => "the request object must be signed, not encrypted",
            JwsError::AlgorithmNotAllowed => "the request object must be signed with PS256",
            JwsError::UnknownKey => "the request object kid is not a key of this client",
            JwsError::BadSignature => "the request object signature does not verify",
            JwsError::MalformedClaims => {
                "the request object exp, nbf and iat must be NumericDate values"
            }
            JwsError::Malformed | JwsError::CriticalHeader => {
                "the request object is not a compact JWS"
            }
        })
    })?;
    let iss = verified
        .str("iss")
        .ok_or(bad("the request object has no iss"))?;
    if iss != client.client_id {
        return Err(bad("the request object iss must be the client_id"));
    }
    // BCA-9, RFC 9101 §5: a `client_id` claim (openid-client sends one) names this client too.
    match verified.claims.get("client_id") {
        None => {}
        Some(Value::String(id)) if *id == client.client_id => {}
        Some(_) => {
            return Err(bad(
                "the request object client_id must be the authenticated client",
            ));
        }
    }
    let aud_ok = match verified.claims.get("aud") {
        Some(Value::String(a)) => a == issuer.as_str(),
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(issuer.as_str())),
        _ => return Err(bad("the request object has no aud")),
    };
    if !aud_ok {
        return Err(bad("the request object aud must be the issuer"));
    }
    let exp = verified.exp.ok_or(bad("the request object has no exp"))?;
    let nbf = verified.nbf.ok_or(bad("the request object has no nbf"))?;
    let iat = verified.iat.ok_or(bad("the request object has no iat"))?;
    let jti = verified
        .str("jti")
        .filter(|j| !j.is_empty())
        .ok_or(bad("the request object has no jti"))?
        .to_string();
    if exp <= now - SKEW {
        return Err(bad("the request object has expired"));
    }
    if nbf > now + SKEW {
        return Err(bad("the request object is not valid yet (nbf)"));
    }
    if iat > now + SKEW {
        return Err(bad("the request object is issued in the future (iat)"));
    }
    if exp - nbf > MAX_LIFETIME {
        return Err(bad("the request object lives longer than 10 minutes"));
    }
    Ok(VerifiedRequestObject {
        claims: verified.claims,
        jti,
        exp,
    })
}

/// The hint, exactly one of three (BCA-15). `Debug` prints the consent id of a `login_hint`
/// (it is in the scope too) but neither an `id_token_hint` (a token) nor an AD-generated hint
/// id (single use: whoever holds it names the holder, HINT-13).
#[derive(Clone, PartialEq, Eq)]
pub enum Hint {
    /// `login_hint`: the consent id (HINT-16).
    LoginHint(String),
    /// `id_token_hint` (HINT-3…11).
    IdTokenHint(String),
    /// `login_hint_token` of the AD-generated type, with its id (HINT-12).
    AdGenerated(String),
    /// `login_hint_token` of the AS-generated type (HINT-14).
    AsGenerated,
}

impl std::fmt::Debug for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LoginHint(consent_id) => f.debug_tuple("LoginHint").field(consent_id).finish(),
            Self::IdTokenHint(_) => f.write_str("IdTokenHint([redacted])"),
            Self::AdGenerated(_) => f.write_str("AdGenerated([redacted])"),
            Self::AsGenerated => f.write_str("AsGenerated"),
        }
    }
}

/// A backchannel request whose every parameter has the shape the profile allows.
#[derive(Debug, Clone)]
pub struct BackchannelRequest {
    /// The consent named in the scope (BCA-13).
    pub consent_id: String,
    /// The scope, each value once.
    pub scope: Vec<String>,
    /// The hint.
    pub hint: Hint,
    /// `binding_message` (BCA-17/18).
    pub binding_message: Option<BindingMessage>,
    /// The acr asked for (BCA-21).
    pub acr: AcrRequest,
    /// `claims.id_token` (BCA-22).
    pub id_token_claims: ClaimRequests,
    /// `claims.userinfo` (BCA-22).
    pub userinfo_claims: ClaimRequests,
    /// `jti` of the request object.
    pub jti: String,
    /// `exp` of the request object.
    pub exp: UnixTime,
}

fn optional_str<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
    wrong: &'static str,
) -> Result<Option<&'a str>, ProtocolError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(wrong)),
    }
}

impl BackchannelRequest {
    /// BCA-12…23, on the claims of a verified request object, for `client`.
    pub fn parse(verified: VerifiedRequestObject, client: &Client) -> Result<Self, ProtocolError> {
        let claims = &verified.claims;
        let (scope, consent_id) = scope(claims, client)?;
        let hint = hint(claims)?;
        let binding_message = optional_str(
            claims,
            "binding_message",
            "binding_message must be a string",
        )?
        .map(BindingMessage::parse)
        .transpose()?;
        if matches!(hint, Hint::AdGenerated(_) | Hint::AsGenerated) && binding_message.is_none() {
            return Err(bad("binding_message is required with a login_hint_token"));
        }
        if claims.get("user_code").is_some() {
            return Err(bad("user_code is not supported"));
        }
        requested_expiry(claims.get("requested_expiry"))?;
        let requested = claims_parameter(claims.get("claims"))?;
        let acr = acr(
            optional_str(claims, "acr_values", "acr_values must be a string")?,
            requested.acr,
        )?;
        Ok(Self {
            consent_id,
            scope,
            hint,
            binding_message,
            acr,
            id_token_claims: requested.id_token,
            userinfo_claims: requested.userinfo,
            jti: verified.jti,
            exp: verified.exp,
        })
    }
}

/// BCA-12/13/14 (the consent itself is checked against the store later): `openid`, exactly
/// one `consent:<id>`, and other scopes only among the client's registered ones.
fn scope(
    claims: &Map<String, Value>,
    client: &Client,
) -> Result<(Vec<String>, String), ProtocolError> {
    let text = optional_str(claims, "scope", "scope must be a string")?
        .ok_or(ProtocolError::InvalidScope("scope is required"))?;
    let scope = crate::scope::parse(text)?;
    if !scope.iter().any(|s| s == "openid") {
        return Err(ProtocolError::InvalidScope("scope must include openid"));
    }
    let consents: Vec<&str> = scope
        .iter()
        .filter_map(|s| s.strip_prefix("consent:"))
        .collect();
    let [consent_id] = consents[..] else {
        return Err(ProtocolError::InvalidScope(
            "scope must hold exactly one consent:<consentId>",
        ));
    };
    let url_safe = |c: char| c.is_ascii_alphanumeric() || "-._~:".contains(c);
    if consent_id.is_empty() || consent_id.len() > 256 || !consent_id.chars().all(url_safe) {
        return Err(ProtocolError::InvalidScope(
            "the consent id in the scope is malformed",
        ));
    }
    let consent_id = consent_id.to_string();
    let outside = scope.iter().any(|s| {
        s != "openid" && !s.starts_with("consent:") && !client.scopes.iter().any(|r| r == s)
    });
    if outside {
        return Err(ProtocolError::InvalidScope(
            "scope holds a value the client is not registered for",
        ));
    }
    Ok((scope, consent_id))
}

/// BCA-15, HINT-12/14/17: exactly one hint, of a known form.
fn hint(claims: &Map<String, Value>) -> Result<Hint, ProtocolError> {
    let login_hint = optional_str(claims, "login_hint", "login_hint must be a string")?;
    let id_token_hint = optional_str(claims, "id_token_hint", "id_token_hint must be a string")?;
    let token = optional_str(
        claims,
        "login_hint_token",
        "login_hint_token must be a string",
    )?;
    match (login_hint, id_token_hint, token) {
        (Some(h), None, None) => Ok(Hint::LoginHint(h.to_string())),
        (None, Some(h), None) => Ok(Hint::IdTokenHint(h.to_string())),
        (None, None, Some(h)) => login_hint_token(h),
        (None, None, None) => Err(bad(
            "one of login_hint, id_token_hint and login_hint_token is required",
        )),
        _ => Err(bad(
            "only one of login_hint, id_token_hint and login_hint_token may be sent",
        )),
    }
}

/// HINT-12/14/17: the bare AS-generated URN (or `{"format": <it>}`, the earlier draft), or
/// `{"format": <AD-generated URN>, "id": "..."}`.
fn login_hint_token(text: &str) -> Result<Hint, ProtocolError> {
    if text == LHT_AS_GENERATED {
        return Ok(Hint::AsGenerated);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|_| bad("login_hint_token is neither a known type nor JSON"))?;
    let format = value
        .get("format")
        .and_then(Value::as_str)
        .ok_or(bad("login_hint_token must have a format"))?;
    match format {
        LHT_AS_GENERATED => Ok(Hint::AsGenerated),
        LHT_AD_GENERATED => {
            let id = value
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty() && id.len() <= 256)
                .ok_or(bad("an ad-generated login_hint_token needs a string id"))?;
            Ok(Hint::AdGenerated(id.to_string()))
        }
        _ => Err(bad("the login_hint_token format is not supported")),
    }
}

/// BCA-20: a positive integer, as a JSON number or a numeric string; then ignored (AMB-18).
fn requested_expiry(value: Option<&Value>) -> Result<(), ProtocolError> {
    let positive = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n > 0),
        Some(Value::String(s)) => {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && s.parse::<u64>().is_ok_and(|n| n > 0)
        }
        Some(_) => false,
    };
    if positive {
        Ok(())
    } else {
        Err(bad("requested_expiry must be a positive integer"))
    }
}

/// What the `claims` parameter asks for.
struct Requested {
    id_token: ClaimRequests,
    userinfo: ClaimRequests,
    acr: Option<ClaimRequest>,
}

/// BCA-22: a JSON object (or a string holding one) with members `id_token` and `userinfo`.
fn claims_parameter(value: Option<&Value>) -> Result<Requested, ProtocolError> {
    let parsed;
    let object = match value {
        None | Some(Value::Null) => {
            return Ok(Requested {
                id_token: ClaimRequests::default(),
                userinfo: ClaimRequests::default(),
                acr: None,
            });
        }
        Some(Value::Object(o)) => o,
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s).map_err(|_| bad("claims is not JSON"))?;
            parsed
                .as_object()
                .ok_or(bad("claims must be a JSON object"))?
        }
        Some(_) => return Err(bad("claims must be a JSON object")),
    };
    if object.keys().any(|k| k != "id_token" && k != "userinfo") {
        return Err(bad("claims may hold only id_token and userinfo"));
    }
    let target = |name: &str| -> Result<(ClaimRequests, Option<ClaimRequest>), ProtocolError> {
        let Some(v) = object.get(name) else {
            return Ok((ClaimRequests::default(), None));
        };
        let members = v
            .as_object()
            .ok_or(bad("claims.id_token and claims.userinfo must be objects"))?;
        Ok((
            ClaimRequests {
                cpf: members.get("cpf").map(claim_request).transpose()?,
                cnpj: members.get("cnpj").map(claim_request).transpose()?,
            },
            members.get("acr").map(claim_request).transpose()?,
        ))
    };
    let (id_token, acr) = target("id_token")?;
    let (userinfo, _) = target("userinfo")?;
    Ok(Requested {
        id_token,
        userinfo,
        acr,
    })
}

/// OIDC 5.5.1: `null`, or `{"essential": bool, "value": "..."}` / `{"values": [...]}`.
fn claim_request(value: &Value) -> Result<ClaimRequest, ProtocolError> {
    let malformed =
        || bad("a requested claim must be null or an object of essential, value, values");
    let Some(o) = value.as_object() else {
        return if value.is_null() {
            Ok(ClaimRequest::default())
        } else {
            Err(malformed())
        };
    };
    let essential = match o.get("essential") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(malformed()),
    };
    let mut values: Vec<String> = Vec::new();
    if let Some(v) = o.get("value") {
        values.push(v.as_str().ok_or_else(malformed)?.to_string());
    }
    if let Some(vs) = o.get("values") {
        for v in vs.as_array().ok_or_else(malformed)? {
            values.push(v.as_str().ok_or_else(malformed)?.to_string());
        }
    }
    Ok(ClaimRequest { essential, values })
}

/// BCA-21: the acr asked for. An essential request that names values must name a supported
/// one; `{"essential": true}` alone asks that an acr be returned (it always is, TKN-7), not
/// for a level (OIDC 5.5.1.1), so the level comes from `acr_values` as for a voluntary
/// request. Unknown non-essential values are ignored. With nothing asked, the policy for data
/// consents applies: loa2 (FAPI-BR 5.2.2.5).
fn acr(acr_values: Option<&str>, claim: Option<ClaimRequest>) -> Result<AcrRequest, ProtocolError> {
    let supported = |v: &&str| *v == ACR_LOA2 || *v == ACR_LOA3;
    if let Some(claim) = claim.filter(|c| c.essential && !c.values.is_empty()) {
        let values: Vec<String> = claim
            .values
            .iter()
            .map(String::as_str)
            .filter(supported)
            .map(String::from)
            .collect();
        if values.is_empty() {
            return Err(bad("the essential acr asks only for unsupported values"));
        }
        return Ok(AcrRequest {
            values,
            essential: true,
        });
    }
    let values = acr_values
        .unwrap_or_default()
        .split(' ')
        .filter(supported)
        .map(String::from)
        .collect();
    Ok(AcrRequest {
        values,
        essential: false,
    })
}

/// The level of an acr value: loa3 above loa2 (AD-3); unknown values reach nothing.
pub fn acr_level(acr: &str) -> u8 {
    match acr {
        ACR_LOA3 => 3,
        ACR_LOA2 => 2,
        _ => 0,
    }
}

impl AcrRequest {
    /// AD-5e: whether `reached` satisfies the request. An essential request needs one of its
    /// values (loa3 satisfies loa2); otherwise the policy floor, loa2, is enough.
    pub fn reached_by(&self, reached: &str) -> bool {
        let level = acr_level(reached);
        if self.essential {
            self.values.iter().any(|v| level >= acr_level(v))
        } else {
            level >= acr_level(ACR_LOA2)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bca_20_requested_expiry_number_or_numeric_string() {
        for ok in [json!(120), json!("120"), Value::Null] {
            assert!(requested_expiry(Some(&ok)).is_ok(), "{ok}");
        }
        for bad in [
            json!(0),
            json!(-5),
            json!("0"),
            json!("12a"),
            json!(1.5),
            json!(""),
            json!(true),
        ] {
            assert!(requested_expiry(Some(&bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn bca_21_essential_acr_must_be_supported_and_reached() {
        let essential = |values: &[&str]| ClaimRequest {
            essential: true,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        assert!(acr(None, Some(essential(&["urn:other"]))).is_err());
        let loa3 = acr(None, Some(essential(&[ACR_LOA3, "urn:other"]))).unwrap();
        assert!(loa3.reached_by(ACR_LOA3));
        assert!(!loa3.reached_by(ACR_LOA2));
        let ignored = acr(Some("urn:other urn:brasil:openbanking:loa3"), None).unwrap();
        assert_eq!(ignored.values, [ACR_LOA3]);
        assert!(
            ignored.reached_by(ACR_LOA2),
            "non-essential: loa2 is the floor"
        );
        assert!(!ignored.reached_by("urn:other"));
    }

    #[test]
    fn bca_21_an_essential_acr_without_values_takes_its_level_from_acr_values() {
        let returned = || {
            Some(ClaimRequest {
                essential: true,
                values: Vec::new(),
            })
        };
        // openid-client's shape: the level in acr_values, the acr claim essential alone.
        let loa2 = acr(Some(ACR_LOA2), returned()).unwrap();
        assert_eq!(
            loa2,
            AcrRequest {
                values: vec![ACR_LOA2.to_string()],
                essential: false,
            }
        );
        assert!(loa2.reached_by(ACR_LOA2) && loa2.reached_by(ACR_LOA3));
        assert!(!loa2.reached_by("urn:other"), "AD-5e: the floor stays");
        // No acr_values: the default policy, loa2, is the floor.
        let default = acr(None, returned()).unwrap();
        assert!(default.values.is_empty() && !default.essential);
        assert!(default.reached_by(ACR_LOA2));
        assert!(!default.reached_by("urn:other"));
        // An essential acr with values still must name a supported one.
        assert!(
            acr(
                Some(ACR_LOA2),
                Some(ClaimRequest {
                    essential: true,
                    values: vec!["urn:other".into()],
                })
            )
            .is_err()
        );
    }

    /// The claims of a request object as openid-client 6 sends it (oauth4webapi's
    /// `issueRequestObject`): every parameter a string but `claims`, and `client_id`.
    fn openid_client_claims(client_id: &str) -> Map<String, Value> {
        let now: UnixTime = 1_800_000_000;
        json!({
            "scope": "openid consent:urn:bank:c1",
            "login_hint": "urn:bank:c1",
            "acr_values": ACR_LOA2,
            "claims": { "id_token": {
                "acr": { "essential": true },
                "cpf": { "essential": true },
            } },
            "binding_message": "Compra 4521",
            "client_id": client_id,
            "jti": "q7n3Jm1cXKf3e8YxVt0ZqL2H5o9Rk4Wb6Aa1Pp0Ss2E",
            "aud": "https://auth.bank.example",
            "exp": now + 60, "iat": now, "nbf": now,
            "iss": "tpp-1",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    fn tpp_1() -> Client {
        let clients = crate::client::registry::Clients::parse(
            &json!([crate::fixtures::client("tpp-1")]).to_string(),
        )
        .unwrap();
        clients.get("tpp-1").unwrap().clone()
    }

    #[test]
    fn bca_9_21_22_an_openid_client_request_object_is_accepted() {
        let verified = VerifiedRequestObject {
            claims: openid_client_claims("tpp-1"),
            jti: "q7n3Jm1cXKf3e8YxVt0ZqL2H5o9Rk4Wb6Aa1Pp0Ss2E".into(),
            exp: 1_800_000_060,
        };
        let parsed = BackchannelRequest::parse(verified, &tpp_1()).unwrap();
        assert_eq!(parsed.acr.values, [ACR_LOA2]);
        assert!(!parsed.acr.essential);
        // AD-5d compares only when a value was asked; TKN-9 returns the cpf.
        assert_eq!(
            parsed.id_token_claims.cpf,
            Some(ClaimRequest {
                essential: true,
                values: Vec::new(),
            })
        );
    }

    #[test]
    fn bca_9_a_client_id_claim_must_name_the_authenticated_client() {
        let issuer = Issuer::parse("https://auth.bank.example").unwrap();
        let now = 1_800_000_000;
        let tpp = tpp_1();
        let sign = |claims: Map<String, Value>| {
            crate::fixtures::client_jws("client-key-1", Value::Object(claims))
        };
        let verify = crate::fixtures::verify_request_object;
        assert!(verify(&sign(openid_client_claims("tpp-1")), &tpp, &issuer, now).is_ok());
        for other in [json!("tpp-2"), json!(""), json!(null), json!(["tpp-1"])] {
            let mut claims = openid_client_claims("tpp-1");
            claims.insert("client_id".into(), other.clone());
            assert_eq!(
                verify(&sign(claims), &tpp, &issuer, now).map(|_| ()),
                Err(bad(
                    "the request object client_id must be the authenticated client"
                )),
                "{other}"
            );
        }
    }

    #[test]
    fn hint_12_14_17_login_hint_token_forms() {
        assert_eq!(login_hint_token(LHT_AS_GENERATED), Ok(Hint::AsGenerated));
        assert_eq!(
            login_hint_token(&json!({ "format": LHT_AS_GENERATED }).to_string()),
            Ok(Hint::AsGenerated)
        );
        assert_eq!(
            login_hint_token(&json!({ "format": LHT_AD_GENERATED, "id": "123" }).to_string()),
            Ok(Hint::AdGenerated("123".into()))
        );
        for bad in [
            json!({ "format": LHT_AD_GENERATED }).to_string(),
            json!({ "format": LHT_AD_GENERATED, "id": 123 }).to_string(),
            json!({ "format": "urn:brasil:openbanking:ciba:login-hint-token-type:cpf" })
                .to_string(),
            "not json".to_string(),
        ] {
            assert!(
                matches!(
                    login_hint_token(&bad),
                    Err(ProtocolError::InvalidRequest(_))
                ),
                "{bad}"
            );
        }
    }
}
