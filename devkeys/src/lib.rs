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

/// A DER certificate as PEM, in lines of 64 characters.
pub fn certificate_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// The `x5t#S256` of a DER certificate (RFC 8705 3.1): base64url SHA-256.
pub fn x5t_s256(der: &[u8]) -> String {
    use sha2::Digest;
    b64u(&sha2::Sha256::digest(der))
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

/// A compact JWE of `plaintext` for `recipient`, as a client sends the AS-generated
/// login_hint_token (HINT-15, GEN-2): `alg: RSA-OAEP` (OAEP with SHA-1 and MGF1-SHA-1,
/// RFC 7518 4.3), `enc: A256GCM`, `kid`, `cty: JWT`; a fresh random CEK and IV each call.
pub fn encrypt_jwe(
    plaintext: &[u8],
    recipient: &RsaPublicKey,
    kid: &str,
) -> anyhow::Result<String> {
    let header = json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "kid": kid, "cty": "JWT" });
    encrypt_jwe_with_header(plaintext, recipient, &header)
}

/// As [`encrypt_jwe`], but with any protected `header`, for negative tests: the content is
/// always encrypted RSA-OAEP / A256GCM whatever the header says.
pub fn encrypt_jwe_with_header(
    plaintext: &[u8],
    recipient: &RsaPublicKey,
    header: &Value,
) -> anyhow::Result<String> {
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use rand_core::RngCore;

    let mut cek = [0u8; 32];
    let mut iv = [0u8; 12];
    OsRng
        .try_fill_bytes(&mut cek)
        .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    OsRng
        .try_fill_bytes(&mut iv)
        .map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let encrypted_key = recipient
        .encrypt(&mut OsRng, rsa::Oaep::new::<sha1::Sha1>(), &cek)
        .context("RSA-OAEP encryption failed")?;
    let protected = b64u(serde_json::to_string(header)?.as_bytes());
    let cipher =
        aes_gcm::Aes256Gcm::new_from_slice(&cek).map_err(|_| anyhow::anyhow!("bad CEK length"))?;
    let mut content = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(
            aes_gcm::Nonce::from_slice(&iv),
            protected.as_bytes(),
            &mut content,
        )
        .map_err(|_| anyhow::anyhow!("A256GCM encryption failed"))?;
    Ok(format!(
        "{protected}.{}.{}.{}.{}",
        b64u(&encrypted_key),
        b64u(&iv),
        b64u(&content),
        b64u(&tag)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm::aead::{AeadInPlace, KeyInit};

    #[test]
    fn encrypt_jwe_is_rsa_oaep_a256gcm_with_kid_and_cty() {
        let key = rsa_key(2048).unwrap();
        let public = RsaPublicKey::from(&key);
        let jwe = encrypt_jwe(b"a.b.c", &public, "enc-1").unwrap();
        let parts: Vec<Vec<u8>> = jwe
            .split('.')
            .map(|p| URL_SAFE_NO_PAD.decode(p).unwrap())
            .collect();
        assert_eq!(parts.len(), 5);
        let header: Value = serde_json::from_slice(&parts[0]).unwrap();
        assert_eq!(
            header,
            json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "kid": "enc-1", "cty": "JWT" })
        );
        let cek = key
            .decrypt(rsa::Oaep::new::<sha1::Sha1>(), &parts[1])
            .unwrap();
        assert_eq!(cek.len(), 32);
        assert_eq!(parts[2].len(), 12);
        assert_eq!(parts[4].len(), 16);
        let mut content = parts[3].clone();
        aes_gcm::Aes256Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt_in_place_detached(
                aes_gcm::Nonce::from_slice(&parts[2]),
                jwe.split('.').next().unwrap().as_bytes(),
                &mut content,
                aes_gcm::Tag::from_slice(&parts[4]),
            )
            .unwrap();
        assert_eq!(content, b"a.b.c");
        // A fresh CEK and IV each time.
        let again = encrypt_jwe(b"a.b.c", &public, "enc-1").unwrap();
        assert_ne!(jwe.split('.').nth(2), again.split('.').nth(2));
        assert_ne!(jwe.split('.').nth(1), again.split('.').nth(1));
    }
}
