//! PS256 (RFC 7518 3.5: RSASSA-PSS with SHA-256, MGF1-SHA-256, a 32-byte salt) through
//! `rsa` 0.10, plugged into jwt-compact by its `Algorithm` trait.
//!
//! Why not jwt-compact's own `Rsa::ps256()`: it is built on `rsa` 0.9 (num-bigint-dig), whose
//! verification costs about twice as much inside Wasm as 0.10's (crypto-bigint), and every
//! authenticated request verifies one client assertion (issue 8, BENCHMARKS.md). Keys are
//! converted once, when the configuration is loaded, never per request.

use std::borrow::Cow;
use std::num::NonZeroUsize;

use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa10::BoxedUint;
use rsa10::signature::{SignatureEncoding, Signer, Verifier};
use sha2_11::Sha256;

use super::PS256;
use super::jwk::MIN_RSA_BITS;

/// The PS256 algorithm for jwt-compact's `token`/`validator`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ps256;

/// A public key ready to verify PS256 signatures (salt length fixed at 32 bytes, RFC 7518
/// 3.5: "the size of the salt value is the same size as the hash function output").
#[derive(Debug, Clone)]
pub struct Ps256VerifyingKey(rsa10::pss::VerifyingKey<Sha256>);

/// A private key ready to make PS256 signatures. No `Debug`: nothing may print it.
pub struct Ps256SigningKey(rsa10::pss::SigningKey<Sha256>);

/// A PS256 signature, as the JWS carries it (an id_token's is part of that token): `Debug`
/// prints its length only.
#[derive(Clone)]
pub struct Ps256Signature(Box<[u8]>);

impl std::fmt::Debug for Ps256Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ps256Signature([redacted {} bytes])", self.0.len())
    }
}

/// The largest modulus accepted anywhere (bits), as for `rsa` 0.9 keys in `jwk`.
const MAX_MODULUS_BITS: usize = 16384;

fn public_uint(bytes: &[u8]) -> Option<BoxedUint> {
    let bits = u32::try_from(bytes.len().checked_mul(8)?).ok()?;
    BoxedUint::from_be_slice(bytes, bits).ok()
}

impl Ps256VerifyingKey {
    /// The same key as an `rsa` 0.9 public key (as the JWK parser makes it).
    pub fn from_rsa09(key: &rsa::RsaPublicKey) -> Option<Self> {
        let n = public_uint(&key.n().to_bytes_be())?;
        let e = public_uint(&key.e().to_bytes_be())?;
        let key =
            rsa10::PublicKey::new_with_size_limits(n, e, MIN_RSA_BITS..=MAX_MODULUS_BITS).ok()?;
        Some(Self(rsa10::pss::VerifyingKey::new(key)))
    }
}

impl PartialEq for Ps256VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Ps256VerifyingKey {}

impl Ps256SigningKey {
    /// The same key as an `rsa` 0.9 private key (as the JWK parser makes and checks it).
    pub fn from_rsa09(key: &rsa::RsaPrivateKey) -> Option<Self> {
        let n_bytes = key.n().to_bytes_be();
        let bits = u32::try_from(n_bytes.len().checked_mul(8)?).ok()?;
        let secret = |v: &rsa::BigUint| BoxedUint::from_be_slice(&v.to_bytes_be(), bits).ok();
        let n = public_uint(&n_bytes)?;
        let e = public_uint(&key.e().to_bytes_be())?;
        let d = secret(key.d())?;
        let primes = key
            .primes()
            .iter()
            .map(secret)
            .collect::<Option<Vec<_>>>()?;
        let key = rsa10::PrivateKey::from_components(n, e, d, primes).ok()?;
        Some(Self(rsa10::pss::SigningKey::new(key)))
    }
}

impl AlgorithmSignature for Ps256Signature {
    const LENGTH: Option<NonZeroUsize> = None;

    fn try_from_slice(slice: &[u8]) -> anyhow::Result<Self> {
        Ok(Self(slice.into()))
    }

    fn as_bytes(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.0)
    }
}

