//! After the grant: refreshes (TOK-15…19), revocation by consent (CONS-2), id_token
//! cancellation (HINT-10) and signing-key rotation (KEY-6/7, TKN-10), over HTTP.

use std::sync::OnceLock;

use serde_json::{Value, json};

use e2e::ciba::{Ciba, HOLDER_1_CPF, LOA2, assert_oauth_error, ciba_variables, text};
use e2e::{Response, Server, material, temp_dir};

fn ciba() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| Ciba::new("lifecycle"))
}

fn refresh(c: &Ciba, client_id: &str, refresh_token: &str, extra: &str) -> Response {
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh_token}{extra}&{}",
        c.client_auth(client_id)
    );
    c.post(client_id, "/token", &body)
}

/// Whether an access token is bound to the certificate `cert` of tpp-1: the Consents API
/// checks the binding (401 when it does not hold) before refusing a CIBA token (403).
fn bound_to(c: &Ciba, token: &str, cert: &str) -> bool {
    let auth = format!("Bearer {token}");
    let response = c.server.send(
        "GET",
        "/open-banking/consents/v3/consents/x",
        &[
            ("authorization", &auth),
            (e2e::ciba::CERT_HEADER, cert),
            (
                "x-fapi-interaction-id",
                "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
            ),
        ],
        b"",
    );
    assert!(matches!(response.status, 401 | 403), "{}", text(&response));
    response.status == 403
}

#[test]
fn tok_15_17_18_a_refresh_returns_a_new_bound_token_and_the_same_refresh_token() {
    let c = ciba();
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let rt = tokens["refresh_token"].as_str().unwrap();
    // A new certificate of the same client (its certificate was renewed).
    let renewed = e2e::certificate_header("CN=tpp-1,O=TPP One,C=BR");
    let body = format!(
        "grant_type=refresh_token&refresh_token={rt}&{}",
        c.client_auth("tpp-1")
    );
    let response = c.server.post_form("/token", Some(&renewed), &body);
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let refreshed = response.json();
    assert_eq!(refreshed["refresh_token"], json!(rt), "TOK-17: no rotation");
    assert!(refreshed.get("id_token").is_none(), "TOK-18 [decision]");
    assert_eq!(refreshed["token_type"], json!("Bearer"));
    let expires_in = refreshed["expires_in"].as_i64().unwrap();
    assert!((300..=900).contains(&expires_in));
    assert_eq!(refreshed["scope"], tokens["scope"]);
    let access_token = refreshed["access_token"].as_str().unwrap();
    assert_ne!(access_token, tokens["access_token"].as_str().unwrap());
    // TOK-18: bound to the certificate of the refresh request.
    assert!(bound_to(c, access_token, &renewed));
    assert!(!bound_to(c, access_token, &c.cert));
    // And again: a refresh token is not single-use.
    assert_eq!(refresh(c, "tpp-1", rt, "").status, 200);
}

#[test]
fn tok_17_a_scope_may_only_narrow() {
    let c = ciba();
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert(
        "scope".into(),
        json!(format!("openid accounts consent:{consent_id}")),
    );
    let id = c.start("tpp-1", claims);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let tokens = c.poll("tpp-1", &id).json();
    let rt = tokens["refresh_token"].as_str().unwrap();
    let narrowed = refresh(
        c,
        "tpp-1",
        rt,
        &format!("&scope=openid+consent%3A{}", consent_id.replace(':', "%3A")),
    );
    assert_eq!(narrowed.status, 200, "{}", text(&narrowed));
    assert_eq!(
        narrowed.json()["scope"],
        json!(format!("openid consent:{consent_id}"))
    );
    assert_oauth_error(
        &refresh(c, "tpp-1", rt, "&scope=openid+payments"),
        400,
        "invalid_scope",
    );
}

#[test]
fn tok_15_unknown_or_another_client_s_refresh_token_is_invalid_grant() {
    let c = ciba();
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_oauth_error(&refresh(c, "tpp-2", rt, ""), 400, "invalid_grant");
    assert_oauth_error(
        &refresh(c, "tpp-1", &"A".repeat(43), ""),
        400,
        "invalid_grant",
    );
    // The access token is no refresh token.
    let at = tokens["access_token"].as_str().unwrap();
    assert_oauth_error(&refresh(c, "tpp-1", at, ""), 400, "invalid_grant");
    let missing = format!("grant_type=refresh_token&{}", c.client_auth("tpp-1"));
    assert_oauth_error(&c.post("tpp-1", "/token", &missing), 400, "invalid_request");
    // The rightful client still refreshes.
    assert_eq!(refresh(c, "tpp-1", rt, "").status, 200);
}

