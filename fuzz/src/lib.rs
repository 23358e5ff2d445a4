//! The fuzz harness: one function per parser of the shared crate that sees outside bytes,
//! each called by its target in `fuzz_targets/` and by `seed-corpus`, which writes the seeds
//! in `corpus/` (issue 9, part 2).
//!
//! Everything is fixed, so that a crash reproduces from its input alone: the keys come from
//! seeded RNGs (never committed, never for production), the clock is [`NOW`], the random
//! source counts, and every input runs against a fresh copy of one store state made once by
//! the real endpoints (a consent, a pending request, a request awaiting its QR claim, an
//! AD-generated hint id).
//!
//! Besides "no panic", the targets check what a user relies on: bad input never answers 500,
//! and a refused request leaves the store as it was (design.md, Errors).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ciba::client::registry::Clients;
use ciba::clock::{CountingRandom, FixedClock};
use ciba::config::{Config, var};
use ciba::endpoints::Deps;
use ciba::endpoints::bc_authorize::BcAuthorizeEndpoint;
use ciba::endpoints::consents::ConsentsEndpoint;
use ciba::endpoints::device::DeviceEndpoint;
use ciba::endpoints::token::TokenEndpoint;
use ciba::http::{Method, Request, Response};
use ciba::store::{KeyPage, KeyValue, NextValue, StoreError, Swap};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Map, Value, json};

/// The fixed time of every target: 2027-01-15.
pub const NOW: i64 = 1_800_000_000;
/// The issuer.
pub const ISSUER: &str = "https://auth.bank.example";
/// The device API token.
pub const DEVICE_TOKEN: &str = "fuzz-device-token-of-at-least-32-characters";
/// The header the proxy forwards the client certificate in (mTLS on, as in production).
pub const CERT_HEADER: &str = "x-client-cert";
/// The `private_key_jwt` client.
pub const CLIENT: &str = "tpp-1";
/// Its key id.
pub const CLIENT_KID: &str = "tpp-key-1";
/// The `tls_client_auth` client, registered by subject DN with an organisation id.
pub const MTLS_CLIENT: &str = "tpp-mtls";
/// The subject of the client certificate (RFC 4514, least significant first).
pub const CERT_SUBJECT: &str = "CN=tpp-mtls.example,2.5.4.97=OFBBR-74e929d9-33b6-4d85-8ba7-c146c867a817,OU=74e929d9,O=TPP,C=BR";
/// The holder whose consents the fixtures lodge.
pub const HOLDER: &str = "holder-1";
/// Their CPF.
pub const HOLDER_CPF: &str = "52998224725";
/// The AS-generated login_hint_token type.
pub const AS_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:as-generated";
/// The AD-generated login_hint_token type.
pub const AD_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:ad-generated";
/// `client_assertion_type`.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

// ---------------------------------------------------------------------------------------
// Key material
// ---------------------------------------------------------------------------------------

/// Keys and registrations, the same in every run.
pub struct Material {
    /// `signing_keys` (private JWKs with `x5c`).
    pub signing_keys: String,
    /// `encryption_keys`.
    pub encryption_keys: String,
    /// `clients`.
    pub clients: String,
    /// `users`.
    pub users: String,
    /// The server's signing key (kid `sig-1`) and its certificate's `x5t#S256`.
    pub server_key: RsaPrivateKey,
    /// `x5t#S256` of the server's signing certificate.
    pub server_x5t: String,
    /// The client's signing key.
    pub client_key: RsaPrivateKey,
    /// The public half of the server's encryption key (kid `enc-1`).
    pub encryption_public: RsaPublicKey,
    /// The client certificate (DER) of [`CERT_SUBJECT`].
    pub client_cert_der: Vec<u8>,
    /// The same, as the proxy forwards it: URL-encoded PEM.
    pub client_cert_header: String,
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn rsa_key(seed: u64) -> RsaPrivateKey {
    RsaPrivateKey::new(&mut rng(seed), 2048).expect("key generation")
}

/// A self-signed certificate of `key` for `subject`, valid 2026–2036: deterministic
/// (PKCS #1 v1.5 signatures are), so the seeds are too.
pub fn certificate(key: &RsaPrivateKey, subject: &str) -> Vec<u8> {
    use std::str::FromStr;
    use std::time::Duration;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::der::Encode;
    use x509_cert::der::asn1::UtcTime;
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::SubjectPublicKeyInfoOwned;
    use x509_cert::time::{Time, Validity};

    let at =
        |secs: u64| Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(secs)).unwrap());
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone());
    let builder = CertificateBuilder::new(
        Profile::Root,
        SerialNumber::new(&[1, 2, 3, 4]).unwrap(),
        Validity {
            not_before: at(1_767_225_600),
            not_after: at(2_082_758_400),
        },
        Name::from_str(subject).unwrap(),
        SubjectPublicKeyInfoOwned::from_key(RsaPublicKey::from(key)).unwrap(),
        &signer,
    )
    .unwrap();
    builder
        .build::<rsa::pkcs1v15::Signature>()
        .unwrap()
        .to_der()
        .unwrap()
}

