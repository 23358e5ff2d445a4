//! `POST /bc-authorize` refusals (BCA-1…30, HINT-*), over HTTP. Every refusal is checked to
//! leave the store as it was.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use e2e::assertion::{sign, sign_hs256, unsigned};
use e2e::ciba::{
    AD_GENERATED, AS_GENERATED, Ciba, HOLDER_1_CPF, HOLDER_2_CPF, LOA2, assert_oauth_error, text,
};
use e2e::{Server, material};

fn ciba() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| Ciba::new("bc-authorize"))
}

/// The tests of this file count the store's rows around each refusal, so they take turns.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A consent of holder-1 lodged by tpp-1, shared by the refusal tests (none uses it up).
fn consent() -> &'static str {
    static CONSENT: OnceLock<String> = OnceLock::new();
    CONSENT.get_or_init(|| ciba().lodge("tpp-1", HOLDER_1_CPF, None))
}

fn good_claims() -> Map<String, Value> {
    let c = ciba();
    let mut claims = c.request_claims("tpp-1", consent());
    claims.insert("login_hint".into(), json!(consent()));
    claims
}

fn with(name: &str, value: Value) -> Map<String, Value> {
    let mut claims = good_claims();
    claims.insert(name.into(), value);
    claims
}

fn without(name: &str) -> Map<String, Value> {
    let mut claims = good_claims();
    claims.remove(name);
    claims
}

/// Sends `request` from tpp-1 and checks the refusal left no trace in the store.
fn refused(request: &str, status: u16, error: &str, case: &str) {
    let c = ciba();
    let body = format!("request={request}&{}", c.client_auth("tpp-1"));
    refused_body(&body, status, error, case);
}

fn refused_body(body: &str, status: u16, error: &str, case: &str) {
    let c = ciba();
    let before = c.server.store_rows();
    let response = c.post("tpp-1", "/bc-authorize", body);
    assert_eq!(
        (response.status, response.json()["error"].clone()),
        (status, json!(error)),
        "{case}: {}",
        text(&response)
    );
    assert_oauth_error(&response, status, error);
    assert!(
        response.json()["error_description"]
            .as_str()
            .unwrap_or_default()
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "BCA-28"
    );
    assert_eq!(
        c.server.store_rows(),
        before,
        "{case}: a refusal wrote to the store"
    );
}

#[test]
fn bca_5_to_10_each_bad_request_object_is_invalid_request() {
    let _turn = turn();
    let c = ciba();
    let now = c.now();
    let m = material();
    let sign_good = |claims: Map<String, Value>| c.sign_request("tpp-1", claims);
    let jwe = {
        let enc = &m.encryption;
        let public = devkeys::rsa::RsaPublicKey::from(&devkeys::private_key_from_jwk(enc).unwrap());
        devkeys::encrypt_jwe(
            sign_good(good_claims()).as_bytes(),
            &public,
            enc["kid"].as_str().unwrap(),
        )
        .unwrap()
    };
    let tampered = {
        let jws = sign_good(good_claims());
        let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        payload["scope"] = json!(format!("openid accounts consent:{}", consent()));
        parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
        parts.join(".")
    };
    let cases: Vec<(&str, String)> = vec![
        ("missing aud", sign_good(without("aud"))),
        (
            "bad aud",
            sign_good(with("aud", json!("https://elsewhere.example"))),
        ),
        (
            "aud is the token endpoint",
            sign_good(with("aud", json!(format!("{}/token", c.server.base)))),
        ),
        ("missing iss", sign_good(without("iss"))),
        ("bad iss", sign_good(with("iss", json!("tpp-2")))),
        ("missing exp", sign_good(without("exp"))),
        ("missing iat", sign_good(without("iat"))),
        ("missing nbf", sign_good(without("nbf"))),
        ("missing jti", sign_good(without("jti"))),
        (
            "exp as a string",
            sign_good(with("exp", json!((now + 300).to_string()))),
        ),
        ("expired", sign_good(with("exp", json!(now - 61)))),
        ("lifetime over 10 minutes", {
            let mut c2 = with("exp", json!(now + 601));
            c2.insert("nbf".into(), json!(now));
            sign_good(c2)
        }),
        ("nbf 10 minutes in the future", {
            let mut c2 = with("nbf", json!(now + 600));
            c2.insert("exp".into(), json!(now + 900));
            sign_good(c2)
        }),
        (
            "iat in the future",
            sign_good(with("iat", json!(now + 120))),
        ),
        (
            "nbf 70 minutes in the past",
            sign_good(with("nbf", json!(now - 4200))),
        ),
        ("alg none", unsigned(good_claims())),
        (
            "RS256",
            sign("RS256", &m.client_key, "tpp-key-1", good_claims()),
        ),
        (
            "HS256 keyed with the public key",
            sign_hs256(
                m.client_public["n"].as_str().unwrap().as_bytes(),
                "tpp-key-1",
                good_claims(),
            ),
        ),
        ("bad signature", tampered),
        (
            "signed by another client",
            sign("PS256", &m.other_key, "tpp-key-2", good_claims()),
        ),
        (
            "signed by another client under tpp-1's kid",
            sign("PS256", &m.other_key, "tpp-key-1", good_claims()),
        ),
        ("JWE instead of JWS", jwe),
        ("not a JWT", "abc".to_string()),
    ];
    for (case, request) in cases {
        refused(&request, 400, "invalid_request", case);
    }
}

