//! id_tokens: made when the holder approves (TKN-4…9) and verified when a client sends one
//! back as `id_token_hint` (HINT-3…8, KEY-6).

use jwt_compact::alg::Rsa;
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{Map, Value, json};

use serde::{Deserialize, Serialize};

use std::borrow::Cow;

use crate::auth_req::{AuthRequest, ClaimRequests, Decision};
use crate::client::keys::KeySource;
use crate::client::registry::{Client, IdTokenEncryption};
use crate::clock::Random;
use crate::clock::{SKEW, UnixTime};
use crate::config::Issuer;
use crate::endpoints::Deps;
use crate::error::ProtocolError;
use crate::jose::jws::{JwsError, verify_ps256};
use crate::jose::keys::KeySet;
use crate::jose::{b64url, b64url_decode};
use crate::store::{KeyValue, StoreError, Swap, first_use, keys, record, release, was_used};
use crate::users::User;

/// The id_token as `client` receives it (TKN-4): the signed JWS itself, or, for a client that
/// registered `id_token_encrypted_response_alg` (REG-26, or the same member in `clients`), that
/// JWS as a nested JWE (`cty: JWT`) to the first RSA-OAEP `enc` key the client publishes.
///
/// A client that asked for encryption but publishes no such key gets
/// `invalid_client_metadata` (400) [decision]: its registration promises a key its key set
/// lacks, which is the client's to fix, not a fault of ours (so never 500), not a failed
/// authentication (not `invalid_client`), and nothing about the grant (not `invalid_grant`,
/// which would tell it the auth_req_id is spent). It is
/// decided before anything is written, so the request stays redeemable: once the key is
/// published, the next poll after the one-minute refetch gap (KEY-13) gets the tokens. A
/// keystore that cannot be reached is 503 `temporarily_unavailable`, as for signatures
/// (KEY-14).
pub fn for_client<'t>(
    signed: &'t str,
    client: &Client,
    keys: &KeySource,
    deps: &Deps<'_>,
) -> Result<Cow<'t, str>, ProtocolError> {
    let Some(IdTokenEncryption::RsaOaepA256Gcm) = client.id_token_encryption else {
        return Ok(Cow::Borrowed(signed));
    };
    let key = keys
        .encryption_key(deps, client)?
        .ok_or(ProtocolError::InvalidClientMetadata(
            "id_token encryption is registered but the client publishes no RSA-OAEP enc key",
        ))?;
    crate::jose::jwe::encrypt(signed, &key.key, &key.kid, deps.random)
        .map(Cow::Owned)
        .map_err(|_| ProtocolError::ServerError("the id_token could not be encrypted"))
}

/// `at_hash` (OIDC 3.1.3.6, FAPI1-A 8.3.4): the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    b64url(&digest[..16])
}

/// The claims the holder's identity documents answer (TKN-9): `cpf` as a string, `cnpj` as
/// an array, only when the `claims` parameter asked for them.
pub fn document_claims(requests: &ClaimRequests, user: &User, claims: &mut Map<String, Value>) {
    if requests.cpf.is_some() {
        claims.insert("cpf".into(), json!(user.cpf.as_str()));
    }
    if requests.cnpj.is_some() && !user.cnpj.is_empty() {
        let cnpj: Vec<&str> = user.cnpj.iter().map(|c| c.as_str()).collect();
        claims.insert("cnpj".into(), json!(cnpj));
    }
}

/// What an id_token says.
pub struct IdTokenContent<'a> {
    /// `iss`.
    pub issuer: &'a Issuer,
    /// The request it answers.
    pub request: &'a AuthRequest,
    /// The holder's approval.
    pub decision: &'a Decision,
    /// The holder.
    pub user: &'a User,
    /// `at_hash` of the access token it accompanies.
    pub at_hash: &'a str,
    /// A unique id (HINT-10 cancels by it).
    pub jti: &'a str,
    /// When it is made.
    pub iat: UnixTime,
    /// Its lifetime from the latest moment it can be handed out (the request's expiry): at
    /// least 180 days (TKN-5).
    pub lifetime: u32,
}

