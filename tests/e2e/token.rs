//! `POST /token`: client authentication (CLI-1…10) and the `client_credentials` grant
//! (TOK-1…3, TOK-20/21, TKN-1…3), over HTTP.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use e2e::assertion::{self, claims, sign};
use e2e::{Response, Server, certificate_header, client, material, variables};

const CERT_HEADER: &str = "x-client-cert";

/// A server with its store on disk (to count what failed requests leave behind), clients
/// `tpp-1` (private_key_jwt, scopes consents and accounts), `tpp-2` (private_key_jwt,
/// payments), `mtls-tpp` (tls_client_auth) and `org-tpp` (private_key_jwt, org_id 42).
fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut vars = variables();
        let mut org = client("org-tpp", "consents");
        org["org_id"] = json!("42");
        let clients = json!([
            client("tpp-1", "openid consents accounts"),
            client("tpp-2", "openid payments"),
            {
                "client_id": "mtls-tpp",
                "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/tpp/application.jwks",
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": "CN=mtls-tpp,2.5.4.97=#0c094f464242522d313233,O=TPP Ltda,C=BR",
                "scope": "consents",
                "grant_types": ["client_credentials"],
            },
            org,
        ]);
        vars.insert("clients", clients.to_string());
        Server::bundle_on_disk(vars, "token")
    })
}

fn certificate() -> &'static str {
    static CERT: OnceLock<String> = OnceLock::new();
    CERT.get_or_init(|| certificate_header("CN=tpp-1,O=TPP Ltda,C=BR"))
}

fn token_url() -> String {
    format!("{}/token", server().base)
}

fn post(body: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![
        ("content-type", "application/x-www-form-urlencoded"),
        (CERT_HEADER, certificate()),
    ];
    headers.extend_from_slice(extra);
    server().send("POST", "/token", &headers, body.as_bytes())
}

fn good_assertion() -> String {
    sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims("tpp-1", &token_url()),
    )
}

fn client_credentials(assertion: &str) -> Response {
    post(
        &format!(
            "grant_type=client_credentials&scope=consents&{}",
            assertion::form(assertion)
        ),
        &[],
    )
}

fn assert_error(response: &Response, status: u16, error: &str) {
    assert_eq!(
        response.status,
        status,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let body = response.json();
    assert_eq!(body["error"], json!(error), "{body}");
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert!(
        keys.iter()
            .all(|k| *k == "error" || *k == "error_description"),
        "TOK-2: {body}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"));
}

#[test]
fn tok_21_tkn_1_3_client_credentials_issues_an_opaque_token_and_nothing_else() {
    let response = client_credentials(&good_assertion());
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("cache-control"), Some("no-store"), "TOK-1");
    assert_eq!(response.header("pragma"), Some("no-cache"), "TOK-1");
    let body = response.json();
    assert_eq!(body["token_type"], json!("Bearer"));
    assert_eq!(body["scope"], json!("consents"));
    let expires_in = body["expires_in"].as_i64().unwrap();
    assert!((300..=900).contains(&expires_in), "TKN-3: {expires_in}");
    assert!(
        body.get("refresh_token").is_none() && body.get("id_token").is_none(),
        "TOK-21: {body}"
    );
    let token = URL_SAFE_NO_PAD
        .decode(body["access_token"].as_str().unwrap())
        .unwrap();
    assert!(token.len() * 8 >= 128, "TKN-1: {} bits", token.len() * 8);
    let again = client_credentials(&good_assertion()).json();
    assert_ne!(again["access_token"], body["access_token"]);
}

#[test]
fn tok_1_interaction_id_is_echoed_or_generated() {
    let id = "2f2a7c4c-9a8b-4c1e-8f39-1f4c1a2b3c4d";
    let response = post(
        &format!(
            "grant_type=client_credentials&{}",
            assertion::form(&good_assertion())
        ),
        &[("x-fapi-interaction-id", id)],
    );
    assert_eq!(response.header("x-fapi-interaction-id"), Some(id));
    let response = client_credentials(&good_assertion());
    let generated = response.header("x-fapi-interaction-id").unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");
}

#[test]
fn tok_20_absent_scope_defaults_to_the_client_level_scopes() {
    let response = post(
        &format!(
            "grant_type=client_credentials&{}",
            assertion::form(&good_assertion())
        ),
        &[],
    );
    assert_eq!(response.json()["scope"], json!("consents"));
}

