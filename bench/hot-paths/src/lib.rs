//! The shared crate's hot steps (issue 8, deliverables 1(a) and 1(b)), as one list that two
//! harnesses time: `cargo bench -p ciba --bench hot_paths` natively (criterion), and this
//! crate's binary inside Wasm (`ciba-host wasm-bench`, on the local host's engine).
//!
//! What every authenticated request pays (client-assertion verification), what bc-authorize
//! adds (request-object verification), what an approval pays (id_token signing), form parsing
//! and the QR JWE; then raw PS256 signing and verification through each `rsa` crate the shared
//! crate links (0.9 through jwt-compact's `Rsa::ps256()`, 0.10 through `ciba::jose::ps256`),
//! the comparison that decides which crate signs and which verifies.

use std::collections::HashMap;
use std::hint::black_box;

use anyhow::Context;
use ciba::auth_req::{AcrRequest, AuthRequest, ClaimRequests, Decision, HintKind, Status};
use ciba::client::auth::{ClientAuthSettings, JWT_BEARER, check};
use ciba::client::fetch::NoFetch;
use ciba::client::keys::KeySource;
use ciba::client::keystore::{AllowedOrigins, DEFAULT_ALLOWED_HOSTS, Keystore};
use ciba::clock::CountingRandom;
use ciba::clock::FixedClock;
use ciba::config::{Config, var};
use ciba::endpoints::Deps;
use ciba::error::Endpoint;
use ciba::form::Form;
use ciba::http::{Method, Request};
use ciba::id_token::{IdTokenContent, sign};
use ciba::jose::ps256::{Ps256, Ps256Signature, Ps256SigningKey, Ps256VerifyingKey};
use ciba::request_object;
use ciba::store::memory::MemoryStore;
use devkeys::rsa::{RsaPrivateKey, RsaPublicKey};
use jwt_compact::alg::{Rsa, RsaSignature};
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Header};
use serde_json::{Value, json};

/// The fixed clock of every step.
pub const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://auth.bank.example";

/// One hot step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `Form::parse_body` of a CIBA token request.
    FormParse,
    /// `client_auth::check`: PS256 and the claims (CLI-4…7), not the `jti`'s single use.
    ClientAssertion,
    /// `request_object::verify` (BCA-5…10).
    RequestObject,
    /// `id_token::sign` (TKN-4…9).
    IdTokenSign,
    /// `jose::jwe::decrypt` of a QR code's login_hint_token (HINT-15).
    QrJweDecrypt,
    /// PS256 verification alone, `rsa` 0.9 (jwt-compact's `Rsa::ps256()`).
    VerifyRsa09,
    /// PS256 verification alone, `rsa` 0.10 (`ciba::jose::ps256`).
    VerifyRsa10,
    /// PS256 signing alone (blinded), `rsa` 0.9 (jwt-compact's `Rsa::ps256()`).
    SignRsa09,
    /// PS256 signing alone (blinded), `rsa` 0.10 (`ciba::jose::ps256`).
    SignRsa10,
}

impl Step {
    /// Every step, in the order they are reported.
    pub const ALL: [Step; 9] = [
        Step::FormParse,
        Step::ClientAssertion,
        Step::RequestObject,
        Step::IdTokenSign,
        Step::QrJweDecrypt,
        Step::VerifyRsa09,
        Step::VerifyRsa10,
        Step::SignRsa09,
        Step::SignRsa10,
    ];

    /// The step's name (criterion's benchmark id natively; the first five are the names
    /// `hot_paths` has always reported).
    pub fn name(self) -> &'static str {
        match self {
            Step::FormParse => "form: parse a token request",
            Step::ClientAssertion => "client assertion: verify (CLI-4…7, jti not used)",
            Step::RequestObject => "request object: verify (BCA-5…10)",
            Step::IdTokenSign => "id_token: sign (TKN-4…9)",
            Step::QrJweDecrypt => "QR JWE: decrypt, blinded RSA-OAEP + A256GCM (HINT-15)",
            Step::VerifyRsa09 => "PS256 verify, raw: rsa 0.9 (jwt-compact Rsa::ps256)",
            Step::VerifyRsa10 => "PS256 verify, raw: rsa 0.10 (jose::ps256)",
            Step::SignRsa09 => "PS256 sign, raw: rsa 0.9 (jwt-compact Rsa::ps256)",
            Step::SignRsa10 => "PS256 sign, raw: rsa 0.10 (jose::ps256)",
        }
    }
}

/// The three RSA-2048 keys the steps use, as private JWKs: made natively and handed to the
/// Wasm guest (generating them inside Wasm takes seconds), or generated where the steps run.
pub struct Keys {
    /// The client's key: it signs the assertion and the request object.
    pub client: Value,
    /// The server's signing key (`signing_keys`, with its `x5c`).
    pub signing: Value,
    /// The server's encryption key (`encryption_keys`).
    pub encryption: Value,
}