/// TKN-4…9: signs the id_token with the current signing key: PS256, `kid` and `x5t#S256` in
/// the header; `acr` and `auth_time` always; no `nonce`, `c_hash`, `s_hash`.
pub fn sign(content: &IdTokenContent<'_>, keys: &KeySet) -> Result<String, ProtocolError> {
    let key = keys.active();
    let thumbprint = key
        .certificate()
        .and_then(|c| b64url_decode(&c.x5t_s256))
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(ProtocolError::ServerError(
            "the signing key has no certificate",
        ))?;
    let header = Header::empty()
        .with_key_id(key.kid())
        .with_certificate_thumbprint(thumbprint)
        .with_token_type("JWT");
    let client_id = content.request.client_id.as_str();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(content.issuer.as_str()));
    claims.insert("sub".into(), json!(content.user.sub));
    claims.insert("aud".into(), json!(client_id));
    claims.insert("azp".into(), json!(client_id));
    claims.insert("iat".into(), json!(content.iat));
    // TKN-5: 180 days from the moment the client receives it, which is at the latest when the
    // request expires (an approved request is redeemable until then), not from the approval.
    claims.insert(
        "exp".into(),
        json!(content.request.expires_at.max(content.iat) + i64::from(content.lifetime)),
    );
    claims.insert("jti".into(), json!(content.jti));
    claims.insert("auth_time".into(), json!(content.decision.auth_time));
    claims.insert("acr".into(), json!(content.decision.acr));
    if !content.decision.amr.is_empty() {
        claims.insert("amr".into(), json!(content.decision.amr));
    }
    claims.insert("at_hash".into(), json!(content.at_hash));
    document_claims(&content.request.id_token_claims, content.user, &mut claims);
    // Signed with `rsa` 0.9 through jwt-compact: inside Wasm its signature costs about half of
    // 0.10's (BENCHMARKS.md, device approval), while 0.10 verifies faster (jose::ps256).
    Rsa::ps256()
        .token(&header, &Claims::new(claims), key.private_key())
        .map_err(|_| ProtocolError::ServerError("the id_token cannot be signed"))
}

/// The longest an id_token of this server can live (the top of `id_token_ttl`'s range, from
/// the latest expiry of the request it answers, at most `auth_req_ttl`'s top after approval):
/// how long a cancellation must be remembered.
pub const LONGEST_LIFETIME: i64 = 157_680_000 + 360;

/// A cancelled id_token, by `jti` (HINT-10).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cancelled {
    /// When the holder institution cancelled it.
    pub at: UnixTime,
}

/// A holder's "not before" (HINT-10): their id_tokens issued before it are cancelled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotBefore {
    /// The time.
    pub not_before: UnixTime,
}

/// BR-CIBA 5.2.2-20: cancels the id_token `jti`.
pub fn cancel_jti(
    store: &dyn KeyValue,
    jti: &str,
    now: UnixTime,
    random: &dyn Random,
) -> Result<(), StoreError> {
    let keep_until = now + LONGEST_LIFETIME + SKEW;
    // Announced to the purge with it, in one set-many (issue 18): the cancellation goes once
    // no id_token it names can be valid.
    let mut batch = crate::store::Batch::new();
    crate::store::purge::announce(store, keep_until, &[&keys::id_token_cancelled(jti)])?;
    batch.put(
        &keys::id_token_cancelled(jti),
        &Cancelled { at: now },
        keep_until,
        random,
    )?;
    batch.write(store)
}

/// BR-CIBA 5.2.2-20: cancels every id_token of `sub` issued before `not_before`, and returns
/// the "not before" in force. A later call can only move the time forward, however calls
/// race: a cancellation is never undone.
///
/// Every change is a compare-and-swap over the record as read, except the first: Spin's
/// SQLite store turns a swap into an absent key into an upsert, so two first cancellations
/// racing would both write, the later possibly lowering the time. So only one caller may write
/// into the absent key: the one that takes the holder's first-write right
/// ([`first_write_right`]); the others wait for its record (a few re-reads, briefly paused)
/// and then raise it by compare-and-swap. A caller that cannot take the right nor see the
/// record gives up with a store error (the device retries).
pub fn cancel_before(
    store: &dyn KeyValue,
    sub: &str,
    not_before: UnixTime,
    now: UnixTime,
    random: &dyn Random,
) -> Result<UnixTime, StoreError> {
    let key = keys::id_token_not_before(sub);
    let out_of_range = || StoreError("not_before is out of range".into());
    let mut first_writer = false;
    for attempt in 0..FIRST_WRITE_WAITS {
        let raw = store.get(&key)?;
        if raw.is_none() && !first_writer {
            first_writer = first_write_right(store, sub, now)?;
            if !first_writer {
                pause(attempt);
                continue;
            }
        }
        let current = raw
            .clone()
            .and_then(|r| record::decode::<NotBefore>(r, now))
            .map(|c| c.data.not_before);
        if let Some(current) = current
            && current >= not_before
        {
            return Ok(current);
        }
        // Kept while an id_token issued before it can still be valid.
        let keep_until = not_before
            .max(now)
            .checked_add(LONGEST_LIFETIME + SKEW)
            .ok_or_else(out_of_range)?;
        match record::swap(
            store,
            &key,
            raw.as_deref(),
            &NotBefore { not_before },
            keep_until,
            random,
        )? {
            Swap::Swapped => return Ok(not_before),
            // Changed since read (or a store that reports written swaps as failed): read again.
            Swap::Conflict => continue,
        }
    }
    Err(StoreError(
        "the holder's not-before could not be written: retry".into(),
    ))
}