/// A DER certificate as the proxy forwards it: PEM, then URL-encoded (nginx's
/// `$ssl_client_escaped_cert`).
pub fn certificate_header(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    );
    percent_encoding::utf8_percent_encode(&pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The material, made once per process (a few seconds: four RSA keys).
pub fn material() -> &'static Material {
    static MATERIAL: OnceLock<Material> = OnceLock::new();
    MATERIAL.get_or_init(|| {
        let server_key = rsa_key(1);
        let retired = rsa_key(2);
        let encryption = rsa_key(3);
        let client_key = rsa_key(4);
        let cert_key = rsa_key(5);
        let server_cert = certificate(&server_key, "CN=ciba fuzz signing key sig-1");
        let retired_cert = certificate(&retired, "CN=ciba fuzz signing key sig-0");
        let server_x5t = URL_SAFE_NO_PAD.encode(sha2_digest(&server_cert));
        let client_cert_der = certificate(&cert_key, CERT_SUBJECT);
        let client_public = devkeys::public_jwk(
            &RsaPublicKey::from(&client_key),
            CLIENT_KID,
            "sig",
            "PS256",
        );
        let clients = json!([
            {
                "client_id": CLIENT,
                "client_name": "TPP One",
                "jwks": { "keys": [client_public] },
                "token_endpoint_auth_method": "private_key_jwt",
                "scope": "openid consents accounts",
                "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
                "backchannel_token_delivery_mode": "poll",
            },
            {
                "client_id": MTLS_CLIENT,
                "jwks": { "keys": [client_public] },
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": CERT_SUBJECT,
                "org_id": "74e929d9-33b6-4d85-8ba7-c146c867a817",
                "scope": "openid consents",
                "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials"],
            },
        ]);
        Material {
            signing_keys: json!({ "keys": [
                devkeys::private_jwk(&server_key, "sig-1", "sig", "PS256", Some(&server_cert)),
                devkeys::private_jwk(&retired, "sig-0", "sig", "PS256", Some(&retired_cert)),
            ]})
            .to_string(),
            encryption_keys: json!({ "keys": [
                devkeys::private_jwk(&encryption, "enc-1", "enc", "RSA-OAEP", None),
            ]})
            .to_string(),
            clients: clients.to_string(),
            users: json!([
                { "sub": HOLDER, "cpf": HOLDER_CPF, "name": "Holder One" },
                { "sub": "holder-2", "cpf": "11144477735", "cnpj": ["11222333000181"] },
            ])
            .to_string(),
            server_key,
            server_x5t,
            client_key,
            encryption_public: RsaPublicKey::from(&encryption),
            client_cert_header: certificate_header(&client_cert_der),
            client_cert_der,
        }
    })
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Every variable, valid, mTLS on.
pub fn variables() -> HashMap<&'static str, String> {
    let m = material();
    let mut vars = HashMap::from([
        (var::ISSUER, ISSUER.to_string()),
        (var::SIGNING_KEYS, m.signing_keys.clone()),
        (var::ENCRYPTION_KEYS, m.encryption_keys.clone()),
        (var::CLIENTS, m.clients.clone()),
        (var::USERS, m.users.clone()),
        (var::DEVICE_API_TOKEN, DEVICE_TOKEN.to_string()),
        (var::CLIENT_CERT_HEADER, CERT_HEADER.to_string()),
        (var::ACCESS_TOKEN_TTL, "900".to_string()),
        (var::AUTH_REQ_TTL, "300".to_string()),
        (var::POLL_INTERVAL, "5".to_string()),
        (var::ID_TOKEN_TTL, "15552000".to_string()),
        (var::REFRESH_TOKEN_TTL, "31536000".to_string()),
    ]);
    // The abuse limits (BCA-31), where the build has them: lifted, so that they never hide
    // a parser behind a 429.
    for name in [
        "client_rate_limit",
        "client_pending_limit",
        "holder_rate_limit",
        "holder_pending_limit",
    ] {
        vars.insert(name, "1000000".to_string());
    }
    vars
}

