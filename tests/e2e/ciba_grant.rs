//! The CIBA flow end to end (TOK-4…14, TKN-1…9, AD-2…8): each hint type from request to
//! tokens, the poll-mode state machine, and exactly-once redemption, over HTTP.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest;

use e2e::ciba::{
    AD_GENERATED, AS_GENERATED, Ciba, HOLDER_1_CPF, HOLDER_2_CPF, LOA2, LOA3, assert_oauth_error,
    text,
};
use e2e::material;

fn ciba() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| Ciba::new("ciba-grant"))
}

/// The header and claims of an id_token, after checking its PS256 signature with the
/// server's current signing key.
fn verify_id_token(token: &str) -> (Value, Value) {
    use jwt_compact::{AlgorithmExt, UntrustedToken};
    let key = devkeys::private_key_from_jwk(&material().signing).unwrap();
    let public = devkeys::rsa::RsaPublicKey::from(&key);
    let untrusted = UntrustedToken::new(token).unwrap();
    assert_eq!(untrusted.algorithm(), "PS256");
    let verified = jwt_compact::alg::Rsa::ps256()
        .validator::<Value>(&public)
        .validate(&untrusted)
        .expect("TKN-4: the id_token verifies with the current signing key");
    let header_json = URL_SAFE_NO_PAD
        .decode(token.split('.').next().unwrap())
        .unwrap();
    let payload = URL_SAFE_NO_PAD
        .decode(token.split('.').nth(1).unwrap())
        .unwrap();
    let _ = verified;
    (
        serde_json::from_slice(&header_json).unwrap(),
        serde_json::from_slice(&payload).unwrap(),
    )
}

#[test]
fn tok_13_tkn_4_to_9_login_hint_flow_issues_tokens_once() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert("binding_message".into(), json!("Compra 4521"));
    claims.insert(
        "claims".into(),
        json!({ "id_token": { "cpf": { "essential": true } }, "userinfo": { "cpf": null } }),
    );
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    // BCA-24…27
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let ack = response.json();
    let id = ack["auth_req_id"].as_str().unwrap().to_string();
    assert!(
        id.len() >= 27
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    );
    assert_eq!(ack["expires_in"], json!(300));
    assert_eq!(ack["interval"], json!(5));

    // TOK-6: pending.
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");

    // AD-2: the device lists it for the holder, with what the holder must see.
    let list = c.device("GET", "/requests?subject=holder-1", None);
    assert_eq!(list.status, 200, "{}", text(&list));
    let listed: Vec<Value> = list.json()["requests"].as_array().unwrap().clone();
    let entry = listed
        .iter()
        .find(|r| r["consent_id"] == json!(consent_id))
        .expect("the request is listed");
    assert_eq!(entry["binding_message"], json!("Compra 4521"));
    assert_eq!(entry["client_id"], json!("tpp-1"));
    assert_eq!(entry["status"], json!("PENDING"));
    assert!(entry["consent"]["permissions"].as_array().unwrap().len() >= 2);
    assert_ne!(
        entry["id"],
        json!(id),
        "AD-1: the list names requests by a reference"
    );
    // The reference addresses the request as the auth_req_id does.
    let by_reference = c.device(
        "GET",
        &format!("/requests/{}", entry["id"].as_str().unwrap()),
        None,
    );
    assert_eq!(by_reference.status, 200);
    assert_eq!(by_reference.json()["consent_id"], json!(consent_id));

    let approved = c.approve(&id, LOA2);
    assert_eq!(approved.status, 200, "{}", text(&approved));
    assert_eq!(approved.json()["status"], json!("APPROVED"));
    // AD-5: the consent is authorised with the approval.
    assert_eq!(
        c.consent("tpp-1", &consent_id)["status"],
        json!("AUTHORISED")
    );

    let response = c.poll("tpp-1", &id);
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    assert_eq!(response.header("pragma"), Some("no-cache"));
    let tokens = response.json();
    assert_eq!(tokens["token_type"], json!("Bearer"));
    let expires_in = tokens["expires_in"].as_i64().unwrap();
    assert!((300..=900).contains(&expires_in), "TOK-13");
    let scope = tokens["scope"].as_str().unwrap();
    assert!(scope.contains("openid") && scope.contains(&format!("consent:{consent_id}")));
    let access_token = tokens["access_token"].as_str().unwrap();
    assert!(
        URL_SAFE_NO_PAD.decode(access_token).unwrap().len() * 8 >= 128,
        "TKN-1"
    );
    assert!(
        tokens["refresh_token"]
            .as_str()
            .is_some_and(|r| r != access_token)
    );

    let (header, idt) = verify_id_token(tokens["id_token"].as_str().unwrap());
    // TKN-4: kid and x5t#S256 of the current key.
    assert_eq!(header["kid"], material().signing["kid"]);
    assert_eq!(
        header["x5t#S256"],
        json!(e2e::ciba::x5t_s256(&material().signing))
    );
    // TKN-5…9
    assert_eq!(idt["iss"], json!(c.server.base));
    assert_eq!(idt["aud"], json!("tpp-1"));
    assert_eq!(idt["azp"], json!("tpp-1"));
    assert_eq!(idt["sub"], json!("holder-1"));
    assert_eq!(idt["acr"], json!(LOA2));
    assert!(idt["auth_time"].is_i64());
    let (iat, exp) = (idt["iat"].as_i64().unwrap(), idt["exp"].as_i64().unwrap());
    assert!(
        exp - iat >= 180 * 86_400,
        "TKN-5: exp at least 180 days after iat"
    );
    let digest = sha2::Sha256::digest(access_token.as_bytes());
    assert_eq!(idt["at_hash"], json!(URL_SAFE_NO_PAD.encode(&digest[..16])));
    assert_eq!(idt["cpf"], json!(HOLDER_1_CPF), "TKN-9: a string");
    for absent in [
        "nonce",
        "c_hash",
        "s_hash",
        "urn:openid:params:jwt:claim:auth_req_id",
        "cnpj",
    ] {
        assert!(idt.get(absent).is_none(), "TKN-8: {absent}");
    }

    // TOK-10: once.
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "invalid_grant");
}