#[test]
fn tok_20_client_credentials_refuses_openid_consent_and_data_scopes() {
    for scope in [
        "openid",
        "consent%3Aurn%3Abank%3A1",
        "accounts",
        "payments",
        "consents+openid",
    ] {
        let response = post(
            &format!(
                "grant_type=client_credentials&scope={scope}&{}",
                assertion::form(&good_assertion())
            ),
            &[],
        );
        assert_error(&response, 400, "invalid_scope");
    }
}

#[test]
fn tok_2_3_grant_type_errors_are_400_with_only_error_and_description() {
    let response = post(&assertion::form(&good_assertion()), &[]);
    assert_error(&response, 400, "invalid_request");
    let response = post(
        &format!("grant_type=password&{}", assertion::form(&good_assertion())),
        &[],
    );
    assert_error(&response, 400, "unsupported_grant_type");
    // mtls-tpp is registered for client_credentials only.
    let cert = certificate_header("CN=mtls-tpp,2.5.4.97=#0c094f464242522d313233,O=TPP Ltda,C=BR");
    let response = server().post_form(
        "/token",
        Some(&cert),
        "grant_type=refresh_token&refresh_token=abc&client_id=mtls-tpp",
    );
    assert_error(&response, 400, "unauthorized_client");
}

#[test]
fn tok_1_post_and_form_only_and_no_repeated_parameters() {
    let response = server().send("GET", "/token", &[], b"");
    assert_eq!(response.status, 405);
    let body = format!(
        "grant_type=client_credentials&{}",
        assertion::form(&good_assertion())
    );
    let response = server().send(
        "POST",
        "/token",
        &[
            ("content-type", "application/json"),
            (CERT_HEADER, certificate()),
        ],
        body.as_bytes(),
    );
    assert_error(&response, 400, "invalid_request");
    let response = post(
        &format!(
            "grant_type=client_credentials&scope=consents&scope=consents&{}",
            assertion::form(&good_assertion())
        ),
        &[],
    );
    assert_error(&response, 400, "invalid_request");
}

/// Each bad assertion, by the check it must fail (CLI-4/5/6/7).
fn bad_assertions() -> Vec<(&'static str, String)> {
    let m = material();
    let aud = token_url();
    let with = |name: &str, value: Value| {
        let mut c = claims("tpp-1", &aud);
        c.insert(name.to_string(), value);
        sign("PS256", &m.client_key, "tpp-key-1", c)
    };
    let without = |name: &str| {
        let mut c = claims("tpp-1", &aud);
        c.remove(name);
        sign("PS256", &m.client_key, "tpp-key-1", c)
    };
    let now = assertion::now();
    let good = good_assertion();
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims = claims("tpp-1", &aud);
    tampered_claims.insert("sub".into(), json!("tpp-2"));
    let tampered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).unwrap());
    parts[1] = &tampered_payload;
    let n = URL_SAFE_NO_PAD
        .decode(m.client_public["n"].as_str().unwrap())
        .unwrap();
    vec![
        (
            "RS256",
            sign("RS256", &m.client_key, "tpp-key-1", claims("tpp-1", &aud)),
        ),
        ("alg none", assertion::unsigned(claims("tpp-1", &aud))),
        (
            "HS256 keyed with the public key",
            assertion::sign_hs256(&n, "tpp-key-1", claims("tpp-1", &aud)),
        ),
        ("tampered payload", parts.join(".")),
        (
            "wrong aud",
            with("aud", json!("https://other.example/token")),
        ),
        ("expired", with("exp", json!(now - 120))),
        ("no exp", without("exp")),
        ("iat in the future", with("iat", json!(now + 300))),
        ("lives over 600 s", with("exp", json!(now + 900))),
        ("no jti", without("jti")),
        ("iss is not sub", with("sub", json!("tpp-2"))),
        (
            "unknown kid",
            sign("PS256", &m.client_key, "no-such-kid", claims("tpp-1", &aud)),
        ),
        (
            "another client's key",
            sign("PS256", &m.other_key, "tpp-key-1", claims("tpp-1", &aud)),
        ),
        (
            "unknown client",
            sign("PS256", &m.client_key, "tpp-key-1", claims("nobody", &aud)),
        ),
        ("not a JWT", "not-a-jwt".to_string()),
    ]
}

