//! RSA JSON Web Keys (RFC 7517, RFC 7518 6.3): private keys of the AS, public keys of clients.

use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};

use super::ps256::Ps256VerifyingKey;
use serde::Deserialize;

use super::{b64_decode, b64url, b64url_decode, x5t_s256};

/// Smallest RSA modulus accepted anywhere (KEY-3, FAPI1-B 5.2.2-5).
pub const MIN_RSA_BITS: usize = 2048;

/// What a JWK may be used for (RFC 7517 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// `sig`, with `alg` PS256.
    Signature,
    /// `enc`, with `alg` RSA-OAEP.
    Encryption,
}

impl KeyUse {
    /// The `use` member.
    pub fn name(self) -> &'static str {
        match self {
            Self::Signature => "sig",
            Self::Encryption => "enc",
        }
    }

    /// The only algorithm for this use (GEN-2).
    pub fn alg(self) -> &'static str {
        match self {
            Self::Signature => super::PS256,
            Self::Encryption => super::RSA_OAEP,
        }
    }
}

/// A JWK as written; every member optional so that each problem gets its own message.
#[derive(Deserialize)]
pub(crate) struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    p: Option<String>,
    q: Option<String>,
    // dp, dq and qi are recomputed from p and q; they are accepted and ignored.
    x5c: Option<Vec<String>>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
    #[serde(rename = "k")]
    symmetric: Option<serde::de::IgnoredAny>,
}

/// A JWK Set as written (RFC 7517 5).
#[derive(Deserialize)]
pub(crate) struct RawJwkSet {
    pub(crate) keys: Vec<RawJwk>,
}

/// Why a JWK was refused. The text names the member, never its value.
pub type JwkError = &'static str;

fn big(member: &Option<String>, missing: JwkError) -> Result<BigUint, JwkError> {
    let text = member.as_deref().ok_or(missing)?;
    let bytes = b64url_decode(text).ok_or("a key member is not base64url")?;
    Ok(BigUint::from_bytes_be(&bytes))
}

impl RawJwk {
    fn check_common(&self, key_use: KeyUse) -> Result<String, JwkError> {
        if self.symmetric.is_some() {
            return Err("symmetric (oct) keys are not allowed");
        }
        if self.kty.as_deref() != Some("RSA") {
            return Err("kty must be RSA");
        }
        let kid = self.kid.clone().ok_or("kid is required")?;
        if kid.is_empty() || kid.len() > 128 || kid.chars().any(|c| c.is_control()) {
            return Err("kid must be 1 to 128 printable characters");
        }
        if let Some(u) = &self.use_
            && u != key_use.name()
        {
            return Err(match key_use {
                KeyUse::Signature => "use must be sig",
                KeyUse::Encryption => "use must be enc",
            });
        }
        if let Some(a) = &self.alg
            && a != key_use.alg()
        {
            return Err(match key_use {
                KeyUse::Signature => "alg must be PS256",
                KeyUse::Encryption => "alg must be RSA-OAEP",
            });
        }
        Ok(kid)
    }

    fn public_key(&self) -> Result<RsaPublicKey, JwkError> {
        let n = big(&self.n, "n is required")?;
        let e = big(&self.e, "e is required")?;
        let key = RsaPublicKey::new_with_max_size(n, e, 16384)
            .map_err(|_| "n and e do not form an RSA public key")?;
        // KEY-3 counts bits: a 2,041-bit modulus fills 256 bytes and is still too short.
        if key.n().bits() < MIN_RSA_BITS {
            return Err("the RSA modulus is shorter than 2048 bits");
        }
        Ok(key)
    }

    /// Whether the key declares itself an encryption key (`use: enc`, or an encryption
    /// `alg`): a client's set may hold them, they never verify a signature (KEY-9).
    pub(crate) fn is_encryption_key(&self) -> bool {
        self.use_.as_deref() == Some("enc")
            || self
                .alg
                .as_deref()
                .is_some_and(|a| a.starts_with("RSA-OAEP") || a == "RSA1_5")
    }

    /// A client's public key (KEY-8: static registrations may carry `jwks` by value).
    pub(crate) fn into_public(self, key_use: KeyUse) -> Result<PublicJwk, JwkError> {
        let kid = self.check_common(key_use)?;
        if self.d.is_some() || self.p.is_some() || self.q.is_some() {
            return Err("a public key set must not hold private members");
        }
        let key = self.public_key()?;
        let verifier =
            Ps256VerifyingKey::from_rsa09(&key).ok_or("n and e do not form an RSA public key")?;
        Ok(PublicJwk {
            kid,
            key_use,
            key,
            verifier,
        })
    }

