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
