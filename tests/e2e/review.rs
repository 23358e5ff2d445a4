//! Regressions from an outside review of client authentication, configuration and the
//! Consents API, over HTTP against the built components. Each test failed before its fix.

use serde_json::{Value, json};

use e2e::assertion::{self, claims, sign};
use e2e::{Response, Server, certificate_header, client, material, temp_dir, variables};

const CERT_HEADER: &str = "x-client-cert";
const CONSENTS: &str = "/open-banking/consents/v3/consents";

fn assert_error(response: &Response, status: u16, error: &str) {
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (status, json!(error)),
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

fn client_credentials_body(server: &Server, client_id: &str) -> String {
    let a = sign(
        "PS256",
        &material().client_key,
        "tpp-key-1",
        claims(client_id, &format!("{}/token", server.base)),
    );
    format!(
        "grant_type=client_credentials&scope=consents&{}",
        assertion::form(&a)
    )
}

#[test]
fn cli_6_cli_10_an_assertion_refused_for_its_certificate_is_not_used_up() {
    let mut vars = variables();
    let mut org = client("org-tpp", "consents");
    org["org_id"] = json!("42");
    vars.insert("clients", json!([org]).to_string());
    let server = Server::bundle(vars);
    let body = client_credentials_body(&server, "org-tpp");
    let wrong = certificate_header("CN=org,2.5.4.97=OFBBR-43,C=BR");
    let right = certificate_header("CN=org,2.5.4.97=OFBBR-42,C=BR");
    assert_error(
        &server.post_form("/token", Some(&wrong), &body),
        401,
        "invalid_client",
    );
    let response = server.post_form("/token", Some(&right), &body);
    assert_eq!(response.status, 200, "the refusal must not burn the jti");
    let replay = server.post_form("/token", Some(&right), &body);
    assert_error(&replay, 401, "invalid_client");
    assert_eq!(
        replay.json()["error_description"],
        json!("the client assertion jti was already used")
    );
}

#[test]
fn cli_2_basic_authentication_gets_a_basic_challenge() {
    let server = crate::server();
    let response = server.send(
        "POST",
        "/token",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", "Basic dHBwLTE6czNjcjN0"),
            (CERT_HEADER, &certificate_header("CN=tpp-1,C=BR")),
        ],
        b"grant_type=client_credentials",
    );
    assert_error(&response, 401, "invalid_client");
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic"), "{challenge:?}");
    // Without the header there is nothing to challenge.
    let response = server.post_form(
        "/token",
        Some(&certificate_header("CN=tpp-1,C=BR")),
        "grant_type=client_credentials&client_id=tpp-1&client_secret=x",
    );
    assert_error(&response, 401, "invalid_client");
    assert_eq!(response.header("www-authenticate"), None);
}

#[test]
fn tok_1_a_form_that_is_not_utf_8_is_invalid_request() {
    let server = crate::server();
    let cert = certificate_header("CN=tpp-1,C=BR");
    for body in [
        &b"grant_type=client_credentials&scope=%FF"[..],
        &b"grant_type=client_credentials&scope=consents\xe9"[..],
    ] {
        let response = server.send(
            "POST",
            "/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (CERT_HEADER, &cert),
            ],
            body,
        );
        assert_error(&response, 400, "invalid_request");
    }
}

#[test]
fn key_9_a_client_key_set_with_encryption_keys_is_accepted() {
    let m = material();
    let mut vars = variables();
    let mut tpp = client("tpp-1", "consents");
    let enc = devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(&m.other_key),
        "tpp-enc-1",
        "enc",
        "RSA-OAEP",
    );
    tpp["jwks"]["keys"].as_array_mut().unwrap().push(enc);
    vars.insert("clients", json!([tpp]).to_string());
    let server = Server::bundle(vars);
    let body = client_credentials_body(&server, "tpp-1");
    let response = server.post_form("/token", Some(&certificate_header("CN=tpp-1,C=BR")), &body);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    // The encryption key never verifies: an assertion signed with it is refused.
    let a = sign(
        "PS256",
        &m.other_key,
        "tpp-enc-1",
        claims("tpp-1", &format!("{}/token", server.base)),
    );
    let response = server.post_form(
        "/token",
        Some(&certificate_header("CN=tpp-1,C=BR")),
        &format!("grant_type=client_credentials&{}", assertion::form(&a)),
    );
    assert_error(&response, 401, "invalid_client");
}