/// A PS256 JWS (RFC 7518 3.5) of `claims` under `header` (with `alg` added when absent),
/// signed with `key`; the salt comes from an RNG seeded with the signing input, so the same
/// claims always give the same token.
pub fn sign(key: &RsaPrivateKey, header: &Map<String, Value>, claims: &Value) -> String {
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let mut header = header.clone();
    header
        .entry("alg")
        .or_insert_with(|| Value::String("PS256".into()));
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let seed: [u8; 32] = sha2_digest(input.as_bytes()).try_into().unwrap();
    let signer = rsa::pss::SigningKey::<sha2::Sha256>::new(key.clone());
    let signature = signer.sign_with_rng(&mut ChaCha20Rng::from_seed(seed), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

/// The header `{"kid": <kid>}` (and `typ` when given).
pub fn header(kid: &str, typ: Option<&str>) -> Map<String, Value> {
    let mut h = Map::new();
    h.insert("kid".into(), json!(kid));
    if let Some(typ) = typ {
        h.insert("typ".into(), json!(typ));
    }
    h
}

/// A compact JWE of `plaintext` to the server's encryption key, as a client makes the QR
/// code's login_hint_token (RSA-OAEP, A256GCM, `kid`, `cty: JWT`); deterministic.
pub fn encrypt(plaintext: &[u8], header: &Value) -> String {
    use aes_gcm_shim::encrypt_a256gcm;
    let mut rng = ChaCha20Rng::from_seed(sha2_digest(plaintext).try_into().unwrap());
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 12];
    rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, &mut cek);
    rand_chacha::rand_core::RngCore::fill_bytes(&mut rng, &mut iv);
    let encrypted_key = material()
        .encryption_public
        .encrypt(&mut rng, rsa::Oaep::new::<sha1::Sha1>(), &cek)
        .unwrap();
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let (content, tag) = encrypt_a256gcm(&cek, &iv, protected.as_bytes(), plaintext);
    format!(
        "{protected}.{}.{}.{}.{}",
        URL_SAFE_NO_PAD.encode(encrypted_key),
        URL_SAFE_NO_PAD.encode(iv),
        URL_SAFE_NO_PAD.encode(content),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

mod aes_gcm_shim {
    use aes_gcm::aead::{AeadInPlace, KeyInit};

    /// AES-256-GCM: the ciphertext and its tag.
    pub fn encrypt_a256gcm(cek: &[u8], iv: &[u8], aad: &[u8], plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(cek).unwrap();
        let mut content = plain.to_vec();
        let tag = cipher
            .encrypt_in_place_detached(aes_gcm::Nonce::from_slice(iv), aad, &mut content)
            .unwrap();
        (content, tag.to_vec())
    }
}

/// The JWE header a client uses for the QR code.
pub fn jwe_header() -> Value {
    json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "kid": "enc-1", "cty": "JWT" })
}

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

/// What a store holds: values and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    values: HashMap<String, Vec<u8>>,
    counters: HashMap<String, i64>,
}

/// An in-memory store that starts from a [`State`] and can be compared with it afterwards.
#[derive(Debug, Default)]
pub struct StateStore(RefCell<State>);

impl StateStore {
    /// A store holding `state`.
    pub fn from(state: &State) -> Self {
        Self(RefCell::new(state.clone()))
    }

    /// What it holds now.
    pub fn state(&self) -> State {
        self.0.borrow().clone()
    }
}

impl KeyValue for StateStore {
    /// A counter reads as its 8-byte little-endian value, as in Spin's SQLite store (and the
    /// shared crate's `MemoryStore`).
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let state = self.0.borrow();
        Ok(state
            .values
            .get(key)
            .cloned()
            .or_else(|| state.counters.get(key).map(|c| c.to_le_bytes().to_vec())))
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0
            .borrow_mut()
            .values
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut state = self.0.borrow_mut();
        state.values.remove(key);
        state.counters.remove(key);
        Ok(())
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<Swap, StoreError> {
        let mut state = self.0.borrow_mut();
        if state.values.get(key).map(Vec::as_slice) != expected {
            return Ok(Swap::Conflict);
        }
        state.values.insert(key.to_string(), new.to_vec());
        Ok(Swap::Swapped)
    }

