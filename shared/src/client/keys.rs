//! Where every endpoint gets a client's public keys (KEY-8), in one place: from the
//! registration (`jwks` by value, static clients only) or from its `jwks_uri` through the
//! instance's [`Keystore`]. Client assertions (CLI-4), request objects (BCA-5) and the QR
//! code's login_hint_token (HINT-15) all verify through [`KeySource::verifiers`], and id_tokens
//! are encrypted to [`KeySource::encryption_key`] (TKN-4); however a
//! client was found (the `clients` variable, or a registration in the store), its keys come
//! from here.

use std::sync::Arc;

use crate::client::keystore::{AllowedOrigins, Keystore, KeystoreUnavailable};
use crate::client::registry::{Client, ClientKeys, Clients};
use crate::config::{ConfigError, Variables, var};
use crate::endpoints::Deps;
use crate::jose::jwk::{KeyUse, PublicJwk};
use crate::jose::ps256::Ps256VerifyingKey;

/// The allowed origins and the key cache of one component instance.
#[derive(Debug)]
pub struct KeySource {
    allowed: AllowedOrigins,
    keystore: Keystore,
}

impl KeySource {
    /// Reads `jwks_allowed_hosts` and `client_jwks_ttl`.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self::new(
            AllowedOrigins::load(vars)?,
            Keystore::load(vars)?,
        ))
    }

    /// From parts already read.
    pub fn new(allowed: AllowedOrigins, keystore: Keystore) -> Self {
        Self { allowed, keystore }
    }

    /// [`KeySource::load`], also checking that every static client's `jwks_uri` may be
    /// fetched (KEY-10): a bad one is a configuration error naming `clients`, reported once,
    /// rather than a 503 on each of its requests.
    pub fn load_for(vars: &dyn Variables, clients: &Clients) -> Result<Self, ConfigError> {
        let source = Self::load(vars)?;
        for (i, client) in clients.all().iter().enumerate() {
            if let ClientKeys::JwksUri(uri) = &client.keys
                && let Err(why) = source.allowed.jwks_uri(uri)
            {
                return Err(ConfigError::new(
                    var::CLIENTS,
                    format!("clients[{i}]: jwks_uri {why}"),
                ));
            }
        }
        Ok(source)
    }

    /// `jwks_allowed_hosts`.
    pub fn allowed(&self) -> &AllowedOrigins {
        &self.allowed
    }

    /// The key cache.
    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    /// The keys of `client` that may verify the JWS `compact` (KEY-8, KEY-9). By value: all
    /// of them, [`crate::jose::jws::verify_ps256`] picks by `kid`. By `jwks_uri`: the one key
    /// the header's `kid` names, fetched or refetched as KEY-12…14 say; a JWS without a `kid`
    /// cannot pick among published keys and finds none [decision]. No key found is the
    /// endpoint's own refusal (an unknown key); `Err` when the keys cannot be had (503,
    /// KEY-14).
    pub fn verifiers<'c>(
        &self,
        deps: &Deps<'_>,
        client: &'c Client,
        compact: &str,
    ) -> Result<Verifiers<'c>, KeystoreUnavailable> {
        match &client.keys {
            ClientKeys::Jwks(keys) => Ok(Verifiers(Inner::Registered(keys))),
            ClientKeys::JwksUri(uri) => {
                let Some(kid) = unverified_kid(compact) else {
                    return Ok(Verifiers(Inner::Published(None)));
                };
                // A URI not on the list is refused at load for static clients; a registration
                // stored earlier under another list finds no key rather than fetching.
                let Ok(uri) = self.allowed.jwks_uri(uri) else {
                    return Ok(Verifiers(Inner::Published(None)));
                };
                let key = self.keystore.key(deps, &uri, &kid, KeyUse::Signature)?;
                Ok(Verifiers(Inner::Published(key)))
            }
        }
    }

    /// The key `client`'s id_tokens are encrypted to (TKN-4): the first of its keys with
    /// `use` enc and `alg` RSA-OAEP or absent (KEY-11; a key with neither `use` nor `alg`
    /// counts as a signing key, as OIDC Core 10.1 wants `use` on every key of a set that
    /// holds both kinds). By value: from its `jwks`. By `jwks_uri`: from the published set,
    /// cached and refetched as for signatures, so a client whose assertion was just verified
    /// costs nothing more (KEY-15). `Ok(None)`: the client publishes no such key; `Err`: no
    /// set can be had (503, KEY-14).
    pub fn encryption_key(
        &self,
        deps: &Deps<'_>,
        client: &Client,
    ) -> Result<Option<Arc<PublicJwk>>, KeystoreUnavailable> {
        match &client.keys {
            ClientKeys::Jwks(keys) => Ok(keys
                .iter()
                .find(|k| k.key_use == KeyUse::Encryption)
                .map(|k| Arc::new(k.clone()))),
            ClientKeys::JwksUri(uri) => {
                let Ok(uri) = self.allowed.jwks_uri(uri) else {
                    return Ok(None);
                };
                self.keystore.first_key(deps, &uri, KeyUse::Encryption)
            }
        }
    }
}

