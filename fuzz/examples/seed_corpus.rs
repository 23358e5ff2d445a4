//! Writes the seed corpus, `corpus/<target>/<name>`: small valid inputs of each target (and
//! a few near misses), made with the harness's fixed keys, then runs each through its target
//! and checks that the valid ones get through (so the fuzzers start deep in each parser).
//!
//! `cargo run --release --example seed-corpus` from `fuzz/`.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use ciba_fuzz::*;
use serde_json::{Value, json};

/// A seed: its file name, its bytes, and what its target must answer (`None`: anything).
struct Seed(&'static str, Vec<u8>, Option<u16>);

fn seeds(target: &str) -> Vec<Seed> {
    let w = world();
    let m = material();
    let bytes = |v: &Value| v.to_string().into_bytes();
    let request_object = {
        let mut claims = request_claims(&w.consent_id, "seed-request");
        claims.insert("login_hint".into(), json!(w.consent_id));
        request_object(&claims)
    };
    let id_token = sign(
        &m.server_key,
        &{
            let mut h = header("sig-1", Some("JWT"));
            h.insert("x5t#S256".into(), json!(m.server_x5t));
            h
        },
        &json!({
            "iss": ISSUER, "sub": HOLDER, "aud": CLIENT,
            "iat": NOW - 3600, "exp": NOW + 180 * 86_400,
            "jti": "5d1c7f2a-9e0b-4c3d-8a6f-1b2c3d4e5f60",
            "acr": "urn:brasil:openbanking:loa2",
        }),
    );
    match target {
        "form" => vec![
            Seed(
                "bc-authorize",
                bc_authorize_form(&request_object, &w.assertion).into_bytes(),
                Some(200),
            ),
            Seed(
                "client-credentials",
                format!(
                    "grant_type=client_credentials&scope=consents+openid&client_assertion_type={}&client_assertion={}",
                    enc(JWT_BEARER),
                    w.assertion
                )
                .into_bytes(),
                None,
            ),
            Seed(
                "ciba-poll",
                format!(
                    "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={}&client_id=tpp-1",
                    w.pending
                )
                .into_bytes(),
                None,
            ),
            Seed("repeated", b"scope=a&scope=b".to_vec(), None),
            Seed("encodings", "a=%C3%A9&b=%2B1+2&c=x=y&d=&e".as_bytes().to_vec(), None),
        ],
        "jws" => vec![
            Seed("request-object", request_object.into_bytes(), Some(1)),
            Seed(
                "client-assertion",
                assertion(&format!("{ISSUER}/token"), "seed-assertion").into_bytes(),
                Some(2),
            ),
            Seed("id-token-hint", id_token.clone().into_bytes(), Some(1)),
            Seed(
                "alg-none",
                b"eyJhbGciOiJub25lIn0.eyJpc3MiOiJ0cHAtMSJ9.".to_vec(),
                Some(0),
            ),
            Seed("five-parts", b"a.b.c.d.e".to_vec(), Some(0)),
        ],
        "signed_claims" => vec![
            Seed("valid", signed_claims_input(Value::Null, Value::Null, Value::Null), Some(200)),
            Seed(
                "as-generated",
                signed_claims_input(
                    json!({ "login_hint": null, "login_hint_token": AS_GENERATED }),
                    Value::Null,
                    Value::Null,
                ),
                Some(200),
            ),
            Seed(
                "ad-generated",
                signed_claims_input(
                    json!({
                        "login_hint": null,
                        "login_hint_token": json!({ "format": AD_GENERATED, "id": w.ad_hint }).to_string(),
                    }),
                    Value::Null,
                    Value::Null,
                ),
                Some(200),
            ),
            Seed(
                "id-token-hint",
                signed_claims_input(
                    json!({ "login_hint": null, "id_token_hint": id_token }),
                    Value::Null,
                    Value::Null,
                ),
                Some(200),
            ),
            Seed(
                "claims-and-acr",
                signed_claims_input(
                    json!({
                        "claims": { "id_token": {
                            "acr": { "essential": true, "values": ["urn:brasil:openbanking:loa3"] },
                            "cpf": { "essential": true, "value": HOLDER_CPF },
                        }, "userinfo": { "cpf": null } },
                        "acr_values": null,
                        "requested_expiry": "120",
                        "binding_message": "Pagamento 42 \u{e9}",
                    }),
                    json!({ "aud": [ISSUER, format!("{ISSUER}/bc-authorize")] }),
                    json!({ "typ": "oauth-authz-req+jwt" }),
                ),
                Some(200),
            ),
            Seed(
                "expired",
                signed_claims_input(json!({ "exp": NOW - 600 }), Value::Null, Value::Null),
                Some(400),
            ),
        ],
        "qr_jwe" => vec![
            Seed("valid", qr_token(&qr_claims()).into_bytes(), Some(200)),
            Seed(
                "rsa1_5",
                encrypt(
                    b"x.y.z",
                    &json!({ "alg": "RSA1_5", "enc": "A256GCM", "kid": "enc-1", "cty": "JWT" }),
                )
                .into_bytes(),
                None,
            ),
        ],
        "device_api" => vec![
            Seed(
                "approve",
                device_api_input(
                    "approve",
                    &bytes(&json!({ "acr": "urn:brasil:openbanking:loa2", "amr": ["pwd"] })),
                ),
                Some(200),
            ),
            Seed(
                "approve-other-subject",
                device_api_input(
                    "approve",
                    &bytes(&json!({ "acr": "urn:brasil:openbanking:loa3", "subject": "holder-2" })),
                ),
                Some(400),
            ),
            Seed("hints", device_api_input("hints", &bytes(&json!({ "subject": HOLDER }))), Some(201)),
            Seed(
                "claims",
                device_api_input(
                    "claims",
                    &bytes(&json!({ "login_hint_token": qr_token(&qr_claims()), "subject": HOLDER })),
                ),
                Some(200),
            ),
            Seed(
                "revoke-jti",
                device_api_input("id-tokens/revoke", &bytes(&json!({ "jti": "5d1c7f2a-9e0b-4c3d-8a6f-1b2c3d4e5f60" }))),
                Some(200),
            ),
            Seed(
                "revoke-subject",
                device_api_input(
                    "id-tokens/revoke",
                    &bytes(&json!({ "subject": HOLDER, "not_before": "2027-01-01T00:00:00.5Z" })),
                ),
                Some(200),
            ),
            Seed("list", device_api_input("list", b"subject=holder-1"), Some(200)),
            Seed(
                "path",
                device_api_input("path", format!("/requests/{}", w.pending).as_bytes()),
                Some(200),
            ),
            Seed("deny", device_api_input("path", format!("POST /requests/{}/deny", w.pending).as_bytes()), Some(200)),
        ],
        "consents_api" => vec![
            Seed("consent", bytes(&consent_body()), Some(201)),
            Seed(
                "business",
                bytes(&json!({ "data": {
                    "loggedUser": { "document": { "identification": "11144477735", "rel": "CPF" } },
                    "businessEntity": { "document": { "identification": "11222333000181", "rel": "CNPJ" } },
                    "permissions": ["RESOURCES_READ", "CUSTOMERS_BUSINESS_IDENTIFICATIONS_READ"],
                }})),
                Some(201),
            ),
            Seed("consent-id", w.consent_id.clone().into_bytes(), Some(400)),
        ],
        "client_certificate" => vec![
            Seed("certificate", m.client_cert_header.clone().into_bytes(), Some(200)),
            Seed("dn", CERT_SUBJECT.as_bytes().to_vec(), Some(401)),
            Seed(
                "dn-hex",
                b"CN=a\\,b+UID=x,2.5.4.97=#0c0e4f464242522d3132333435363738,O=\"TPP\",C=BR".to_vec(),
                Some(401),
            ),
        ],
        "jwk_sets" => vec![
            Seed("signing-keys", m.signing_keys.clone().into_bytes(), Some(1)),
            Seed("encryption-keys", m.encryption_keys.clone().into_bytes(), Some(1)),
            Seed("clients", m.clients.clone().into_bytes(), Some(1)),
            Seed("users", m.users.clone().into_bytes(), Some(1)),
        ],
        other => panic!("no seeds for {other}"),
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut failed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for Seed(file, bytes, expected) in seeds(name) {
            std::fs::write(dir.join(file), &bytes).unwrap();
            let got = target(&bytes);
            let ok = expected.is_none_or(|e| got == Some(e));
            if !ok {
                failed += 1;
            }
            println!(
                "{name}/{file}: {} bytes, {got:?}{}",
                bytes.len(),
                if ok {
                    String::new()
                } else {
                    format!(" (expected {expected:?})")
                }
            );
        }
    }
    if failed > 0 {
        eprintln!("{failed} seeds did not get the answer they should");
        std::process::exit(1);
    }
}
