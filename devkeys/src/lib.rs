//! Key material for development and tests: RSA keys, self-signed certificates and JWKs.
//! Generated at run time, never committed, never for production.

use std::str::FromStr;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand_core::OsRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::Encode;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

pub use rsa;

/// base64url without padding.
pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new RSA key of `bits` bits.
pub fn rsa_key(bits: usize) -> anyhow::Result<RsaPrivateKey> {
    RsaPrivateKey::new(&mut OsRng, bits).context("RSA key generation failed")
}

/// A self-signed certificate (DER) for `key`, valid for `days` days from now.
pub fn self_signed_certificate(
    key: &RsaPrivateKey,
    subject: &str,
    days: u64,
) -> anyhow::Result<Vec<u8>> {
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    serial[0] &= 0x7f;
    let builder = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::new(&serial)?,
        Validity::from_now(std::time::Duration::from_secs(days * 86_400))?,
        Name::from_str(subject)?,
        SubjectPublicKeyInfoOwned::from_key(RsaPublicKey::from(key))?,
        &signer,
    )?;
    let cert = builder.build::<rsa::pkcs1v15::Signature>()?;
    Ok(cert.to_der()?)
}

/// The public members of an RSA JWK.
pub fn public_jwk(key: &RsaPublicKey, kid: &str, key_use: &str, alg: &str) -> Value {
    json!({
        "kty": "RSA",
        "kid": kid,
        "use": key_use,
        "alg": alg,
        "n": b64u(&key.n().to_bytes_be()),
        "e": b64u(&key.e().to_bytes_be()),
    })
}

/// A private RSA JWK, with `x5c` when a certificate is given.
pub fn private_jwk(
    key: &RsaPrivateKey,
    kid: &str,
    key_use: &str,
    alg: &str,
    cert: Option<&[u8]>,
) -> Value {
    let mut jwk = public_jwk(&RsaPublicKey::from(key), kid, key_use, alg);
    let primes = key.primes();
    jwk["d"] = json!(b64u(&key.d().to_bytes_be()));
    jwk["p"] = json!(b64u(&primes[0].to_bytes_be()));
    jwk["q"] = json!(b64u(&primes[1].to_bytes_be()));
    if let Some(dp) = key.dp() {
        jwk["dp"] = json!(b64u(&dp.to_bytes_be()));
    }
    if let Some(dq) = key.dq() {
        jwk["dq"] = json!(b64u(&dq.to_bytes_be()));
    }
    if let Some(qi) = key.crt_coefficient() {
        jwk["qi"] = json!(b64u(&qi.to_bytes_be()));
    }
    if let Some(der) = cert {
        jwk["x5c"] = json!([STANDARD.encode(der)]);
    }
    jwk
}

/// A signing key with its certificate, as a private JWK.
pub fn signing_jwk(kid: &str) -> anyhow::Result<Value> {
    let key = rsa_key(2048)?;
    let cert = self_signed_certificate(&key, &format!("CN=ciba dev signing key {kid}"), 730)?;
    Ok(private_jwk(&key, kid, "sig", "PS256", Some(&cert)))
}

/// An encryption key, as a private JWK.
pub fn encryption_jwk(kid: &str) -> anyhow::Result<Value> {
    let key = rsa_key(2048)?;
    Ok(private_jwk(&key, kid, "enc", "RSA-OAEP", None))
}

/// A random secret of 32 bytes, base64url.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b64u(&bytes))
}

/// The private key of a private RSA JWK (as [`private_jwk`] writes it).
pub fn private_key_from_jwk(jwk: &Value) -> anyhow::Result<RsaPrivateKey> {
    let int = |name: &str| -> anyhow::Result<rsa::BigUint> {
        let text = jwk[name]
            .as_str()
            .with_context(|| format!("the JWK has no {name}"))?;
        Ok(rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(text)?))
    };
    Ok(RsaPrivateKey::from_components(
        int("n")?,
        int("e")?,
        int("d")?,
        vec![int("p")?, int("q")?],
    )?)
}

/// A `private_key_jwt` client assertion (RFC 7523) from `client_id` to `aud`, signed PS256,
/// valid for two minutes.
pub fn client_assertion(
    key: &RsaPrivateKey,
    kid: &str,
    client_id: &str,
    aud: &str,
) -> anyhow::Result<String> {
    use jwt_compact::{AlgorithmExt, Claims, Header};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 120,
        "jti": random_token()?,
    });
    let header = Header::empty().with_key_id(kid);
    Ok(jwt_compact::alg::Rsa::ps256().token(&header, &Claims::new(claims), key)?)
}
