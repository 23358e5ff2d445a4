//! JWE for the Brasil CIBA profile, RSA-OAEP / A256GCM only (GEN-2), compact serialization.
//!
//! Encryption ([`encrypt`]) wraps the signed id_token of a client that registered
//! `id_token_encrypted_response_alg` (TKN-4): a nested JWT, `cty: JWT`, whose header names the
//! client's key by `kid` only, never by `x5u`, `x5c`, `jku` or `jwk` (FAPI-BR 5.2.2.1-4/5).
//! The CEK, the IV and the OAEP seed come from the injected [`Random`], so tests pin them.
//!
//! Decryption ([`decrypt`]) opens the AS-generated `login_hint_token` of the Brasil CIBA
//! profile (HINT-15): the client signs a PS256 JWS and encrypts it to one of the AS's
//! `encryption_keys` as a compact JWE with `alg: RSA-OAEP`, `enc: A256GCM`, a `kid` and
//! `cty: JWT`. Nothing else is accepted (GEN-2: never RSA1_5, never `dir`, no other `enc`).
//!
//! The steps are those of RFC 7516 5.2 for the compact serialization, with RSA-OAEP as
//! RFC 7518 4.3 defines it (OAEP with SHA-1 and MGF1-SHA-1) and AES-256-GCM per RFC 7518
//! 5.3, whose additional authenticated data is the protected header's base64url text as
//! received. A failure to unwrap the content encryption key and a failure of the
//! authentication tag give the same error, after the same work (RFC 7516 11.5), so that the
//! caller cannot become an oracle for the RSA key.
//!
//! The result is the plaintext only: the caller verifies the JWS inside (HINT-15).

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value};

use super::keys::KeySet;
use super::{RSA_OAEP, b64url, b64url_decode};
use crate::clock::Random;

/// The only JWE content encryption algorithm (FAPI-BR 6.2.1, GEN-2).
pub const A256GCM: &str = "A256GCM";

/// The largest compact JWE accepted, in bytes; anything longer is refused before decoding.
pub const MAX_COMPACT_LEN: usize = 16 * 1024;

/// Length of the A256GCM content encryption key (RFC 7518 5.3).
const CEK_LEN: usize = 32;
/// Length of the A256GCM initialization vector (RFC 7518 5.3).
const IV_LEN: usize = 12;
/// Length of the A256GCM authentication tag (RFC 7518 5.3).
const TAG_LEN: usize = 16;

/// Why a JWE was refused; the caller maps it to its endpoint's error. No variant carries
/// input bytes or key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JweError {
    /// Longer than [`MAX_COMPACT_LEN`].
    TooLarge,
    /// Not five base64url parts, or a protected header that is not a JSON object.
    Malformed,
    /// `alg` missing or other than RSA-OAEP (GEN-2), including RSA1_5 and `dir`.
    AlgorithmNotAllowed,
    /// `enc` missing or other than A256GCM (GEN-2).
    EncryptionNotAllowed,
    /// A `crit` header: no extension is understood here (RFC 7516 4.1.13).
    CriticalHeader,
    /// A `zip` header: compression is not used by the profile (RFC 7516 4.1.3).
    CompressionNotAllowed,
    /// No `cty` header (HINT-15 requires `cty: JWT`).
    MissingContentType,
    /// A `cty` other than `JWT`.
    ContentTypeNotAllowed,
    /// No `kid` header, or one that is not a string.
    MissingKeyId,
    /// No encryption key of the AS has this `kid`.
    UnknownKey,
    /// The initialization vector is not 96 bits.
    InvalidIv,
    /// The authentication tag is not 128 bits.
    InvalidTag,
    /// The content encryption key could not be unwrapped, or the ciphertext, tag or
    /// protected header failed authentication. Deliberately one variant (RFC 7516 11.5).
    DecryptionFailed,
}

impl std::fmt::Display for JweError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::TooLarge => "the JWE is too large",
            Self::Malformed => "the JWE is malformed",
            Self::AlgorithmNotAllowed => "the JWE alg is not RSA-OAEP",
            Self::EncryptionNotAllowed => "the JWE enc is not A256GCM",
            Self::CriticalHeader => "the JWE has a crit header",
            Self::CompressionNotAllowed => "the JWE has a zip header",
            Self::MissingContentType => "the JWE has no cty header",
            Self::ContentTypeNotAllowed => "the JWE cty is not JWT",
            Self::MissingKeyId => "the JWE has no kid header",
            Self::UnknownKey => "the JWE kid names no encryption key",
            Self::InvalidIv => "the JWE initialization vector is not 96 bits",
            Self::InvalidTag => "the JWE authentication tag is not 128 bits",
            Self::DecryptionFailed => "the JWE could not be decrypted",
        })
    }
}

