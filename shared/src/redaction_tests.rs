//! `Debug` of every type that carries a secret or personal data prints neither (style 5;
//! design.md, Errors: "Secrets and tokens never reach a log"). A `{:?}` in a log line, a
//! panic message or a failed assertion must not be the way a token, a key, an assertion, a
//! hint, a CPF or a CNPJ gets out. One table: each row is a value holding known secrets, and
//! neither its `{:?}` nor its `{:#?}` may contain any of them.

use serde_json::json;

use crate::access_token::AccessToken;
use crate::auth_req::{
    AcrRequest, AuthReqId, AuthRequest, ClaimRequest, ClaimRequests, GrantTokens, HintKind, Status,
};
use crate::client::registry::Clients;
use crate::clock::CountingRandom;
use crate::config::{Config, DeviceApiToken, Issuer, var};
use crate::consent::{self, Consent};
use crate::endpoints::bc_authorize::BcAuthorizeEndpoint;
use crate::endpoints::consents::ConsentsEndpoint;
use crate::endpoints::device::DeviceEndpoint;
use crate::endpoints::token::TokenEndpoint;
use crate::endpoints::userinfo::UserInfoEndpoint;
use crate::fixtures::{client, client_jws, keys, variables};
use crate::form::Form;
use crate::hint::{HintContext, issue_ad_hint, resolve};
use crate::http::{Method, Request, Response};
use crate::jose::jwk::KeyUse;
use crate::jose::keys::{KeySet, ServerKeys};
use crate::request_object::Hint;
use crate::store::memory::MemoryStore;
use crate::store::record;
use crate::types::{Cnpj, Cpf};
use crate::users::Users;

const NOW: i64 = 1_800_000_000;
const CPF: &str = "52998224725";
const CNPJ: &str = "11222333000181";
const DEVICE_TOKEN: &str = "device-token-0123456789-abcdefghijklmnop";
/// Shaped like an `auth_req_id`, a token or a salt: 43 base64url characters.
const AUTH_REQ_ID: &str = "AuthReqIdSecret0123456789abcdefghijklmnopqr";
const SALT: &str = "TokenSaltSecret0123456789abcdefghijklmnopqr";
const ID_TOKEN: &str = "eyJhbGciOiJQUzI1NiJ9.eyJJZFRva2VuU2VjcmV0In0.IdTokenSignatureSecret";
const BEARER: &str = "BearerTokenSecret0123456789abcdefghijklmnop";
const ASSERTION: &str = "eyJhbGciOiJQUzI1NiJ9.eyJBc3NlcnRpb25TZWNyZXQifQ.AssertionSignature";

/// The private members of a JWK (RFC 7518 6.3.2).
const PRIVATE_MEMBERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

/// The secrets every row is checked against: the ones above, the private members of every
/// key of the fixtures, and what each row adds.
fn base_secrets() -> Vec<String> {
    let k = keys();
    let mut secrets: Vec<String> = [
        CPF,
        CNPJ,
        DEVICE_TOKEN,
        AUTH_REQ_ID,
        SALT,
        ID_TOKEN,
        BEARER,
        ASSERTION,
    ]
    .map(String::from)
    .to_vec();
    for jwk in [&k.signing, &k.retired, &k.encryption] {
        for member in PRIVATE_MEMBERS {
            secrets.push(jwk[member].as_str().unwrap().to_string());
        }
    }
    secrets
}

/// Fails with the row's name and the secret it printed.
fn assert_redacted(name: &str, debug: String, secrets: &[String]) {
    for secret in secrets {
        assert!(
            !debug.contains(secret.as_str()),
            "Debug of {name} prints a secret ({} characters)",
            secret.len()
        );
    }
}

macro_rules! check {
    ($rows:ident, $value:expr) => {
        let value = &$value;
        $rows.push((
            stringify!($value),
            format!("{value:?}"),
            format!("{value:#?}"),
        ));
    };
}

fn vars() -> std::collections::HashMap<&'static str, String> {
    let mut vars = variables();
    vars.insert(var::DEVICE_API_TOKEN, DEVICE_TOKEN.to_string());
    vars.insert(
        var::USERS,
        json!([{ "sub": "u1", "cpf": CPF, "cnpj": CNPJ }]).to_string(),
    );
    vars
}