#[test]
fn bca_3_4_only_a_signed_request_and_client_authentication() {
    let _turn = turn();
    let c = ciba();
    let auth = c.client_auth("tpp-1");
    let request = c.sign_request("tpp-1", good_claims());
    let scope = format!("scope=openid+consent%3A{}", consent());
    for (case, body) in [
        (
            "no request (unsigned form parameters)",
            format!("{scope}&login_hint=x&{auth}"),
        ),
        ("request_uri", format!("request_uri=urn%3Ax&{auth}")),
        (
            "a form parameter beside the request",
            format!("request={request}&binding_message=x&{auth}"),
        ),
        (
            "scope beside the request",
            format!("request={request}&{scope}&{auth}"),
        ),
    ] {
        refused_body(&body, 400, "invalid_request", case);
    }
}

#[test]
fn bca_1_cli_1_method_content_type_and_client_authentication() {
    let _turn = turn();
    let c = ciba();
    let response = c.server.send("GET", "/bc-authorize", &[], b"");
    assert_eq!(response.status, 405);
    let request = c.sign_request("tpp-1", good_claims());
    let body = format!("request={request}&{}", c.client_auth("tpp-1"));
    let response = c.server.send(
        "POST",
        "/bc-authorize",
        &[
            ("content-type", "application/json"),
            (e2e::ciba::CERT_HEADER, &c.cert),
        ],
        body.as_bytes(),
    );
    assert_oauth_error(&response, 400, "invalid_request");
    // No client authentication, or a bad one: 401.
    refused_body(
        &format!("request={request}"),
        401,
        "invalid_client",
        "no client authentication",
    );
    let other = format!("request={request}&{}", c.client_auth("tpp-2"));
    let response = c.post("tpp-1", "/bc-authorize", &other);
    // tpp-2 authenticates, but the request object is tpp-1's: BCA-7/9.
    assert_oauth_error(&response, 400, "invalid_request");
    // CLI-9: no certificate.
    let response = c.server.post_form("/bc-authorize", None, &body);
    assert_oauth_error(&response, 401, "invalid_client");
}

#[test]
fn bca_2_a_client_without_the_ciba_grant_is_unauthorized_client() {
    let _turn = turn();
    let c = ciba();
    let mut claims = good_claims();
    claims.insert("iss".into(), json!("cc-only"));
    let request = c.sign_request("tpp-1", claims);
    let body = format!("request={request}&{}", c.client_auth("cc-only"));
    refused_body(&body, 400, "unauthorized_client", "cc-only");
}