/// How many times [`cancel_before`] reads the record before it gives up.
const FIRST_WRITE_WAITS: u32 = 40;

/// The time buckets of the first-write right: seconds.
const FIRST_WRITE_BUCKET: UnixTime = 30;

/// Whether this caller may write a holder's first "not before" into the absent key: it
/// takes the counter of its time bucket first ([`first_use`]), and then finds the previous
/// bucket's untaken, so that of two callers on either side of a bucket's end only one writes.
/// A writer that died before writing holds the right for two buckets at most: the next
/// bucket's callers see it taken and give theirs back, the one after that's find theirs free.
fn first_write_right(store: &dyn KeyValue, sub: &str, now: UnixTime) -> Result<bool, StoreError> {
    let bucket = now.div_euclid(FIRST_WRITE_BUCKET);
    let own = keys::id_token_not_before_first(sub, bucket);
    let forget_after = (bucket + 2) * FIRST_WRITE_BUCKET;
    if !first_use(store, &own, forget_after)? {
        return Ok(false);
    }
    // The counter was just made (or freed and taken again): announced to the sweep, so that
    // a holder's first-write counters go with their buckets.
    if let Err(e) = crate::store::purge::announce(store, forget_after, &[&own]) {
        let _ = release(store, &own, forget_after);
        return Err(e);
    }
    match was_used(store, &keys::id_token_not_before_first(sub, bucket - 1)) {
        Ok(false) => Ok(true),
        Ok(true) => {
            release(store, &own, forget_after)?;
            Ok(false)
        }
        Err(e) => {
            let _ = release(store, &own, forget_after);
            Err(e)
        }
    }
}

