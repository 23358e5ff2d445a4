//! The Consents API (CONS-1…3, AMB-17) and certificate-bound tokens (TKN-2), over HTTP.

use serde_json::{Value, json};

use e2e::assertion::{self, claims_at, sign};
use e2e::{Response, Server, certificate_header, client, material, variables};

const CERT_HEADER: &str = "x-client-cert";
const PATH: &str = "/open-banking/consents/v3/consents";
const INTERACTION: &str = "5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e";

struct Fixture {
    server: Server,
    cert: String,
    other_cert: String,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let mut vars = variables();
        vars.insert(
            "clients",
            json!([
                client("tpp-1", "openid consents accounts"),
                client("tpp-2", "openid payments"),
                client("tpp-3", "consents"),
            ])
            .to_string(),
        );
        Self {
            server: Server::bundle_on_disk(vars, name),
            cert: certificate_header("CN=tpp-1,O=TPP,C=BR"),
            other_cert: certificate_header("CN=tpp-3,O=Other TPP,C=BR"),
        }
    }

    /// A `client_credentials` token of `client_id` (whose key is tpp-1's or tpp-2's).
    fn token(&self, client_id: &str, cert: &str) -> String {
        let key = if client_id == "tpp-2" {
            &material().other_key
        } else {
            &material().client_key
        };
        let kid = if client_id == "tpp-2" {
            "tpp-key-2"
        } else {
            "tpp-key-1"
        };
        let now = assertion::now() + self.server.time.seconds();
        let a = sign(
            "PS256",
            key,
            kid,
            claims_at(client_id, &format!("{}/token", self.server.base), now),
        );
        let body = format!("grant_type=client_credentials&{}", assertion::form(&a));
        let response = self.server.send(
            "POST",
            "/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (CERT_HEADER, cert),
            ],
            body.as_bytes(),
        );
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        response.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        cert: &str,
        body: Option<&Value>,
    ) -> Response {
        let auth = format!("Bearer {token}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            (CERT_HEADER, cert),
            ("x-fapi-interaction-id", INTERACTION),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        self.server.send(method, path, &headers, body.as_bytes())
    }

    fn lodge(&self, token: &str, body: &Value) -> Response {
        self.call("POST", PATH, token, &self.cert, Some(body))
    }
}

