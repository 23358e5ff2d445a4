//! Key material for the unit tests, generated once per test run (never committed).

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::config::var;

/// Two signing keys (current, retired) and one encryption key.
pub struct Keys {
    pub signing: Value,
    pub retired: Value,
    pub encryption: Value,
    pub client_public: Value,
    pub client_key: devkeys::rsa::RsaPrivateKey,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let client = devkeys::rsa_key(2048).unwrap();
        Keys {
            signing: devkeys::signing_jwk("sig-current").unwrap(),
            retired: devkeys::signing_jwk("sig-retired").unwrap(),
            encryption: devkeys::encryption_jwk("enc-1").unwrap(),
            client_public: devkeys::public_jwk(
                &devkeys::rsa::RsaPublicKey::from(&client),
                "client-key-1",
                "sig",
                "PS256",
            ),
            client_key: client,
        }
    })
}

/// A certificate as the TLS-terminating proxy forwards it (URL-encoded PEM), and its
/// `x5t#S256`.
pub fn certificate(subject: &str) -> (String, String) {
    use base64::Engine;
    let key = devkeys::rsa_key(2048).unwrap();
    let der = devkeys::self_signed_certificate(&key, subject, 30).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let pem = format!("-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n");
    (
        percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string(),
        crate::jose::x5t_s256(&der),
    )
}

/// The bank backend's certificate on the device API (`device_api_certificates`).
pub fn device_certificate() -> &'static (String, String) {
    static CERT: OnceLock<(String, String)> = OnceLock::new();
    CERT.get_or_init(|| certificate("CN=bank-backend,O=Bank,C=BR"))
}

/// A client registration that passes every check.
pub fn client(id: &str) -> Value {
    json!({
        "client_id": id,
        "jwks": { "keys": [keys().client_public] },
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": "openid consents payments",
        "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
    })
}

/// Every variable, each valid.
pub fn variables() -> HashMap<&'static str, String> {
    let k = keys();
    HashMap::from([
        (var::ISSUER, "https://auth.bank.example".to_string()),
        (
            var::SIGNING_KEYS,
            json!({ "keys": [k.signing, k.retired] }).to_string(),
        ),
        (
            var::ENCRYPTION_KEYS,
            json!({ "keys": [k.encryption] }).to_string(),
        ),
        (var::CLIENTS, json!([client("tpp-1")]).to_string()),
        (
            var::USERS,
            json!([{ "sub": "u1", "cpf": "52998224725" }]).to_string(),
        ),
        (var::DEVICE_API_TOKEN, "d".repeat(43)),
        (var::CLIENT_CERT_HEADER, "x-ssl-client-cert".to_string()),
        (
            var::DEVICE_API_CERTIFICATES,
            json!([device_certificate().1]).to_string(),
        ),
        (var::ACCESS_TOKEN_TTL, "900".to_string()),
        (var::AUTH_REQ_TTL, "300".to_string()),
        (var::POLL_INTERVAL, "5".to_string()),
        (var::ID_TOKEN_TTL, "15552000".to_string()),
        (var::REFRESH_TOKEN_TTL, "31536000".to_string()),
        (var::CLIENT_RATE_LIMIT, "600".to_string()),
        (var::CLIENT_PENDING_LIMIT, "1000".to_string()),
        (var::HOLDER_RATE_LIMIT, "20".to_string()),
        (var::HOLDER_PENDING_LIMIT, "5".to_string()),
        (var::CONSENT_RATE_LIMIT, "300".to_string()),
        (var::CLIENT_CREDENTIALS_RATE_LIMIT, "300".to_string()),
    ])
}

/// A PS256 JWS of `claims` with the client's key.
pub fn client_jws(kid: &str, claims: Value) -> String {
    use jwt_compact::{AlgorithmExt, Claims, Header};
    jwt_compact::alg::Rsa::ps256()
        .token(
            &Header::empty().with_key_id(kid),
            &Claims::new(claims),
            &keys().client_key,
        )
        .unwrap()
}

/// The key source of an endpoint with the default `jwks_allowed_hosts` and `client_jwks_ttl`.
pub fn key_source() -> crate::client::keys::KeySource {
    crate::client::keys::KeySource::load(&HashMap::new()).unwrap()
}

/// Verifies `compact` as `client`'s request object at `now`, with a fresh store and no
/// outbound HTTP (clients with keys by value).
pub fn verify_request_object(
    compact: &str,
    client: &crate::client::registry::Client,
    issuer: &crate::config::Issuer,
    now: crate::clock::UnixTime,
) -> Result<crate::request_object::VerifiedRequestObject, crate::error::ProtocolError> {
    let store = crate::store::memory::MemoryStore::new();
    let deps = crate::endpoints::Deps {
        store: &store,
        clock: &crate::clock::FixedClock(now),
        random: &crate::clock::CountingRandom::default(),
        fetch: &crate::client::fetch::NoFetch,
    };
    crate::request_object::verify(compact, client, issuer, &key_source(), &deps)
}

/// A memory store a test can hook: reads of some keys answer absent (as to a racer that read
/// before another's write), and compare-and-swaps can be reported lost after they wrote
/// (Spin 4.1's Redis store), with something run in between (a racer's write).
pub struct Hooked<'a> {
    /// The store beneath.
    pub store: &'a crate::store::memory::MemoryStore,
    /// Keys read as absent.
    pub hide: fn(&str) -> bool,
    /// When set, every compare-and-swap writes, runs this, then reports a conflict.
    pub swaps_reported_lost: Option<fn(&crate::store::memory::MemoryStore, &str)>,
}

impl<'a> Hooked<'a> {
    /// `store` as it is.
    pub fn new(store: &'a crate::store::memory::MemoryStore) -> Self {
        Self {
            store,
            hide: |_| false,
            swaps_reported_lost: None,
        }
    }
}

impl crate::store::KeyValue for Hooked<'_> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        if (self.hide)(key) {
            return Ok(None);
        }
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8]) -> Result<(), crate::store::StoreError> {
        self.store.set(key, value)
    }
    fn delete(&self, key: &str) -> Result<(), crate::store::StoreError> {
        self.store.delete(key)
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<crate::store::Swap, crate::store::StoreError> {
        let swap = self.store.compare_and_swap(key, expected, new)?;
        match self.swaps_reported_lost {
            Some(between) => {
                between(self.store, key);
                Ok(crate::store::Swap::Conflict)
            }
            None => Ok(swap),
        }
    }
    fn read_and_swap(
        &self,
        key: &str,
        next: &mut crate::store::NextValue<'_>,
    ) -> Result<Option<crate::store::Swap>, crate::store::StoreError> {
        self.store.read_and_swap(key, next)
    }
    fn increment(&self, key: &str, delta: i64) -> Result<i64, crate::store::StoreError> {
        self.store.increment(key, delta)
    }
    fn list_keys(
        &self,
        cursor: Option<&str>,
    ) -> Result<crate::store::KeyPage, crate::store::StoreError> {
        self.store.list_keys(cursor)
    }
}