impl std::error::Error for JweError {}

/// Decrypts a compact JWE (RSA-OAEP / A256GCM, `cty: JWT`) addressed to one of `keys` (the
/// AS's `encryption_keys`, chosen by `kid`) and returns its plaintext (HINT-15, GEN-2,
/// RFC 7516 5.2). The plaintext is not interpreted here.
///
/// The RSA operation is blinded with `random` (RUSTSEC-2023-0071: unblinded RSA decryption
/// in `rsa` 0.9 leaks timing), so a QR code an attacker crafts cannot probe the key.
pub fn decrypt(compact: &str, keys: &KeySet, random: &dyn Random) -> Result<Vec<u8>, JweError> {
    if compact.len() > MAX_COMPACT_LEN {
        return Err(JweError::TooLarge);
    }
    let parts: Vec<&str> = compact.split('.').collect();
    let &[protected, encrypted_key, iv, ciphertext, tag] = parts.as_slice() else {
        return Err(JweError::Malformed);
    };
    let kid = check_header(protected)?;
    let key = keys.by_kid(&kid).ok_or(JweError::UnknownKey)?;
    open(
        key.private_key(),
        random,
        protected,
        encrypted_key,
        iv,
        ciphertext,
        tag,
    )
}

/// Encryption could not be done: the random source failed, or the RSA operation refused the
/// key. Carries nothing of the plaintext or the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionFailed;

impl std::fmt::Display for EncryptionFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the JWE could not be made")
    }
}

impl std::error::Error for EncryptionFailed {}

/// Encrypts `jwt` (a compact JWS) to `recipient`, the key the client published under `kid`,
/// as a compact JWE: protected header `{"alg":"RSA-OAEP","enc":"A256GCM","cty":"JWT","kid"}`
/// and nothing else (TKN-4; FAPI-BR 5.2.2.1-4/5: the key is named by `kid`, never by `x5u`,
/// `x5c`, `jku` or `jwk`). The steps are RFC 7516 5.1 with RSA-OAEP (SHA-1, MGF1-SHA-1, RFC
/// 7518 4.3) wrapping a fresh 256-bit CEK and AES-256-GCM (RFC 7518 5.3) under a fresh
/// 96-bit IV, the header's base64url text as AAD. All three random inputs (CEK, IV, OAEP
/// seed) come from `random`.
pub fn encrypt(
    jwt: &str,
    recipient: &RsaPublicKey,
    kid: &str,
    random: &dyn Random,
) -> Result<String, EncryptionFailed> {
    let header = serde_json::json!({
        "alg": RSA_OAEP,
        "enc": A256GCM,
        "cty": "JWT",
        "kid": kid,
    });
    let protected = b64url(header.to_string().as_bytes());
    let mut cek = [0u8; CEK_LEN];
    let mut iv = [0u8; IV_LEN];
    random.fill(&mut cek).map_err(|_| EncryptionFailed)?;
    random.fill(&mut iv).map_err(|_| EncryptionFailed)?;
    let mut rng = RandomRng::new(random);
    let encrypted_key = recipient
        .encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), &cek)
        .map_err(|_| EncryptionFailed)?;
    if rng.failed {
        return Err(EncryptionFailed);
    }
    let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| EncryptionFailed)?;
    let mut content = jwt.as_bytes().to_vec();
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&iv), protected.as_bytes(), &mut content)
        .map_err(|_| EncryptionFailed)?;
    Ok(format!(
        "{protected}.{}.{}.{}.{}",
        b64url(&encrypted_key),
        b64url(&iv),
        b64url(&content),
        b64url(&tag)
    ))
}

/// The injected random source as the RNG `rsa` blinds (and pads) with. `fill_bytes` cannot fail, so a
/// failure of the source is remembered and the decryption's result is discarded.
struct RandomRng<'a> {
    random: &'a dyn Random,
    failed: bool,
}

impl<'a> RandomRng<'a> {
    fn new(random: &'a dyn Random) -> Self {
        Self {
            random,
            failed: false,
        }
    }
}

