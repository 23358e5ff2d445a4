//! `GET /.well-known/openid-configuration`: DISC-1…20.

use serde_json::{Value, json};

use crate::server;
use e2e::{Server, client, variables};

const PATH: &str = "/.well-known/openid-configuration";

fn doc() -> Value {
    let response = server().get(PATH);
    assert_eq!(response.status, 200);
    response.json()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn disc_1_issuer_is_the_url_the_document_was_fetched_from() {
    let response = server().get(PATH);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["issuer"], json!(server().base));
}

#[test]
fn disc_2_endpoints_are_published_under_the_issuer() {
    let d = doc();
    let base = &server().base;
    assert_eq!(d["jwks_uri"], json!(format!("{base}/jwks")));
    assert_eq!(d["token_endpoint"], json!(format!("{base}/token")));
    assert_eq!(d["userinfo_endpoint"], json!(format!("{base}/userinfo")));
    assert_eq!(
        d["backchannel_authentication_endpoint"],
        json!(format!("{base}/bc-authorize"))
    );
    // REG-2: registration (mTLS is on in this configuration, REG-3).
    assert_eq!(
        d["registration_endpoint"],
        json!(format!("{base}/register"))
    );
    assert!(
        d.get("authorization_endpoint").is_none(),
        "no front channel (AMB-16)"
    );
}

#[test]
fn disc_3_mtls_aliases_follow_the_client_cert_header() {
    let d = doc();
    let base = &server().base;
    let aliases = &d["mtls_endpoint_aliases"];
    assert_eq!(aliases["token_endpoint"], json!(format!("{base}/token")));
    assert_eq!(
        aliases["userinfo_endpoint"],
        json!(format!("{base}/userinfo"))
    );
    assert_eq!(
        aliases["backchannel_authentication_endpoint"],
        json!(format!("{base}/bc-authorize"))
    );
    assert_eq!(
        aliases["registration_endpoint"],
        json!(format!("{base}/register"))
    );
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], json!(true));

    let mut vars = variables();
    vars.insert("client_cert_header", String::new());
    let plain = Server::bundle(vars).get(PATH).json();
    assert!(
        plain.get("mtls_endpoint_aliases").is_none(),
        "without mTLS, no aliases"
    );
    assert!(
        plain.get("registration_endpoint").is_none(),
        "without mTLS, no registration (REG-3)"
    );
    assert_eq!(
        plain["tls_client_certificate_bound_access_tokens"],
        json!(false),
        "and discovery says tokens are not bound"
    );
}

/// DISC-3 (BR-DCR 6.1-5/7, issue 17 item 4): with `mtls_base_url`, the aliases point at the
/// host where the proxy asks for certificates; the plain endpoints stay on the issuer.
#[test]
fn disc_3_mtls_aliases_point_at_mtls_base_url() {
    let mut vars = variables();
    vars.insert("mtls_base_url", "https://matls-auth.bank.example".into());
    let server = Server::bundle(vars);
    let d = server.get(PATH).json();
    let mtls = "https://matls-auth.bank.example";
    assert_eq!(
        d["mtls_endpoint_aliases"],
        json!({
            "token_endpoint": format!("{mtls}/token"),
            "userinfo_endpoint": format!("{mtls}/userinfo"),
            "backchannel_authentication_endpoint": format!("{mtls}/bc-authorize"),
            "registration_endpoint": format!("{mtls}/register"),
        })
    );
    assert_eq!(d["token_endpoint"], json!(format!("{}/token", server.base)));
    assert_eq!(
        d["registration_endpoint"],
        json!(format!("{}/register", server.base))
    );
}

#[test]
fn disc_4_poll_is_the_only_delivery_mode() {
    assert_eq!(
        doc()["backchannel_token_delivery_modes_supported"],
        json!(["poll"])
    );
}

