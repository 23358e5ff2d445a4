//! UserInfo (UI-1…7, CONS-2/3, TKN-9) over HTTP: the token only in the header, bound to the
//! certificate presented, from a CIBA grant with `openid` whose consent is still authorised.

use std::sync::OnceLock;

use serde_json::{Value, json};

use e2e::Response;
use e2e::ciba::{
    CERT_HEADER, Ciba, HOLDER_1_CPF, HOLDER_2_CNPJ, HOLDER_2_CPF, LOA2, assert_oauth_error, text,
};

const INTERACTION: &str = "0b6f4a2e-3c1d-4e5f-8a9b-1c2d3e4f5a6b";

fn ciba() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| Ciba::new("userinfo"))
}

/// A complete grant for `cpf` (and a business consent for `cnpj`) asking for
/// `claims.userinfo`; the consent id and the access token.
fn grant_asking(
    c: &Ciba,
    client_id: &str,
    cpf: &str,
    cnpj: Option<&str>,
    userinfo: Value,
) -> (String, String) {
    let consent_id = c.lodge(client_id, cpf, cnpj);
    let mut claims = c.request_claims(client_id, &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert("claims".into(), json!({ "userinfo": userinfo }));
    let id = c.start(client_id, claims);
    let approved = c.approve(&id, LOA2);
    assert_eq!(approved.status, 200, "{}", text(&approved));
    let response = c.poll(client_id, &id);
    assert_eq!(response.status, 200, "{}", text(&response));
    let token = response.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    (consent_id, token)
}

/// A userinfo call: `method` on `path` (the route, or it with a query), `Authorization:
/// Bearer <token>`, the certificate `cert`, an interaction id, and a form `body` on POST.
fn call(
    c: &Ciba,
    method: &str,
    path: &str,
    token: Option<&str>,
    cert: Option<&str>,
    body: &str,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("x-fapi-interaction-id", INTERACTION)];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if let Some(cert) = cert {
        headers.push((CERT_HEADER, cert));
    }
    if method == "POST" {
        headers.push(("content-type", "application/x-www-form-urlencoded"));
    }
    c.server.send(method, path, &headers, body.as_bytes())
}

/// A GET with `token` and `tpp-1`'s certificate.
fn get(c: &Ciba, token: &str) -> Response {
    call(c, "GET", "/userinfo", Some(token), Some(&c.cert), "")
}

/// A bearer-token refusal: the OAuth error and its `WWW-Authenticate` challenge (RFC 6750 3).
fn assert_bearer_error(response: &Response, status: u16, error: &str) {
    assert_oauth_error(response, status, error);
    assert_eq!(
        response.header("www-authenticate"),
        Some(format!("Bearer error=\"{error}\"").as_str()),
        "{}",
        text(response)
    );
}

#[test]
fn ui_1_ui_6_get_and_post_answer_sub_and_the_cpf_asked_for() {
    let c = ciba();
    let (_, token) = grant_asking(c, "tpp-1", HOLDER_1_CPF, None, json!({ "cpf": null }));
    // UI-1: the endpoint and its mTLS alias as discovery publishes them.
    let discovery = c.server.get("/.well-known/openid-configuration").json();
    let alias = discovery["mtls_endpoint_aliases"]["userinfo_endpoint"]
        .as_str()
        .unwrap();
    let path = alias.strip_prefix(&c.server.base).unwrap();
    assert_eq!(path, "/userinfo");
    for method in ["GET", "POST"] {
        let response = call(c, method, path, Some(&token), Some(&c.cert), "");
        assert_eq!(response.status, 200, "{method}: {}", text(&response));
        assert_eq!(response.header("content-type"), Some("application/json"));
        // UI-6: sub and the claims asked for, nothing more.
        assert_eq!(
            response.json(),
            json!({ "sub": "holder-1", "cpf": HOLDER_1_CPF }),
            "{method}"
        );
    }
    // UI-6: a grant that asked for no userinfo claims gets sub only.
    let (_, plain) = c.grant("tpp-1", HOLDER_1_CPF);
    let response = get(c, plain["access_token"].as_str().unwrap());
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(response.json(), json!({ "sub": "holder-1" }));
    // Other methods: 405 with Allow.
    let response = call(c, "PUT", "/userinfo", Some(&token), Some(&c.cert), "");
    assert_oauth_error(&response, 405, "method_not_allowed");
    assert_eq!(response.header("allow"), Some("GET, POST"));
}