fn consent() -> Consent {
    Consent {
        consent_id: "urn:bank:consent-1".into(),
        client_id: "tpp-1".into(),
        logged_user: Cpf::parse(CPF).unwrap(),
        business_entity: Some(Cnpj::parse(CNPJ).unwrap()),
        permissions: vec!["ACCOUNTS_READ".into()],
        expiration: None,
        created: NOW,
        status: consent::Status::AwaitingAuthorisation,
        status_updated: NOW,
        rejection: None,
        authorised_by: None,
    }
}

fn claim_values() -> ClaimRequests {
    ClaimRequests {
        cpf: Some(ClaimRequest {
            essential: true,
            values: vec![CPF.into()],
        }),
        cnpj: Some(ClaimRequest {
            essential: true,
            values: vec![CNPJ.into()],
        }),
    }
}

fn auth_request() -> AuthRequest {
    AuthRequest {
        client_id: "tpp-1".into(),
        consent_id: "urn:bank:consent-1".into(),
        scope: vec!["openid".into()],
        hint: HintKind::LoginHint,
        subject: Some("u1".into()),
        binding_message: None,
        acr: AcrRequest {
            values: vec![],
            essential: false,
        },
        id_token_claims: claim_values(),
        userinfo_claims: claim_values(),
        created: NOW,
        expires_at: NOW + 300,
        status: Status::Approved,
        decision: None,
        denial: None,
        token_salt: Some(SALT.into()),
        at_hash: "at-hash".into(),
        id_token: Some(ID_TOKEN.into()),
    }
}