    fn read_and_swap(
        &self,
        key: &str,
        next: &mut NextValue<'_>,
    ) -> Result<Option<Swap>, StoreError> {
        let mut state = self.0.borrow_mut();
        let Some(new) = next(state.values.get(key).map(Vec::as_slice)) else {
            return Ok(None);
        };
        state.values.insert(key.to_string(), new);
        Ok(Some(Swap::Swapped))
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut state = self.0.borrow_mut();
        let value = state.counters.entry(key.to_string()).or_insert(0);
        *value = value
            .checked_add(delta)
            .ok_or_else(|| StoreError("counter overflow".into()))?;
        Ok(*value)
    }

    fn list_keys(&self, _cursor: Option<&str>) -> Result<KeyPage, StoreError> {
        let state = self.0.borrow();
        let keys = state
            .values
            .keys()
            .chain(state.counters.keys())
            .cloned()
            .collect();
        Ok(KeyPage { keys, cursor: None })
    }
}

// ---------------------------------------------------------------------------------------
// The world: configured endpoints and the state every input starts from
// ---------------------------------------------------------------------------------------

/// The endpoints, configured once, and the state the real endpoints left after lodging a
/// consent, starting a request for it, starting an AS-generated one and issuing an
/// AD-generated hint id.
pub struct World {
    /// Everything configured.
    pub config: Config,
    /// `POST /token`.
    pub token: TokenEndpoint,
    /// The Consents API.
    pub consents: ConsentsEndpoint,
    /// `POST /bc-authorize`.
    pub bc_authorize: BcAuthorizeEndpoint,
    /// The device API.
    pub device: DeviceEndpoint,
    /// The store after the set-up.
    pub state: State,
    /// A `client_credentials` token with scope `consents`.
    pub access_token: String,
    /// A consent awaiting authorisation, with no request yet.
    pub consent_id: String,
    /// A pending request (login_hint).
    pub pending: String,
    /// An AS-generated request waiting for its QR code to be claimed.
    pub awaiting_claim: String,
    /// An AD-generated hint id of [`HOLDER`].
    pub ad_hint: String,
    /// A client assertion for bc-authorize whose `jti` the state has not seen.
    pub assertion: String,
}

/// Client assertion claims (RFC 7523) for `aud`, with `jti`.
pub fn assertion_claims(aud: &str, jti: &str) -> Map<String, Value> {
    json!({
        "iss": CLIENT, "sub": CLIENT, "aud": aud,
        "iat": NOW, "exp": NOW + 120, "jti": jti,
    })
    .as_object()
    .unwrap()
    .clone()
}

/// A signed client assertion.
pub fn assertion(aud: &str, jti: &str) -> String {
    sign(
        &material().client_key,
        &header(CLIENT_KID, None),
        &Value::Object(assertion_claims(aud, jti)),
    )
}

/// The claims of a valid request object for `consent_id`, with `jti` and no hint.
pub fn request_claims(consent_id: &str, jti: &str) -> Map<String, Value> {
    json!({
        "iss": CLIENT, "aud": ISSUER,
        "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": jti,
        "scope": format!("openid accounts consent:{consent_id}"),
        "binding_message": "Compra 1234",
        "acr_values": "urn:brasil:openbanking:loa2",
    })
    .as_object()
    .unwrap()
    .clone()
}

/// A signed request object.
pub fn request_object(claims: &Map<String, Value>) -> String {
    sign(
        &material().client_key,
        &header(CLIENT_KID, None),
        &Value::Object(claims.clone()),
    )
}

/// A request: the method, the path below the route, headers and body.
pub fn request(method: Method, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
    let (path_info, query) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path.to_string(), None),
    };
    Request {
        method,
        path_info,
        query,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

/// A form POST with the client certificate.
pub fn form_request(body: &str) -> Request {
    request(
        Method::Post,
        "",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            (CERT_HEADER, &material().client_cert_header),
        ],
        body.as_bytes(),
    )
}

/// Percent-encodes a form value.
pub fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The form of bc-authorize: `request` and the client assertion.
pub fn bc_authorize_form(request_object: &str, assertion: &str) -> String {
    format!(
        "request={}&client_assertion_type={}&client_assertion={}",
        enc(request_object),
        enc(JWT_BEARER),
        enc(assertion)
    )
}