#[test]
fn ui_2_a_token_in_the_query_or_the_form_body_is_invalid_request() {
    let c = ciba();
    let (_, token) = grant_asking(c, "tpp-1", HOLDER_1_CPF, None, json!({ "cpf": null }));
    let in_query = format!("/userinfo?access_token={token}");
    let in_body = format!("access_token={token}");
    let refused = [
        // Beside the header, and alone.
        call(c, "GET", &in_query, Some(&token), Some(&c.cert), ""),
        call(c, "GET", &in_query, None, Some(&c.cert), ""),
        call(c, "POST", &in_query, Some(&token), Some(&c.cert), ""),
        call(
            c,
            "POST",
            "/userinfo",
            Some(&token),
            Some(&c.cert),
            &in_body,
        ),
        call(c, "POST", "/userinfo", None, Some(&c.cert), &in_body),
    ];
    for response in &refused {
        assert_oauth_error(response, 400, "invalid_request");
    }
    // Other parameters are no reason to refuse.
    let response = call(
        c,
        "POST",
        "/userinfo?x=1",
        Some(&token),
        Some(&c.cert),
        "scope=openid",
    );
    assert_eq!(response.status, 200, "{}", text(&response));
}

#[test]
fn ui_3_without_a_certificate_or_with_another_clients_the_token_is_invalid_token() {
    let c = ciba();
    let (_, token) = grant_asking(c, "tpp-1", HOLDER_1_CPF, None, json!({ "cpf": null }));
    let none = call(c, "GET", "/userinfo", Some(&token), None, "");
    assert_bearer_error(&none, 401, "invalid_token");
    let other = call(c, "GET", "/userinfo", Some(&token), Some(&c.other_cert), "");
    assert_bearer_error(&other, 401, "invalid_token");
    // The certificate the token is bound to.
    assert_eq!(get(c, &token).status, 200);
}

#[test]
fn ui_5_cons_3_a_client_credentials_token_is_insufficient_scope() {
    let c = ciba();
    let token = c.consents_token("tpp-1");
    assert_bearer_error(&get(c, &token), 403, "insufficient_scope");
}

#[test]
fn ui_4_cons_2_an_unknown_token_or_one_whose_consent_was_revoked_is_invalid_token() {
    let c = ciba();
    assert_bearer_error(
        &get(c, "a-token-this-server-never-issued-0123456789ab"),
        401,
        "invalid_token",
    );
    let (consent_id, token) = grant_asking(c, "tpp-1", HOLDER_1_CPF, None, json!({}));
    assert_eq!(get(c, &token).status, 200);
    // The client revokes the consent at the Consents API: its tokens stop at once.
    let cc = c.consents_token("tpp-1");
    let revoked = c.consents("tpp-1", &cc, "DELETE", &consent_id, None);
    assert_eq!(revoked.status, 204, "{}", text(&revoked));
    assert_bearer_error(&get(c, &token), 401, "invalid_token");
}

#[test]
fn ui_4_an_expired_access_token_is_invalid_token() {
    // Its own server: it moves the clock.
    let c = Ciba::new("userinfo-expiry");
    let (_, token) = grant_asking(&c, "tpp-1", HOLDER_1_CPF, None, json!({}));
    // access_token_ttl is 900 s.
    c.server.time.advance(890);
    assert_eq!(get(&c, &token).status, 200);
    c.server.time.advance(11);
    assert_bearer_error(&get(&c, &token), 401, "invalid_token");
}

#[test]
fn ui_7_interaction_id_is_echoed_date_is_set_and_nothing_is_cached() {
    let c = ciba();
    let (_, token) = grant_asking(c, "tpp-1", HOLDER_1_CPF, None, json!({}));
    let ok = get(c, &token);
    let refused = call(c, "GET", "/userinfo", Some(&token), None, "");
    assert_eq!((ok.status, refused.status), (200, 401));
    for response in [&ok, &refused] {
        assert_eq!(response.header("x-fapi-interaction-id"), Some(INTERACTION));
        assert_eq!(response.header("cache-control"), Some("no-store"));
        // RFC 9110 5.6.7 IMF-fixdate, e.g. `Tue, 15 Nov 1994 08:12:31 GMT`.
        let date = response.header("date").expect("UI-7: Date is set");
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{date}");
    }
    // Without one from the client, a fresh UUID.
    let bearer = format!("Bearer {token}");
    let response = c.server.send(
        "GET",
        "/userinfo",
        &[("authorization", &bearer), (CERT_HEADER, &c.cert)],
        b"",
    );
    assert_eq!(response.status, 200, "{}", text(&response));
    let fresh = response.header("x-fapi-interaction-id").unwrap();
    assert!(
        uuid::Uuid::parse_str(fresh).is_ok() && fresh != INTERACTION,
        "{fresh}"
    );
}

#[test]
fn tkn_9_ui_6_cnpj_is_an_array_for_a_holder_acting_for_a_company() {
    let c = ciba();
    let (_, token) = grant_asking(
        c,
        "tpp-1",
        HOLDER_2_CPF,
        Some(HOLDER_2_CNPJ),
        json!({ "cpf": null, "cnpj": { "essential": true } }),
    );
    let response = get(c, &token);
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(
        response.json(),
        json!({ "sub": "holder-2", "cpf": HOLDER_2_CPF, "cnpj": [HOLDER_2_CNPJ] })
    );
}
