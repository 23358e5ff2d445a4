//! The key schema, one function per key shape. Secrets and client-chosen strings never
//! appear in a key as they are: they are hashed.

use crate::jose::b64url;

/// SHA-256, base64url: how tokens and client-chosen ids appear in keys.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(text.as_bytes()))
}

/// The counter that makes a client assertion's `jti` single-use (CLI-6).
pub fn assertion_jti(client_id: &str, jti: &str) -> String {
    format!("jti:{}:{}", digest(client_id), digest(jti))
}

/// An access token, under its hash (TKN-1, design.md State).
pub fn access_token(token: &str) -> String {
    format!("at:{}", digest(token))
}

/// A consent record (CONS-1).
pub fn consent(consent_id: &str) -> String {
    format!("consent:{}", digest(consent_id))
}

/// A backchannel authentication request, under its reference (the hash of its
/// `auth_req_id`, BCA-25).
pub fn auth_request(reference: &str) -> String {
    format!("auth_req:{reference}")
}

/// The polling pace of a request (TOK-7/12), apart from the request so that polls never
/// contend with the holder's decision.
pub fn auth_request_polls(reference: &str) -> String {
    format!("auth_req_poll:{reference}")
}

/// The marker that lets exactly one poll redeem an approved request (TOK-10).
pub fn auth_request_redeemed(reference: &str) -> String {
    format!("auth_req_redeemed:{reference}")
}

/// The marker that makes a request object's `jti` single-use (BCA-11).
pub fn request_object_jti(client_id: &str, jti: &str) -> String {
    format!("req_jti:{}:{}", digest(client_id), digest(jti))
}

/// The marker that makes the `jti` of an AS-generated login_hint_token single-use (HINT-15).
pub fn login_hint_token_jti(client_id: &str, jti: &str) -> String {
    format!("lht_jti:{}:{}", digest(client_id), digest(jti))
}

/// An AD-generated hint id (HINT-13, AD-9), under its hash.
pub fn ad_hint(id: &str) -> String {
    format!("ad_hint:{}", digest(id))
}

/// The marker that makes an AD-generated hint id single-use (HINT-13).
pub fn ad_hint_used(id: &str) -> String {
    format!("ad_hint_used:{}", digest(id))
}

/// How many requests a holder has had: the counter that numbers the holder's slots.
pub fn holder_requests(sub: &str) -> String {
    format!("holder_seq:{}", digest(sub))
}

/// Slot `n` of a holder's requests: the reference of one request (AD-2 lists them).
pub fn holder_request(sub: &str, n: i64) -> String {
    format!("holder_req:{}:{n}", digest(sub))
}

/// A refresh token, under its hash (design.md, State).
pub fn refresh_token(token: &str) -> String {
    format!("rt:{}", digest(token))
}

/// The cancellation of one id_token, by its `jti` (BR-CIBA 5.2.2-20, HINT-10).
pub fn id_token_cancelled(jti: &str) -> String {
    format!("idt_cancelled:{}", digest(jti))
}

/// A holder's "not before": id_tokens issued to them earlier are cancelled (HINT-10).
pub fn id_token_not_before(sub: &str) -> String {
    format!("idt_not_before:{}", digest(sub))
}