#[test]
fn bca_11_a_replayed_request_object_is_a_replay_for_every_hint_type() {
    let _turn = turn();
    let c = ciba();
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let ad_hint = || {
        let issued = c.device("POST", "/hints", Some(&json!({ "subject": "holder-1" })));
        assert_eq!(issued.status, 201, "{}", text(&issued));
        json!(json!({ "format": AD_GENERATED, "id": issued.json()["id"] }).to_string())
    };
    // A fresh consent of holder-1; `hint` named by `value`, or by the consent id.
    let request_with = |hint: &str, value: Option<Value>| {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let mut claims = c.request_claims("tpp-1", &consent_id);
        claims.insert(hint.into(), value.unwrap_or_else(|| json!(consent_id)));
        claims.insert("binding_message".into(), json!("Replay"));
        c.sign_request("tpp-1", claims)
    };
    let ad_token = ad_hint();
    let cases = [
        ("login_hint", request_with("login_hint", None)),
        (
            "id_token_hint",
            request_with("id_token_hint", Some(tokens["id_token"].clone())),
        ),
        (
            "ad-generated",
            request_with("login_hint_token", Some(ad_token.clone())),
        ),
        (
            "as-generated",
            request_with("login_hint_token", Some(json!(AS_GENERATED))),
        ),
    ];
    let mut ad_request = None;
    for (case, request) in cases {
        let first = c.bc_authorize("tpp-1", &request);
        assert_eq!(first.status, 200, "{case}: {}", text(&first));
        if case == "ad-generated" {
            ad_request = first.json()["auth_req_id"].as_str().map(str::to_string);
        }
        // Refused before the hint is looked up or used up, and nothing is written.
        refused(&request, 400, "invalid_request", case);
        let again = c.bc_authorize("tpp-1", &request);
        assert_eq!(
            again.json()["error_description"],
            json!("the request object jti was already used"),
            "{case}: the replay is named"
        );
    }
    // The AD-generated id stays used by the first request alone: a fresh request object with
    // it is told so, the first request goes on to its tokens, and a fresh id works.
    let reuse = c.bc_authorize("tpp-1", &request_with("login_hint_token", Some(ad_token)));
    assert_oauth_error(&reuse, 400, "expired_login_hint_token");
    let ad_request = ad_request.unwrap();
    assert_eq!(c.approve(&ad_request, LOA2).status, 200);
    let granted = c.poll("tpp-1", &ad_request);
    assert_eq!(granted.status, 200, "{}", text(&granted));
    let fresh = c.bc_authorize("tpp-1", &request_with("login_hint_token", Some(ad_hint())));
    assert_eq!(fresh.status, 200, "{}", text(&fresh));
}

#[test]
fn bca_9_a_client_id_claim_must_name_the_authenticated_client() {
    let _turn = turn();
    let c = ciba();
    for (case, value) in [
        ("another client", json!("tpp-2")),
        ("empty", json!("")),
        ("not a string", json!(["tpp-1"])),
    ] {
        refused(
            &c.sign_request("tpp-1", with("client_id", value)),
            400,
            "invalid_request",
            case,
        );
    }
    // The client's own id, as openid-client sends it, is accepted.
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert("client_id".into(), json!("tpp-1"));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    assert_eq!(response.status, 200, "{}", text(&response));
}

#[test]
fn bca_12_to_14_scope_and_consent() {
    let _turn = turn();
    let c = ciba();
    let other_client_consent = c.lodge("tpp-2", HOLDER_1_CPF, None);
    let second = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let cases = [
        ("no openid", format!("consent:{}", consent())),
        ("no consent", "openid".to_string()),
        (
            "two consents",
            format!("openid consent:{} consent:{second}", consent()),
        ),
        (
            "unknown consent",
            "openid consent:urn:ofbciba:nothing-here".to_string(),
        ),
        (
            "another client's consent",
            format!("openid consent:{other_client_consent}"),
        ),
        (
            "a scope the client is not registered for",
            format!("openid payments consent:{}", consent()),
        ),
    ];
    for (case, scope) in cases {
        let mut claims = good_claims();
        claims.insert("scope".into(), json!(scope));
        refused(&c.sign_request("tpp-1", claims), 400, "invalid_scope", case);
    }
    // A consent no longer awaiting authorisation (revoked).
    let revoked = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let token = c.consents_token("tpp-1");
    assert_eq!(
        c.consents("tpp-1", &token, "DELETE", &revoked, None).status,
        204
    );
    let mut claims = c.request_claims("tpp-1", &revoked);
    claims.insert("login_hint".into(), json!(revoked));
    refused(
        &c.sign_request("tpp-1", claims),
        400,
        "invalid_scope",
        "revoked consent",
    );
    // BCA-12: scope order is irrelevant, and registered scopes may be added.
    let mut claims = good_claims();
    claims.insert(
        "scope".into(),
        json!(format!("accounts consent:{} openid", consent())),
    );
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    assert_eq!(response.status, 200, "{}", text(&response));
}

#[test]
fn bca_15_exactly_one_hint() {
    let _turn = turn();
    let c = ciba();
    let mut two = good_claims();
    two.insert("login_hint_token".into(), json!(AS_GENERATED));
    two.insert("binding_message".into(), json!("Two"));
    refused(
        &c.sign_request("tpp-1", two),
        400,
        "invalid_request",
        "two hints",
    );
    refused(
        &c.sign_request("tpp-1", without("login_hint")),
        400,
        "invalid_request",
        "no hint",
    );
}