    /// One of the AS's own private keys; signing keys need their certificate (KEY-4).
    pub(crate) fn into_private(self, key_use: KeyUse) -> Result<PrivateJwk, JwkError> {
        let kid = self.check_common(key_use)?;
        let public = self.public_key()?;
        let d = big(&self.d, "d is required: this must be a private key")?;
        let p = big(&self.p, "p is required")?;
        let q = big(&self.q, "q is required")?;
        let key =
            RsaPrivateKey::from_components(public.n().clone(), public.e().clone(), d, vec![p, q])
                .map_err(|_| "the private members do not form an RSA key")?;
        key.validate()
            .map_err(|_| "the private members do not form an RSA key")?;
        let certificate = match &self.x5c {
            Some(chain) => Some(Certificate::from_x5c(chain, &public)?),
            None if key_use == KeyUse::Signature => {
                return Err("x5c is required: id_token headers carry x5t#S256 (KEY-4)");
            }
            None => None,
        };
        if let Some(given) = &self.x5t_s256 {
            match &certificate {
                Some(cert) if &cert.x5t_s256 == given => {}
                _ => return Err("x5t#S256 does not match the x5c certificate"),
            }
        }
        let verifier = Ps256VerifyingKey::from_rsa09(&public)
            .ok_or("n and e do not form an RSA public key")?;
        Ok(PrivateJwk {
            kid,
            key_use,
            key,
            public,
            verifier,
            certificate,
        })
    }
}

/// The certificate behind a key: its chain as published and its SHA-256 thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// `x5c`: base64 DER, leaf first, as configured.
    pub x5c: Vec<String>,
    /// `x5t#S256` of the leaf.
    pub x5t_s256: String,
}

impl Certificate {
    fn from_x5c(chain: &[String], public: &RsaPublicKey) -> Result<Self, JwkError> {
        use rsa::pkcs8::DecodePublicKey;
        use x509_cert::der::{Decode, Encode};
        let leaf = chain
            .first()
            .ok_or("x5c must hold at least one certificate")?;
        let der = b64_decode(leaf).ok_or("x5c entries must be base64 DER")?;
        let cert = x509_cert::Certificate::from_der(&der)
            .map_err(|_| "x5c[0] is not an X.509 certificate")?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|_| "x5c[0] is not an X.509 certificate")?;
        let cert_key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|_| "x5c[0] does not hold an RSA key")?;
        if &cert_key != public {
            return Err("x5c[0] certifies a different key");
        }
        for extra in &chain[1..] {
            let der = b64_decode(extra).ok_or("x5c entries must be base64 DER")?;
            x509_cert::Certificate::from_der(&der)
                .map_err(|_| "x5c holds something that is not an X.509 certificate")?;
        }
        Ok(Self {
            x5c: chain.to_vec(),
            x5t_s256: x5t_s256(&der),
        })
    }
}

/// A verified public RSA key of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// `kid`.
    pub kid: String,
    /// `use`.
    pub key_use: KeyUse,
    /// The key.
    pub key: RsaPublicKey,
    /// The same key, ready to verify PS256 (converted once, at load).
    pub verifier: Ps256VerifyingKey,
}

/// One of the AS's private keys. It has no `Debug` or `Serialize` that could print the
/// private parts: only [`PrivateJwk::public_jwk`] leaves this type.
pub struct PrivateJwk {
    kid: String,
    key_use: KeyUse,
    key: RsaPrivateKey,
    public: RsaPublicKey,
    verifier: Ps256VerifyingKey,
    certificate: Option<Certificate>,
}

impl std::fmt::Debug for PrivateJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateJwk")
            .field("kid", &self.kid)
            .field("use", &self.key_use)
            .field("key", &"[redacted]")
            .finish()
    }
}

impl PrivateJwk {
    /// `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `use`.
    pub fn key_use(&self) -> KeyUse {
        self.key_use
    }

    /// The certificate, if any (always present on signing keys).
    pub fn certificate(&self) -> Option<&Certificate> {
        self.certificate.as_ref()
    }

    /// The private key, for the signing and decryption code of this crate only.
    pub(crate) fn private_key(&self) -> &RsaPrivateKey {
        &self.key
    }

    /// The public key.
    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }

    /// The PS256 verifier, to verify what this key signed (HINT-5).
    pub fn verifier(&self) -> &Ps256VerifyingKey {
        &self.verifier
    }

    /// The public half, as published at `jwks_uri` (KEY-1/2/4).
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = serde_json::json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": self.key_use.name(),
            "alg": self.key_use.alg(),
            "n": b64url(&self.key.n().to_bytes_be()),
            "e": b64url(&self.key.e().to_bytes_be()),
        });
        if let Some(cert) = &self.certificate {
            jwk["x5c"] = serde_json::json!(cert.x5c);
            jwk["x5t#S256"] = serde_json::json!(cert.x5t_s256);
        }
        jwk
    }
}