impl Keys {
    /// Three new keys.
    pub fn generate() -> anyhow::Result<Self> {
        let client = devkeys::rsa_key(2048)?;
        Ok(Self {
            client: devkeys::private_jwk(&client, "k1", "sig", "PS256", None),
            signing: devkeys::signing_jwk("sig-1")?,
            encryption: devkeys::encryption_jwk("enc-1")?,
        })
    }

    /// `{"client": JWK, "signing": JWK, "encryption": JWK}`.
    pub fn to_json(&self) -> String {
        json!({ "client": self.client, "signing": self.signing, "encryption": self.encryption })
            .to_string()
    }

    /// The inverse of [`Keys::to_json`].
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let mut value: Value = serde_json::from_str(text).context("keys: not JSON")?;
        let mut take = |name: &str| {
            value
                .get_mut(name)
                .map(Value::take)
                .with_context(|| format!("keys: no `{name}`"))
        };
        Ok(Self {
            client: take("client")?,
            signing: take("signing")?,
            encryption: take("encryption")?,
        })
    }
}

/// Everything the steps read, made once.
pub struct HotPaths {
    config: Config,
    body: String,
    request: Request,
    form: Form,
    request_object: String,
    auth_request: AuthRequest,
    decision: Decision,
    qr: String,
    random: CountingRandom,
    message: Vec<u8>,
    key09: RsaPrivateKey,
    public09: RsaPublicKey,
    signature09: RsaSignature,
    key10: Ps256SigningKey,
    public10: Ps256VerifyingKey,
    signature10: Ps256Signature,
    /// The clients' keys (by value here: the steps time the verification, not a fetch).
    client_keys: KeySource,
    store: MemoryStore,
}

fn jws(key: &RsaPrivateKey, claims: Value) -> anyhow::Result<String> {
    Ok(Rsa::ps256().token(
        &Header::empty().with_key_id("k1"),
        &Claims::new(claims),
        key,
    )?)
}