#[test]
fn hint_2_16_login_hint_is_only_the_consent_id() {
    let _turn = turn();
    let c = ciba();
    for (case, value) in [
        ("a CPF", HOLDER_1_CPF),
        ("a subject", "holder-1"),
        ("another consent", "urn:ofbciba:x"),
    ] {
        refused(
            &c.sign_request("tpp-1", with("login_hint", json!(value))),
            400,
            "unknown_user_id",
            case,
        );
    }
    // A consent whose loggedUser is nobody this bank knows.
    let nobody = c.lodge("tpp-1", "01234567890", None);
    let mut claims = c.request_claims("tpp-1", &nobody);
    claims.insert("login_hint".into(), json!(nobody));
    refused(
        &c.sign_request("tpp-1", claims),
        400,
        "unknown_user_id",
        "unknown holder",
    );
}

#[test]
fn hint_17_unsupported_login_hint_token_types() {
    let _turn = turn();
    let c = ciba();
    for (case, value) in [
        (
            "cpf type",
            json!({ "format": "urn:brasil:openbanking:ciba:login-hint-token-type:cpf", "id": "1" })
                .to_string(),
        ),
        (
            "ephemeral type",
            "urn:brasil:openbanking:ciba:login-hint-token-type:ephemeral".to_string(),
        ),
        ("not JSON", "{nope".to_string()),
        (
            "ad-generated without id",
            json!({ "format": e2e::ciba::AD_GENERATED }).to_string(),
        ),
    ] {
        let mut claims = without("login_hint");
        claims.insert("login_hint_token".into(), json!(value));
        claims.insert("binding_message".into(), json!("Hi"));
        refused(
            &c.sign_request("tpp-1", claims),
            400,
            "invalid_request",
            case,
        );
    }
}

#[test]
fn bca_16_a_hint_naming_someone_else_is_access_denied() {
    let _turn = turn();
    let c = ciba();
    // An id_token of holder-2, for a consent of holder-1.
    let (_, tokens) = c.grant("tpp-1", HOLDER_2_CPF);
    let mut claims = without("login_hint");
    claims.insert("id_token_hint".into(), tokens["id_token"].clone());
    refused(
        &c.sign_request("tpp-1", claims),
        403,
        "access_denied",
        "another holder",
    );
}

#[test]
fn bca_18_binding_messages_the_device_cannot_show() {
    let _turn = turn();
    let c = ciba();
    for (case, value) in [
        ("too long", json!("x".repeat(41))),
        ("a URL", json!("visit https://evil.example")),
        ("a line break", json!("one\ntwo")),
        ("empty after trim", json!("   ")),
    ] {
        refused(
            &c.sign_request("tpp-1", with("binding_message", value)),
            400,
            "invalid_binding_message",
            case,
        );
    }
    refused(
        &c.sign_request("tpp-1", with("binding_message", json!(42))),
        400,
        "invalid_request",
        "a number",
    );
}

#[test]
fn bca_19_20_user_code_refused_requested_expiry_validated_and_ignored() {
    let _turn = turn();
    let c = ciba();
    refused(
        &c.sign_request("tpp-1", with("user_code", json!("1234"))),
        400,
        "invalid_request",
        "user_code",
    );
    for bad in [json!(0), json!(-1), json!("soon"), json!(1.5)] {
        refused(
            &c.sign_request("tpp-1", with("requested_expiry", bad.clone())),
            400,
            "invalid_request",
            &format!("requested_expiry {bad}"),
        );
    }
    for good in [json!(120), json!("120")] {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let mut claims = c.request_claims("tpp-1", &consent_id);
        claims.insert("login_hint".into(), json!(consent_id));
        claims.insert("requested_expiry".into(), good);
        let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
        assert_eq!(response.status, 200, "{}", text(&response));
        assert_eq!(response.json()["expires_in"], json!(300), "AMB-18: ignored");
    }
}

