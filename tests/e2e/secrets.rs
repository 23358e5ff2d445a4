//! Secrets never reach a log line or an error body (issue 9, part 5; design.md, Errors: "Secrets
//! and tokens never reach a log"; style 3: `error_description` is a fixed string).
//!
//! One complete run of the bundle with its logs captured: every line the components write to
//! stdout and stderr, and every line the host writes about them (a failed component, a trap, a
//! broken connection: `Logs::line`), all land in the server's log buffer. The run covers every
//! grant and both decisions, and the error paths where secrets are most at hand: bad and
//! replayed assertions, replayed request objects, wrong tokens, a wrong device token, tampered
//! QR codes, malformed and oversized bodies, a connection that is not HTTP.
//!
//! Then, for every secret the run made or saw (each private JWK member of the server's and the
//! clients' keys, in base64url, base64 and decimal; the device token; every client assertion,
//! request object, QR JWE and the JWS inside it; every access, refresh and id token,
//! `auth_req_id` and AD-generated hint id; the CPFs and the CNPJ), no log line and no error
//! response (body or header) holds it or any 16-character piece of it; and no response at all
//! holds a key, the device token, an assertion, a request object or a QR token.

use std::collections::HashMap;
use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use e2e::ciba::{
    AD_GENERATED, AS_GENERATED, CERT_HEADER, Ciba, DEVICE_TOKEN, GRANT, HOLDER_1_CPF,
    HOLDER_2_CNPJ, HOLDER_2_CPF, LOA2, ciba_variables, text,
};
use e2e::{Response, Server, material};
use serde_json::{Map, Value, json};

/// A piece of a secret this long found anywhere counts as the secret.
const WINDOW: usize = 16;

/// Where a secret may be seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Handed to whom it belongs in a successful response (a token to its client, a CPF to
    /// the client that lodged it), never in a log line or an error.
    Issued,
    /// Never in any response and never in a log line: keys, the device token, what a client
    /// signs or encrypts.
    Never,
}

/// One response, as the audit keeps it.
struct Seen {
    what: String,
    status: u16,
    /// The body and every header value.
    text: String,
}

/// The run: the fixture, every response, every secret.
struct Audit {
    c: Ciba,
    seen: Vec<Seen>,
    secrets: Vec<(Reach, String, String)>,
}

fn field(form: &str, name: &str) -> String {
    form.split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .unwrap()
        .to_string()
}

impl Audit {
    /// Remembers a secret. Of a compact JWS or JWE only the parts that are its own are
    /// searched for: JOSE headers start alike, and claim sets share runs of claims (an
    /// issuer, an audience), so the signature and the encrypted parts stand for the whole. An
    /// unsigned JWS (`alg: none`) is no credential and holds no secret.
    fn secret(&mut self, reach: Reach, what: &str, value: impl Into<String>) {
        let value = value.into();
        assert!(!value.is_empty(), "{what}: an empty secret");
        let parts: Vec<&str> = value.split('.').collect();
        let own: Vec<&str> = match parts.as_slice() {
            [header, _, _, _, _] if header.starts_with("eyJ") => parts[1..].to_vec(),
            [header, _, ""] if header.starts_with("eyJ") => return,
            [header, _, signature] if header.starts_with("eyJ") => vec![signature],
            _ => vec![value.as_str()],
        };
        for part in own {
            self.secrets
                .push((reach, what.to_string(), part.to_string()));
        }
    }

    fn record(&mut self, what: impl Into<String>, response: Response) -> Response {
        let mut text = String::from_utf8_lossy(&response.body).into_owned();
        for (name, value) in &response.headers {
            text.push_str(&format!("\n{name}: {}", value.to_str().unwrap_or("")));
        }
        self.seen.push(Seen {
            what: what.into(),
            status: response.status,
            text,
        });
        response
    }

    /// A successful response: its status, and the secrets it hands out remembered.
    fn expect(&mut self, status: u16, response: &Response) -> Value {
        assert_eq!(response.status, status, "{}", text(response));
        if response.body.is_empty() {
            return Value::Null;
        }
        let body = response.json();
        for name in ["access_token", "refresh_token", "id_token", "auth_req_id"] {
            if let Some(value) = body[name].as_str() {
                self.secret(Reach::Issued, name, value);
            }
        }
        body
    }