/// TKN-5: the id_token is signed when the holder approves, but the client receives it when it
/// redeems, at the latest just before the request expires: its `exp` covers 180 days from
/// then (a conformance suite checks `exp` >= now + 180 days - 5 minutes at receipt).
#[test]
fn tkn_5_the_id_token_lives_180_days_from_the_latest_redemption() {
    let c = Ciba::new("tkn5-late");
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    // The holder approved at once; the client redeems 290 s later, 10 s before expiry.
    c.server.time.advance(290);
    let response = c.poll("tpp-1", &id);
    assert_eq!(response.status, 200, "{}", text(&response));
    let (_, idt) = verify_id_token(response.json()["id_token"].as_str().unwrap());
    let exp = idt["exp"].as_i64().unwrap();
    assert!(
        exp >= c.now() + 180 * 86_400,
        "exp {exp} is less than 180 days after receipt ({})",
        c.now()
    );
}

#[test]
fn tok_14_the_access_token_is_bound_to_the_polling_certificate() {
    let c = ciba();
    let (consent_id, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let token = tokens["access_token"].as_str().unwrap();
    // The consents API accepts only client_credentials tokens, but it checks the binding
    // first: with another certificate the token is refused as invalid_token.
    let response = c.consents("tpp-2", token, "GET", &consent_id, None);
    assert_eq!(response.status, 401, "{}", text(&response));
    let response = c.consents("tpp-1", token, "GET", &consent_id, None);
    assert_eq!(
        response.status, 403,
        "CONS-3: a CIBA token cannot manage consents"
    );
}

#[test]
fn hint_3_to_9_id_token_hint_flow() {
    let c = ciba();
    let (_, first) = c.grant("tpp-1", HOLDER_1_CPF);
    let hint = first["id_token"].as_str().unwrap();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("id_token_hint".into(), json!(hint));
    let id = c.start("tpp-1", claims);
    let view = c.device("GET", &format!("/requests/{id}"), None).json();
    assert_eq!(view["subject"], json!("holder-1"));
    assert_eq!(c.approve(&id, LOA3).status, 200);
    let tokens = c.poll("tpp-1", &id);
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
    let (_, idt) = verify_id_token(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(idt["acr"], json!(LOA3), "TKN-7: the acr actually reached");

    // HINT-7: the same id_token is no hint for another client.
    let other_consent = c.lodge("tpp-2", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-2", &other_consent);
    claims.insert("id_token_hint".into(), json!(hint));
    let response = c.bc_authorize("tpp-2", &c.sign_request("tpp-2", claims));
    assert_oauth_error(&response, 400, "invalid_id_token_hint");
}

#[test]
fn hint_12_13_ad_generated_flow_and_single_use() {
    let c = ciba();
    let issued = c.device("POST", "/hints", Some(&json!({ "subject": "holder-1" })));
    assert_eq!(issued.status, 201, "{}", text(&issued));
    let hint_id = issued.json()["id"].as_str().unwrap().to_string();
    assert_eq!(hint_id.len(), 20);
    assert!(issued.json()["expires_in"].as_i64().unwrap() <= 300);
    let token = json!({ "format": AD_GENERATED, "id": hint_id }).to_string();

    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    // BCA-17: binding_message is required with a login_hint_token.
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint_token".into(), json!(token));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims.clone()));
    assert_oauth_error(&response, 400, "invalid_request");

    claims.insert("binding_message".into(), json!("AD 1"));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let id = c.start("tpp-1", claims.clone());
    assert_eq!(c.approve(&id, LOA2).status, 200);
    assert_eq!(c.poll("tpp-1", &id).status, 200);

    // HINT-12/13: used once.
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut again = c.request_claims("tpp-1", &consent_id);
    again.insert("login_hint_token".into(), json!(token));
    again.insert("binding_message".into(), json!("AD 2"));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", again.clone()));
    assert_oauth_error(&response, 400, "expired_login_hint_token");
    // An id never issued names nobody.
    again.insert(
        "login_hint_token".into(),
        json!(json!({ "format": AD_GENERATED, "id": "00000000000000000000" }).to_string()),
    );
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", again));
    assert_oauth_error(&response, 400, "unknown_user_id");
}

/// A backchannel request of the as-generated type; its `auth_req_id`.
fn start_as_generated(c: &Ciba, client_id: &str) -> String {
    let consent_id = c.lodge(client_id, HOLDER_1_CPF, None);
    let mut claims = c.request_claims(client_id, &consent_id);
    claims.insert("login_hint_token".into(), json!(AS_GENERATED));
    claims.insert("binding_message".into(), json!("QR 7"));
    c.start(client_id, claims)
}

fn claim(c: &Ciba, token: &str) -> e2e::Response {
    c.device(
        "POST",
        "/claims",
        Some(&json!({ "login_hint_token": token, "subject": "holder-1" })),
    )
}

#[test]
fn hint_14_15_ad_8_as_generated_flow() {
    let c = ciba();
    let id = start_as_generated(c, "tpp-1");
    assert_eq!(
        c.device("GET", &format!("/requests/{id}"), None).json()["status"],
        json!("AWAITING_CLAIM")
    );
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
    // An approval before the claim is refused: nobody has scanned the code yet.
    assert_eq!(c.approve(&id, LOA2).status, 409);

    let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &id), "cibabr+jwt");
    let claimed = claim(c, &qr);
    assert_eq!(claimed.status, 200, "{}", text(&claimed));
    assert_eq!(claimed.json()["status"], json!("PENDING"));
    assert_eq!(claimed.json()["subject"], json!("holder-1"));
    // HINT-15: the same QR token twice.
    assert_eq!(claim(c, &qr).status, 409);

    assert_eq!(c.approve(&id, LOA2).status, 200);
    let tokens = c.poll("tpp-1", &id);
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
}

#[test]
fn hint_15_bad_qr_tokens_are_refused_and_change_nothing() {
    let c = ciba();
    let id = start_as_generated(c, "tpp-1");
    let good = c.qr_claims("tpp-1", &id);
    let now = c.now();
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    // Encrypted to a key that is not ours, under our kid.
    let stranger = devkeys::rsa_key(2048).unwrap();
    let jws_for_stranger = {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        jwt_compact::alg::Rsa::ps256()
            .token(
                &Header::empty()
                    .with_key_id("tpp-key-1")
                    .with_token_type("cibabr+jwt"),
                &Claims::new(good.clone()),
                &material().client_key,
            )
            .unwrap()
    };
    let wrong_key = devkeys::encrypt_jwe(
        jws_for_stranger.as_bytes(),
        &devkeys::rsa::RsaPublicKey::from(&stranger),
        material().encryption["kid"].as_str().unwrap(),
    )
    .unwrap();
    let cases: Vec<(&str, String, u16)> = vec![
        ("encrypted to another key", wrong_key, 400),
        ("typ JWT", c.qr_token("tpp-1", &good, "JWT"), 400),
        ("aud elsewhere", c.qr_token("tpp-1", &with("aud", json!("https://elsewhere.example")), "cibabr+jwt"), 400),
        ("jti not a UUID", c.qr_token("tpp-1", &with("jti", json!("1")), "cibabr+jwt"), 400),
        ("lives 10 minutes", c.qr_token("tpp-1", &with("exp", json!(now + 600)), "cibabr+jwt"), 400),
        (
            "expired",
            c.qr_token(
                "tpp-1",
                &json!({ "iss": "tpp-1", "aud": c.server.base, "jti": uuid::Uuid::new_v4().to_string(),
                         "iat": now - 200, "exp": now - 100, "auth_request_id": id }),
                "cibabr+jwt",
            ),
            410,
        ),
        // Signed by tpp-2 for tpp-1's request: another client's request.
        ("another client's request", c.qr_token("tpp-2", &with("iss", json!("tpp-2")), "cibabr+jwt"), 409),
        ("unknown request", c.qr_token("tpp-1", &with("auth_request_id", json!("x".repeat(43))), "cibabr+jwt"), 409),
        ("not a JWE", "a.b.c".to_string(), 400),
    ];
    for (case, token, status) in cases {
        let response = claim(c, &token);
        assert_eq!(response.status, status, "{case}: {}", text(&response));
    }
    // Still awaiting its claim, and the right token still works.
    let view = c.device("GET", &format!("/requests/{id}"), None).json();
    assert_eq!(view["status"], json!("AWAITING_CLAIM"));
    assert_eq!(
        claim(c, &c.qr_token("tpp-1", &good, "CIBABR+JWT")).status,
        200
    );
}

#[test]
fn tok_8_ad_6_a_denial_is_access_denied_and_rejects_the_consent() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    let denied = c.deny(&id);
    assert_eq!(denied.status, 200, "{}", text(&denied));
    assert_eq!(denied.json()["status"], json!("DENIED"));
    // TOK-8: 400 at the token endpoint, repeated.
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "access_denied");
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "access_denied");
    let consent = c.consent("tpp-1", &consent_id);
    assert_eq!(consent["status"], json!("REJECTED"));
    assert_eq!(consent["rejection"]["rejectedBy"], json!("USER"));
    assert_eq!(
        consent["rejection"]["reason"]["code"],
        json!("CUSTOMER_MANUALLY_REJECTED")
    );
    // AD-4: the first decision wins.
    assert_eq!(c.approve(&id, LOA2).status, 409);
    assert_eq!(c.deny(&id).status, 409);
}