/// Runs `f` with the dependencies of an endpoint over `store`: the fixed clock, a counting
/// random source.
pub fn with_deps<T>(store: &StateStore, f: impl FnOnce(&Deps<'_>) -> T) -> T {
    f(&Deps {
        store,
        clock: &FixedClock(NOW),
        random: &CountingRandom::default(),
        fetch: &ciba::client::fetch::NoFetch,
    })
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap_or(Value::Null)
}

fn expect(response: &Response, status: u16, what: &str) -> Value {
    let body = json_of(response);
    assert_eq!(response.status, status, "set-up step {what}: {body}");
    body
}

/// A Consents API request with the access token.
pub fn consents_request(method: Method, path: &str, token: &str, body: &[u8]) -> Request {
    let auth = format!("Bearer {token}");
    request(
        method,
        path,
        &[
            ("authorization", &auth),
            (CERT_HEADER, &material().client_cert_header),
            (
                "x-fapi-interaction-id",
                "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
            ),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// A device API request with the device token.
pub fn device_request(method: Method, path: &str, body: &[u8]) -> Request {
    let auth = format!("Bearer {DEVICE_TOKEN}");
    request(
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body,
    )
}

/// A consent body for [`HOLDER`].
pub fn consent_body() -> Value {
    json!({ "data": {
        "loggedUser": { "document": { "identification": HOLDER_CPF, "rel": "CPF" } },
        "permissions": ["ACCOUNTS_READ", "ACCOUNTS_BALANCES_READ", "RESOURCES_READ"],
        "expirationDateTime": "2027-06-01T00:00:00Z",
    }})
}

/// The world, made once per process.
pub fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let vars = variables();
        let world_config = Config::load(&vars).expect("the fuzz configuration loads");
        let token = TokenEndpoint::load(&vars).unwrap();
        let consents = ConsentsEndpoint::load(&vars).unwrap();
        let bc_authorize = BcAuthorizeEndpoint::load(&vars).unwrap();
        let device = DeviceEndpoint::load(&vars).unwrap();
        let store = StateStore::default();
        let random = CountingRandom::default();
        let run = |f: &dyn Fn(&Deps<'_>) -> Response| {
            f(&Deps {
                store: &store,
                clock: &FixedClock(NOW),
                random: &random,
                fetch: &ciba::client::fetch::NoFetch,
            })
        };

        let body = format!(
            "grant_type=client_credentials&scope=consents&client_assertion_type={}&client_assertion={}",
            enc(JWT_BEARER),
            assertion(&format!("{ISSUER}/token"), "setup-assertion-1")
        );
        let answer = run(&|d| token.handle(&form_request(&body), d));
        let access_token = expect(&answer, 200, "client_credentials")["access_token"]
            .as_str()
            .unwrap()
            .to_string();

        let lodge = || {
            let r = consents_request(
                Method::Post,
                "",
                &access_token,
                consent_body().to_string().as_bytes(),
            );
            let answer = run(&|d| consents.handle(&r, d));
            expect(&answer, 201, "lodge a consent")["data"]["consentId"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let start = |claims: Map<String, Value>, jti: &str| {
            let form = bc_authorize_form(&request_object(&claims), &assertion(ISSUER, jti));
            let answer = run(&|d| bc_authorize.handle(&form_request(&form), d));
            expect(&answer, 200, "bc-authorize")["auth_req_id"]
                .as_str()
                .unwrap()
                .to_string()
        };

        let for_pending = lodge();
        let mut claims = request_claims(&for_pending, "setup-request-1");
        claims.insert("login_hint".into(), json!(for_pending));
        let pending = start(claims, "setup-assertion-2");

        let for_qr = lodge();
        let mut claims = request_claims(&for_qr, "setup-request-2");
        claims.insert("login_hint_token".into(), json!(AS_GENERATED));
        let awaiting_claim = start(claims, "setup-assertion-3");

        let hint = device_request(
            Method::Post,
            "/hints",
            json!({ "subject": HOLDER }).to_string().as_bytes(),
        );
        let answer = run(&|d| device.handle(&hint, d));
        let ad_hint = expect(&answer, 201, "AD-generated hint")["id"]
            .as_str()
            .unwrap()
            .to_string();

        let consent_id = lodge();
        World {
            config: world_config,
            token,
            consents,
            bc_authorize,
            device,
            state: store.state(),
            access_token,
            consent_id,
            pending,
            awaiting_claim,
            ad_hint,
            assertion: assertion(ISSUER, "fuzz-assertion"),
        }
    })
}

/// The claims of a valid QR login_hint_token for the request awaiting its claim.
pub fn qr_claims() -> Value {
    json!({
        "iss": CLIENT,
        "aud": ISSUER,
        "jti": "8a5c7d0e-3b1f-4c2a-9e6d-7f8a9b0c1d2e",
        "iat": NOW,
        "exp": NOW + 120,
        "auth_request_id": world().awaiting_claim,
    })
}

/// A QR login_hint_token: `claims` signed by the client with `typ: cibabr+jwt`, encrypted.
pub fn qr_token(claims: &Value) -> String {
    let jws = sign(
        &material().client_key,
        &header(CLIENT_KID, Some("cibabr+jwt")),
        claims,
    );
    encrypt(jws.as_bytes(), &jwe_header())
}

// ---------------------------------------------------------------------------------------
// The checks every endpoint target makes
// ---------------------------------------------------------------------------------------

/// Bad input is never the server's fault, and its refusal is a JSON protocol error whose
/// description keeps to BCA-28's characters.
fn check_answer(response: &Response, what: &str) {
    assert_ne!(
        response.status,
        500,
        "{what}: bad input answered 500: {}",
        String::from_utf8_lossy(&response.body)
    );
    if response.status >= 400 {
        let body = json_of(response);
        let description = body["error_description"]
            .as_str()
            .or(body["errors"][0]["detail"].as_str())
            .unwrap_or_else(|| panic!("{what}: a refusal without a protocol error: {body}"));
        assert!(
            description
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
            "{what}: error_description outside BCA-28's characters"
        );
    }
}

/// A refused request changed nothing (design.md, Errors).
fn check_untouched(before: &State, store: &StateStore, response: &Response, what: &str) {
    if response.status >= 400 {
        assert!(
            store.state() == *before,
            "{what}: a refused request ({}) changed the store: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

// ---------------------------------------------------------------------------------------
// The targets
// ---------------------------------------------------------------------------------------

/// `form`: `application/x-www-form-urlencoded` bodies (shared/src/form.rs), as every form
/// endpoint reads them, then bc-authorize's reading of the parameters (BCA-3/4).
pub fn form(data: &[u8]) -> Option<u16> {
    let form = ciba::form::Form::parse_body(data).ok()?;
    let names: Vec<&str> = form.names().collect();
    assert!(names.len() <= 64, "more than 64 parameters accepted");
    for (i, name) in names.iter().enumerate() {
        assert!(!names[..i].contains(name), "a repeated parameter accepted");
        assert!(
            form.get(name).is_some_and(|v| !v.is_empty()),
            "an empty value kept"
        );
    }
    ciba::request_object::from_form(&form).ok().map(|_| 200)
}

/// `jws`: request objects, client assertions and id_token hints as they arrive: the JWS
/// header, base64url and JSON are read before any signature is checked. The answer is the
/// number of checks that passed (0–4).
pub fn jws(data: &[u8]) -> Option<u16> {
    let compact = text(data)?;
    let w = world();
    let client = w.config.clients.get(CLIENT)?;
    // Keys by value only: a fresh key source each time, no outbound HTTP (NoFetch).
    let keys = ciba::client::keys::KeySource::load(&variables()).ok()?;
    let store = StateStore::from(&w.state);
    let mut passed = 0;
    passed += with_deps(&store, |deps| {
        u16::from(
            ciba::request_object::verify(compact, client, &w.config.issuer, &keys, deps).is_ok(),
        )
    });
    passed += u16::from(
        ciba::id_token::verify_hint(
            compact,
            &w.config.keys.signing,
            &w.config.issuer,
            CLIENT,
            NOW,
        )
        .is_ok(),
    );
    let body = format!(
        "client_assertion_type={}&client_assertion={}",
        enc(JWT_BEARER),
        enc(compact)
    );
    let request = form_request(&body);
    let form = ciba::form::Form::parse(&request).ok()?;
    let settings = ciba::client::auth::ClientAuthSettings {
        issuer: &w.config.issuer,
        clients: &w.config.clients,
        client_cert_header: &w.config.client_cert_header,
        keys: &keys,
    };
    for endpoint in [
        ciba::error::Endpoint::Token,
        ciba::error::Endpoint::BackchannelAuthentication,
    ] {
        passed += with_deps(&store, |deps| {
            u16::from(ciba::client::auth::check(&request, &form, settings, endpoint, deps).is_ok())
        });
    }
    Some(passed)
}

/// An input of [`signed_claims`]: changes to a valid request object's claims and to a valid
/// client assertion's (a `null` removes a claim), and members for the request object's JWS
/// header.
pub fn signed_claims_input(request: Value, assertion: Value, header: Value) -> Vec<u8> {
    let mut input = Map::new();
    for (name, value) in [
        ("request", request),
        ("assertion", assertion),
        ("header", header),
    ] {
        if !value.is_null() {
            input.insert(name.into(), value);
        }
    }
    serde_json::to_vec(&input).unwrap()
}

fn overlay(base: &mut Map<String, Value>, changes: Option<&Value>) {
    if let Some(Value::Object(changes)) = changes {
        for (k, v) in changes {
            if v.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `signed_claims`: claims the fuzzer chooses, signed with the client's key, so that the
/// checks after a valid signature are reached (BCA-5…23, HINT-*, CLI-4…7): the request
/// object and the client assertion go through `POST /bc-authorize` as a client sends them.
/// The base request names the fresh consent by `login_hint`.
pub fn signed_claims(data: &[u8]) -> Option<u16> {
    let Ok(Value::Object(input)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    let w = world();
    let mut claims = request_claims(&w.consent_id, "fuzz-request");
    claims.insert("login_hint".into(), json!(w.consent_id));
    overlay(&mut claims, input.get("request"));
    let mut jws_header = header(CLIENT_KID, None);
    overlay(&mut jws_header, input.get("header"));
    let request_object = sign(&material().client_key, &jws_header, &Value::Object(claims));
    let assertion = match input.get("assertion") {
        Some(Value::Object(changes)) if !changes.is_empty() => {
            let mut claims = assertion_claims(ISSUER, "fuzz-assertion");
            overlay(&mut claims, input.get("assertion"));
            sign(
                &material().client_key,
                &header(CLIENT_KID, None),
                &Value::Object(claims),
            )
        }
        _ => w.assertion.clone(),
    };
    let store = StateStore::from(&w.state);
    let form = bc_authorize_form(&request_object, &assertion);
    let response = with_deps(&store, |d| w.bc_authorize.handle(&form_request(&form), d));
    check_answer(&response, "bc-authorize");
    check_untouched(&w.state, &store, &response, "bc-authorize");
    Some(response.status)
}

/// `qr_jwe`: the AS-generated login_hint_token as the device scans it
/// (shared/src/jose/jwe.rs `decrypt`: header, base64url, RSA-OAEP, A256GCM). 200 when it
/// decrypts.
pub fn qr_jwe(data: &[u8]) -> Option<u16> {
    let compact = text(data)?;
    let keys = &world().config.keys.encryption;
    ciba::jose::jwe::decrypt(compact, keys, &CountingRandom::default())
        .ok()
        .map(|_| 200)
}

/// The device API calls [`device_api`] picks from its first byte.
pub const DEVICE_ROUTES: [&str; 6] = [
    "approve",
    "hints",
    "claims",
    "id-tokens/revoke",
    "list",
    "path",
];

/// An input of [`device_api`] for `route` (an entry of [`DEVICE_ROUTES`]).
pub fn device_api_input(route: &str, rest: &[u8]) -> Vec<u8> {
    let i = DEVICE_ROUTES.iter().position(|r| *r == route).unwrap();
    let mut input = vec![i as u8];
    input.extend_from_slice(rest);
    input
}

/// `device_api`: the JSON bodies of the device API (approve, hints, claims, id-token
/// cancellation), its query (`list`) and its paths (`path`: `[POST |DELETE ]<path>`),
/// through the endpoint. The first byte picks the call.
pub fn device_api(data: &[u8]) -> Option<u16> {
    let (&selector, rest) = data.split_first()?;
    let w = world();
    let route = DEVICE_ROUTES[usize::from(selector) % DEVICE_ROUTES.len()];
    let request = match route {
        "approve" => device_request(
            Method::Post,
            &format!("/requests/{}/approve", w.pending),
            rest,
        ),
        "hints" | "claims" | "id-tokens/revoke" => {
            device_request(Method::Post, &format!("/{route}"), rest)
        }
        "list" => device_request(Method::Get, &format!("/requests?{}", text(rest)?), b""),
        _ => {
            let path = text(rest)?;
            let (method, path) = match path.split_once(' ') {
                Some(("POST", p)) => (Method::Post, p),
                Some(("DELETE", p)) => (Method::Delete, p),
                _ => (Method::Get, path),
            };
            device_request(method, path, b"")
        }
    };
    let store = StateStore::from(&w.state);
    let response = with_deps(&store, |d| w.device.handle(&request, d));
    check_answer(&response, route);
    // An approval that fails a holder check denies the request (AD-5): that 403 writes.
    if !(route == "approve" && response.status == 403) {
        check_untouched(&w.state, &store, &response, route);
    }
    Some(response.status)
}

/// `consents_api`: the JSON body of `POST /consents` (CONS-1), and a consent id in the path
/// of `GET` and `DELETE`. The answer is the POST's status.
pub fn consents_api(data: &[u8]) -> Option<u16> {
    let w = world();
    let store = StateStore::from(&w.state);
    let post = consents_request(Method::Post, "", &w.access_token, data);
    let response = with_deps(&store, |d| w.consents.handle(&post, d));
    check_answer(&response, "POST consents");
    check_untouched(&w.state, &store, &response, "POST consents");
    if let Some(id) = text(data).filter(|t| t.len() <= 512) {
        for method in [Method::Get, Method::Delete] {
            let store = StateStore::from(&w.state);
            let call = consents_request(method, &format!("/{id}"), &w.access_token, b"");
            let answer = with_deps(&store, |d| w.consents.handle(&call, d));
            check_answer(&answer, "GET/DELETE consents");
            check_untouched(&w.state, &store, &answer, "GET/DELETE consents");
        }
    }
    Some(response.status)
}

/// `client_certificate`: the forwarded client certificate (URL-encoded PEM, then X.509 DER)
/// and distinguished names (RFC 4514 text, as `tls_client_auth_subject_dn` is registered),
/// with `distinguishedNameMatch` between them (CLI-8/10); then the token endpoint's
/// `tls_client_auth` with the value as the certificate header. The answer is its status.
pub fn client_certificate(data: &[u8]) -> Option<u16> {
    let value = text(data)?;
    let w = world();
    let registered = w
        .config
        .clients
        .get(MTLS_CLIENT)
        .and_then(|c| c.tls_client_auth_subject_dn.clone())?;
    if let Some(cert) = ciba::client::certificate::ClientCertificate::from_header_value(value) {
        let _ = cert.subject().matches(&registered);
        let _ = cert
            .subject()
            .text(ciba::client::certificate::ORGANIZATION_IDENTIFIER);
        assert!(
            cert.subject().matches(cert.subject()),
            "a subject DN does not match itself"
        );
    }
    if let Some(dn) = ciba::client::dn::DistinguishedName::parse(value) {
        let _ = dn.matches(&registered);
        assert!(dn.matches(&dn), "a DN does not match itself");
    }
    let request = request(
        Method::Post,
        "",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            (CERT_HEADER, value),
        ],
        b"grant_type=client_credentials&scope=consents&client_id=tpp-mtls",
    );
    let store = StateStore::from(&w.state);
    let response = with_deps(&store, |d| w.token.handle(&request, d));
    check_answer(&response, "token (tls_client_auth)");
    Some(response.status)
}

/// `jwk_sets`: the JSON of the key and registration variables (`signing_keys`,
/// `encryption_keys`, `clients`, `users`), as each component loads them. The answer is the
/// number that loaded (0–4).
pub fn jwk_sets(data: &[u8]) -> Option<u16> {
    let text = text(data)?;
    let m = material();
    let loaded = [
        ciba::jose::keys::ServerKeys::parse(text, &m.encryption_keys).is_ok(),
        ciba::jose::keys::ServerKeys::parse(&m.signing_keys, text).is_ok(),
        Clients::parse(text).is_ok(),
        ciba::users::Users::parse(text).is_ok(),
    ];
    Some(loaded.iter().map(|l| u16::from(*l)).sum())
}

/// A target: the input, and what it came to (a status, or a count of checks passed).
pub type Target = fn(&[u8]) -> Option<u16>;

/// Every target, by name, for the corpus writer.
pub const TARGETS: [(&str, Target); 8] = [
    ("form", form),
    ("jws", jws),
    ("signed_claims", signed_claims),
    ("qr_jwe", qr_jwe),
    ("device_api", device_api),
    ("consents_api", consents_api),
    ("client_certificate", client_certificate),
    ("jwk_sets", jwk_sets),
];