/// A short wait for another caller's first write: 2 ms, growing to 50 ms.
fn pause(attempt: u32) {
    let ms = (2 * u64::from(attempt) + 2).min(50);
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// HINT-10: whether the holder institution cancelled this id_token, by its `jti` or by a
/// "not before" of its holder later than its `iat`.
pub fn is_cancelled(
    hint: &VerifiedIdTokenHint,
    store: &dyn KeyValue,
    now: UnixTime,
) -> Result<bool, StoreError> {
    if let Some(jti) = &hint.jti
        && record::get::<Cancelled>(store, &keys::id_token_cancelled(jti), now)?.is_some()
    {
        return Ok(true);
    }
    Ok(
        match record::get::<NotBefore>(store, &keys::id_token_not_before(&hint.sub), now)? {
            Some(nb) => hint.iat.is_none_or(|iat| iat < nb.data.not_before),
            None => false,
        },
    )
}

fn invalid(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidIdTokenHint(why)
}

/// An id_token hint that this server issued to this client and that has not expired.
#[derive(Debug, Clone)]
pub struct VerifiedIdTokenHint {
    /// `sub`: the holder it names.
    pub sub: String,
    /// `jti`, when present (HINT-10 cancellation).
    pub jti: Option<String>,
    /// `iat` (HINT-10: a per-holder "not before").
    pub iat: Option<UnixTime>,
}

/// HINT-3…8: verifies `compact` with the current or a retired signing key (KEY-6), for
/// `client_id`. Expiry is checked only after the signature (HINT-8).
pub fn verify_hint(
    compact: &str,
    keys: &KeySet,
    issuer: &Issuer,
    client_id: &str,
    now: UnixTime,
) -> Result<VerifiedIdTokenHint, ProtocolError> {
    if compact.len() > 16 * 1024 {
        return Err(invalid("the id_token_hint is too large"));
    }
    // HINT-4: a kid is required, so no key is tried blindly.
    let has_kid = jwt_compact::UntrustedToken::new(compact)
        .ok()
        .is_some_and(|t| t.header().key_id.is_some());
    if compact.split('.').count() == 3 && !has_kid {
        return Err(invalid("the id_token_hint header has no kid"));
    }
    let verified = verify_ps256(compact, keys.all().iter().map(|k| (k.kid(), k.verifier())))
        .map_err(|e| {
            invalid(match e {
                JwsError::Encrypted => "the id_token_hint must be a signed id_token",
                JwsError::AlgorithmNotAllowed => "the id_token_hint is not signed with PS256",
                JwsError::UnknownKey => "the id_token_hint was not signed by this server",
                JwsError::BadSignature => "the id_token_hint signature does not verify",
                JwsError::Malformed | JwsError::CriticalHeader | JwsError::MalformedClaims => {
                    "the id_token_hint is malformed"
                }
            })
        })?;
    if !verified.has_certificate_thumbprint {
        return Err(invalid("the id_token_hint header has no x5t#S256"));
    }
    if verified
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(invalid("the id_token_hint typ is not JWT"));
    }
    if verified.str("iss") != Some(issuer.as_str()) {
        return Err(invalid("the id_token_hint was not issued by this server"));
    }
    let azp = verified.claims.get("azp");
    let for_client = match verified.claims.get("aud") {
        Some(Value::String(a)) => a == client_id,
        Some(Value::Array(list)) => {
            list.iter().any(|a| a.as_str() == Some(client_id)) && azp.is_some()
        }
        _ => false,
    } && azp.is_none_or(|a| a.as_str() == Some(client_id));
    if !for_client {
        return Err(invalid("the id_token_hint was issued to another client"));
    }
    let exp = verified
        .exp
        .ok_or(invalid("the id_token_hint has no exp"))?;
    if exp <= now - SKEW {
        return Err(ProtocolError::ExpiredIdTokenHint(
            "the id_token_hint has expired",
        ));
    }
    let sub = verified
        .str("sub")
        .filter(|s| !s.is_empty())
        .ok_or(invalid("the id_token_hint has no sub"))?
        .to_string();
    Ok(VerifiedIdTokenHint {
        sub,
        jti: verified.str("jti").map(str::to_string),
        iat: verified.iat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::CountingRandom;
    use crate::store::memory::MemoryStore;
    use crate::store::{KeyPage, NextValue};

    /// TKN-4: a client that registered encryption gets the JWS sealed to its first enc key;
    /// one that did not gets the JWS itself; one that publishes no enc key gets
    /// invalid_client_metadata, with nothing written.
    #[test]
    fn tkn_4_for_client_seals_the_jws_only_for_clients_that_registered_it() {
        use crate::client::fetch::NoFetch;
        use crate::client::registry::Clients;
        use crate::fixtures::{client, key_source, keys};
        use crate::jose::jwk::KeyUse;
        let enc_private = devkeys::private_key_from_jwk(&keys().encryption).unwrap();
        let enc_public = devkeys::public_jwk(
            &devkeys::rsa::RsaPublicKey::from(&enc_private),
            "enc-1",
            "enc",
            "RSA-OAEP",
        );
        let mut plain = client("plain");
        plain["jwks"] = json!({ "keys": [keys().client_public, enc_public] });
        let mut sealed = plain.clone();
        sealed["client_id"] = json!("sealed");
        sealed["id_token_encrypted_response_alg"] = json!("RSA-OAEP");
        let mut keyless = client("keyless");
        keyless.as_object_mut().unwrap().remove("jwks");
        keyless["jwks_uri"] =
            json!("https://keystore.directory.openbankingbrasil.org.br/o/s/application.jwks");
        keyless["id_token_encrypted_response_alg"] = json!("RSA-OAEP");
        let clients = Clients::parse(&json!([plain, sealed, keyless]).to_string()).unwrap();
        let store = MemoryStore::new();
        let deps = Deps {
            store: &store,
            clock: &crate::clock::FixedClock(1_800_000_000),
            random: &CountingRandom::default(),
            fetch: &NoFetch,
        };
        let source = key_source();
        let jws = "eyJhbGciOiJQUzI1NiJ9.e30.c2ln";
        let got = for_client(jws, clients.get("plain").unwrap(), &source, &deps).unwrap();
        assert!(matches!(got, Cow::Borrowed(t) if t == jws));
        let got = for_client(jws, clients.get("sealed").unwrap(), &source, &deps).unwrap();
        let enc_keys = KeySet::parse(
            "enc",
            &json!({ "keys": [keys().encryption] }).to_string(),
            KeyUse::Encryption,
        )
        .unwrap();
        let opened =
            crate::jose::jwe::decrypt(&got, &enc_keys, &CountingRandom::default()).unwrap();
        assert_eq!(opened, jws.as_bytes());
        // By jwks_uri with the keystore unreachable: 503, not the client's fault.
        let got = for_client(jws, clients.get("keyless").unwrap(), &source, &deps);
        assert!(matches!(got, Err(ProtocolError::RetryLater(..))), "{got:?}");
        assert!(store.is_empty(), "nothing written");
        // Published, but with no enc key: the client's metadata promises what its set lacks.
        struct SigningKeyOnly;
        impl crate::client::fetch::Fetch for SigningKeyOnly {
            fn get(
                &self,
                _: &crate::client::fetch::FetchRequest<'_>,
            ) -> Result<crate::client::fetch::FetchResponse, crate::client::fetch::FetchError>
            {
                Ok(crate::client::fetch::FetchResponse {
                    status: 200,
                    headers: Vec::new(),
                    body: json!({ "keys": [keys().client_public] })
                        .to_string()
                        .into_bytes(),
                })
            }
        }
        let deps = Deps {
            fetch: &SigningKeyOnly,
            ..deps
        };
        // A fresh instance: the one above waits 30 s after its failed fetch (KEY-14).
        let got = for_client(jws, clients.get("keyless").unwrap(), &key_source(), &deps);
        assert!(
            matches!(got, Err(ProtocolError::InvalidClientMetadata(_))),
            "{got:?}"
        );
    }

    /// Spin's SQLite store: a swap into a key that was absent is an unconditional upsert.
    #[derive(Default)]
    struct Upserting(MemoryStore);

    impl KeyValue for Upserting {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.get(key)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.0.set(key, value)
        }
        fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.0.delete(key)
        }
        fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&[u8]>,
            new: &[u8],
        ) -> Result<Swap, StoreError> {
            match expected {
                None => {
                    // The gap between Spin's read and its upsert, where another writer lands.
                    std::thread::yield_now();
                    self.0.set(key, new).map(|()| Swap::Swapped)
                }
                Some(_) => self.0.compare_and_swap(key, expected, new),
            }
        }
        fn read_and_swap(
            &self,
            key: &str,
            next: &mut NextValue<'_>,
        ) -> Result<Option<Swap>, StoreError> {
            self.0.read_and_swap(key, next)
        }
        fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
            self.0.increment(key, delta)
        }
        fn list_keys(&self, cursor: Option<&str>) -> Result<KeyPage, StoreError> {
            self.0.list_keys(cursor)
        }
    }

    const NOW: UnixTime = 1_800_000_000;

    fn in_force(store: &dyn KeyValue) -> UnixTime {
        record::get::<NotBefore>(store, &keys::id_token_not_before("h"), NOW)
            .unwrap()
            .unwrap()
            .data
            .not_before
    }

    #[test]
    fn hint_10_a_not_before_only_rises() {
        let store = MemoryStore::new();
        let random = CountingRandom::default();
        assert_eq!(
            cancel_before(&store, "h", NOW - 10, NOW, &random),
            Ok(NOW - 10)
        );
        assert_eq!(
            cancel_before(&store, "h", NOW - 50, NOW, &random),
            Ok(NOW - 10)
        );
        assert_eq!(
            cancel_before(&store, "h", NOW + 5, NOW, &random),
            Ok(NOW + 5)
        );
        assert_eq!(in_force(&store), NOW + 5);
    }

    #[test]
    fn hint_10_two_first_cancellations_racing_on_an_upserting_store_keep_the_higher() {
        for trial in 0..100 {
            let store = Upserting::default();
            let random = CountingRandom::default();
            let barrier = std::sync::Barrier::new(2);
            let (low, high) = (NOW - 1000, NOW - 10);
            let order = if trial % 2 == 0 {
                [low, high]
            } else {
                [high, low]
            };
            std::thread::scope(|s| {
                for value in order {
                    let (store, random, barrier) = (&store, &random, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        cancel_before(store, "h", value, NOW, random).unwrap();
                    });
                }
            });
            assert_eq!(in_force(&store), high, "trial {trial}");
        }
    }

    #[test]
    fn hint_10_the_first_write_right_is_one_caller_s_and_comes_back_after_two_buckets() {
        let store = MemoryStore::new();
        assert_eq!(first_write_right(&store, "h", NOW), Ok(true));
        assert_eq!(first_write_right(&store, "h", NOW), Ok(false));
        // Across a bucket's end, the previous bucket's holder keeps it.
        let next = NOW + FIRST_WRITE_BUCKET;
        assert_eq!(first_write_right(&store, "h", next), Ok(false));
        // A writer that died: two buckets on, the right is free again.
        assert_eq!(
            first_write_right(&store, "h", NOW + 2 * FIRST_WRITE_BUCKET),
            Ok(true)
        );
        assert_eq!(first_write_right(&store, "other", NOW), Ok(true));
    }
}