/// The keys [`KeySource::verifiers`] found.
pub struct Verifiers<'c>(Inner<'c>);

enum Inner<'c> {
    Registered(&'c [PublicJwk]),
    Published(Option<Arc<PublicJwk>>),
}

impl Verifiers<'_> {
    /// `(kid, verifier)` pairs, as [`crate::jose::jws::verify_ps256`] takes them.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&str, &Ps256VerifyingKey)> + '_> {
        match &self.0 {
            Inner::Registered(keys) => Box::new(
                keys.iter()
                    .filter(|k| k.key_use == KeyUse::Signature)
                    .map(|k| (k.kid.as_str(), &k.verifier)),
            ),
            Inner::Published(key) => Box::new(key.iter().map(|k| (k.kid.as_str(), &k.verifier))),
        }
    }
}

/// The `kid` of a compact JWS's protected header, read before verification only to choose
/// the key (KEY-9); nothing else of an unverified token is trusted.
fn unverified_kid(compact: &str) -> Option<String> {
    let header = compact.split('.').next()?;
    if header.len() > 4096 {
        return None;
    }
    let bytes = crate::jose::b64url_decode(header)?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::client::fetch::{Fetch, FetchError, FetchRequest, FetchResponse};
    use crate::clock::{CountingRandom, FixedClock};
    use crate::fixtures::{client_jws, key_source, keys};
    use crate::jose::jws::{JwsError, verify_ps256};
    use crate::store::memory::MemoryStore;

    const URI: &str = "https://keystore.directory.openbankingbrasil.org.br/o/s/application.jwks";

    /// Serves the fixture client's key, or fails; counts.
    struct Published(bool, AtomicUsize);

    impl Fetch for Published {
        fn get(&self, request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            assert_eq!(request.url, URI);
            if !self.0 {
                return Err(FetchError::Timeout);
            }
            Ok(FetchResponse {
                status: 200,
                headers: Vec::new(),
                body: json!({ "keys": [keys().client_public] })
                    .to_string()
                    .into_bytes(),
            })
        }
    }

    fn clients(uri: &str) -> Clients {
        let mut client = crate::fixtures::client("tpp-1");
        let client = client.as_object_mut().unwrap();
        client.remove("jwks");
        client.insert("jwks_uri".into(), json!(uri));
        Clients::parse(&json!([client]).to_string()).unwrap()
    }

    #[test]
    fn key_8_a_jwks_uri_client_verifies_with_its_published_key_only() {
        let clients = clients(URI);
        let client = clients.get("tpp-1").unwrap();
        let source = key_source();
        let (store, random, fetch) = (
            MemoryStore::new(),
            CountingRandom::default(),
            Published(true, AtomicUsize::new(0)),
        );
        let deps = Deps {
            store: &store,
            clock: &FixedClock(1_800_000_000),
            random: &random,
            fetch: &fetch,
        };
        let good = client_jws("client-key-1", json!({ "iss": "tpp-1" }));
        let keys = source.verifiers(&deps, client, &good).unwrap();
        assert!(verify_ps256(&good, keys.iter()).is_ok());
        // Another kid: the same key signed it, but the set does not publish it under that name.
        let other = client_jws("other-kid", json!({ "iss": "tpp-1" }));
        let keys = source.verifiers(&deps, client, &other).unwrap();
        assert_eq!(
            verify_ps256(&other, keys.iter()).err(),
            Some(JwsError::UnknownKey)
        );
        assert_eq!(fetch.1.load(Ordering::SeqCst), 1, "one fetch, then memory");
    }

    #[test]
    fn key_14_no_key_set_to_be_had_is_an_error_not_an_unknown_key() {
        let clients = clients(URI);
        let (store, random, fetch) = (
            MemoryStore::new(),
            CountingRandom::default(),
            Published(false, AtomicUsize::new(0)),
        );
        let deps = Deps {
            store: &store,
            clock: &FixedClock(1_800_000_000),
            random: &random,
            fetch: &fetch,
        };
        let jws = client_jws("client-key-1", json!({ "iss": "tpp-1" }));
        let got = key_source().verifiers(&deps, clients.get("tpp-1").unwrap(), &jws);
        assert!(matches!(got, Err(KeystoreUnavailable)));
        assert!(store.is_empty(), "nothing written");
    }

    /// Serves `set` (or fails); counts.
    struct Serves(Option<serde_json::Value>, AtomicUsize);

    impl Fetch for Serves {
        fn get(&self, _: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
            self.1.fetch_add(1, Ordering::SeqCst);
            let set = self.0.as_ref().ok_or(FetchError::Timeout)?;
            Ok(FetchResponse {
                status: 200,
                headers: Vec::new(),
                body: set.to_string().into_bytes(),
            })
        }
    }

    /// A public RSA key of 2048 bits as a JWK with `kid`, `use` and `alg` (`None`: absent).
    fn enc_jwk(kid: &str, key_use: Option<&str>, alg: Option<&str>) -> serde_json::Value {
        let private = devkeys::private_key_from_jwk(&keys().encryption).unwrap();
        let mut jwk = devkeys::public_jwk(
            &devkeys::rsa::RsaPublicKey::from(&private),
            kid,
            "enc",
            "RSA-OAEP",
        );
        let o = jwk.as_object_mut().unwrap();
        o.remove("use");
        o.remove("alg");
        if let Some(u) = key_use {
            o.insert("use".into(), json!(u));
        }
        if let Some(a) = alg {
            o.insert("alg".into(), json!(a));
        }
        jwk
    }

    fn encryption_kid(
        published: Option<serde_json::Value>,
    ) -> Result<Option<String>, KeystoreUnavailable> {
        let clients = clients(URI);
        let (store, random, fetch) = (
            MemoryStore::new(),
            CountingRandom::default(),
            Serves(published, AtomicUsize::new(0)),
        );
        let deps = Deps {
            store: &store,
            clock: &FixedClock(1_800_000_000),
            random: &random,
            fetch: &fetch,
        };
        let got = key_source().encryption_key(&deps, clients.get("tpp-1").unwrap());
        if got.is_err() {
            assert!(store.is_empty(), "nothing written");
        }
        got.map(|k| k.map(|k| k.kid.clone()))
    }

    #[test]
    fn tkn_4_the_first_rsa_oaep_enc_key_of_the_published_set_is_chosen() {
        let set = |keys: Vec<serde_json::Value>| Some(json!({ "keys": keys }));
        // Signing keys (also one with neither use nor alg) are never chosen; RSA-OAEP-256 and
        // RSA1_5 are not admitted (KEY-11); the first admitted enc key wins.
        let got = encryption_kid(set(vec![
            keys().client_public.clone(),
            enc_jwk("no-use-no-alg", None, None),
            enc_jwk("oaep-256", Some("enc"), Some("RSA-OAEP-256")),
            enc_jwk("rsa1_5", None, Some("RSA1_5")),
            enc_jwk("enc-a", Some("enc"), None),
            enc_jwk("enc-b", Some("enc"), Some("RSA-OAEP")),
        ]));
        assert_eq!(got, Ok(Some("enc-a".to_string())));
        // No `use`, alg RSA-OAEP: an encryption key.
        let got = encryption_kid(set(vec![enc_jwk("alg-only", None, Some("RSA-OAEP"))]));
        assert_eq!(got, Ok(Some("alg-only".to_string())));
        // None: the endpoint's refusal; no set at all: 503 (KEY-14).
        assert_eq!(
            encryption_kid(set(vec![keys().client_public.clone()])),
            Ok(None)
        );
        assert_eq!(encryption_kid(None), Err(KeystoreUnavailable));
    }

    #[test]
    fn tkn_4_key_9_by_value_the_enc_key_encrypts_and_never_verifies() {
        let mut client = crate::fixtures::client("tpp-1");
        client["jwks"] = json!({ "keys": [
            enc_jwk("client-key-1", Some("enc"), Some("RSA-OAEP")),
            keys().client_public,
            enc_jwk("enc-b", Some("enc"), None),
        ] });
        let clients = Clients::parse(&json!([client]).to_string()).unwrap();
        let tpp = clients.get("tpp-1").unwrap();
        let (store, random, fetch) = (
            MemoryStore::new(),
            CountingRandom::default(),
            Serves(None, AtomicUsize::new(0)),
        );
        let deps = Deps {
            store: &store,
            clock: &FixedClock(1_800_000_000),
            random: &random,
            fetch: &fetch,
        };
        let source = key_source();
        let key = source.encryption_key(&deps, tpp).unwrap().unwrap();
        assert_eq!(
            (key.kid.as_str(), key.key_use),
            ("client-key-1", KeyUse::Encryption)
        );
        // The enc key shares the signing key's kid: only the signing key verifies.
        let jws = client_jws("client-key-1", json!({ "iss": "tpp-1" }));
        let verifiers = source.verifiers(&deps, tpp, &jws).unwrap();
        assert_eq!(verifiers.iter().count(), 1);
        assert!(verify_ps256(&jws, verifiers.iter()).is_ok());
        assert_eq!(fetch.1.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn key_10_a_static_jwks_uri_off_jwks_allowed_hosts_is_a_configuration_error() {
        let vars = std::collections::HashMap::new();
        assert!(KeySource::load_for(&vars, &clients(URI)).is_ok());
        let e = KeySource::load_for(&vars, &clients("https://tpp.example/jwks")).unwrap_err();
        assert_eq!(e.variable, var::CLIENTS);
        assert_eq!(
            e.problem,
            "clients[0]: jwks_uri is not on jwks_allowed_hosts"
        );
    }
}