impl HotPaths {
    /// The configuration, the signed inputs and the keys of every step.
    pub fn new(keys: &Keys) -> anyhow::Result<Self> {
        let client_key = devkeys::private_key_from_jwk(&keys.client)?;
        let public09 = RsaPublicKey::from(&client_key);
        let encryption_public =
            RsaPublicKey::from(&devkeys::private_key_from_jwk(&keys.encryption)?);
        let client = json!({
            "client_id": "tpp-1",
            "jwks": { "keys": [devkeys::public_jwk(&public09, "k1", "sig", "PS256")] },
            "token_endpoint_auth_method": "private_key_jwt",
            "scope": "openid consents",
            "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
        });
        let vars: HashMap<&'static str, String> = HashMap::from([
            (var::ISSUER, ISSUER.to_string()),
            (
                var::SIGNING_KEYS,
                json!({ "keys": [keys.signing] }).to_string(),
            ),
            (
                var::ENCRYPTION_KEYS,
                json!({ "keys": [keys.encryption] }).to_string(),
            ),
            (var::CLIENTS, json!([client]).to_string()),
            (
                var::USERS,
                json!([{ "sub": "u1", "cpf": "52998224725" }]).to_string(),
            ),
            (var::DEVICE_API_TOKEN, "d".repeat(43)),
            (var::ACCESS_TOKEN_TTL, "900".into()),
            (var::AUTH_REQ_TTL, "300".into()),
            (var::POLL_INTERVAL, "5".into()),
            (var::ID_TOKEN_TTL, "15552000".into()),
            (var::REFRESH_TOKEN_TTL, "31536000".into()),
        ]);
        let config = Config::load(&vars).map_err(|e| anyhow::anyhow!("configuration: {e:?}"))?;

        let assertion = jws(
            &client_key,
            json!({ "iss": "tpp-1", "sub": "tpp-1", "aud": format!("{ISSUER}/token"),
                    "iat": NOW, "exp": NOW + 60, "jti": "j1" }),
        )?;
        let body = format!(
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={}&client_assertion_type={}&client_assertion={assertion}",
            "A".repeat(43),
            JWT_BEARER.replace(':', "%3A")
        );
        let request = Request {
            method: Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![],
            body: body.clone().into_bytes(),
        };
        let form = Form::parse_body(body.as_bytes()).map_err(|e| anyhow::anyhow!("form: {e:?}"))?;
        let request_object = jws(
            &client_key,
            json!({ "iss": "tpp-1", "aud": ISSUER, "iat": NOW, "nbf": NOW, "exp": NOW + 300,
                    "jti": "r1", "scope": "openid consent:urn:x:1", "login_hint": "urn:x:1" }),
        )?;
        let qr = devkeys::encrypt_jwe(request_object.as_bytes(), &encryption_public, "enc-1")?;

        // The raw signatures sign what a JWS signs: the assertion's `header.payload`.
        let message = assertion
            .rsplit_once('.')
            .map(|(input, _)| input.as_bytes().to_vec())
            .context("assertion: not a JWS")?;
        let key10 = Ps256SigningKey::from_rsa09(&client_key).context("rsa 0.10 signing key")?;
        let public10 = Ps256VerifyingKey::from_rsa09(&public09).context("rsa 0.10 public key")?;
        let signature09 = Rsa::ps256().sign(&client_key, &message);
        let signature10 = Ps256.sign(&key10, &message);

        let hot = Self {
            client_keys: KeySource::new(
                AllowedOrigins::parse(DEFAULT_ALLOWED_HOSTS).map_err(anyhow::Error::msg)?,
                Keystore::new(600),
            ),
            store: MemoryStore::new(),
            config,
            body,
            request,
            form,
            request_object,
            auth_request: AuthRequest {
                client_id: "tpp-1".into(),
                consent_id: "urn:x:1".into(),
                scope: vec!["openid".into(), "consent:urn:x:1".into()],
                hint: HintKind::LoginHint,
                subject: Some("u1".into()),
                binding_message: None,
                acr: AcrRequest {
                    values: vec![],
                    essential: false,
                },
                id_token_claims: ClaimRequests::default(),
                userinfo_claims: ClaimRequests::default(),
                created: NOW,
                expires_at: NOW + 300,
                status: Status::Pending,
                decision: None,
                denial: None,
                token_salt: Some("salt".into()),
                at_hash: "h".into(),
                id_token: None,
            },
            decision: Decision {
                sub: "u1".into(),
                acr: "urn:brasil:openbanking:loa2".into(),
                amr: vec!["pwd".into()],
                auth_time: NOW,
            },
            qr,
            random: CountingRandom::default(),
            message,
            key09: client_key,
            public09,
            signature09,
            key10,
            public10,
            signature10,
        };
        for step in Step::ALL {
            hot.try_run(step)
                .with_context(|| format!("step `{}` fails", step.name()))?;
        }
        Ok(hot)
    }

    /// Runs `step` once. Panics if it fails, which [`HotPaths::new`] has ruled out.
    pub fn run(&self, step: Step) {
        if let Err(e) = self.try_run(step) {
            panic!("step `{}` fails: {e:#}", step.name());
        }
    }

    fn try_run(&self, step: Step) -> anyhow::Result<()> {
        let failed = |what: &str| anyhow::anyhow!("{what}");
        let deps = Deps {
            store: &self.store,
            clock: &FixedClock(NOW),
            random: &self.random,
            fetch: &NoFetch,
        };
        match step {
            Step::FormParse => {
                let form = Form::parse_body(black_box(self.body.as_bytes()))
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                black_box(form);
            }
            Step::ClientAssertion => {
                let settings = ClientAuthSettings {
                    issuer: &self.config.issuer,
                    clients: &self.config.clients,
                    client_cert_header: &self.config.client_cert_header,
                    keys: &self.client_keys,
                };
                let checked = check(&self.request, &self.form, settings, Endpoint::Token, &deps)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                black_box(checked);
            }
            Step::RequestObject => {
                let client = self.config.clients.get("tpp-1").context("no client")?;
                let verified = request_object::verify(
                    &self.request_object,
                    client,
                    &self.config.issuer,
                    &self.client_keys,
                    &deps,
                )
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                black_box(verified);
            }
            Step::IdTokenSign => {
                let user = self.config.users.by_sub("u1").context("no user")?;
                let token = sign(
                    &IdTokenContent {
                        issuer: &self.config.issuer,
                        request: &self.auth_request,
                        decision: &self.decision,
                        user,
                        at_hash: "h",
                        jti: "j",
                        iat: NOW,
                        lifetime: 15_552_000,
                    },
                    &self.config.keys.signing,
                )
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                black_box(token);
            }
            Step::QrJweDecrypt => {
                let plain =
                    ciba::jose::jwe::decrypt(&self.qr, &self.config.keys.encryption, &self.random)
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                black_box(plain);
            }
            Step::VerifyRsa09 => {
                if !Rsa::ps256().verify_signature(
                    &self.signature09,
                    &self.public09,
                    black_box(&self.message),
                ) {
                    return Err(failed("rsa 0.9 refuses its own signature"));
                }
            }
            Step::VerifyRsa10 => {
                if !Ps256.verify_signature(
                    &self.signature10,
                    &self.public10,
                    black_box(&self.message),
                ) {
                    return Err(failed("rsa 0.10 refuses its own signature"));
                }
            }
            Step::SignRsa09 => {
                black_box(Rsa::ps256().sign(&self.key09, black_box(&self.message)));
            }
            Step::SignRsa10 => {
                black_box(Ps256.sign(&self.key10, black_box(&self.message)));
            }
        }
        Ok(())
    }
}
