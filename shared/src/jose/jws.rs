//! JWS verification, PS256 only (FAPI-BR 6.2, GEN-2): the header's `alg` is checked before
//! any key is touched, `none`/`RS256`/`HS*` never reach a verifier, a JWE (five parts) is
//! refused, and no claim is read before the signature has verified.

use jwt_compact::{AlgorithmExt, UntrustedToken};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::PS256;
use super::ps256::{Ps256, Ps256VerifyingKey};

/// Why a JWS was refused; the caller maps it to its endpoint's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    /// Not a compact JWS.
    Malformed,
    /// A JWE (five parts) where a JWS was expected.
    Encrypted,
    /// `alg` other than PS256, including `none`.
    AlgorithmNotAllowed,
    /// A `crit` header: no extension is understood here (RFC 7515 4.1.11).
    CriticalHeader,
    /// No key of the signer has this `kid`.
    UnknownKey,
    /// The signature does not verify with the signer's keys.
    BadSignature,
    /// The claims are not a JSON object with numeric `exp`, `nbf` and `iat`.
    MalformedClaims,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct ExtraHeader {
    crit: Option<Value>,
}

/// A JWS whose PS256 signature verified; its claims may now be read. `Debug` names its claims
/// without their values ([`ClaimNames`]).
#[derive(Clone)]
pub struct VerifiedJws {
    /// The `kid` of the key that verified it.
    pub kid: String,
    /// `typ`, if any.
    pub typ: Option<String>,
    /// Whether the header names the signer's certificate by `x5t` or `x5t#S256` (HINT-4).
    pub has_certificate_thumbprint: bool,
    /// `exp`, `nbf`, `iat` as NumericDate seconds.
    pub exp: Option<i64>,
    /// `nbf`.
    pub nbf: Option<i64>,
    /// `iat`.
    pub iat: Option<i64>,
    /// Every other claim.
    pub claims: Map<String, Value>,
}

impl std::fmt::Debug for VerifiedJws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedJws")
            .field("kid", &self.kid)
            .field("typ", &self.typ)
            .field(
                "has_certificate_thumbprint",
                &self.has_certificate_thumbprint,
            )
            .field("exp", &self.exp)
            .field("nbf", &self.nbf)
            .field("iat", &self.iat)
            .field("claims", &ClaimNames(&self.claims))
            .finish()
    }
}

/// Prints the names of a JWT's claims, never their values: the claims of a request object, an
/// id_token or a QR token carry tokens, hint ids, CPFs and CNPJs.
pub struct ClaimNames<'a>(pub &'a Map<String, Value>);

impl std::fmt::Debug for ClaimNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl VerifiedJws {
    /// A string claim.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Verifies `compact` with PS256 against `keys` (the signer's keys, by `kid`). Without a `kid`
/// header each of the signer's keys is tried.
pub fn verify_ps256<'k>(
    compact: &str,
    keys: impl IntoIterator<Item = (&'k str, &'k Ps256VerifyingKey)>,
) -> Result<VerifiedJws, JwsError> {
    if compact.split('.').count() == 5 {
        return Err(JwsError::Encrypted);
    }
    let untrusted =
        UntrustedToken::<ExtraHeader>::try_from(compact).map_err(|_| JwsError::Malformed)?;
    if untrusted.algorithm() != PS256 {
        return Err(JwsError::AlgorithmNotAllowed);
    }
    let header = untrusted.header();
    if header.other_fields.crit.is_some() {
        return Err(JwsError::CriticalHeader);
    }
    let wanted = header.key_id.as_deref();
    let candidates: Vec<(&str, &Ps256VerifyingKey)> = keys
        .into_iter()
        .filter(|(kid, _)| wanted.is_none_or(|w| w == *kid))
        .collect();
    if candidates.is_empty() {
        return Err(JwsError::UnknownKey);
    }
    let mut outcome = Err(JwsError::BadSignature);
    for (kid, key) in candidates {
        match Ps256
            .validator::<Map<String, Value>>(key)
            .validate(&untrusted)
        {
            Ok(token) => {
                let typ = token.header().token_type.clone();
                let has_certificate_thumbprint = token.header().certificate_thumbprint.is_some()
                    || token.header().certificate_sha1_thumbprint.is_some();
                let claims = token.claims();
                outcome = Ok(VerifiedJws {
                    kid: kid.to_string(),
                    typ,
                    has_certificate_thumbprint,
                    exp: claims.expiration.map(|t| t.timestamp()),
                    nbf: claims.not_before.map(|t| t.timestamp()),
                    iat: claims.issued_at.map(|t| t.timestamp()),
                    claims: claims.custom.clone(),
                });
                break;
            }
            Err(jwt_compact::ValidationError::InvalidSignature) => {}
            Err(_) => {
                outcome = Err(JwsError::MalformedClaims);
                break;
            }
        }
    }
    outcome
}