impl rsa::rand_core::RngCore for RandomRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        if self.random.fill(dest).is_err() {
            self.failed = true;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rsa::rand_core::CryptoRng for RandomRng<'_> {}

/// Checks the protected header (RFC 7516 5.2 steps 2-5) and returns its `kid`.
fn check_header(protected: &str) -> Result<String, JweError> {
    let bytes = b64url_decode(protected).ok_or(JweError::Malformed)?;
    // serde_json keeps the last of duplicate members, as RFC 7516 4 permits.
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| JweError::Malformed)?;
    if header.contains_key("crit") {
        return Err(JweError::CriticalHeader);
    }
    if header.contains_key("zip") {
        return Err(JweError::CompressionNotAllowed);
    }
    let text = |name: &str| header.get(name).map(Value::as_str);
    if text("alg") != Some(Some(RSA_OAEP)) {
        return Err(JweError::AlgorithmNotAllowed);
    }
    if text("enc") != Some(Some(A256GCM)) {
        return Err(JweError::EncryptionNotAllowed);
    }
    match text("cty") {
        None => return Err(JweError::MissingContentType),
        Some(Some(cty)) if cty.eq_ignore_ascii_case("JWT") => {}
        Some(_) => return Err(JweError::ContentTypeNotAllowed),
    }
    match text("kid") {
        Some(Some(kid)) => Ok(kid.to_owned()),
        _ => Err(JweError::MissingKeyId),
    }
}