/// A 2,041-bit RSA key: 256 bytes long, 7 bits short of KEY-3.
fn short_key() -> devkeys::rsa::RsaPrivateKey {
    let key = devkeys::rsa_key(2041).unwrap();
    use devkeys::rsa::traits::PublicKeyParts;
    assert_eq!((key.n().bits(), key.size()), (2041, 256));
    key
}

#[test]
fn key_3_a_2041_bit_key_is_refused_for_the_server_and_for_clients() {
    let key = short_key();
    let cert = devkeys::self_signed_certificate(&key, "CN=short", 1).unwrap();
    let mut vars = variables();
    vars.insert(
        "signing_keys",
        json!({ "keys": [devkeys::private_jwk(&key, "short", "sig", "PS256", Some(&cert))] })
            .to_string(),
    );
    let mut tpp = client("tpp-1", "consents");
    tpp["jwks"] = json!({ "keys": [devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(&key), "short", "sig", "PS256")] });
    vars.insert("clients", json!([tpp]).to_string());
    let server = Server::bundle(vars);
    assert_error(&server.get("/jwks"), 500, "server_error");
    let token = server.post_form("/token", None, "grant_type=client_credentials");
    assert_error(&token, 500, "server_error");
    let log = server.log_text();
    assert!(
        log.contains("configuration variable `signing_keys`: keys[0]: the RSA modulus is shorter than 2048 bits"),
        "{log}"
    );
    assert!(
        log.contains("configuration variable `clients`: clients[0]: jwks.keys[0]: the RSA modulus is shorter than 2048 bits"),
        "{log}"
    );
}

#[test]
fn cli_8_an_unparsable_subject_dn_stops_the_configuration_naming_it() {
    let mut vars = variables();
    vars.insert(
        "clients",
        json!([client("tpp-1", "consents"), {
            "client_id": "mtls-tpp",
            "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/tpp/application.jwks",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=x,nonsense",
            "scope": "consents",
            "grant_types": ["client_credentials"],
        }])
        .to_string(),
    );
    let server = Server::bundle(vars);
    // Every client is refused the same way, once the configuration is known to be bad.
    let body = client_credentials_body(&server, "tpp-1");
    let response = server.post_form("/token", Some(&certificate_header("CN=tpp-1,C=BR")), &body);
    assert_error(&response, 500, "server_error");
    let log = server.log_text();
    assert!(
        log.contains("configuration variable `clients`: clients[1]: tls_client_auth_subject_dn is not an RFC 4514 distinguished name"),
        "{log}"
    );
    assert!(!log.contains("nonsense"), "the value is not logged: {log}");
}

#[test]
fn cli_8_rfc_4514_forms_register_and_match() {
    let registered = r"CN=lab tpp\ ,OID.2.5.4.97=OFBBR-7,1.3.6.1.4.1.99999.1=Sandbox,C=BR";
    let mut vars = variables();
    vars.insert(
        "clients",
        json!([{
            "client_id": "mtls-tpp",
            "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/tpp/application.jwks",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": registered,
            "scope": "consents",
            "grant_types": ["client_credentials"],
        }])
        .to_string(),
    );
    let server = Server::bundle(vars);
    let send = |subject: &str| {
        server.post_form(
            "/token",
            Some(&certificate_header(subject)),
            "grant_type=client_credentials&client_id=mtls-tpp",
        )
    };
    let ok = send("CN=lab tpp,2.5.4.97=OFBBR-7,1.3.6.1.4.1.99999.1=sandbox,C=BR");
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert_error(
        &send("CN=lab tpp,2.5.4.97=OFBBR-7,1.3.6.1.4.1.99999.2=sandbox,C=BR"),
        401,
        "invalid_client",
    );
}

#[test]
fn disc_1_a_name_that_looks_like_loopback_is_not_an_http_issuer() {
    let mut vars = variables();
    vars.insert("issuer", "http://127.attacker.example".to_string());
    let server = Server::bundle(vars);
    assert_error(
        &server.get("/.well-known/openid-configuration"),
        500,
        "server_error",
    );
    let log = server.log_text();
    assert!(
        log.contains("configuration variable `issuer`: must be an https URL (plain http only for a loopback host)"),
        "{log}"
    );
}

