//! The hot steps of the shared crate, natively (issue 8, 1(a)): what every authenticated
//! request pays (client-assertion verification), what bc-authorize adds (request-object
//! verification), what an approval pays (id_token signing), form parsing, and the QR JWE.
//! The same code in Wasm costs more: see bench/BENCHMARKS.md.
//!
//! `cargo bench -p ciba --bench hot_paths`

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;

use ciba::auth_req::{AcrRequest, AuthRequest, ClaimRequests, Decision, HintKind, Status};
use ciba::client_auth::{ClientAuthSettings, JWT_BEARER, check};
use ciba::clock::CountingRandom;
use ciba::config::{Config, var};
use ciba::error::Endpoint;
use ciba::form::Form;
use ciba::http::{Method, Request};
use ciba::id_token::{IdTokenContent, sign};
use ciba::request_object;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://auth.bank.example";

struct Fixture {
    config: Config,
    client_key: devkeys::rsa::RsaPrivateKey,
    encryption_public: devkeys::rsa::RsaPublicKey,
}

fn fixture() -> Fixture {
    let client_key = devkeys::rsa_key(2048).unwrap();
    let encryption = devkeys::encryption_jwk("enc-1").unwrap();
    let encryption_public =
        devkeys::rsa::RsaPublicKey::from(&devkeys::private_key_from_jwk(&encryption).unwrap());
    let client = json!({
        "client_id": "tpp-1",
        "jwks": { "keys": [devkeys::public_jwk(
            &devkeys::rsa::RsaPublicKey::from(&client_key), "k1", "sig", "PS256")] },
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": "openid consents",
        "grant_types": ["urn:openid:params:grant-type:ciba", "client_credentials", "refresh_token"],
    });
    let vars: HashMap<&'static str, String> = HashMap::from([
        (var::ISSUER, ISSUER.to_string()),
        (
            var::SIGNING_KEYS,
            json!({ "keys": [devkeys::signing_jwk("sig-1").unwrap()] }).to_string(),
        ),
        (
            var::ENCRYPTION_KEYS,
            json!({ "keys": [encryption] }).to_string(),
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
    Fixture {
        config: Config::load(&vars).unwrap(),
        client_key,
        encryption_public,
    }
}

fn jws(key: &devkeys::rsa::RsaPrivateKey, claims: Value) -> String {
    use jwt_compact::{AlgorithmExt, Claims, Header};
    jwt_compact::alg::Rsa::ps256()
        .token(
            &Header::empty().with_key_id("k1"),
            &Claims::new(claims),
            key,
        )
        .unwrap()
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let settings = ClientAuthSettings {
        issuer: &f.config.issuer,
        clients: &f.config.clients,
        client_cert_header: &f.config.client_cert_header,
    };
    let assertion = jws(
        &f.client_key,
        json!({ "iss": "tpp-1", "sub": "tpp-1", "aud": format!("{ISSUER}/token"),
                "iat": NOW, "exp": NOW + 60, "jti": "j1" }),
    );
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

    c.bench_function("form: parse a token request", |b| {
        b.iter(|| Form::parse_body(std::hint::black_box(body.as_bytes())).unwrap())
    });

    let form = Form::parse_body(body.as_bytes()).unwrap();
    c.bench_function("client assertion: verify (CLI-4…7, jti not used)", |b| {
        b.iter(|| check(&request, &form, settings, Endpoint::Token, NOW).unwrap())
    });

    let client = f.config.clients.get("tpp-1").unwrap();
    let request_object = jws(
        &f.client_key,
        json!({ "iss": "tpp-1", "aud": ISSUER, "iat": NOW, "nbf": NOW, "exp": NOW + 300,
                "jti": "r1", "scope": "openid consent:urn:x:1", "login_hint": "urn:x:1" }),
    );
    c.bench_function("request object: verify (BCA-5…10)", |b| {
        b.iter(|| request_object::verify(&request_object, client, &f.config.issuer, NOW).unwrap())
    });

    let user = f.config.users.by_sub("u1").unwrap();
    let auth_request = AuthRequest {
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
    };
    let decision = Decision {
        sub: "u1".into(),
        acr: "urn:brasil:openbanking:loa2".into(),
        amr: vec!["pwd".into()],
        auth_time: NOW,
    };
    c.bench_function("id_token: sign (TKN-4…9)", |b| {
        b.iter(|| {
            sign(
                &IdTokenContent {
                    issuer: &f.config.issuer,
                    request: &auth_request,
                    decision: &decision,
                    user,
                    at_hash: "h",
                    jti: "j",
                    iat: NOW,
                    lifetime: 15_552_000,
                },
                &f.config.keys.signing,
            )
            .unwrap()
        })
    });

    let qr =
        devkeys::encrypt_jwe(request_object.as_bytes(), &f.encryption_public, "enc-1").unwrap();
    let random = CountingRandom::default();
    c.bench_function(
        "QR JWE: decrypt, blinded RSA-OAEP + A256GCM (HINT-15)",
        |b| b.iter(|| ciba::jose::jwe::decrypt(&qr, &f.config.keys.encryption, &random).unwrap()),
    );
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