#[test]
fn cli_1_4_5_each_bad_client_assertion_is_401_invalid_client() {
    for (case, assertion) in bad_assertions() {
        let response = client_credentials(&assertion);
        assert_eq!(
            response.status,
            401,
            "{case}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.json()["error"], json!("invalid_client"), "{case}");
    }
}

#[test]
fn cli_4_bad_assertions_leave_the_store_untouched() {
    let server = {
        let mut vars = variables();
        vars.insert("clients", json!([client("tpp-1", "consents")]).to_string());
        Server::bundle_on_disk(vars, "token-untouched")
    };
    let aud = format!("{}/token", server.base);
    let m = material();
    let mut expired = claims("tpp-1", &aud);
    expired.insert("exp".into(), json!(assertion::now() - 300));
    let cases = [
        sign("RS256", &m.client_key, "tpp-key-1", claims("tpp-1", &aud)),
        sign("PS256", &m.other_key, "tpp-key-1", claims("tpp-1", &aud)),
        sign("PS256", &m.client_key, "tpp-key-1", expired),
        sign(
            "PS256",
            &m.client_key,
            "tpp-key-1",
            claims("tpp-1", "https://elsewhere.example"),
        ),
    ];
    let before = server.store_rows();
    for a in &cases {
        let body = format!("grant_type=client_credentials&{}", assertion::form(a));
        let response = server.post_form("/token", Some(certificate()), &body);
        assert_eq!(response.status, 401);
    }
    assert_eq!(
        server.store_rows(),
        before,
        "a failed authentication must not write"
    );
    let good = sign("PS256", &m.client_key, "tpp-key-1", claims("tpp-1", &aud));
    let body = format!("grant_type=client_credentials&{}", assertion::form(&good));
    let (rows_before, entries_before) = server.store_rows_and_index_entries();
    let response = server.post_form("/token", Some(certificate()), &body);
    assert_eq!(response.status, 200);
    // The jti marker and the token; the purge's turn counter and, the store's first turn
    // having swept, its cursor (a fresh store). Their announcements share one entry of the
    // purge index per hourly bucket (issue 18): one, or two when the marker's and the token's
    // times fall in different hours.
    let (rows, entries) = server.store_rows_and_index_entries();
    assert_eq!(
        rows - rows_before,
        4,
        "rows for the jti marker, the token and the purge's counters"
    );
    assert!(
        (1..=2).contains(&(entries - entries_before)),
        "the index's entries for them: {}",
        entries - entries_before
    );
}

#[test]
fn cli_6_a_replayed_jti_is_invalid_client_and_logged_without_the_assertion() {
    let assertion = good_assertion();
    assert_eq!(client_credentials(&assertion).status, 200);
    assert_error(&client_credentials(&assertion), 401, "invalid_client");
    let log = server().log_text();
    assert!(
        log.contains("Token 401 invalid_client: the client assertion jti was already used"),
        "{log}"
    );
    assert!(
        !log.contains(&assertion),
        "the log must never hold an assertion"
    );
}

/// CLI-6: the replay cache is on (client_id, jti), not on the signed assertion: a new
/// assertion that reuses a used jti with another `iat` and `exp` is refused too.
#[test]
fn cli_6_a_used_jti_is_refused_in_a_new_assertion_with_another_exp() {
    let first = claims("tpp-1", &token_url());
    let jti = first["jti"].clone();
    assert_eq!(
        client_credentials(&sign(
            "PS256",
            &material().client_key,
            "tpp-key-1",
            first.clone()
        ))
        .status,
        200
    );
    let mut again = claims("tpp-1", &token_url());
    again.insert("jti".into(), jti);
    let later = again["exp"].as_i64().unwrap() + 30;
    again.insert("exp".into(), json!(later));
    let again = sign("PS256", &material().client_key, "tpp-key-1", again);
    assert_error(&client_credentials(&again), 401, "invalid_client");
}

#[test]
fn cli_6_a_used_jti_is_refused_from_the_other_time_bucket() {
    // jti markers live in 900 s buckets of exp + 60 s (store::keys::JtiMarker): a server of its
    // own, its clock set 300 s before a bucket's end, so that the first assertion's marker
    // falls just before it and the second's after it.
    let server = {
        let mut vars = variables();
        vars.insert("clients", json!([client("tpp-1", "consents")]).to_string());
        Server::bundle_on_disk(vars, "token-jti-buckets")
    };
    let real = assertion::now();
    let shift = (900 - (real + 300) % 900) % 900;
    server.time.advance(shift);
    let now = real + shift;
    let end = now + 300;
    let aud = format!("{}/token", server.base);
    let send = |exp: i64, jti: &str| {
        let mut c = assertion::claims_at("tpp-1", &aud, now);
        c.insert("exp".into(), json!(exp));
        c.insert("jti".into(), json!(jti));
        let a = sign("PS256", &material().client_key, "tpp-key-1", c);
        let body = format!(
            "grant_type=client_credentials&scope=consents&{}",
            assertion::form(&a)
        );
        let headers = [
            ("content-type", "application/x-www-form-urlencoded"),
            (CERT_HEADER, certificate()),
        ];
        server.send("POST", "/token", &headers, body.as_bytes())
    };
    // Earlier bucket first, then later; and the other way round.
    assert_eq!(send(end - 61, "jti-a").status, 200);
    assert_error(&send(end + 100, "jti-a"), 401, "invalid_client");
    assert_eq!(send(end + 100, "jti-b").status, 200);
    assert_error(&send(end - 61, "jti-b"), 401, "invalid_client");
    assert_eq!(send(end - 61, "jti-c").status, 200, "another jti is free");
}

#[test]
fn cli_5_the_issuer_is_an_accepted_audience() {
    let assertion = sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims("tpp-1", &server().base),
    );
    assert_eq!(client_credentials(&assertion).status, 200);
    let mut list = claims("tpp-1", "x");
    list.insert("aud".into(), json!(["https://other.example", token_url()]));
    let assertion = sign("PS256", &material().client_key, "tpp-key-1", list);
    assert_eq!(client_credentials(&assertion).status, 200);
}