#[test]
fn ad_5_an_approval_below_the_essential_acr_denies() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert(
        "claims".into(),
        json!({ "id_token": { "acr": { "essential": true, "values": [LOA3] } } }),
    );
    let id = c.start("tpp-1", claims);
    let response = c.approve(&id, LOA2);
    assert_eq!(response.status, 403, "{}", text(&response));
    assert_eq!(response.json()["error"], json!("access_denied"));
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "access_denied");
    // The consent stays available for a new request (AD-7 [decision]).
    assert_eq!(
        c.consent("tpp-1", &consent_id)["status"],
        json!("AWAITING_AUTHORISATION")
    );
}

#[test]
fn ad_5_an_essential_cpf_of_someone_else_denies() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert(
        "claims".into(),
        json!({ "id_token": { "cpf": { "essential": true, "value": HOLDER_2_CPF } } }),
    );
    let id = c.start("tpp-1", claims);
    assert_eq!(c.approve(&id, LOA3).status, 403);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "access_denied");
}

/// `n` polls of `id` by tpp-1 at the same moment: status and `error` of each. Each carries
/// its own assertion, made before they all start.
pub(crate) fn concurrent_polls(c: &Ciba, id: &str, n: usize) -> Vec<(u16, String)> {
    let bodies: Vec<String> = (0..n)
        .map(|_| {
            format!(
                "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={id}&{}",
                c.client_auth("tpp-1")
            )
        })
        .collect();
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let r = c.post("tpp-1", "/token", body);
                    (
                        r.status,
                        r.json()["error"].as_str().unwrap_or("").to_string(),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// What openid-client 6 sends (through oauth4webapi): a 32-byte random `jti`, base64url.
fn openid_client_jti() -> String {
    let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The client authentication openid-client 6 adds to a form (oauth4webapi's `PrivateKeyJwt`):
/// `client_id`, and an assertion whose `aud` is the issuer, with `nbf`, living 60 s.
fn openid_client_auth(c: &Ciba, client_id: &str) -> String {
    let (key, kid) = Ciba::key(client_id);
    let now = c.now();
    let claims = json!({
        "jti": openid_client_jti(), "aud": c.issuer, "exp": now + 60, "iat": now,
        "nbf": now, "iss": client_id, "sub": client_id,
    });
    let assertion = e2e::assertion::sign("PS256", key, kid, claims.as_object().unwrap().clone());
    format!("client_id={client_id}&{}", e2e::assertion::form(&assertion))
}

/// A request object as oauth4webapi's `issueRequestObject` builds it: the parameters as
/// strings (`claims` parsed to an object), `client_id` set, then `jti`, `aud`, `exp` (60 s),
/// `iat`, `nbf` and `iss`; header `typ: oauth-authz-req+jwt`.
fn openid_client_request_object(c: &Ciba, client_id: &str, parameters: &[(&str, &str)]) -> String {
    use jwt_compact::{AlgorithmExt, Claims, Header};
    let mut claims = serde_json::Map::new();
    for (name, value) in parameters {
        claims.insert(name.to_string(), json!(value));
    }
    if let Some(text) = parameters
        .iter()
        .find(|(n, _)| *n == "claims")
        .map(|(_, v)| v)
    {
        claims.insert("claims".into(), serde_json::from_str(text).unwrap());
    }
    let now = c.now();
    claims.insert("client_id".into(), json!(client_id));
    claims.insert("jti".into(), json!(openid_client_jti()));
    claims.insert("aud".into(), json!(c.issuer));
    claims.insert("exp".into(), json!(now + 60));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("iss".into(), json!(client_id));
    let (key, kid) = Ciba::key(client_id);
    jwt_compact::alg::Rsa::ps256()
        .token(
            &Header::empty()
                .with_key_id(kid)
                .with_token_type("oauth-authz-req+jwt"),
            &Claims::new(claims),
            key,
        )
        .unwrap()
}

#[test]
fn bca_21_bca_9_tkn_7_9_openid_client_6_flow_with_an_essential_acr_and_cpf() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let request = openid_client_request_object(
        c,
        "tpp-1",
        &[
            ("scope", &format!("openid consent:{consent_id}")),
            ("login_hint", &consent_id),
            ("acr_values", LOA2),
            (
                "claims",
                r#"{"id_token":{"acr":{"essential":true},"cpf":{"essential":true}}}"#,
            ),
            ("binding_message", "Compra 4521"),
        ],
    );
    let body = format!("request={request}&{}", openid_client_auth(c, "tpp-1"));
    let response = c.post("tpp-1", "/bc-authorize", &body);
    // BCA-21: `{"essential": true}` alone asks for an acr to be returned, not for a value.
    assert_eq!(response.status, 200, "{}", text(&response));
    let id = response.json()["auth_req_id"].as_str().unwrap().to_string();
    let view = c.device("GET", &format!("/requests/{id}"), None).json();
    assert_eq!(
        view["acr_values"],
        json!([LOA2]),
        "the level from acr_values"
    );

    let poll = || {
        let body = format!(
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={id}&{}",
            openid_client_auth(c, "tpp-1")
        );
        c.post("tpp-1", "/token", &body)
    };
    assert_oauth_error(&poll(), 400, "authorization_pending");
    // AD-5d/e: no value was asked of the cpf, and loa2 reaches the level asked.
    let approved = c.approve(&id, LOA2);
    assert_eq!(approved.status, 200, "{}", text(&approved));
    let tokens = poll();
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
    let (_, idt) = verify_id_token(tokens.json()["id_token"].as_str().unwrap());
    assert_eq!(idt["acr"], json!(LOA2), "TKN-7");
    assert_eq!(idt["cpf"], json!(HOLDER_1_CPF), "TKN-9");
}

#[test]
fn tok_10_twenty_concurrent_polls_issue_once() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let statuses = concurrent_polls(c, &id, 20);
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|(s, e)| *s == 200 || (*s == 400 && e == "invalid_grant")),
        "{statuses:?}"
    );
}