#[test]
fn disc_5_backchannel_requests_are_signed_with_ps256_only() {
    assert_eq!(
        doc()["backchannel_authentication_request_signing_alg_values_supported"],
        json!(["PS256"])
    );
}

#[test]
fn disc_6_user_code_is_not_supported() {
    assert_eq!(
        doc()["backchannel_user_code_parameter_supported"],
        json!(false)
    );
}

#[test]
fn disc_7_both_brasil_login_hint_token_types() {
    assert_eq!(
        doc()["backchannel_endpoint_login_hint_token_types_supported"],
        json!([
            "urn:brasil:openbanking:ciba:login-hint-token-type:as-generated",
            "urn:brasil:openbanking:ciba:login-hint-token-type:ad-generated"
        ])
    );
}

#[test]
fn disc_8_grant_types_include_ciba_client_credentials_and_refresh_token() {
    let d = doc();
    let grants = strings(&d["grant_types_supported"]);
    for g in [
        "urn:openid:params:grant-type:ciba",
        "client_credentials",
        "refresh_token",
    ] {
        assert!(grants.contains(&g), "{g}");
    }
    assert!(
        !grants.contains(&"authorization_code"),
        "no hybrid flow here"
    );
}

#[test]
fn disc_9_acr_values_are_loa2_and_loa3() {
    assert_eq!(
        doc()["acr_values_supported"],
        json!(["urn:brasil:openbanking:loa2", "urn:brasil:openbanking:loa3"])
    );
}

#[test]
fn disc_10_claims_parameter_is_supported() {
    assert_eq!(doc()["claims_parameter_supported"], json!(true));
}

#[test]
fn disc_11_claims_include_sub_acr_cpf_and_cnpj_only_for_legal_persons() {
    let d = doc();
    let claims = strings(&d["claims_supported"]);
    for c in ["sub", "acr", "cpf"] {
        assert!(claims.contains(&c), "{c}");
    }
    assert!(
        !claims.contains(&"cnpj"),
        "no configured holder acts for a company"
    );

    let mut vars = variables();
    vars.insert(
        "users",
        json!([{ "sub": "h1", "cpf": "52998224725", "cnpj": ["11222333000181"] }]).to_string(),
    );
    let with_company = Server::bundle(vars).get(PATH).json();
    assert!(strings(&with_company["claims_supported"]).contains(&"cnpj"));
}

#[test]
fn disc_12_amb_23_request_objects_ps256_and_never_encrypted() {
    let d = doc();
    assert_eq!(d["request_parameter_supported"], json!(true));
    assert_eq!(
        d["request_object_signing_alg_values_supported"],
        json!(["PS256"])
    );
    // BCA-5 refuses JWE request objects: discovery does not advertise them (AMB-23).
    assert!(
        d.get("request_object_encryption_alg_values_supported")
            .is_none()
    );
    assert!(
        d.get("request_object_encryption_enc_values_supported")
            .is_none()
    );
}

#[test]
fn disc_13_request_uri_is_explicitly_unsupported() {
    assert_eq!(doc()["request_uri_parameter_supported"], json!(false));
}

#[test]
fn disc_14_auth_methods_are_published_and_never_secrets() {
    let d = doc();
    let methods = strings(&d["token_endpoint_auth_methods_supported"]);
    assert_eq!(
        methods,
        ["private_key_jwt"],
        "only what registered clients use (DISC-20)"
    );
    for never in [
        "client_secret_basic",
        "client_secret_post",
        "client_secret_jwt",
        "none",
        "self_signed_tls_client_auth",
    ] {
        assert!(!methods.contains(&never));
    }
}