#[test]
fn cli_7_client_id_must_match_the_assertion() {
    let body = format!(
        "grant_type=client_credentials&client_id=tpp-2&{}",
        assertion::form(&good_assertion())
    );
    assert_error(&post(&body, &[]), 401, "invalid_client");
    let body = format!(
        "grant_type=client_credentials&client_id=tpp-1&{}",
        assertion::form(&good_assertion())
    );
    assert_eq!(post(&body, &[]).status, 200);
}

#[test]
fn cli_4_client_assertion_type_must_be_jwt_bearer() {
    let body = format!(
        "grant_type=client_credentials&client_assertion_type=jwt&client_assertion={}",
        good_assertion()
    );
    assert_error(&post(&body, &[]), 401, "invalid_client");
}

#[test]
fn cli_2_client_secrets_are_refused() {
    assert_error(
        &post(
            "grant_type=client_credentials&client_id=tpp-1&client_secret=s3cr3t",
            &[],
        ),
        401,
        "invalid_client",
    );
    assert_error(
        &post(
            "grant_type=client_credentials",
            &[("authorization", "Basic dHBwLTE6czNjcjN0")],
        ),
        401,
        "invalid_client",
    );
    assert_error(
        &post("grant_type=client_credentials", &[]),
        401,
        "invalid_client",
    );
}

#[test]
fn cli_3_two_methods_at_once_is_invalid_request() {
    let body = format!(
        "grant_type=client_credentials&{}",
        assertion::form(&good_assertion())
    );
    assert_error(
        &post(&body, &[("authorization", "Basic dHBwLTE6czNjcjN0")]),
        400,
        "invalid_request",
    );
}

#[test]
fn cli_9_with_mtls_a_certificate_is_required_even_for_private_key_jwt() {
    let body = format!(
        "grant_type=client_credentials&{}",
        assertion::form(&good_assertion())
    );
    let response = server().post_form("/token", None, &body);
    assert_error(&response, 401, "invalid_client");
    let response = server().post_form("/token", Some("not%20a%20certificate"), &body);
    assert_error(&response, 401, "invalid_client");
}

/// A proxy that adds an empty `client_cert_header` when no certificate was presented, beside
/// the client's own header, must not let that header through: every occurrence counts.
#[test]
fn cli_9_an_empty_certificate_header_beside_another_is_refused() {
    let body = format!(
        "grant_type=client_credentials&{}",
        assertion::form(&good_assertion())
    );
    let form = ("content-type", "application/x-www-form-urlencoded");
    let send = |certs: &[&str]| {
        let mut headers = vec![form];
        headers.extend(certs.iter().map(|c| (CERT_HEADER, *c)));
        server().send("POST", "/token", &headers, body.as_bytes())
    };
    for certs in [
        vec!["", certificate()],
        vec![certificate(), ""],
        vec![certificate(), certificate()],
    ] {
        let response = send(&certs);
        assert_error(&response, 401, "invalid_client");
        assert_eq!(
            response.json()["error_description"],
            json!("more than one client certificate header")
        );
    }
    // One empty header is no certificate: refused with mTLS on.
    assert_error(&send(&[""]), 401, "invalid_client");
    // A value a proxy joined from two headers does not yield its first certificate.
    let joined = format!("{}%2C%20{}", certificate(), certificate());
    assert_error(&send(&[&joined]), 401, "invalid_client");
    // The same assertion with one certificate header was never used up by the refusals.
    assert_eq!(send(&[certificate()]).status, 200);
}