    /// A refused request: a 4xx with an OAuth error.
    fn refused(&self, response: &Response) {
        assert!(
            (400..500).contains(&response.status),
            "expected a refusal: {}",
            text(response)
        );
    }

    /// Fresh `private_key_jwt` form fields for `client_id`; the assertion is a secret.
    fn auth(&mut self, client_id: &str) -> String {
        let form = self.c.client_auth(client_id);
        self.secret(
            Reach::Never,
            "client assertion",
            field(&form, "client_assertion"),
        );
        form
    }

    fn token(&mut self, what: &str, client_id: &str, fields: &str) -> Response {
        let auth = self.auth(client_id);
        let response = self
            .c
            .post(client_id, "/token", &format!("{fields}&{auth}"));
        self.record(what, response)
    }

    fn poll(&mut self, what: &str, client_id: &str, auth_req_id: &str) -> Response {
        let grant = GRANT.replace(':', "%3A");
        self.token(
            what,
            client_id,
            &format!("grant_type={grant}&auth_req_id={auth_req_id}"),
        )
    }

    /// Signs `claims` as `client_id`'s request object (a secret) and sends it.
    fn bc_authorize(
        &mut self,
        what: &str,
        client_id: &str,
        claims: Map<String, Value>,
    ) -> Response {
        let request = self.c.sign_request(client_id, claims);
        self.send_request_object(what, client_id, &request)
    }

    fn send_request_object(&mut self, what: &str, client_id: &str, request: &str) -> Response {
        self.secret(Reach::Never, "request object", request);
        let auth = self.auth(client_id);
        let response = self.c.post(
            client_id,
            "/bc-authorize",
            &format!("request={request}&{auth}"),
        );
        self.record(what, response)
    }

    fn device(&mut self, what: &str, method: &str, path: &str, body: Option<&Value>) -> Response {
        let response = self.c.device(method, path, body);
        self.record(what, response)
    }