#[test]
fn disc_14_20_tls_client_auth_is_listed_only_when_used_and_possible() {
    let tls = json!({
        "client_id": "mtls-tpp",
        "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/tpp/application.jwks",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=tpp,OU=1234,O=TPP,C=BR",
        "scope": "consents",
        "grant_types": ["client_credentials"],
    });
    let mut vars = variables();
    vars.insert(
        "clients",
        json!([client("tpp-1", "openid"), tls]).to_string(),
    );
    let d = Server::bundle(vars.clone()).get(PATH).json();
    assert_eq!(
        strings(&d["token_endpoint_auth_methods_supported"]),
        ["private_key_jwt", "tls_client_auth"]
    );

    vars.insert("client_cert_header", String::new());
    let d = Server::bundle(vars).get(PATH).json();
    assert_eq!(
        strings(&d["token_endpoint_auth_methods_supported"]),
        ["private_key_jwt"],
        "tls_client_auth cannot work without the certificate header"
    );
}

#[test]
fn disc_15_client_assertions_are_ps256() {
    assert_eq!(
        doc()["token_endpoint_auth_signing_alg_values_supported"],
        json!(["PS256"])
    );
}

#[test]
fn disc_16_access_tokens_are_certificate_bound() {
    assert_eq!(
        doc()["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );
}

#[test]
fn disc_17_id_tokens_are_ps256_only() {
    let d = doc();
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["PS256"]));
    let text = d.to_string();
    assert!(
        !text.contains("RS256") && !text.contains("\"none\""),
        "{text}"
    );
}

/// DISC-17, TKN-4: encrypted id_tokens are offered, RSA-OAEP with A256GCM only.
#[test]
fn disc_17_id_token_encryption_is_rsa_oaep_with_a256gcm() {
    let d = doc();
    assert_eq!(
        d["id_token_encryption_alg_values_supported"],
        json!(["RSA-OAEP"])
    );
    assert_eq!(
        d["id_token_encryption_enc_values_supported"],
        json!(["A256GCM"])
    );
}

#[test]
fn disc_18_public_subjects_and_no_front_channel_response_types() {
    let d = doc();
    assert_eq!(d["subject_types_supported"], json!(["public"]));
    assert_eq!(d["response_types_supported"], json!([]));
}

/// DISC-19: openid, the static clients' scopes, then what registration may grant (REG-22's
/// table, the default of `role_scopes`: mTLS is on here, so registration is offered).
#[test]
fn disc_19_scopes_are_openid_and_the_registered_role_scopes() {
    let d = doc();
    let scopes = strings(&d["scopes_supported"]);
    assert_eq!(
        scopes,
        [
            "openid",
            "consents",
            "accounts",
            "payments",
            "credit-cards-accounts",
            "customers",
            "invoice-financings",
            "financings",
            "loans",
            "unarranged-accounts-overdraft",
            "resources",
        ]
    );
    assert!(!scopes.iter().any(|s| s.starts_with("consent:")));
}

/// DISC-19, REG-22: a scope the bank adds for a role in `role_scopes` can be registered, so
/// discovery lists it, once, after the static clients' scopes.
#[test]
fn disc_19_reg_22_scopes_supported_lists_a_scope_added_in_role_scopes() {
    let mut vars = variables();
    vars.insert(
        "role_scopes",
        r#"{"DADOS":"openid accounts consents","PAGTO":"openid payments recurring-payments"}"#
            .to_string(),
    );
    let d = Server::bundle(vars).get(PATH).json();
    assert_eq!(
        strings(&d["scopes_supported"]),
        [
            "openid",
            "consents",
            "accounts",
            "payments",
            "recurring-payments"
        ]
    );
}

#[test]
fn disc_20_nothing_uncertified_is_advertised() {
    let d = doc();
    let text = d.to_string();
    for never in [
        "\"ping\"",
        "\"push\"",
        "client_secret",
        "backchannel_client_notification",
    ] {
        assert!(!text.contains(never), "{never} advertised");
    }
    assert_eq!(
        d["backchannel_token_delivery_modes_supported"],
        json!(["poll"])
    );
}

#[test]
fn discovery_answers_get_only() {
    let response = server().send("POST", PATH, &[], b"");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET"));
    assert_eq!(response.json()["error"], json!("method_not_allowed"));
}