#[test]
fn tok_10_twenty_concurrent_polls_issue_once_on_redis() {
    let redis = e2e::RedisServer::start();
    let c = Ciba::with(e2e::Server::bundle_on_redis(
        e2e::ciba::ciba_variables(),
        &redis,
    ));
    for _ in 0..5 {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = c.start_with_login_hint("tpp-1", &consent_id);
        assert_eq!(c.approve(&id, LOA2).status, 200);
        let statuses = concurrent_polls(&c, &id, 20);
        let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
        assert_eq!(ok, 1, "{statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|(s, e)| *s == 200 || (*s == 400 && e == "invalid_grant")),
            "{statuses:?}"
        );
    }
}

#[test]
fn tok_4_another_client_or_an_unknown_id_is_invalid_grant() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_oauth_error(&c.poll("tpp-2", &id), 400, "invalid_grant");
    assert_eq!(c.approve(&id, LOA2).status, 200);
    assert_oauth_error(&c.poll("tpp-2", &id), 400, "invalid_grant");
    assert_oauth_error(&c.poll("tpp-1", &"A".repeat(43)), 400, "invalid_grant");
    assert_oauth_error(&c.poll("tpp-1", "not%20an%20id"), 400, "invalid_grant");
    // The rightful client still gets its tokens.
    assert_eq!(c.poll("tpp-1", &id).status, 200);
}