    fn client_credentials(&mut self, client_id: &str) -> String {
        let response = self.token(
            "client_credentials",
            client_id,
            "grant_type=client_credentials&scope=consents",
        );
        self.expect(200, &response)["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn consents(
        &mut self,
        what: &str,
        client_id: &str,
        token: &str,
        method: &str,
        consent_id: &str,
        body: Option<&Value>,
    ) -> Response {
        let response = self.c.consents(client_id, token, method, consent_id, body);
        self.record(what, response)
    }

    fn lodge(&mut self, client_id: &str, cpf: &str, cnpj: Option<&str>) -> String {
        let token = self.client_credentials(client_id);
        let mut data = json!({
            "loggedUser": { "document": { "identification": cpf, "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
        });
        if let Some(cnpj) = cnpj {
            data["businessEntity"] =
                json!({ "document": { "identification": cnpj, "rel": "CNPJ" } });
        }
        let body = json!({ "data": data });
        let response = self.consents("lodge", client_id, &token, "POST", "", Some(&body));
        self.expect(201, &response)["data"]["consentId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn userinfo(&mut self, what: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        let response = self.c.server.send(
            "GET",
            "/userinfo",
            &[("authorization", &auth), (CERT_HEADER, &self.c.cert)],
            b"",
        );
        self.record(what, response)
    }

    /// An AS-generated login_hint_token for `auth_req_id`: the client's JWS (a secret)
    /// encrypted to the server's key (a secret too).
    fn qr(&mut self, client_id: &str, auth_req_id: &str) -> String {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let (key, kid) = Ciba::key(client_id);
        let jws = jwt_compact::alg::Rsa::ps256()
            .token(
                &Header::empty()
                    .with_key_id(kid)
                    .with_token_type("cibabr+jwt"),
                &Claims::new(self.c.qr_claims(client_id, auth_req_id)),
                key,
            )
            .unwrap();
        let enc = &material().encryption;
        let public = devkeys::rsa::RsaPublicKey::from(&devkeys::private_key_from_jwk(enc).unwrap());
        let jwe =
            devkeys::encrypt_jwe(jws.as_bytes(), &public, enc["kid"].as_str().unwrap()).unwrap();
        self.secret(Reach::Never, "QR JWS", jws);
        self.secret(Reach::Never, "QR JWE", jwe.clone());
        jwe
    }

    fn claim(&mut self, what: &str, login_hint_token: &str, subject: &str) -> Response {
        let body = json!({ "login_hint_token": login_hint_token, "subject": subject });
        self.device(what, "POST", "/claims", Some(&body))
    }
}

/// Every representation of a private key's secret parts that a careless line could print:
/// the JWK members (base64url), standard base64, and the decimal `Debug` of `rsa`'s integers.
fn key_secrets(audit: &mut Audit, name: &str, key: &devkeys::rsa::RsaPrivateKey) {
    use devkeys::rsa::traits::PrivateKeyParts;
    let jwk = devkeys::private_jwk(key, "k", "sig", "PS256", None);
    for member in ["d", "p", "q", "dp", "dq", "qi"] {
        audit.secret(
            Reach::Never,
            &format!("{name} {member}"),
            jwk[member].as_str().unwrap(),
        );
    }
    let d = key.d();
    audit.secret(
        Reach::Never,
        &format!("{name} d, base64"),
        STANDARD.encode(d.to_bytes_be()),
    );
    audit.secret(Reach::Never, &format!("{name} d, decimal"), d.to_string());
    for (i, prime) in key.primes().iter().enumerate() {
        audit.secret(
            Reach::Never,
            &format!("{name} prime {i}, decimal"),
            prime.to_string(),
        );
    }
}

/// A raw connection that does not speak HTTP: the host logs the broken connection.
fn not_http(server: &Server) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
}

/// Secrets, indexed so that a text is searched once for all of them: every
/// [`WINDOW`]-character piece of the long ones, and the short ones whole.
struct Index<'s> {
    pieces: HashMap<&'s [u8], &'s str>,
    short: Vec<(&'s str, &'s str)>,
}

impl<'s> Index<'s> {
    fn new(secrets: impl Iterator<Item = &'s (Reach, String, String)>) -> Self {
        let mut index = Self {
            pieces: HashMap::new(),
            short: Vec::new(),
        };
        for (_, what, secret) in secrets {
            if secret.len() < WINDOW {
                index.short.push((what, secret));
            } else {
                for piece in secret.as_bytes().windows(WINDOW) {
                    index.pieces.insert(piece, what);
                }
            }
        }
        index
    }

    /// What kind of secret (or piece of one) `text` holds, if any.
    fn leaked(&self, text: &str) -> Option<&'s str> {
        let whole = self.short.iter().find(|(_, s)| text.contains(s));
        whole.map(|(what, _)| *what).or_else(|| {
            text.as_bytes()
                .windows(WINDOW)
                .find_map(|w| self.pieces.get(w).copied())
        })
    }

    /// `text` with every secret in it starred out, for a failure message that must not
    /// print what it found.
    fn mask(&self, text: &str) -> String {
        let mut bytes = text.as_bytes().to_vec();
        for (i, window) in text.as_bytes().windows(WINDOW).enumerate() {
            if self.pieces.contains_key(window) {
                bytes[i..i + WINDOW].fill(b'*');
            }
        }
        let mut masked = String::from_utf8_lossy(&bytes).into_owned();
        for (_, secret) in &self.short {
            masked = masked.replace(secret, &"*".repeat(secret.len()));
        }
        masked
    }
}

