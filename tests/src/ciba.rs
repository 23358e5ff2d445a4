//! A relying party and an authentication device for the CIBA flow, speaking HTTP to a running
//! bundle: client-credentials tokens, consents, signed backchannel requests, polls, and the
//! device API.

use serde_json::{Map, Value, json};

use crate::assertion::{self, claims_at, sign};
use crate::{Response, Server, certificate_header, client, material, variables};

/// The header the test proxy forwards certificates in.
pub const CERT_HEADER: &str = "x-client-cert";
/// The CIBA grant type.
pub const GRANT: &str = "urn:openid:params:grant-type:ciba";
/// The AS-generated login_hint_token type.
pub const AS_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:as-generated";
/// The AD-generated login_hint_token type.
pub const AD_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:ad-generated";
/// Single-factor authentication.
pub const LOA2: &str = "urn:brasil:openbanking:loa2";
/// Multi-factor authentication.
pub const LOA3: &str = "urn:brasil:openbanking:loa3";
/// The device token of [`variables`].
pub const DEVICE_TOKEN: &str = "a-device-token-of-at-least-32-characters";
/// The CPF of `holder-1`.
pub const HOLDER_1_CPF: &str = "52998224725";
/// The CPF of `holder-2`.
pub const HOLDER_2_CPF: &str = "11144477735";
/// The CNPJ `holder-2` acts for.
pub const HOLDER_2_CNPJ: &str = "11222333000181";

/// The bundle with two CIBA clients (`tpp-1`, `tpp-2`), a client without the CIBA grant
/// (`cc-only`), and two holders (`holder-2` acts for a company).
pub struct Ciba {
    /// The running server.
    pub server: Server,
    /// `tpp-1`'s certificate.
    pub cert: String,
    /// `tpp-2`'s certificate.
    pub other_cert: String,
    /// The issuer: the server's own URL unless the test set `issuer` (audiences use it).
    pub issuer: String,
}

/// The variables of [`Ciba`].
pub fn ciba_variables() -> std::collections::HashMap<&'static str, String> {
    let mut vars = variables();
    let mut cc_only = client("cc-only", "consents");
    cc_only["grant_types"] = json!(["client_credentials"]);
    vars.insert(
        "clients",
        json!([
            client("tpp-1", "openid consents accounts"),
            client("tpp-2", "openid consents payments"),
            cc_only,
        ])
        .to_string(),
    );
    vars.insert(
        "users",
        json!([
            { "sub": "holder-1", "cpf": HOLDER_1_CPF, "name": "Holder One" },
            { "sub": "holder-2", "cpf": HOLDER_2_CPF, "cnpj": [HOLDER_2_CNPJ] },
        ])
        .to_string(),
    );
    vars
}

impl Ciba {
    /// A fresh server whose store is on disk under `name` (so tests can count its rows).
    pub fn new(name: &str) -> Self {
        Self::with(Server::bundle_on_disk(ciba_variables(), name))
    }

    /// The fixture around a server started with [`ciba_variables`].
    pub fn with(server: Server) -> Self {
        let issuer = server.base.clone();
        Self::with_issuer(server, &issuer)
    }

    /// The fixture around a server started with `issuer` set to `issuer`.
    pub fn with_issuer(server: Server, issuer: &str) -> Self {
        Self {
            issuer: issuer.to_string(),
            server,
            cert: certificate_header("CN=tpp-1,O=TPP One,C=BR"),
            other_cert: certificate_header("CN=tpp-2,O=TPP Two,C=BR"),
        }
    }

    /// The server's clock.
    pub fn now(&self) -> i64 {
        assertion::now() + self.server.time.seconds()
    }

    /// The private key and kid of a client.
    pub fn key(client_id: &str) -> (&'static devkeys::rsa::RsaPrivateKey, &'static str) {
        if client_id == "tpp-2" {
            (&material().other_key, "tpp-key-2")
        } else {
            (&material().client_key, "tpp-key-1")
        }
    }

    /// The certificate a client presents.
    pub fn cert_of(&self, client_id: &str) -> &str {
        if client_id == "tpp-2" {
            &self.other_cert
        } else {
            &self.cert
        }
    }

