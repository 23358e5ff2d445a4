//! Configuration over HTTP: a bad variable answers 500 `server_error` and logs one line that
//! names the variable and never its value; a missing required variable stops the host.

use serde_json::json;

use e2e::{Server, Store, bundle_manifest, variables};

#[test]
fn a_bad_secret_variable_answers_500_and_logs_its_name_once_never_its_value() {
    let small = devkeys::rsa_key(1024).unwrap();
    let cert = devkeys::self_signed_certificate(&small, "CN=small", 1).unwrap();
    let jwk = devkeys::private_jwk(&small, "small", "sig", "PS256", Some(&cert));
    let mut vars = variables();
    vars.insert("signing_keys", json!({ "keys": [jwk] }).to_string());
    let server = Server::bundle(vars);

    for _ in 0..2 {
        let response = server.get("/jwks");
        assert_eq!(response.status, 500);
        assert_eq!(response.header("cache-control"), Some("no-store"));
        assert_eq!(
            response.json(),
            json!({ "error": "server_error", "error_description": "the server is misconfigured" })
        );
    }
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("signing_keys")).collect();
    assert_eq!(lines.len(), 1, "logged once per instance: {log}");
    assert!(lines[0].contains("2048"), "{log}");
    for secret in ["d", "p", "q", "n"] {
        let value = jwk[secret].as_str().unwrap();
        assert!(!log.contains(&value[..24]), "the log leaks {secret}");
    }
    // Discovery does not read the keys and keeps working.
    assert_eq!(server.get("/.well-known/openid-configuration").status, 200);
}

#[test]
fn a_bad_plain_variable_answers_500_naming_it_without_its_value() {
    let mut vars = variables();
    vars.insert(
        "users",
        json!([{ "sub": "h", "cpf": "12345678900" }]).to_string(),
    );
    let server = Server::bundle(vars);
    let response = server.get("/.well-known/openid-configuration");
    assert_eq!(response.status, 500);
    assert_eq!(response.json()["error"], json!("server_error"));
    let log = server.log_text();
    assert!(
        log.contains("configuration variable `users`: users[0]: cpf is not a valid CPF"),
        "{log}"
    );
    assert!(!log.contains("12345678900"), "PII in the log: {log}");
}

#[test]
fn a_missing_required_variable_stops_the_host_naming_it() {
    let mut vars = variables();
    vars.remove("signing_keys");
    let err = Server::try_start(&bundle_manifest(), vars, Store::Memory)
        .err()
        .expect("the host must refuse to start");
    let text = format!("{err:#}");
    assert!(text.contains("signing_keys"), "{text}");
}

#[test]
fn an_empty_secret_answers_500_naming_it() {
    let mut vars = variables();
    vars.insert("encryption_keys", String::new());
    let server = Server::bundle(vars);
    assert_eq!(server.get("/jwks").status, 500);
    assert!(
        server
            .log_text()
            .contains("configuration variable `encryption_keys`: is not set")
    );
}