#[test]
fn bca_21_22_acr_and_claims_parameter() {
    let _turn = turn();
    let c = ciba();
    refused(
        &c.sign_request(
            "tpp-1",
            with(
                "claims",
                json!({ "id_token": { "acr": { "essential": true, "value": "urn:other" } } }),
            ),
        ),
        400,
        "invalid_request",
        "essential unsupported acr",
    );
    for (case, value) in [
        ("claims not an object", json!(5)),
        ("unknown member", json!({ "access_token": {} })),
        ("id_token not an object", json!({ "id_token": "cpf" })),
    ] {
        refused(
            &c.sign_request("tpp-1", with("claims", value)),
            400,
            "invalid_request",
            case,
        );
    }
    // Unknown non-essential acr values are ignored; claims may come as a JSON string.
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert("acr_values".into(), json!(format!("urn:other {LOA2}")));
    claims.insert(
        "claims".into(),
        json!(json!({ "userinfo": { "cpf": null } }).to_string()),
    );
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    assert_eq!(response.status, 200, "{}", text(&response));
}

#[test]
fn bca_30_the_interaction_id_is_echoed_at_bc_authorize() {
    let _turn = turn();
    let c = ciba();
    let id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
    let response = c.server.send(
        "POST",
        "/bc-authorize",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            (e2e::ciba::CERT_HEADER, &c.cert),
            ("x-fapi-interaction-id", id),
        ],
        b"request=x",
    );
    assert_eq!(response.header("x-fapi-interaction-id"), Some(id));
}

#[test]
fn hint_5_8_key_6_id_token_hints_by_key_and_expiry() {
    // Its own server: it moves the clock by months.
    let c = Ciba::with(Server::bundle(e2e::ciba::ciba_variables()));
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let hint = tokens["id_token"].as_str().unwrap().to_string();
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(hint.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let resign = |key_jwk: &Value, changes: &[(&str, Value)]| {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let mut claims = payload.as_object().unwrap().clone();
        for (k, v) in changes {
            claims.insert(k.to_string(), v.clone());
        }
        let key = devkeys::private_key_from_jwk(key_jwk).unwrap();
        let thumb: [u8; 32] = URL_SAFE_NO_PAD
            .decode(e2e::ciba::x5t_s256(key_jwk))
            .unwrap()
            .try_into()
            .unwrap();
        jwt_compact::alg::Rsa::ps256()
            .token(
                &Header::empty()
                    .with_key_id(key_jwk["kid"].as_str().unwrap())
                    .with_certificate_thumbprint(thumb),
                &Claims::new(claims),
                &key,
            )
            .unwrap()
    };
    let attempt = |hint: &str| {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let mut claims = c.request_claims("tpp-1", &consent_id);
        claims.insert("id_token_hint".into(), json!(hint));
        c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims))
    };
    let m = material();
    // KEY-6: a hint signed by the retired key still identifies.
    assert_eq!(attempt(&resign(&m.retired, &[])).status, 200);
    // HINT-5: signed by anyone else under our kid.
    let mut forged_key = devkeys::signing_jwk("sig-2026").unwrap();
    forged_key["kid"] = m.signing["kid"].clone();
    assert_oauth_error(
        &attempt(&resign(&forged_key, &[])),
        400,
        "invalid_id_token_hint",
    );
    // HINT-6/9
    assert_oauth_error(
        &attempt(&resign(
            &m.signing,
            &[("iss", json!("https://other.example"))],
        )),
        400,
        "invalid_id_token_hint",
    );
    assert_oauth_error(
        &attempt(&resign(&m.signing, &[("sub", json!("nobody"))])),
        400,
        "unknown_user_id",
    );
    // HINT-4: no x5t#S256.
    let no_thumbprint = {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        jwt_compact::alg::Rsa::ps256()
            .token(
                &Header::empty().with_key_id(m.signing["kid"].as_str().unwrap()),
                &Claims::new(payload.clone()),
                &devkeys::private_key_from_jwk(&m.signing).unwrap(),
            )
            .unwrap()
    };
    assert_oauth_error(&attempt(&no_thumbprint), 400, "invalid_id_token_hint");
    // HINT-8: after its 180 days.
    c.server.time.advance(181 * 86_400);
    assert_oauth_error(&attempt(&hint), 400, "expired_id_token_hint");
}

#[test]
fn bca_23_client_notification_token_is_ignored_and_request_context_accepted() {
    let _turn = turn();
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert(
        "client_notification_token".into(),
        json!("8d67dc78-7faa-4d41-aabd-67707b374255"),
    );
    claims.insert("request_context".into(), json!({ "location": "POS 12" }));
    let response = c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims));
    assert_eq!(response.status, 200, "{}", text(&response));
}