    /// The form fields of a fresh client assertion for `client_id`.
    pub fn client_auth(&self, client_id: &str) -> String {
        let (key, kid) = Self::key(client_id);
        let a = sign(
            "PS256",
            key,
            kid,
            claims_at(client_id, &format!("{}/token", self.issuer), self.now()),
        );
        assertion::form(&a)
    }

    /// A form POST to `path` from `client_id`, with its certificate.
    pub fn post(&self, client_id: &str, path: &str, body: &str) -> Response {
        self.server
            .post_form(path, Some(self.cert_of(client_id)), body)
    }

    /// A `client_credentials` token with scope `consents`.
    pub fn consents_token(&self, client_id: &str) -> String {
        let body = format!(
            "grant_type=client_credentials&scope=consents&{}",
            self.client_auth(client_id)
        );
        let response = self.post(client_id, "/token", &body);
        assert_eq!(response.status, 200, "{}", text(&response));
        response.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Lodges a data consent for `cpf` (and `cnpj`) as `client_id`; its id.
    pub fn lodge(&self, client_id: &str, cpf: &str, cnpj: Option<&str>) -> String {
        let token = self.consents_token(client_id);
        let mut data = json!({
            "loggedUser": { "document": { "identification": cpf, "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "ACCOUNTS_BALANCES_READ", "RESOURCES_READ"],
        });
        if let Some(cnpj) = cnpj {
            data["businessEntity"] =
                json!({ "document": { "identification": cnpj, "rel": "CNPJ" } });
        }
        let response = self.consents(
            client_id,
            &token,
            "POST",
            "",
            Some(&json!({ "data": data })),
        );
        assert_eq!(response.status, 201, "{}", text(&response));
        response.json()["data"]["consentId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A Consents API call.
    pub fn consents(
        &self,
        client_id: &str,
        token: &str,
        method: &str,
        consent_id: &str,
        body: Option<&Value>,
    ) -> Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            (CERT_HEADER, self.cert_of(client_id)),
            (
                "x-fapi-interaction-id",
                "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
            ),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let path = if consent_id.is_empty() {
            "/open-banking/consents/v3/consents".to_string()
        } else {
            format!(
                "/open-banking/consents/v3/consents/{}",
                percent_encoding::utf8_percent_encode(
                    consent_id,
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        };
        let body = body.map(Value::to_string).unwrap_or_default();
        self.server.send(method, &path, &headers, body.as_bytes())
    }

    /// The consent as its client reads it.
    pub fn consent(&self, client_id: &str, consent_id: &str) -> Value {
        let token = self.consents_token(client_id);
        let response = self.consents(client_id, &token, "GET", consent_id, None);
        assert_eq!(response.status, 200, "{}", text(&response));
        response.json()["data"].clone()
    }

    /// The claims of a valid request object from `client_id` for `consent_id`, without a hint.
    pub fn request_claims(&self, client_id: &str, consent_id: &str) -> Map<String, Value> {
        let now = self.now();
        json!({
            "iss": client_id,
            "aud": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
            "scope": format!("openid consent:{consent_id}"),
        })
        .as_object()
        .unwrap()
        .clone()
    }

    /// Signs `claims` as `client_id`'s request object.
    pub fn sign_request(&self, client_id: &str, claims: Map<String, Value>) -> String {
        let (key, kid) = Self::key(client_id);
        sign("PS256", key, kid, claims)
    }

    /// `POST /bc-authorize` with `request` and fresh client authentication.
    pub fn bc_authorize(&self, client_id: &str, request: &str) -> Response {
        let body = format!("request={request}&{}", self.client_auth(client_id));
        self.post(client_id, "/bc-authorize", &body)
    }

    /// A backchannel request with `claims` (signed as `client_id`); the `auth_req_id`.
    pub fn start(&self, client_id: &str, claims: Map<String, Value>) -> String {
        let response = self.bc_authorize(client_id, &self.sign_request(client_id, claims));
        assert_eq!(response.status, 200, "{}", text(&response));
        response.json()["auth_req_id"].as_str().unwrap().to_string()
    }

    /// A backchannel request naming the consent's holder by `login_hint`.
    pub fn start_with_login_hint(&self, client_id: &str, consent_id: &str) -> String {
        let mut claims = self.request_claims(client_id, consent_id);
        claims.insert("login_hint".into(), json!(consent_id));
        self.start(client_id, claims)
    }

    /// A token request of the CIBA grant.
    pub fn poll(&self, client_id: &str, auth_req_id: &str) -> Response {
        let body = format!(
            "grant_type={}&auth_req_id={auth_req_id}&{}",
            GRANT.replace(':', "%3A"),
            self.client_auth(client_id)
        );
        self.post(client_id, "/token", &body)
    }

    /// A device API call with the device token and the bank backend's certificate (mTLS is
    /// on in [`ciba_variables`]).
    pub fn device(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let auth = format!("Bearer {DEVICE_TOKEN}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            (CERT_HEADER, crate::device_certificate().0.as_str()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        self.server
            .send(method, &format!("/device{path}"), &headers, body.as_bytes())
    }

    /// The holder approves at `acr`.
    pub fn approve(&self, auth_req_id: &str, acr: &str) -> Response {
        self.device(
            "POST",
            &format!("/requests/{auth_req_id}/approve"),
            Some(&json!({ "acr": acr, "amr": ["pwd"] })),
        )
    }

    /// The holder denies.
    pub fn deny(&self, auth_req_id: &str) -> Response {
        self.device("POST", &format!("/requests/{auth_req_id}/deny"), None)
    }

    /// A complete grant by `login_hint`: lodge, request, approve, poll; the token response.
    pub fn grant(&self, client_id: &str, cpf: &str) -> (String, Value) {
        let consent_id = self.lodge(client_id, cpf, None);
        let id = self.start_with_login_hint(client_id, &consent_id);
        let approved = self.approve(&id, LOA2);
        assert_eq!(approved.status, 200, "{}", text(&approved));
        let response = self.poll(client_id, &id);
        assert_eq!(response.status, 200, "{}", text(&response));
        (consent_id, response.json())
    }

    /// An AS-generated login_hint_token: `claims` signed by `client_id` with `typ`, encrypted
    /// to the server's encryption key.
    pub fn qr_token(&self, client_id: &str, claims: &Value, typ: &str) -> String {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let (key, kid) = Self::key(client_id);
        let jws = jwt_compact::alg::Rsa::ps256()
            .token(
                &Header::empty().with_key_id(kid).with_token_type(typ),
                &Claims::new(claims.clone()),
                key,
            )
            .unwrap();
        let enc = &material().encryption;
        let public = devkeys::rsa::RsaPublicKey::from(&devkeys::private_key_from_jwk(enc).unwrap());
        devkeys::encrypt_jwe(jws.as_bytes(), &public, enc["kid"].as_str().unwrap()).unwrap()
    }

    /// The claims of a valid AS-generated login_hint_token for `auth_req_id`.
    pub fn qr_claims(&self, client_id: &str, auth_req_id: &str) -> Value {
        let now = self.now();
        json!({
            "iss": client_id,
            "aud": self.issuer,
            "jti": uuid::Uuid::new_v4().to_string(),
            "iat": now,
            "exp": now + 120,
            "auth_request_id": auth_req_id,
        })
    }
}

/// The body, for assertion messages.
pub fn text(response: &Response) -> String {
    format!(
        "{} {}",
        response.status,
        String::from_utf8_lossy(&response.body)
    )
}

/// Asserts an OAuth error response: status, `error`, and nothing but `error` and
/// `error_description` (BCA-28).
pub fn assert_oauth_error(response: &Response, status: u16, error: &str) {
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (status, json!(error)),
        "{}",
        text(response)
    );
    let body = response.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| *k == "error" || *k == "error_description"),
        "{keys:?}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

/// `x5t#S256` of a JWK's certificate: base64url(SHA-256(DER of `x5c[0]`)).
pub fn x5t_s256(jwk: &Value) -> String {
    use base64::Engine;
    use sha2::Digest;
    let der = base64::engine::general_purpose::STANDARD
        .decode(jwk["x5c"][0].as_str().unwrap())
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}