/// Unwraps the CEK with RSA-OAEP (SHA-1, MGF1-SHA-1) and decrypts with A256GCM, the
/// protected header's text as AAD (RFC 7516 5.2 steps 7-16).
fn open(
    key: &RsaPrivateKey,
    random: &dyn Random,
    protected: &str,
    encrypted_key: &str,
    iv: &str,
    ciphertext: &str,
    tag: &str,
) -> Result<Vec<u8>, JweError> {
    let encrypted_key = b64url_decode(encrypted_key).ok_or(JweError::Malformed)?;
    let iv = b64url_decode(iv).ok_or(JweError::Malformed)?;
    let mut content = b64url_decode(ciphertext).ok_or(JweError::Malformed)?;
    let tag = b64url_decode(tag).ok_or(JweError::Malformed)?;
    if iv.len() != IV_LEN {
        return Err(JweError::InvalidIv);
    }
    if tag.len() != TAG_LEN {
        return Err(JweError::InvalidTag);
    }

    // RFC 7516 11.5: on a failed unwrap, carry on with a substitute key so that both
    // failures take the same path and give the same error. The flag, not the AEAD result,
    // decides: content that happens to authenticate under the substitute is still refused.
    let mut rng = RandomRng::new(random);
    let unwrapped = key.decrypt_blinded(&mut rng, Oaep::new::<sha1::Sha1>(), &encrypted_key);
    let (unwrapped_ok, cek) = match unwrapped {
        Ok(cek) if cek.len() == CEK_LEN && !rng.failed => (true, cek),
        _ => (false, vec![0u8; CEK_LEN]),
    };
    let cipher = Aes256Gcm::new_from_slice(&cek).map_err(|_| JweError::DecryptionFailed)?;
    let opened = cipher.decrypt_in_place_detached(
        Nonce::from_slice(&iv),
        protected.as_bytes(),
        &mut content,
        Tag::from_slice(&tag),
    );
    match (unwrapped_ok, opened) {
        (true, Ok(())) => Ok(content),
        _ => Err(JweError::DecryptionFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::CountingRandom;
    use crate::config::var;
    use crate::fixtures::keys;
    use crate::jose::b64url;
    use crate::jose::jwk::KeyUse;
    use devkeys::rsa::{BigUint, RsaPublicKey};
    use serde_json::{Value, json};

    const PLAINTEXT: &[u8] = b"eyJhbGciOiJQUzI1NiJ9.e30.c2ln";

    fn key_set() -> KeySet {
        let text = json!({ "keys": [keys().encryption] }).to_string();
        KeySet::parse(var::ENCRYPTION_KEYS, &text, KeyUse::Encryption).unwrap()
    }

    fn recipient() -> RsaPublicKey {
        RsaPublicKey::from(&devkeys::private_key_from_jwk(&keys().encryption).unwrap())
    }

    fn header() -> Value {
        json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "kid": "enc-1", "cty": "JWT" })
    }

    fn with_header(header: &Value) -> String {
        devkeys::encrypt_jwe_with_header(PLAINTEXT, &recipient(), header).unwrap()
    }

    fn decrypt_with(header: &Value) -> Result<Vec<u8>, JweError> {
        decrypt(&with_header(header), &key_set(), &CountingRandom::default())
    }

    /// `jwe` with part `index` decoded, changed by `change` and re-encoded.
    fn tamper(jwe: &str, index: usize, change: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        let mut bytes = b64url_decode(&parts[index]).unwrap();
        change(&mut bytes);
        parts[index] = b64url(&bytes);
        parts.join(".")
    }

    /// A source that always fails.
    struct NoRandom;

    impl Random for NoRandom {
        fn fill(&self, _: &mut [u8]) -> Result<(), crate::store::StoreError> {
            Err(crate::store::StoreError("no entropy".into()))
        }
    }

    #[test]
    fn tkn_4_encrypt_round_trips_through_decrypt() {
        let jwe = encrypt(
            "eyJhbGciOiJQUzI1NiJ9.e30.c2ln",
            &recipient(),
            "enc-1",
            &CountingRandom::default(),
        )
        .unwrap();
        assert_eq!(jwe.split('.').count(), 5);
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()).unwrap(),
            PLAINTEXT
        );
    }

    #[test]
    fn tkn_4_encrypt_header_names_the_key_by_kid_only() {
        let jwe = encrypt("a.b.c", &recipient(), "enc-1", &CountingRandom::default()).unwrap();
        let header: Value =
            serde_json::from_slice(&b64url_decode(jwe.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            header,
            json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT", "kid": "enc-1" })
        );
        for member in ["x5u", "x5c", "jku", "jwk", "x5t", "x5t#S256", "zip", "crit"] {
            assert!(header.get(member).is_none(), "{member}");
        }
    }

    #[test]
    fn tkn_4_encrypt_draws_cek_iv_and_seed_from_the_injected_source() {
        let (random_a, random_b) = (CountingRandom::default(), CountingRandom::default());
        let a = encrypt("a.b.c", &recipient(), "enc-1", &random_a).unwrap();
        // The same source state gives the same bytes: nothing else supplies randomness.
        assert_eq!(
            a,
            encrypt("a.b.c", &recipient(), "enc-1", &random_b).unwrap()
        );
        // The next draw gives another CEK, IV and seed.
        let next = encrypt("a.b.c", &recipient(), "enc-1", &random_a).unwrap();
        let parts = |jwe: &str| jwe.split('.').map(str::to_owned).collect::<Vec<_>>();
        let (a, next) = (parts(&a), parts(&next));
        assert_eq!(a[0], next[0], "the header is fixed");
        for i in 1..5 {
            assert_ne!(a[i], next[i], "part {i}");
        }
        assert_eq!(
            encrypt("a.b.c", &recipient(), "enc-1", &NoRandom),
            Err(EncryptionFailed)
        );
    }

    #[test]
    fn round_trip() {
        let jwe = devkeys::encrypt_jwe(PLAINTEXT, &recipient(), "enc-1").unwrap();
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()).unwrap(),
            PLAINTEXT
        );
    }

    #[test]
    fn cty_is_case_insensitive() {
        let mut h = header();
        h["cty"] = json!("jwt");
        assert_eq!(decrypt_with(&h).unwrap(), PLAINTEXT);
    }

    #[test]
    fn unknown_kid_is_refused() {
        let jwe = devkeys::encrypt_jwe(PLAINTEXT, &recipient(), "enc-2").unwrap();
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::UnknownKey)
        );
    }

    #[test]
    fn missing_kid_is_refused() {
        let mut h = header();
        h.as_object_mut().unwrap().remove("kid");
        assert_eq!(decrypt_with(&h), Err(JweError::MissingKeyId));
        h["kid"] = json!(1);
        assert_eq!(decrypt_with(&h), Err(JweError::MissingKeyId));
    }

    #[test]
    fn other_algorithms_are_refused() {
        for alg in [
            json!("RSA1_5"),
            json!("dir"),
            json!("RSA-OAEP-256"),
            json!(null),
        ] {
            let mut h = header();
            h["alg"] = alg;
            assert_eq!(decrypt_with(&h), Err(JweError::AlgorithmNotAllowed));
        }
        let mut h = header();
        h.as_object_mut().unwrap().remove("alg");
        assert_eq!(decrypt_with(&h), Err(JweError::AlgorithmNotAllowed));
    }

    #[test]
    fn other_content_encryptions_are_refused() {
        for enc in ["A128GCM", "A256CBC-HS512", "a256gcm"] {
            let mut h = header();
            h["enc"] = json!(enc);
            assert_eq!(decrypt_with(&h), Err(JweError::EncryptionNotAllowed));
        }
    }

    #[test]
    fn missing_or_wrong_cty_is_refused() {
        let mut h = header();
        h.as_object_mut().unwrap().remove("cty");
        assert_eq!(decrypt_with(&h), Err(JweError::MissingContentType));
        h["cty"] = json!("JSON");
        assert_eq!(decrypt_with(&h), Err(JweError::ContentTypeNotAllowed));
    }

    #[test]
    fn crit_and_zip_are_refused() {
        let mut h = header();
        h["crit"] = json!(["exp"]);
        assert_eq!(decrypt_with(&h), Err(JweError::CriticalHeader));
        let mut h = header();
        h["zip"] = json!("DEF");
        assert_eq!(decrypt_with(&h), Err(JweError::CompressionNotAllowed));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let jwe = tamper(&with_header(&header()), 3, |b| b[0] ^= 1);
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
    }

    #[test]
    fn tampered_tag_fails() {
        let jwe = tamper(&with_header(&header()), 4, |b| b[15] ^= 0x80);
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
    }

    #[test]
    fn tampered_header_fails_authentication() {
        // Still a valid header, but no longer the AAD the content was sealed with.
        let jwe = tamper(&with_header(&header()), 0, |b| {
            let mut h: Value = serde_json::from_slice(b).unwrap();
            h["x"] = json!(1);
            *b = serde_json::to_vec(&h).unwrap();
        });
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
    }

    #[test]
    fn key_unwrap_failure_looks_like_tag_failure() {
        // Encrypted to another RSA key under the right kid: the OAEP unwrap fails.
        let other = RsaPublicKey::from(&keys().client_key);
        let jwe = devkeys::encrypt_jwe(PLAINTEXT, &other, "enc-1").unwrap();
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
        // A garbled encrypted key.
        let jwe = tamper(&with_header(&header()), 1, |b| b[7] ^= 1);
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
        // An empty one.
        let jwe = tamper(&with_header(&header()), 1, Vec::clear);
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::DecryptionFailed)
        );
    }

    #[test]
    fn wrong_iv_and_tag_lengths_are_refused() {
        let jwe = tamper(&with_header(&header()), 2, |b| b.push(0));
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::InvalidIv)
        );
        let jwe = tamper(&with_header(&header()), 4, |b| b.truncate(12));
        assert_eq!(
            decrypt(&jwe, &key_set(), &CountingRandom::default()),
            Err(JweError::InvalidTag)
        );
    }

    #[test]
    fn wrong_part_counts_are_malformed() {
        let jwe = with_header(&header());
        let parts: Vec<&str> = jwe.split('.').collect();
        assert_eq!(
            decrypt(
                &parts[..4].join("."),
                &key_set(),
                &CountingRandom::default()
            ),
            Err(JweError::Malformed)
        );
        assert_eq!(
            decrypt(&format!("{jwe}.AA"), &key_set(), &CountingRandom::default()),
            Err(JweError::Malformed)
        );
        assert_eq!(
            decrypt("", &key_set(), &CountingRandom::default()),
            Err(JweError::Malformed)
        );
    }

    #[test]
    fn bad_encodings_are_malformed() {
        let jwe = with_header(&header());
        let parts: Vec<&str> = jwe.split('.').collect();
        for index in 0..5 {
            let mut bad = parts.clone();
            bad[index] = "not*base64url";
            assert_eq!(
                decrypt(&bad.join("."), &key_set(), &CountingRandom::default()),
                Err(JweError::Malformed),
                "part {index}"
            );
        }
        for header in ["[]", "\"RSA-OAEP\"", "{", "null"] {
            let mut bad = parts.clone();
            let encoded = b64url(header.as_bytes());
            bad[0] = &encoded;
            assert_eq!(
                decrypt(&bad.join("."), &key_set(), &CountingRandom::default()),
                Err(JweError::Malformed)
            );
        }
    }

    #[test]
    fn oversize_input_is_refused_before_decoding() {
        let jwe = with_header(&header());
        let padded = format!("{jwe}{}", "A".repeat(MAX_COMPACT_LEN + 1 - jwe.len()));
        assert_eq!(
            decrypt(&padded, &key_set(), &CountingRandom::default()),
            Err(JweError::TooLarge)
        );
        let at_limit = "A".repeat(MAX_COMPACT_LEN);
        assert_eq!(
            decrypt(&at_limit, &key_set(), &CountingRandom::default()),
            Err(JweError::Malformed)
        );
    }

    /// RFC 7516 Appendix A.1: RSAES-OAEP and AES GCM, with the RFC's own key and JWE. Its
    /// header has no `kid` or `cty`, so only the cryptographic core is exercised.
    #[test]
    fn rfc7516_appendix_a1() {
        let int = |t: &str| BigUint::from_bytes_be(&b64url_decode(t).unwrap());
        let key = RsaPrivateKey::from_components(
            int(
                "oahUIoWw0K0usKNuOR6H4wkf4oBUXHTxRvgb48E-BVvxkeDNjbC4he8rUWcJoZmds2h7M70imEVhRU5djINX\
                 tqllXI4DFqcI1DgjT9LewND8MW2Krf3Spsk_ZkoFnilakGygTwpZ3uesH-PFABNIUYpOiN15dsQRkgr0vEhx\
                 N92i2asbOenSZeyaxziK72UwxrrKoExv6kc5twXTq4h-QChLOln0_mtUZwfsRaMStPs6mS6XrgxnxbWhojf6\
                 63tuEQueGC-FCMfra36C9knDFGzKsNa7LZK2djYgyD3JR_MB_4NUJW_TqOQtwHYbxevoJArm-L5StowjzGy-\
                 _bq6Gw",
            ),
            int("AQAB"),
            int(
                "kLdtIj6GbDks_ApCSTYQtelcNttlKiOyPzMrXHeI-yk1F7-kpDxY4-WY5NWV5KntaEeXS1j82E375xxhWMHX\
                 yvjYecPT9fpwR_M9gV8n9Hrh2anTpTD93Dt62ypW3yDsJzBnTnrYu1iwWRgBKrEYY46qAZIrA2xAwnm2X7uG\
                 R1hghkqDp0Vqj3kbSCz1XyfCs6_LehBwtxHIyh8Ripy40p24moOAbgxVw3rxT_vlt3UVe4WO3JkJOzlpUf-K\
                 TVI2Ptgm-dARxTEtE-id-4OJr0h-K-VFs3VSndVTIznSxfyrj8ILL6MG_Uv8YAu7VILSB3lOW085-4qE3Dzg\
                 rTjgyQ",
            ),
            vec![],
        )
        .unwrap();
        let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.\
            OKOawDo13gRp2ojaHV7LFpZcgV7T6DVZKTyKOMTYUmKoTCVJRgckCL9kiMT03JGeipsEdY3mx_etLbbWSrFr05kL\
            zcSr4qKAq7YN7e9jwQRb23nfa6c9d-StnImGyFDbSv04uVuxIp5Zms1gNxKKK2Da14B8S4rzVRltdYwam_lDp5Xn\
            ZAYpQdb76FdIKLaVmqgfwX7XWRxv2322i-vDxRfqNzo_tETKzpVLzfiwQyeyPGLBIO56YJ7eObdv0je81860ppam\
            avo35UgoRdbYaBcoh9QcfylQr66oc6vFWXRcZ_ZT2LawVCWTIy3brGPi6UklfCpIMfIjf7iGdXKHzg.\
            48V1_ALb6US04U3b.\
            5eym8TW_c8SuK0ltJ3rpYIzOeDQz7TALvtu6UG9oMo4vpzs9tX_EFShS8iB7j6jiSdiwkIr3ajwQzaBtQD_A.\
            XFBoMYUZodetZdvTiFvSkQ";
        let p: Vec<&str> = jwe.split('.').collect();
        let plaintext = open(
            &key,
            &CountingRandom::default(),
            p[0],
            p[1],
            p[2],
            p[3],
            p[4],
        )
        .unwrap();
        assert_eq!(
            plaintext,
            b"The true sign of intelligence is not knowledge but imagination."
        );
        // The same JWE is refused by `decrypt`: no kid, no cty.
        assert_eq!(check_header(p[0]), Err(JweError::MissingContentType));
    }
}