#[test]
fn cons_2_tok_16_revoking_the_consent_stops_its_refresh_token() {
    let c = ciba();
    let (consent_id, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let rt = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(refresh(c, "tpp-1", rt, "").status, 200);
    let token = c.consents_token("tpp-1");
    assert_eq!(
        c.consents("tpp-1", &token, "DELETE", &consent_id, None)
            .status,
        204
    );
    assert_oauth_error(&refresh(c, "tpp-1", rt, ""), 400, "invalid_grant");
}

#[test]
fn tok_16_19_a_refresh_token_lives_with_its_consent() {
    // Its own server: it moves the clock.
    let mut vars = ciba_variables();
    vars.insert("refresh_token_ttl", "86400".to_string());
    let c = Ciba::with(Server::bundle(vars));
    // A consent that ends in two hours.
    let token = c.consents_token("tpp-1");
    let end = e2e::assertion::now() + 7200;
    let response = c.consents(
        "tpp-1",
        &token,
        "POST",
        "",
        Some(&json!({ "data": {
            "loggedUser": { "document": { "identification": HOLDER_1_CPF, "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
            "expirationDateTime": ciba::time::format(end),
        }})),
    );
    assert_eq!(response.status, 201, "{}", text(&response));
    let ending = response.json()["data"]["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    let id = c.start_with_login_hint("tpp-1", &ending);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let ending_rt = c.poll("tpp-1", &id).json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // A consent with no end date: refresh_token_ttl (here one day) applies.
    let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let open_rt = tokens["refresh_token"].as_str().unwrap().to_string();

    // After the access token's 15 minutes, both still refresh.
    c.server.time.advance(901);
    assert_eq!(refresh(&c, "tpp-1", &ending_rt, "").status, 200);
    assert_eq!(refresh(&c, "tpp-1", &open_rt, "").status, 200);
    // Past the consent's end (TOK-16).
    c.server.time.advance(7200);
    assert_oauth_error(&refresh(&c, "tpp-1", &ending_rt, ""), 400, "invalid_grant");
    assert_eq!(refresh(&c, "tpp-1", &open_rt, "").status, 200);
    // Past refresh_token_ttl for the consent without end date (TOK-19).
    c.server.time.advance(86_400);
    assert_oauth_error(&refresh(&c, "tpp-1", &open_rt, ""), 400, "invalid_grant");
}

/// A backchannel request by `id_token_hint`.
fn with_hint(c: &Ciba, hint: &str) -> Response {
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("id_token_hint".into(), json!(hint));
    c.bc_authorize("tpp-1", &c.sign_request("tpp-1", claims))
}

fn claims_of(id_token: &str) -> Value {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(id_token.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn hint_10_a_cancelled_id_token_is_no_hint() {
    let c = Ciba::new("cancellation");
    // By jti.
    let (_, first) = c.grant("tpp-1", HOLDER_1_CPF);
    let (_, second) = c.grant("tpp-1", HOLDER_1_CPF);
    let first_hint = first["id_token"].as_str().unwrap();
    let second_hint = second["id_token"].as_str().unwrap();
    assert_eq!(with_hint(&c, first_hint).status, 200);
    let jti = claims_of(first_hint)["jti"].as_str().unwrap().to_string();
    let cancelled = c.device("POST", "/id-tokens/revoke", Some(&json!({ "jti": jti })));
    assert_eq!(cancelled.status, 200, "{}", text(&cancelled));
    assert_oauth_error(&with_hint(&c, first_hint), 400, "invalid_id_token_hint");
    assert_eq!(with_hint(&c, second_hint).status, 200, "only that one");

    // By holder and time: everything issued before it.
    let iat = claims_of(second_hint)["iat"].as_i64().unwrap();
    let cancelled = c.device(
        "POST",
        "/id-tokens/revoke",
        Some(&json!({ "subject": "holder-1", "not_before": iat + 1 })),
    );
    assert_eq!(cancelled.status, 200, "{}", text(&cancelled));
    assert_oauth_error(&with_hint(&c, second_hint), 400, "invalid_id_token_hint");
    // An earlier time does not undo it.
    let earlier = c.device(
        "POST",
        "/id-tokens/revoke",
        Some(&json!({ "subject": "holder-1", "not_before": "2020-01-01T00:00:00Z" })),
    );
    assert_eq!(earlier.json()["not_before"], json!(iat + 1));
    assert_oauth_error(&with_hint(&c, second_hint), 400, "invalid_id_token_hint");
    // Bad bodies.
    for body in [
        json!({}),
        json!({ "subject": "holder-1" }),
        json!({ "subject": "holder-1", "not_before": "yesterday" }),
        json!({ "jti": "x", "subject": "holder-1", "not_before": 1 }),
    ] {
        assert_eq!(
            c.device("POST", "/id-tokens/revoke", Some(&body)).status,
            400,
            "{body}"
        );
    }
}

#[test]
fn key_6_7_tkn_10_rotation_keeps_old_id_tokens_verifiable_until_the_key_is_removed() {
    let dir = temp_dir("rotation");
    let m = material();
    let old = m.signing.clone();
    let new = devkeys::signing_jwk("sig-2027").unwrap();
    // One issuer across the restarts (each gets a new port), as in a real rotation.
    let issuer = "http://localhost:8443";
    let with_keys = |keys: Value| {
        let mut vars = ciba_variables();
        vars.insert("signing_keys", json!({ "keys": keys }).to_string());
        vars.insert("issuer", issuer.to_string());
        Ciba::with_issuer(Server::bundle_in(vars, &dir), issuer)
    };
    let old_hint = {
        let c = with_keys(json!([old]));
        let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
        tokens["id_token"].as_str().unwrap().to_string()
    };
    let header_kid = |t: &str| {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["kid"].clone()
    };
    assert_eq!(header_kid(&old_hint), old["kid"]);
    {
        // The new key put first: it signs; the old one stays published and verifying.
        let c = with_keys(json!([new, old]));
        let (_, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
        assert_eq!(header_kid(tokens["id_token"].as_str().unwrap()), new["kid"]);
        let jwks = c.server.get("/jwks").json();
        let kids: Vec<&Value> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| &k["kid"])
            .collect();
        assert!(
            kids.contains(&&old["kid"]) && kids.contains(&&new["kid"]),
            "KEY-7"
        );
        let response = with_hint(&c, &old_hint);
        assert_eq!(response.status, 200, "KEY-6: {}", text(&response));
    }
    {
        // Removed: no longer published, no longer verifying.
        let c = with_keys(json!([new]));
        let jwks = c.server.get("/jwks").json();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["kid"] != old["kid"])
        );
        assert_oauth_error(&with_hint(&c, &old_hint), 400, "invalid_id_token_hint");
    }
}

fn userinfo(c: &Ciba, token: &str) -> Response {
    let auth = format!("Bearer {token}");
    c.server.send(
        "GET",
        "/userinfo",
        &[("authorization", &auth), (e2e::ciba::CERT_HEADER, &c.cert)],
        b"",
    )
}

#[test]
fn cons_2_a_grant_lives_through_refreshes_and_userinfo_until_its_consent_is_revoked() {
    let c = ciba();
    let (consent_id, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let rt = tokens["refresh_token"].as_str().unwrap();
    let first = tokens["access_token"].as_str().unwrap().to_string();
    let mut access_tokens = vec![first.clone()];
    assert_eq!(userinfo(c, &first).json()["sub"], json!("holder-1"));
    for _ in 0..3 {
        let refreshed = refresh(c, "tpp-1", rt, "");
        assert_eq!(refreshed.status, 200, "{}", text(&refreshed));
        let at = refreshed.json()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(userinfo(c, &at).status, 200);
        access_tokens.push(at);
    }
    let token = c.consents_token("tpp-1");
    assert_eq!(
        c.consents("tpp-1", &token, "DELETE", &consent_id, None)
            .status,
        204
    );
    for at in &access_tokens {
        let response = userinfo(c, at);
        assert_eq!(response.status, 401, "{}", text(&response));
        assert_eq!(response.json()["error"], json!("invalid_token"));
    }
    assert_oauth_error(&refresh(c, "tpp-1", rt, ""), 400, "invalid_grant");
}