#[test]
fn secrets_never_reach_a_log_line_or_an_error_body() {
    let mut a = Audit {
        c: Ciba::with(Server::bundle(ciba_variables())),
        seen: Vec::new(),
        secrets: Vec::new(),
    };
    let m = material();
    for (name, jwk) in [
        ("signing key", &m.signing),
        ("retired signing key", &m.retired),
        ("encryption key", &m.encryption),
    ] {
        key_secrets(&mut a, name, &devkeys::private_key_from_jwk(jwk).unwrap());
    }
    key_secrets(&mut a, "tpp-1 key", &m.client_key);
    key_secrets(&mut a, "tpp-2 key", &m.other_key);
    a.secret(Reach::Never, "device token", DEVICE_TOKEN);
    for (what, document) in [
        ("CPF", HOLDER_1_CPF),
        ("CPF", HOLDER_2_CPF),
        ("CNPJ", HOLDER_2_CNPJ),
        ("formatted CPF", "529.982.247-25"),
    ] {
        a.secret(Reach::Issued, what, document);
    }

    // 1. login_hint, with a pending poll, a poll too soon, the approval, the tokens, a second
    //    redemption, a refresh and userinfo.
    let consent = a.lodge("tpp-1", HOLDER_1_CPF, None);
    let first_consent = consent.clone();
    let token = a.client_credentials("tpp-1");
    let read = a.consents("read consent", "tpp-1", &token, "GET", &consent, None);
    a.expect(200, &read);
    let mut claims = a.c.request_claims("tpp-1", &consent);
    claims.insert("login_hint".into(), json!(consent));
    claims.insert(
        "claims".into(),
        json!({
            "id_token": { "cpf": { "essential": true, "value": HOLDER_1_CPF } },
            "userinfo": { "cpf": { "essential": true } },
        }),
    );
    let replayable = a.c.sign_request("tpp-1", claims);
    let started = a.send_request_object("bc-authorize, login_hint", "tpp-1", &replayable);
    let id = a.expect(200, &started)["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    let replayed = a.send_request_object("replayed request object", "tpp-1", &replayable);
    a.refused(&replayed);
    let pending = a.poll("pending poll", "tpp-1", &id);
    assert_eq!(pending.json()["error"], json!("authorization_pending"));
    let too_soon = a.poll("poll too soon", "tpp-1", &id);
    assert_eq!(too_soon.json()["error"], json!("slow_down"));
    let listed = a.device("device list", "GET", "/requests?subject=holder-1", None);
    a.expect(200, &listed);
    let viewed = a.device("device view", "GET", &format!("/requests/{id}"), None);
    a.expect(200, &viewed);
    let approved = a.device(
        "approve",
        "POST",
        &format!("/requests/{id}/approve"),
        Some(&json!({ "acr": LOA2, "amr": ["pwd"] })),
    );
    a.expect(200, &approved);
    a.c.server.time.advance(6);
    let issued = a.poll("token issuance", "tpp-1", &id);
    let tokens = a.expect(200, &issued);
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let id_token = tokens["id_token"].as_str().unwrap().to_string();
    a.c.server.time.advance(6);
    let again = a.poll("second redemption", "tpp-1", &id);
    a.refused(&again);
    let refreshed = a.token(
        "refresh",
        "tpp-1",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    let refreshed_access = a.expect(200, &refreshed)["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let info = a.userinfo("userinfo", &access);
    assert_eq!(a.expect(200, &info)["cpf"], json!(HOLDER_1_CPF));

    // 2. AS-generated: the QR code claimed (and claimed again, and tampered), approved.
    let consent = a.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = a.c.request_claims("tpp-1", &consent);
    claims.insert("login_hint_token".into(), json!(AS_GENERATED));
    claims.insert("binding_message".into(), json!("QR 7"));
    let started = a.bc_authorize("bc-authorize, as-generated", "tpp-1", claims);
    let qr_id = a.expect(200, &started)["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    let qr = a.qr("tpp-1", &qr_id);
    let mut tampered = qr.clone().into_bytes();
    let last = tampered.len() - 30;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    a.secret(Reach::Never, "tampered QR JWE", tampered.clone());
    let refused = a.claim("tampered QR", &tampered, "holder-1");
    a.refused(&refused);
    let claimed = a.claim("QR claim", &qr, "holder-1");
    a.expect(200, &claimed);
    let reclaimed = a.claim("QR claimed again", &qr, "holder-1");
    a.refused(&reclaimed);
    let approved = a.device(
        "approve QR request",
        "POST",
        &format!("/requests/{qr_id}/approve"),
        Some(&json!({ "acr": LOA2, "amr": ["pwd"] })),
    );
    a.expect(200, &approved);
    let issued = a.poll("QR token issuance", "tpp-1", &qr_id);
    a.expect(200, &issued);

    // 3. AD-generated hint id, then id_token_hint; both denied on the device.
    let hint = a.device(
        "AD hint",
        "POST",
        "/hints",
        Some(&json!({ "subject": "holder-1" })),
    );
    let hint_id = a.expect(201, &hint)["id"].as_str().unwrap().to_string();
    a.secret(Reach::Issued, "AD hint id", hint_id.clone());
    let consent = a.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = a.c.request_claims("tpp-1", &consent);
    let login_hint_token = json!({ "format": AD_GENERATED, "id": hint_id }).to_string();
    claims.insert("login_hint_token".into(), json!(login_hint_token));
    claims.insert("binding_message".into(), json!("AD 1"));
    let started = a.bc_authorize("bc-authorize, ad-generated", "tpp-1", claims.clone());
    let ad_id = a.expect(200, &started)["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let reused = a.bc_authorize("AD hint id used again", "tpp-1", claims);
    a.refused(&reused);
    let denied = a.device("deny", "POST", &format!("/requests/{ad_id}/deny"), None);
    a.expect(200, &denied);
    let after_denial = a.poll("poll after denial", "tpp-1", &ad_id);
    assert_eq!(after_denial.json()["error"], json!("access_denied"));
    let consent = a.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = a.c.request_claims("tpp-1", &consent);
    claims.insert("id_token_hint".into(), json!(id_token));
    let started = a.bc_authorize("bc-authorize, id_token_hint", "tpp-1", claims);
    let hinted = a.expect(200, &started)["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    let denied = a.device("deny", "POST", &format!("/requests/{hinted}/deny"), None);
    a.expect(200, &denied);

    // 4. A business consent with an essential CNPJ, and an approval that fails AD-5 because
    //    the essential CPF is someone else's.
    let consent = a.lodge("tpp-1", HOLDER_2_CPF, Some(HOLDER_2_CNPJ));
    let mut claims = a.c.request_claims("tpp-1", &consent);
    claims.insert("login_hint".into(), json!(consent));
    claims.insert(
        "claims".into(),
        json!({ "id_token": {
            "cnpj": { "essential": true, "value": HOLDER_2_CNPJ },
            "cpf": { "essential": true, "value": HOLDER_1_CPF },
        } }),
    );
    let started = a.bc_authorize("bc-authorize, CNPJ", "tpp-1", claims);
    let business = a.expect(200, &started)["auth_req_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mismatch = a.device(
        "approve, CPF mismatch",
        "POST",
        &format!("/requests/{business}/approve"),
        Some(&json!({ "acr": LOA2, "amr": ["pwd"] })),
    );
    a.refused(&mismatch);

    // 5. Client authentication that fails: tampered, RS256, unsigned, HS256 with the public
    //    key, a replayed assertion; another client's auth_req_id.
    let good = a.c.client_auth("tpp-1");
    let assertion = field(&good, "client_assertion");
    a.secret(Reach::Never, "client assertion", assertion.clone());
    let fields = "grant_type=client_credentials&scope=consents";
    let first = a.c.post("tpp-1", "/token", &format!("{fields}&{good}"));
    let first = a.record("assertion", first);
    a.expect(200, &first);
    let replayed = a.c.post("tpp-1", "/token", &format!("{fields}&{good}"));
    let replayed = a.record("replayed assertion", replayed);
    a.refused(&replayed);
    let mut tampered = assertion.clone().into_bytes();
    let last = tampered.len() - 5;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let aud = format!("{}/token", a.c.issuer);
    let (key, kid) = Ciba::key("tpp-1");
    let now = a.c.now();
    let public_key_bytes = m.client_public.to_string().into_bytes();
    for (what, bad) in [
        ("tampered assertion", tampered),
        (
            "RS256 assertion",
            e2e::assertion::sign(
                "RS256",
                key,
                kid,
                e2e::assertion::claims_at("tpp-1", &aud, now),
            ),
        ),
        (
            "unsigned assertion",
            e2e::assertion::unsigned(e2e::assertion::claims_at("tpp-1", &aud, now)),
        ),
        (
            "HS256 assertion",
            e2e::assertion::sign_hs256(
                &public_key_bytes,
                kid,
                e2e::assertion::claims_at("tpp-1", &aud, now),
            ),
        ),
    ] {
        a.secret(Reach::Never, what, bad.clone());
        let body = format!("{fields}&{}", e2e::assertion::form(&bad));
        let response = a.c.post("tpp-1", "/token", &body);
        let response = a.record(what, response);
        a.refused(&response);
    }
    let foreign = a.poll("another client's auth_req_id", "tpp-2", &qr_id);
    a.refused(&foreign);

    // 6. Wrong tokens.
    let unknown = URL_SAFE_NO_PAD.encode([7u8; 32]);
    a.secret(Reach::Never, "unknown bearer token", unknown.clone());
    for (what, bearer) in [
        ("userinfo, unknown token", unknown.as_str()),
        ("userinfo, refresh token as bearer", refresh.as_str()),
        ("userinfo, client_credentials token", token.as_str()),
    ] {
        let response = a.userinfo(what, bearer);
        a.refused(&response);
    }
    let wrong = a.token(
        "refresh with an access token",
        "tpp-1",
        &format!("grant_type=refresh_token&refresh_token={access}"),
    );
    a.refused(&wrong);
    let unknown_id = a.poll("unknown auth_req_id", "tpp-1", &unknown);
    a.refused(&unknown_id);
    let wrong_device = format!("{}x", &DEVICE_TOKEN[..DEVICE_TOKEN.len() - 1]);
    a.secret(Reach::Never, "wrong device token", wrong_device.clone());
    for (what, authorization) in [
        ("wrong device token", format!("Bearer {wrong_device}")),
        ("device token as Basic", format!("Basic {DEVICE_TOKEN}")),
        ("access token on the device API", format!("Bearer {access}")),
    ] {
        let response = a.c.server.send(
            "GET",
            "/device/requests?subject=holder-1",
            &[("authorization", &authorization)],
            b"",
        );
        let response = a.record(what, response);
        a.refused(&response);
    }

    // 7. Malformed and oversized bodies.
    let auth = a.auth("tpp-1");
    for (what, path, content_type, body) in [
        (
            "token, JSON body",
            "/token",
            "application/json",
            format!(r#"{{"grant_type":"client_credentials","client_assertion":"{assertion}"}}"#),
        ),
        (
            "token, repeated parameter",
            "/token",
            "application/x-www-form-urlencoded",
            format!("grant_type=client_credentials&grant_type=client_credentials&{auth}"),
        ),
        (
            "token, not UTF-8",
            "/token",
            "application/x-www-form-urlencoded",
            format!("grant_type=%FF&{auth}"),
        ),
        (
            "bc-authorize, request not a JWS",
            "/bc-authorize",
            "application/x-www-form-urlencoded",
            format!("request={}&{auth}", &id_token[..40]),
        ),
        (
            "token, body too large",
            "/token",
            "application/x-www-form-urlencoded",
            format!("{auth}&padding={}", "a".repeat(70 * 1024)),
        ),
    ] {
        let response = a.c.server.send(
            "POST",
            path,
            &[("content-type", content_type), (CERT_HEADER, &a.c.cert)],
            body.as_bytes(),
        );
        let response = a.record(what, response);
        a.refused(&response);
    }
    let approve_path = format!("/device/requests/{business}/approve");
    let claims_path = "/device/claims".to_string();
    let device_auth = format!("Bearer {DEVICE_TOKEN}");
    for (what, path, body) in [
        ("approve, broken JSON", &approve_path, r#"{"acr": "#.to_string()),
        (
            "claim, not a JWE",
            &claims_path,
            json!({ "login_hint_token": "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "subject": "holder-1" })
                .to_string(),
        ),
        (
            "claim, unknown holder",
            &claims_path,
            json!({ "login_hint_token": qr, "subject": HOLDER_1_CPF }).to_string(),
        ),
    ] {
        let response = a.c.server.send(
            "POST",
            path,
            &[
                ("authorization", &device_auth),
                (CERT_HEADER, e2e::device_certificate().0.as_str()),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        );
        let response = a.record(what, response);
        a.refused(&response);
    }
    let lodging = a.client_credentials("tpp-1");
    for (what, body) in [
        (
            "lodge, CPF with a bad check digit",
            json!({ "data": { "loggedUser": { "document": {
                "identification": "52998224724", "rel": "CPF" } },
                "permissions": ["ACCOUNTS_READ"] } }),
        ),
        (
            "lodge, CNPJ as a CPF",
            json!({ "data": { "loggedUser": { "document": {
                "identification": HOLDER_2_CNPJ, "rel": "CPF" } },
                "permissions": ["ACCOUNTS_READ"] } }),
        ),
        (
            "lodge, unknown permission",
            json!({ "data": { "loggedUser": { "document": {
                "identification": HOLDER_1_CPF, "rel": "CPF" } },
                "permissions": [HOLDER_1_CPF] } }),
        ),
    ] {
        let response = a.consents(what, "tpp-1", &lodging, "POST", "", Some(&body));
        a.refused(&response);
    }
    a.secret(Reach::Issued, "bad CPF", "52998224724");

    // 8. The consent revoked: its tokens stop.
    let revoked = a.consents("revoke", "tpp-1", &lodging, "DELETE", &first_consent, None);
    a.expect(204, &revoked);
    for (what, bearer) in [
        ("userinfo after revocation", access.as_str()),
        (
            "userinfo after revocation, refreshed",
            refreshed_access.as_str(),
        ),
    ] {
        let response = a.userinfo(what, bearer);
        a.refused(&response);
    }
    let refresh_after = a.token(
        "refresh after revocation",
        "tpp-1",
        &format!("grant_type=refresh_token&refresh_token={refresh}"),
    );
    a.refused(&refresh_after);

    // 9. Not HTTP at all: the host's own line.
    not_http(&a.c.server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !a.c.server.log_text().contains("connection from") && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // The logs hold what they should: a line per refusal, and the host's line.
    let every = Index::new(a.secrets.iter());
    let never = Index::new(a.secrets.iter().filter(|(r, _, _)| *r == Reach::Never));
    let logs = a.c.server.log_text();
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        logs.contains("connection from 127.0.0.1"),
        "the host's own line is captured with the components' logs:\n{}",
        every.mask(&logs)
    );
    let refusals: Vec<&Seen> = a.seen.iter().filter(|s| s.status >= 400).collect();
    for seen in &refusals {
        let interaction = seen
            .text
            .lines()
            .find_map(|l| l.strip_prefix("x-fapi-interaction-id: "))
            .unwrap_or_else(|| panic!("{}: no interaction id", seen.what));
        assert!(
            lines.iter().any(|l| l.contains(interaction)),
            "{}: no log line for this refusal",
            seen.what
        );
    }

    // No secret in any log line.
    for line in &lines {
        if let Some(what) = every.leaked(line) {
            panic!("a log line holds a secret ({what}): {}", every.mask(line));
        }
    }
    // No secret in any error response; no key, device token, assertion, request object or
    // QR token in any response at all.
    for seen in &a.seen {
        if let Some(what) = never.leaked(&seen.text) {
            panic!("the response to {} holds a secret ({what})", seen.what);
        }
        if seen.status >= 400
            && let Some(what) = every.leaked(&seen.text)
        {
            panic!(
                "the error response to {} holds a secret ({what})",
                seen.what
            );
        }
    }
    println!(
        "secrets: {} responses ({} refusals) and {} log lines checked against {} secrets",
        a.seen.len(),
        refusals.len(),
        lines.len(),
        a.secrets.len()
    );
}