#[test]
fn bca_30_interaction_id_is_echoed_byte_for_byte_on_every_response() {
    let server = crate::server();
    let upper = "5B8F2C1E-1D2A-4B3C-9D4E-5F6A7B8C9D0E";
    let cert = certificate_header("CN=tpp-1,C=BR");
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        (CERT_HEADER, cert.as_str()),
        ("x-fapi-interaction-id", upper),
    ];
    // An error answered by the token endpoint.
    let response = server.send("POST", "/token", &form, b"grant_type=client_credentials");
    assert_eq!(response.header("x-fapi-interaction-id"), Some(upper));
    // A body too large, refused by the adapter before any endpoint runs.
    let big = vec![b'a'; 70 * 1024];
    let response = server.send("POST", "/token", &form, &big);
    assert_eq!(response.status, 413);
    assert_error(&response, 413, "invalid_request");
    assert_eq!(response.header("x-fapi-interaction-id"), Some(upper));
    // Discovery and JWKS too.
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let response = server.send("GET", path, &[("x-fapi-interaction-id", upper)], b"");
        assert_eq!(
            response.header("x-fapi-interaction-id"),
            Some(upper),
            "{path}"
        );
    }
    // Other UUID forms are not echoed (nor refused) at the AS endpoints: a fresh id answers.
    for other in [
        "{5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e}",
        "urn:uuid:5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e",
    ] {
        let response = server.send(
            "POST",
            "/token",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                (CERT_HEADER, cert.as_str()),
                ("x-fapi-interaction-id", other),
            ],
            b"grant_type=client_credentials",
        );
        assert_error(&response, 401, "invalid_client");
        let id = response.header("x-fapi-interaction-id").unwrap();
        assert!(id.len() == 36 && id != other, "{id}");
    }
}

#[test]
fn bca_30_a_configuration_problem_still_answers_with_the_interaction_id() {
    let mut vars = variables();
    vars.insert("access_token_ttl", "3600".to_string());
    let server = Server::bundle(vars);
    let id = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let response = server.send(
        "POST",
        "/token",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-fapi-interaction-id", id),
        ],
        b"grant_type=client_credentials",
    );
    assert_error(&response, 500, "server_error");
    assert_eq!(response.header("x-fapi-interaction-id"), Some(id));
}

fn consents_token(server: &Server, cert: &str) -> String {
    let body = client_credentials_body(server, "tpp-1");
    let response = server.post_form("/token", Some(cert), &body);
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

fn lodge(server: &Server, token: &str, cert: &str, interaction_id: Option<&str>) -> Response {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", bearer.as_str()),
        ("content-type", "application/json"),
        (CERT_HEADER, cert),
    ];
    if let Some(id) = interaction_id {
        headers.push(("x-fapi-interaction-id", id));
    }
    let body: Value = json!({ "data": {
        "loggedUser": { "document": { "identification": "52998224725", "rel": "CPF" } },
        "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
    }});
    server.send("POST", CONSENTS, &headers, body.to_string().as_bytes())
}

#[test]
fn amb_17_the_consents_api_refuses_other_uuid_forms_and_still_answers_an_id() {
    let server = crate::server();
    let cert = certificate_header("CN=tpp-1,C=BR");
    let token = consents_token(server, &cert);
    let upper = "5B8F2C1E-1D2A-4B3C-9D4E-5F6A7B8C9D0E";
    let response = lodge(server, &token, &cert, Some(upper));
    assert_eq!(response.status, 201);
    assert_eq!(response.header("x-fapi-interaction-id"), Some(upper));
    for bad in [
        Some("{5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e}"),
        Some("urn:uuid:5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e"),
        None,
    ] {
        let response = lodge(server, &token, &cert, bad);
        assert_eq!(response.status, 400, "{bad:?}");
        let id = response.header("x-fapi-interaction-id").unwrap_or_default();
        assert!(id.len() == 36 && Some(id) != bad, "{bad:?}: {id:?}");
    }
}

#[test]
fn cons_3_a_client_removed_from_clients_loses_its_tokens_at_once() {
    let dir = temp_dir("removed-client");
    let cert = certificate_header("CN=tpp-1,C=BR");
    let id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    let token = {
        let server = Server::bundle_in(variables(), &dir);
        let token = consents_token(&server, &cert);
        assert_eq!(lodge(&server, &token, &cert, Some(id)).status, 201);
        token
    };
    let mut vars = variables();
    vars.insert(
        "clients",
        json!([client("tpp-2", "openid payments")]).to_string(),
    );
    let server = Server::bundle_in(vars, &dir);
    let response = lodge(&server, &token, &cert, Some(id));
    assert_eq!(response.status, 401);
    assert_eq!(response.json()["errors"][0]["code"], json!("invalid_token"));
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}