#[test]
fn debug_of_every_secret_carrying_type_is_redacted() {
    let vars = vars();
    let mut secrets = base_secrets();
    let mut rows: Vec<(&str, String, String)> = Vec::new();

    // Identifiers and bearer secrets.
    let id = AuthReqId::parse(AUTH_REQ_ID).unwrap();
    let tokens = GrantTokens::derive(&id, SALT, 0, 0);
    secrets.push(tokens.access_token.expose().to_string());
    secrets.push(tokens.refresh_token.expose().to_string());
    check!(rows, id);
    check!(rows, tokens);
    check!(rows, AccessToken::from_secret(BEARER.into()));
    check!(rows, DeviceApiToken::load(&vars).unwrap());

    // Personal data, alone and inside what derives `Debug` around it.
    check!(rows, Cpf::parse(CPF).unwrap());
    check!(rows, Cnpj::parse(CNPJ).unwrap());
    let users = Users::load(&vars).unwrap();
    check!(rows, users);
    check!(rows, consent());

    // Configuration: keys and the device token, in every endpoint that holds them.
    check!(rows, Config::load(&vars).unwrap());
    check!(
        rows,
        ServerKeys::parse(&vars[var::SIGNING_KEYS], &vars[var::ENCRYPTION_KEYS]).unwrap()
    );
    check!(rows, DeviceEndpoint::load(&vars).unwrap());
    check!(rows, BcAuthorizeEndpoint::load(&vars).unwrap());
    check!(rows, TokenEndpoint::load(&vars).unwrap());
    check!(rows, UserInfoEndpoint::load(&vars).unwrap());
    check!(rows, ConsentsEndpoint::load(&vars).unwrap());

    // The stored request: its salt, its id_token and the claim values it asks for.
    check!(rows, auth_request());
    let store = MemoryStore::new();
    let random = CountingRandom::default();
    record::put(&store, "auth_req:x", &auth_request(), NOW + 600, &random).unwrap();
    let stored = record::get::<AuthRequest>(&store, "auth_req:x", NOW).unwrap();
    check!(rows, stored);
    check!(rows, store);

    // What a request brings: the form, the headers, the path, the body.
    let form =
        format!("client_assertion={ASSERTION}&auth_req_id={AUTH_REQ_ID}&refresh_token={BEARER}");
    check!(rows, Form::parse_body(form.as_bytes()).unwrap());
    check!(
        rows,
        Request {
            method: Method::Post,
            path_info: format!("/requests/{AUTH_REQ_ID}/approve"),
            query: Some(format!("auth_req_id={AUTH_REQ_ID}")),
            headers: vec![
                ("authorization".into(), format!("Bearer {DEVICE_TOKEN}")),
                ("x-client-cert".into(), BEARER.into()),
            ],
            body: form.clone().into_bytes(),
        }
    );
    check!(
        rows,
        Response::json(
            200,
            &json!({ "access_token": BEARER, "id_token": ID_TOKEN, "cpf": CPF })
        )
    );

    // Hints: an id_token, an AD-generated id.
    let hints = [
        Hint::IdTokenHint(ID_TOKEN.into()),
        Hint::AdGenerated(AUTH_REQ_ID.into()),
    ];
    check!(rows, hints);
    let user = users.by_sub("u1").unwrap();
    let ad_id = issue_ad_hint(user, &store, &random, NOW).unwrap();
    secrets.push(ad_id.clone());
    let signing = KeySet::parse(
        var::SIGNING_KEYS,
        &vars[var::SIGNING_KEYS],
        KeyUse::Signature,
    )
    .unwrap();
    check!(rows, signing);
    let issuer = Issuer::parse("https://auth.bank.example").unwrap();
    let ctx = HintContext {
        users: &users,
        signing_keys: &signing,
        issuer: &issuer,
        store: &store,
    };
    check!(
        rows,
        resolve(&Hint::AdGenerated(ad_id), "tpp-1", &consent(), &ctx, NOW).unwrap()
    );

    // A verified request object and JWS: their claims carry the hint and the claim values.
    let claims = json!({
        "iss": "tpp-1", "aud": "https://auth.bank.example", "jti": "j1",
        "iat": NOW, "nbf": NOW, "exp": NOW + 300,
        "scope": "openid consent:urn:bank:consent-1",
        "id_token_hint": ID_TOKEN,
        "claims": { "id_token": { "cpf": { "essential": true, "value": CPF } } },
    });
    let compact = client_jws("client-key-1", claims);
    secrets.push(compact.clone());
    let clients = Clients::parse(&json!([client("tpp-1")]).to_string()).unwrap();
    let tpp = clients.get("tpp-1").unwrap();
    check!(
        rows,
        crate::fixtures::verify_request_object(&compact, tpp, &issuer, NOW).unwrap()
    );
    let crate::client::registry::ClientKeys::Jwks(jwks) = &tpp.keys else {
        panic!("the fixture client has a jwks");
    };
    check!(
        rows,
        crate::jose::jws::verify_ps256(
            &compact,
            jwks.iter().map(|k| (k.kid.as_str(), &k.verifier))
        )
        .unwrap()
    );

    assert!(rows.len() > 25, "every row ran");
    for (name, debug, pretty) in rows {
        assert_redacted(name, debug, &secrets);
        assert_redacted(name, pretty, &secrets);
    }
}

#[test]
fn an_error_response_still_prints_its_body_and_a_redacted_value_says_so() {
    // Redaction must not hide what a failing test needs: the protocol error of a response,
    // and that something was there.
    let error = crate::error::ProtocolError::InvalidGrant("the auth_req_id is unknown")
        .to_response(crate::error::Endpoint::Token);
    assert!(format!("{error:?}").contains("the auth_req_id is unknown"));
    let id = AuthReqId::parse(AUTH_REQ_ID).unwrap();
    assert_eq!(format!("{id:?}"), "AuthReqId([redacted])");
    assert_eq!(format!("{:?}", Cpf::parse(CPF).unwrap()), "Cpf([redacted])");
    let request = format!("{:?}", auth_request());
    assert!(
        request.contains("token_salt: Some(\"[redacted]\")"),
        "{request}"
    );
    assert!(
        request.contains("id_token: Some(\"[redacted]\")"),
        "{request}"
    );
    let form = Form::parse_body(b"grant_type=x&client_assertion=y").unwrap();
    assert_eq!(
        format!("{form:?}"),
        r#"Form(["grant_type", "client_assertion"])"#
    );
}
