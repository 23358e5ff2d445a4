//! JOSE: JSON Web Keys and key sets. PS256 for signatures and RSA-OAEP for encryption are
//! the only algorithms the profile allows (GEN-2), so they are the only ones named here.

pub mod jwe;
pub mod jwk;
pub mod jws;
pub mod keys;
pub mod ps256;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The only JWS algorithm (FAPI-BR 6.2, GEN-2).
pub const PS256: &str = "PS256";
/// The only JWE key-management algorithm (FAPI-BR 6.2.1, GEN-2).
pub const RSA_OAEP: &str = "RSA-OAEP";

/// base64url without padding (RFC 7515 2).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Strict base64url without padding; `None` for anything else.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Standard base64 with padding, as `x5c` uses (RFC 7517 4.7).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// `x5t#S256`: base64url(SHA-256(DER)) of a certificate (RFC 7517 4.9, RFC 8705 3.1).
pub fn x5t_s256(der: &[u8]) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(der))
}