#[test]
fn tok_5_tok_3_a_client_without_the_ciba_grant_is_unauthorized_client() {
    let c = ciba();
    let body = format!(
        "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={}&{}",
        "A".repeat(43),
        c.client_auth("cc-only")
    );
    assert_oauth_error(
        &c.post("cc-only", "/token", &body),
        400,
        "unauthorized_client",
    );
    let body = format!(
        "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&{}",
        c.client_auth("tpp-1")
    );
    assert_oauth_error(&c.post("tpp-1", "/token", &body), 400, "invalid_request");
}

#[test]
fn tok_11_a_consent_revoked_after_approval_gets_no_tokens() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let token = c.consents_token("tpp-1");
    assert_eq!(
        c.consents("tpp-1", &token, "DELETE", &consent_id, None)
            .status,
        204
    );
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "invalid_grant");
}

#[test]
fn tok_7_tok_12_polling_too_fast_slows_down_and_raises_the_interval() {
    // Its own server: it moves the clock.
    let c = Ciba::new("ciba-slow-down");
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    // TOK-12: the first poll is always allowed, however soon.
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "slow_down");
    // The interval is now 10 s: 5 s later is still too soon.
    c.server.time.advance(5);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "slow_down");
    // Now 15 s: wait it out.
    c.server.time.advance(15);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
}

