//! Client assertions for `private_key_jwt` (RFC 7523), good and bad.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_compact::alg::{Hs256, Hs256Key, Rsa};
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{Map, Value, json};

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The claims of a valid assertion from `client_id` to `aud`.
pub fn claims(client_id: &str, aud: &str) -> Map<String, Value> {
    claims_at(client_id, aud, now())
}

/// The same, made at `now` (for a server whose clock was moved).
pub fn claims_at(client_id: &str, aud: &str, now: i64) -> Map<String, Value> {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 120,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
    .as_object()
    .unwrap()
    .clone()
}

/// Signs `claims` with PS256 (or `alg`: `PS256`, `RS256`).
pub fn sign(
    alg: &str,
    key: &devkeys::rsa::RsaPrivateKey,
    kid: &str,
    claims: Map<String, Value>,
) -> String {
    let header = Header::empty().with_key_id(kid);
    let claims = Claims::new(claims);
    match alg {
        "PS256" => Rsa::ps256().token(&header, &claims, key).unwrap(),
        "RS256" => Rsa::rs256().token(&header, &claims, key).unwrap(),
        other => panic!("unsupported test alg {other}"),
    }
}

/// An HS256 assertion keyed with the bytes of a public key (key confusion).
pub fn sign_hs256(secret: &[u8], kid: &str, claims: Map<String, Value>) -> String {
    Hs256
        .token(
            &Header::empty().with_key_id(kid),
            &Claims::new(claims),
            &Hs256Key::new(secret),
        )
        .unwrap()
}

/// An unsigned assertion (`alg: none`).
pub fn unsigned(claims: Map<String, Value>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{header}.{payload}.")
}

/// The form fields of `private_key_jwt`.
pub fn form(assertion: &str) -> String {
    format!(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
    )
}