#[test]
fn cli_8_tls_client_auth_matches_the_subject_dn() {
    let registered = "CN=mtls-tpp,2.5.4.97=OFBBR-123,O=TPP Ltda,C=BR";
    let cases = [
        (
            "case and spaces differ",
            "CN=MTLS-TPP,2.5.4.97=OFBBR-123,O=TPP  Ltda,C=BR",
            "client_id=mtls-tpp",
            200,
        ),
        (
            "another organisation",
            "CN=mtls-tpp,2.5.4.97=OFBBR-999,O=TPP Ltda,C=BR",
            "client_id=mtls-tpp",
            401,
        ),
        (
            "RDNs in another order",
            "C=BR,O=TPP Ltda,2.5.4.97=OFBBR-123,CN=mtls-tpp",
            "client_id=mtls-tpp",
            401,
        ),
        ("no client_id", registered, "", 401),
        ("another client's id", registered, "client_id=tpp-1", 401),
    ];
    for (case, subject, client_id, status) in cases {
        let cert = certificate_header(subject);
        let body = format!("grant_type=client_credentials&{client_id}");
        let response = server().post_form("/token", Some(&cert), &body);
        assert_eq!(
            response.status,
            status,
            "{case}: {}",
            String::from_utf8_lossy(&response.body)
        );
        if status == 200 {
            assert_eq!(response.json()["scope"], json!("consents"));
        } else {
            assert_error(&response, 401, "invalid_client");
        }
    }
}

#[test]
fn cli_10_the_certificate_must_belong_to_the_registered_organisation() {
    let aud = token_url();
    let m = material();
    let send = |subject: &str| {
        let cert = certificate_header(subject);
        let a = sign("PS256", &m.client_key, "tpp-key-1", claims("org-tpp", &aud));
        let body = format!("grant_type=client_credentials&{}", assertion::form(&a));
        server().post_form("/token", Some(&cert), &body)
    };
    assert_eq!(send("CN=org,2.5.4.97=OFBBR-42,C=BR").status, 200);
    assert_error(
        &send("CN=org,2.5.4.97=OFBBR-43,C=BR"),
        401,
        "invalid_client",
    );
    assert_error(&send("CN=org,C=BR"), 401, "invalid_client");
}

#[test]
fn cli_3_the_method_used_must_be_the_registered_one() {
    // mtls-tpp is registered for tls_client_auth: an assertion in its name is refused.
    let a = sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims("mtls-tpp", &token_url()),
    );
    let response = post(
        &format!("grant_type=client_credentials&{}", assertion::form(&a)),
        &[],
    );
    assert_error(&response, 401, "invalid_client");
}

#[test]
fn cli_5_an_assertion_not_yet_valid_is_refused() {
    let mut c = claims("tpp-1", &token_url());
    c.insert("nbf".into(), json!(assertion::now() + 300));
    let a = sign("PS256", &material().client_key, "tpp-key-1", c);
    assert_error(&client_credentials(&a), 401, "invalid_client");
}

#[test]
fn tkn_2_without_mtls_tokens_are_issued_unbound_and_discovery_says_so() {
    let mut vars = variables();
    vars.insert("client_cert_header", String::new());
    let server = Server::bundle(vars);
    let aud = format!("{}/token", server.base);
    let a = sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims("tpp-1", &aud),
    );
    let body = format!("grant_type=client_credentials&{}", assertion::form(&a));
    let response = server.post_form("/token", None, &body);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let token = response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let lodged = server.send(
        "POST",
        "/open-banking/consents/v3/consents",
        &[
            ("authorization", &format!("Bearer {token}")),
            ("content-type", "application/json"),
            (
                "x-fapi-interaction-id",
                "5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e",
            ),
        ],
        json!({ "data": {
            "loggedUser": { "document": { "identification": "52998224725", "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
        }})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(
        lodged.status,
        201,
        "{}",
        String::from_utf8_lossy(&lodged.body)
    );
    let discovery = server.get("/.well-known/openid-configuration").json();
    assert_eq!(
        discovery["tls_client_certificate_bound_access_tokens"],
        json!(false)
    );
}