#[test]
fn tok_9_ad_4_an_expired_request_answers_expired_token_and_refuses_decisions() {
    let c = Ciba::new("ciba-expiry");
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    c.server.time.advance(301);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "expired_token");
    assert_eq!(c.approve(&id, LOA2).status, 410);
    // Still answerable 10 minutes after expiry.
    c.server.time.advance(590);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "expired_token");
    // The listing no longer shows it.
    let list = c.device("GET", "/requests?subject=holder-1", None).json();
    assert_eq!(list["requests"], json!([]));
    // AD-7: the consent, still awaiting within its 60 minutes, takes a new request.
    c.start_with_login_hint("tpp-1", &consent_id);
}

#[test]
fn bca_16_a_business_consent_needs_a_holder_who_acts_for_the_company() {
    let c = ciba();
    // holder-2 acts for HOLDER_2_CNPJ; a consent for another company is refused at once, as
    // if the holder were unknown (HINT-2, issue 16: tests/e2e/rate_limits.rs).
    let consent_id = c.lodge("tpp-1", HOLDER_2_CPF, Some("11444777000161"));
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    assert_oauth_error(&response, 400, "unknown_user_id");
    // With the right company the flow goes through, and cnpj is served as an array.
    let consent_id = c.lodge("tpp-1", HOLDER_2_CPF, Some(e2e::ciba::HOLDER_2_CNPJ));
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert(
        "claims".into(),
        json!({ "id_token": { "cnpj": { "essential": true } } }),
    );
    let id = c.start("tpp-1", claims);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let tokens = c.poll("tpp-1", &id).json();
    let (_, idt) = verify_id_token(tokens["id_token"].as_str().unwrap());
    assert_eq!(idt["cnpj"], json!([e2e::ciba::HOLDER_2_CNPJ]), "TKN-9");
}

#[test]
fn tok_7_concurrent_polls_of_a_pending_request_slow_down_and_never_fail() {
    // A server of its own: the test moves its clock.
    let c = &Ciba::new("ciba-concurrent-polls");
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    let errors = concurrent_polls(c, &id, 20);
    // Overlapping polls slow down (TOK-7). Which of them counts as the first is up to the
    // store: on Spin's SQLite file, whose writes wait for the disk, the first poll's pace
    // record is often replaced by an overlapping poll's before it reads it back, and all 20
    // answer slow_down.
    assert!(
        errors
            .iter()
            .all(|(s, e)| *s == 400 && (e == "authorization_pending" || e == "slow_down")),
        "{errors:?}"
    );
    // The request is still there for a client that waits out its raised interval (at most
    // 5 + 20 × 5 s).
    c.server.time.advance(110);
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
}