fn request_body() -> Value {
    json!({
        "data": {
            "loggedUser": { "document": { "identification": "52998224725", "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "ACCOUNTS_BALANCES_READ", "RESOURCES_READ"],
            "expirationDateTime": "2099-01-01T00:00:00Z",
        }
    })
}

fn consent_path(id: &str) -> String {
    format!("{PATH}/{id}")
}

fn error_code(response: &Response) -> String {
    response.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn cons_1_lodge_read_and_revoke_a_consent() {
    let f = Fixture::new("consents-flow");
    let token = f.token("tpp-1", &f.cert);
    let created = f.lodge(&token, &request_body());
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(
        created.header("x-fapi-interaction-id"),
        Some(INTERACTION),
        "AMB-17: echoed"
    );
    let data = created.json()["data"].clone();
    let id = data["consentId"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("urn:") && id.splitn(3, ':').count() == 3,
        "a URN: {id}"
    );
    assert_eq!(data["status"], json!("AWAITING_AUTHORISATION"));
    assert_eq!(data["permissions"], request_body()["data"]["permissions"]);
    assert_eq!(data["expirationDateTime"], json!("2099-01-01T00:00:00Z"));
    assert!(data["creationDateTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(data["creationDateTime"], data["statusUpdateDateTime"]);

    let read = f.call("GET", &consent_path(&id), &token, &f.cert, None);
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["data"], data);

    let revoked = f.call("DELETE", &consent_path(&id), &token, &f.cert, None);
    assert_eq!(revoked.status, 204);
    let read = f
        .call("GET", &consent_path(&id), &token, &f.cert, None)
        .json();
    assert_eq!(read["data"]["status"], json!("REJECTED"));
    assert_eq!(
        read["data"]["rejection"],
        json!({ "rejectedBy": "USER", "reason": { "code": "CUSTOMER_MANUALLY_REJECTED" } })
    );

    let again = f.call("DELETE", &consent_path(&id), &token, &f.cert, None);
    assert_eq!(again.status, 422);
    assert_eq!(error_code(&again), "CONSENTIMENTO_EM_STATUS_REJEITADO");
}

#[test]
fn cons_1_a_consent_not_authorised_within_60_minutes_reads_as_expired() {
    let f = Fixture::new("consents-window");
    let token = f.token("tpp-1", &f.cert);
    let id = f.lodge(&token, &request_body()).json()["data"]["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    f.server.time.advance(59 * 60);
    let token = f.token("tpp-1", &f.cert);
    assert_eq!(
        f.call("GET", &consent_path(&id), &token, &f.cert, None)
            .json()["data"]["status"],
        json!("AWAITING_AUTHORISATION")
    );
    f.server.time.advance(2 * 60);
    let token = f.token("tpp-1", &f.cert);
    let data = f
        .call("GET", &consent_path(&id), &token, &f.cert, None)
        .json()["data"]
        .clone();
    assert_eq!(data["status"], json!("REJECTED"));
    assert_eq!(
        data["rejection"],
        json!({ "rejectedBy": "ASPSP", "reason": { "code": "CONSENT_EXPIRED" } })
    );
    assert_eq!(
        f.call("DELETE", &consent_path(&id), &token, &f.cert, None)
            .status,
        422
    );
}

#[test]
fn cons_1_a_business_consent_names_a_valid_cnpj() {
    let f = Fixture::new("consents-business");
    let token = f.token("tpp-1", &f.cert);
    let mut body = request_body();
    body["data"]["businessEntity"] =
        json!({ "document": { "identification": "11222333000181", "rel": "CNPJ" } });
    body["data"]
        .as_object_mut()
        .unwrap()
        .remove("expirationDateTime");
    let created = f.lodge(&token, &body);
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert!(
        created.json()["data"].get("expirationDateTime").is_none(),
        "no end date"
    );
    // AMB-24: the 2026 alphanumeric form, check digits verified.
    for (cnpj, status) in [
        ("12ABC34501DE35", 201),
        ("12ABC34501DE36", 400),
        ("12abc34501de35", 400),
    ] {
        body["data"]["businessEntity"] =
            json!({ "document": { "identification": cnpj, "rel": "CNPJ" } });
        assert_eq!(f.lodge(&token, &body).status, status, "{cnpj}");
    }
}

#[test]
fn cons_1_malformed_bodies_get_400_and_store_nothing() {
    let f = Fixture::new("consents-malformed");
    let token = f.token("tpp-1", &f.cert);
    let with = |pointer: &str, value: Value| {
        let mut body = request_body();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let cases = vec![
        ("no data", json!({})),
        (
            "CPF check digit",
            with(
                "/data/loggedUser/document/identification",
                json!("52998224724"),
            ),
        ),
        (
            "CPF punctuation",
            with(
                "/data/loggedUser/document/identification",
                json!("529.982.247-25"),
            ),
        ),
        (
            "CPF as a number",
            with(
                "/data/loggedUser/document/identification",
                json!(52998224725u64),
            ),
        ),
        (
            "rel not CPF",
            with("/data/loggedUser/document/rel", json!("CNPJ")),
        ),
        (
            "CNPJ check digit",
            with(
                "/data",
                json!({
                    "loggedUser": { "document": { "identification": "52998224725", "rel": "CPF" } },
                    "businessEntity": { "document": { "identification": "11222333000182", "rel": "CNPJ" } },
                    "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
                }),
            ),
        ),
        ("no permissions", with("/data/permissions", json!([]))),
        (
            "unknown permission",
            with(
                "/data/permissions",
                json!(["ACCOUNTS_READ", "RESOURCES_READ", "ROOT"]),
            ),
        ),
        (
            "repeated permission",
            with(
                "/data/permissions",
                json!(["ACCOUNTS_READ", "ACCOUNTS_READ", "RESOURCES_READ"]),
            ),
        ),
        (
            "no RESOURCES_READ",
            with("/data/permissions", json!(["ACCOUNTS_READ"])),
        ),
        (
            "expiration in the past",
            with("/data/expirationDateTime", json!("2020-01-01T00:00:00Z")),
        ),
        (
            "expiration with an offset",
            with(
                "/data/expirationDateTime",
                json!("2099-01-01T00:00:00-03:00"),
            ),
        ),
    ];
    let before = f.server.store_rows();
    for (case, body) in cases {
        let response = f.lodge(&token, &body);
        assert_eq!(
            response.status,
            400,
            "{case}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(error_code(&response), "invalid_request", "{case}");
    }
    let auth = format!("Bearer {token}");
    let not_json = f.server.send(
        "POST",
        PATH,
        &[
            ("authorization", auth.as_str()),
            (CERT_HEADER, f.cert.as_str()),
            ("x-fapi-interaction-id", INTERACTION),
            ("content-type", "application/json"),
        ],
        b"{not json",
    );
    assert_eq!(not_json.status, 400);
    let form = f.server.send(
        "POST",
        PATH,
        &[
            ("authorization", auth.as_str()),
            (CERT_HEADER, f.cert.as_str()),
            ("x-fapi-interaction-id", INTERACTION),
            ("content-type", "text/plain"),
        ],
        request_body().to_string().as_bytes(),
    );
    assert_eq!(form.status, 400);
    assert_eq!(
        f.server.store_rows(),
        before,
        "a refused consent must not be stored"
    );
}

#[test]
fn cons_3_only_a_bound_client_credentials_token_with_scope_consents() {
    let f = Fixture::new("consents-tokens");
    let token = f.token("tpp-1", &f.cert);
    let payments_only = f.token("tpp-2", &f.cert);
    let before = f.server.store_rows();

    let no_token = f.server.send(
        "POST",
        PATH,
        &[
            (CERT_HEADER, f.cert.as_str()),
            ("x-fapi-interaction-id", INTERACTION),
        ],
        b"{}",
    );
    assert_eq!(no_token.status, 401);
    assert!(
        no_token
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );

    let unknown = f.lodge("not-a-token", &request_body());
    assert_eq!(unknown.status, 401);
    assert_eq!(error_code(&unknown), "invalid_token");

    // TKN-2: the token is bound to the certificate it was issued to.
    let other_cert = f.call("POST", PATH, &token, &f.other_cert, Some(&request_body()));
    assert_eq!(
        other_cert.status,
        401,
        "{}",
        String::from_utf8_lossy(&other_cert.body)
    );
    assert_eq!(error_code(&other_cert), "invalid_token");

    let no_cert = f.server.send(
        "POST",
        PATH,
        &[
            ("authorization", &format!("Bearer {token}")),
            ("x-fapi-interaction-id", INTERACTION),
            ("content-type", "application/json"),
        ],
        request_body().to_string().as_bytes(),
    );
    assert_eq!(no_cert.status, 401);

    let response = f.lodge(&payments_only, &request_body());
    assert_eq!(response.status, 403);
    assert_eq!(error_code(&response), "insufficient_scope");
    assert_eq!(
        f.server.store_rows(),
        before,
        "refused calls must not write"
    );

    // An expired token.
    f.server.time.advance(901);
    assert_eq!(f.lodge(&token, &request_body()).status, 401);
}

#[test]
fn cons_a_consent_is_visible_only_to_the_client_that_lodged_it() {
    let f = Fixture::new("consents-owner");
    let owner = f.token("tpp-1", &f.cert);
    let id = f.lodge(&owner, &request_body()).json()["data"]["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    let other = f.token("tpp-3", &f.other_cert);
    let read = f.call("GET", &consent_path(&id), &other, &f.other_cert, None);
    assert_eq!(read.status, 403);
    let revoke = f.call("DELETE", &consent_path(&id), &other, &f.other_cert, None);
    assert_eq!(revoke.status, 403);
    let read = f
        .call("GET", &consent_path(&id), &owner, &f.cert, None)
        .json();
    assert_eq!(
        read["data"]["status"],
        json!("AWAITING_AUTHORISATION"),
        "untouched"
    );
    let missing = f.call(
        "GET",
        &consent_path("urn:ofbciba:nope"),
        &owner,
        &f.cert,
        None,
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn amb_17_the_consents_api_requires_x_fapi_interaction_id() {
    let f = Fixture::new("consents-fapi");
    let token = f.token("tpp-1", &f.cert);
    let auth = format!("Bearer {token}");
    for id in [None, Some("not-a-uuid")] {
        let mut headers = vec![
            ("authorization", auth.as_str()),
            (CERT_HEADER, f.cert.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(id) = id {
            headers.push(("x-fapi-interaction-id", id));
        }
        let response = f.server.send(
            "POST",
            PATH,
            &headers,
            request_body().to_string().as_bytes(),
        );
        assert_eq!(response.status, 400, "{id:?}");
    }
}