impl Algorithm for Ps256 {
    type SigningKey = Ps256SigningKey;
    type VerifyingKey = Ps256VerifyingKey;
    type Signature = Ps256Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(PS256)
    }

    fn sign(&self, signing_key: &Ps256SigningKey, message: &[u8]) -> Ps256Signature {
        // Fails only if the system RNG does, which Wasm hosts do not; jwt-compact's own RSA
        // signer panics there too, and the trait gives no error to return.
        let signature = signing_key
            .0
            .try_sign(message)
            .expect("the system random number generator failed");
        Ps256Signature(signature.to_bytes())
    }

    fn verify_signature(
        &self,
        signature: &Ps256Signature,
        verifying_key: &Ps256VerifyingKey,
        message: &[u8],
    ) -> bool {
        // `verify` refuses a signature whose length is not the modulus's or whose value is
        // not below it (RFC 8017 8.1.2).
        let Ok(signature) = rsa10::pss::Signature::try_from(&signature.0[..]) else {
            return false;
        };
        verifying_key.0.verify(message, &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::{AlgorithmExt, Claims, Header, UntrustedToken};
    use serde_json::{Map, Value};

    fn keys() -> (rsa::RsaPrivateKey, rsa::RsaPublicKey) {
        let private = crate::fixtures::keys().client_key.clone();
        let public = rsa::RsaPublicKey::from(&private);
        (private, public)
    }

    fn claims() -> Claims<Map<String, Value>> {
        let mut custom = Map::new();
        custom.insert("sub".into(), "s".into());
        Claims::new(custom)
    }

    /// GEN-2: a PS256 JWS signed by `rsa` 0.9 (jwt-compact's own) verifies here, and one signed
    /// here verifies there: the two are the same algorithm, salt length included.
    #[test]
    fn gen_2_interoperates_with_jwt_compacts_own_ps256() {
        let (private, public) = keys();
        let theirs = jwt_compact::alg::Rsa::ps256()
            .token(&Header::empty(), &claims(), &private)
            .unwrap();
        let verifier = Ps256VerifyingKey::from_rsa09(&public).unwrap();
        let untrusted = UntrustedToken::new(&theirs).unwrap();
        assert!(
            Ps256
                .validator::<Map<String, Value>>(&verifier)
                .validate(&untrusted)
                .is_ok()
        );

        let signer = Ps256SigningKey::from_rsa09(&private).unwrap();
        let ours = Ps256.token(&Header::empty(), &claims(), &signer).unwrap();
        let untrusted = UntrustedToken::new(&ours).unwrap();
        assert_eq!(untrusted.algorithm(), "PS256");
        assert!(
            jwt_compact::alg::Rsa::ps256()
                .validator::<Map<String, Value>>(&public)
                .validate(&untrusted)
                .is_ok()
        );
    }

    /// A tampered payload, a truncated or padded signature, another key: all refused.
    #[test]
    fn gen_2_refuses_what_does_not_verify() {
        let (private, public) = keys();
        let signer = Ps256SigningKey::from_rsa09(&private).unwrap();
        let verifier = Ps256VerifyingKey::from_rsa09(&public).unwrap();
        let token = Ps256.token(&Header::empty(), &claims(), &signer).unwrap();
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let validate = |compact: &str| {
            UntrustedToken::new(compact).is_ok_and(|t| {
                Ps256
                    .validator::<Map<String, Value>>(&verifier)
                    .validate(&t)
                    .is_ok()
            })
        };
        assert!(validate(&token));
        let other_payload = crate::jose::b64url(br#"{"sub":"t"}"#);
        assert!(!validate(&format!("{head}.{other_payload}.{sig}")));
        let bytes = crate::jose::b64url_decode(sig).unwrap();
        let short = crate::jose::b64url(&bytes[1..]);
        assert!(!validate(&format!(
            "{head}.{}.{short}",
            rest.split_once('.').unwrap().0
        )));
        let mut long = bytes.clone();
        long.insert(0, 0);
        let long = crate::jose::b64url(&long);
        assert!(!validate(&format!(
            "{head}.{}.{long}",
            rest.split_once('.').unwrap().0
        )));
        let encryption_key =
            devkeys::private_key_from_jwk(&crate::fixtures::keys().encryption).unwrap();
        let other =
            Ps256VerifyingKey::from_rsa09(&rsa::RsaPublicKey::from(&encryption_key)).unwrap();
        let untrusted = UntrustedToken::new(&token).unwrap();
        assert!(
            Ps256
                .validator::<Map<String, Value>>(&other)
                .validate(&untrusted)
                .is_err()
        );
    }
}
