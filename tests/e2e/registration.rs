//! `POST /register`, `GET|PUT|DELETE /register/<client_id>` over HTTP against the built
//! components and a fake Directory on loopback: the OIDF Brazil DCR modules of
//! registration.md §3 (named after them), then the REG rules they leave out.

use std::sync::OnceLock;

use serde_json::{Value, json};

use e2e::assertion::now;
use e2e::ciba::{CERT_HEADER, DEVICE_TOKEN, GRANT, HOLDER_1_CPF, LOA2, text};
use e2e::dcr::{Tpp, dcr_variables, manage, post_registration, sign_ssa, start_directory};
use e2e::directory::Directory;
use e2e::{Response, Server, certificate_header};

/// One Directory and one server for the tests that register their own software.
struct Shared {
    directory: Directory,
    server: Server,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let directory = start_directory();
        let server = Server::bundle(dcr_variables(&directory));
        Shared { directory, server }
    })
}

/// A registration that must succeed; its body.
fn register(server: &Server, tpp: &Tpp, body: &Value) -> Value {
    let r = post_registration(server, Some(&tpp.cert), body);
    assert_eq!(r.status, 201, "{}", text(&r));
    r.json()
}

fn ids(created: &Value) -> (String, String) {
    (
        created["client_id"].as_str().unwrap().to_string(),
        created["registration_access_token"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

/// A refusal with `status`, `application/json` and no `client_id` in it (OIDF-CS
/// `CheckNoClientIdFromClientConfigurationEndpoint`).
fn assert_refused(r: &Response, status: u16, error: Option<&str>, client_id: &str) {
    assert_eq!(r.status, status, "{}", text(r));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    if let Some(error) = error {
        assert_eq!(r.json()["error"], json!(error), "{}", text(r));
    }
    if !client_id.is_empty() {
        assert!(!String::from_utf8_lossy(&r.body).contains(client_id));
    }
}

/// A `client_credentials` token of a registered client.
fn cc_token(server: &Server, tpp: &Tpp, client_id: &str, scope: &str) -> Response {
    let body = format!(
        "grant_type=client_credentials&scope={scope}&{}",
        tpp.client_auth(client_id, &server.base, now())
    );
    server.post_form("/token", Some(&tpp.cert), &body)
}

/// The common checks of the Brazil DCR modules on a registration response.
fn check_registration(server: &Server, tpp: &Tpp, created: &Value) {
    let (id, rat) = ids(created);
    assert!(id.len() >= 22 && !rat.is_empty());
    assert_eq!(
        created["registration_client_uri"],
        json!(format!("{}/register/{id}", server.base))
    );
    assert_eq!(created["redirect_uris"], json!([tpp.redirect_uris[0]]));
    assert_eq!(created["jwks_uri"], json!(tpp.jwks_uri));
    assert_eq!(created["software_id"], json!(tpp.software_id));
    assert!(created.get("client_secret").is_none());
    assert!(created["scope"].as_str().unwrap().contains("openid"));
}

/// `brazildcr-happy-flow`: register, use the client (client_credentials), GET twice (same
/// client_id, redirect URI, URI; RAT not rotated), DELETE 204. REG-28, REG-32, REG-34, REG-36.
#[test]
fn brazildcr_happy_flow_reg_28_32_34_36() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let created = register(&s.server, &tpp, &tpp.registration(now()));
    check_registration(&s.server, &tpp, &created);
    let (id, rat) = ids(&created);
    let token = cc_token(&s.server, &tpp, &id, "consents");
    assert_eq!(token.status, 200, "{}", text(&token));
    for _ in 0..2 {
        let r = manage(&s.server, "GET", &id, Some(&tpp.cert), Some(&rat), None);
        assert_eq!(r.status, 200, "{}", text(&r));
        assert_eq!(r.header("content-type"), Some("application/json"));
        let got = r.json();
        assert_eq!(got["client_id"], json!(id));
        assert_eq!(got["redirect_uris"], json!([tpp.redirect_uris[0]]));
        assert_eq!(
            got["registration_client_uri"],
            created["registration_client_uri"]
        );
        assert_eq!(got["registration_access_token"], json!(rat));
        assert_eq!(got["client_id_issued_at"], created["client_id_issued_at"]);
    }
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204, "{}", text(&r));
    assert!(r.body.is_empty());
}

/// `brazildcr-happy-flow-variant`: `grant_types` reordered and `scope` sent; the granted
/// scope is within the requested one (REG-23, REG-24).
#[test]
fn brazildcr_happy_flow_variant_reg_23_24() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let mut body = tpp.registration(now());
    body["grant_types"] = json!([
        "client_credentials",
        "refresh_token",
        "implicit",
        "authorization_code"
    ]);
    body["scope"] = json!("openid accounts payments");
    let created = register(&s.server, &tpp, &body);
    check_registration(&s.server, &tpp, &created);
    assert_eq!(created["scope"], json!("openid accounts payments"));
    assert_eq!(
        created["grant_types"],
        json!(["client_credentials", "refresh_token"])
    );
}

/// `brazildcr-happy-flow-variant-2`: `scope` members in reverse order (REG-23).
#[test]
fn brazildcr_happy_flow_variant_2_reg_23() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let mut body = tpp.registration(now());
    body["scope"] = json!("payments accounts openid");
    let created = register(&s.server, &tpp, &body);
    let granted: Vec<&str> = created["scope"].as_str().unwrap().split(' ').collect();
    for scope in &granted {
        assert!(["payments", "accounts", "openid"].contains(scope));
    }
    assert_eq!(granted.len(), 3);
}

/// `brazildcr-client-delete`: the client works; DELETE 204; then GET 401 without
/// `client_id`, DELETE 401, client_credentials 401 invalid_client; and (REG-36) its access
/// tokens stop at the Consents API and its pending requests at the token endpoint.
#[test]
fn brazildcr_client_delete_reg_36() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let created = register(&s.server, &tpp, &tpp.registration(now()));
    let (id, rat) = ids(&created);
    let token = cc_token(&s.server, &tpp, &id, "consents");
    assert_eq!(token.status, 200, "{}", text(&token));
    let access_token = token.json()["access_token"].as_str().unwrap().to_string();
    let consents = |t: &str| {
        let auth = format!("Bearer {t}");
        s.server.send(
            "GET",
            "/open-banking/consents/v3/consents/urn:bank:x",
            &[
                ("authorization", &auth),
                (CERT_HEADER, &tpp.cert),
                (
                    "x-fapi-interaction-id",
                    "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
                ),
            ],
            b"",
        )
    };
    // An unknown consent (404) to a live client's token.
    assert_eq!(consents(&access_token).status, 404);
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204, "{}", text(&r));
    let r = manage(&s.server, "GET", &id, Some(&tpp.cert), Some(&rat), None);
    assert_refused(&r, 401, Some("invalid_token"), &id);
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_refused(&r, 401, Some("invalid_token"), &id);
    let r = cc_token(&s.server, &tpp, &id, "consents");
    assert_refused(&r, 401, Some("invalid_client"), "");
    assert_eq!(
        consents(&access_token).status,
        401,
        "tokens die with the client"
    );
}

/// `brazildcr-invalid-registration-access-token`: a bogus RAT gets 401 without `client_id`
/// on GET and DELETE; the real DELETE then works (REG-33).
#[test]
fn brazildcr_invalid_registration_access_token_reg_33() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let (id, rat) = ids(&register(&s.server, &tpp, &tpp.registration(now())));
    for method in ["GET", "DELETE"] {
        let r = manage(&s.server, method, &id, Some(&tpp.cert), Some("bogus"), None);
        assert_refused(&r, 401, Some("invalid_token"), &id);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    // No Authorization at all: a bare challenge (RFC 6750 3.1).
    let r = manage(&s.server, "GET", &id, Some(&tpp.cert), None, None);
    assert_refused(&r, 401, None, &id);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    // The RAT on another client's path is refused and kept.
    let other = Tpp::new(&s.directory);
    let (other_id, _) = ids(&register(&s.server, &other, &other.registration(now())));
    let r = manage(
        &s.server,
        "GET",
        &other_id,
        Some(&tpp.cert),
        Some(&rat),
        None,
    );
    assert_refused(&r, 401, Some("invalid_token"), &other_id);
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204, "{}", text(&r));
}

/// `brazil-dcr-invalid-software-statement-signature`: a tampered signature is 400
/// invalid_software_statement (REG-8); so is a key the Directory does not publish.
#[test]
fn brazil_dcr_invalid_software_statement_signature_reg_8() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let mut body = tpp.registration(now());
    let ssa = body["software_statement"].as_str().unwrap().to_string();
    let (signed, signature) = ssa.rsplit_once('.').unwrap();
    let tampered: String = signature.chars().rev().collect();
    body["software_statement"] = json!(format!("{signed}.{tampered}"));
    let r = post_registration(&s.server, Some(&tpp.cert), &body);
    assert_refused(&r, 400, Some("invalid_software_statement"), "");
    // Signed by a key that is not the Directory's (same kid).
    let rogue = devkeys::rsa_key(2048).unwrap();
    body["software_statement"] = json!(e2e::assertion::sign(
        "PS256",
        &rogue,
        e2e::dcr::DIRECTORY_KID,
        tpp.ssa_claims(now())
    ));
    let r = post_registration(&s.server, Some(&tpp.cert), &body);
    assert_refused(&r, 400, Some("invalid_software_statement"), "");
}

/// `brazil-dcr-no-software-statement`: the SSA's claims copied into the body, no SSA: 400
/// invalid_client_metadata (REG-7).
#[test]
fn brazil_dcr_no_software_statement_reg_7() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let mut body = tpp.registration(now());
    body.as_object_mut().unwrap().remove("software_statement");
    for (k, v) in tpp.ssa_claims(now()) {
        body[k] = v;
    }
    let r = post_registration(&s.server, Some(&tpp.cert), &body);
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
}

/// `brazil-dcr-no-mtls`: POST, GET and DELETE without a certificate get 401 invalid_client
/// without `client_id`; then a normal registration and DELETE work (REG-3).
#[test]
fn brazil_dcr_no_mtls_reg_3() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let r = post_registration(&s.server, None, &tpp.registration(now()));
    assert_refused(&r, 401, Some("invalid_client"), "");
    let (id, rat) = ids(&register(&s.server, &tpp, &tpp.registration(now())));
    for method in ["GET", "DELETE"] {
        let r = manage(&s.server, method, &id, None, Some(&rat), None);
        assert_refused(&r, 401, Some("invalid_client"), &id);
    }
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204, "{}", text(&r));
}

/// `brazil-dcr-bad-mtls`: a self-signed certificate of someone else: POST 400
/// unapproved_software_statement (REG-14), GET and DELETE 401 invalid_client (REG-15).
#[test]
fn brazil_dcr_bad_mtls_reg_14_15() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let fake = certificate_header("CN=attacker.example,O=Attacker,C=BR");
    let r = post_registration(&s.server, Some(&fake), &tpp.registration(now()));
    assert_refused(&r, 400, Some("unapproved_software_statement"), "");
    let (id, rat) = ids(&register(&s.server, &tpp, &tpp.registration(now())));
    for method in ["GET", "DELETE"] {
        let r = manage(&s.server, method, &id, Some(&fake), Some(&rat), None);
        assert_refused(&r, 401, Some("invalid_client"), &id);
    }
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204, "{}", text(&r));
}

/// The DCR response minus the four fields a PUT must not send, with a fresh SSA.
fn update_body(tpp: &Tpp, created: &Value) -> Value {
    let mut body = created.clone();
    for k in [
        "registration_access_token",
        "registration_client_uri",
        "client_secret_expires_at",
        "client_id_issued_at",
    ] {
        body.as_object_mut().unwrap().remove(k);
    }
    body["software_statement"] = json!(tpp.ssa(now()));
    body
}

/// `brazildcr-update-client-config`: a PUT with a fresh SSA and the second SSA redirect URI
/// is 200 with the same client_id, URI and RAT; then PUTs with a fake certificate, none, a
/// bogus RAT, no SSA and a bad SSA all fail, and the redirect URI is unchanged (REG-35).
#[test]
fn brazildcr_update_client_config_reg_35() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let created = register(&s.server, &tpp, &tpp.registration(now()));
    let (id, rat) = ids(&created);
    let mut body = update_body(&tpp, &created);
    body["redirect_uris"] = json!([tpp.redirect_uris[1]]);
    let r = manage(
        &s.server,
        "PUT",
        &id,
        Some(&tpp.cert),
        Some(&rat),
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    let updated = r.json();
    assert_eq!(updated["client_id"], json!(id));
    assert_eq!(updated["redirect_uris"], json!([tpp.redirect_uris[1]]));
    assert_eq!(
        updated["registration_client_uri"],
        created["registration_client_uri"]
    );
    assert_eq!(updated["registration_access_token"], json!(rat));
    let mut again = body.clone();
    again["redirect_uris"] = json!([tpp.redirect_uris[0]]);
    let fake = certificate_header("CN=attacker.example,O=Attacker,C=BR");
    let r = manage(&s.server, "PUT", &id, Some(&fake), Some(&rat), Some(&again));
    assert_refused(&r, 401, Some("invalid_client"), &id);
    let r = manage(&s.server, "PUT", &id, None, Some(&rat), Some(&again));
    assert_refused(&r, 401, Some("invalid_client"), &id);
    let r = manage(
        &s.server,
        "PUT",
        &id,
        Some(&tpp.cert),
        Some("bogus"),
        Some(&again),
    );
    assert_refused(&r, 401, Some("invalid_token"), &id);
    let mut no_ssa = again.clone();
    no_ssa.as_object_mut().unwrap().remove("software_statement");
    let r = manage(
        &s.server,
        "PUT",
        &id,
        Some(&tpp.cert),
        Some(&rat),
        Some(&no_ssa),
    );
    assert_refused(&r, 400, None, "");
    let mut bad_ssa = again.clone();
    bad_ssa["software_statement"] = json!("not.a.jws");
    let r = manage(
        &s.server,
        "PUT",
        &id,
        Some(&tpp.cert),
        Some(&rat),
        Some(&bad_ssa),
    );
    assert_refused(&r, 400, Some("invalid_software_statement"), "");
    let r = manage(&s.server, "GET", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.json()["redirect_uris"], json!([tpp.redirect_uris[1]]));
}

/// A PUT of `change` over a fresh registration: the response, and the registration after.
fn put_change(change: impl Fn(&mut Value, &Tpp)) -> (Response, Value, Value) {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let created = register(&s.server, &tpp, &tpp.registration(now()));
    let (id, rat) = ids(&created);
    let mut body = update_body(&tpp, &created);
    change(&mut body, &tpp);
    let r = manage(
        &s.server,
        "PUT",
        &id,
        Some(&tpp.cert),
        Some(&rat),
        Some(&body),
    );
    let after = manage(&s.server, "GET", &id, Some(&tpp.cert), Some(&rat), None).json();
    (r, created, after)
}

/// `brazildcr-update-client-config-bad-jwks-uri` (REG-17).
#[test]
fn brazildcr_update_client_config_bad_jwks_uri_reg_17() {
    let (r, created, after) = put_change(|b, _| {
        b["jwks_uri"] = json!("https://keystore.example/other.jwks");
    });
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
    assert_eq!(after["jwks_uri"], created["jwks_uri"]);
}

/// `brazildcr-update-client-config-invalid-jwks-by-value` (REG-17).
#[test]
fn brazildcr_update_client_config_invalid_jwks_by_value_reg_17() {
    let (r, _, _) = put_change(|b, _| {
        b.as_object_mut().unwrap().remove("jwks_uri");
        b["jwks"] = json!({ "keys": [] });
    });
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
}

/// `brazildcr-update-client-config-invalid-redirect-uri` (REG-18).
#[test]
fn brazildcr_update_client_config_invalid_redirect_uri_reg_18() {
    let (r, created, after) = put_change(|b, _| {
        b["redirect_uris"] = json!(["https://attacker.example/cb"]);
    });
    assert_refused(&r, 400, Some("invalid_redirect_uri"), "");
    assert_eq!(after["redirect_uris"], created["redirect_uris"]);
}

/// A POST of the registration with `change`: the response.
fn post_change(change: impl Fn(&mut Value, &Tpp)) -> Response {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let mut body = tpp.registration(now());
    change(&mut body, &tpp);
    post_registration(&s.server, Some(&tpp.cert), &body)
}

/// `brazil-dcr-no-redirect-uri` (REG-18).
#[test]
fn brazil_dcr_no_redirect_uri_reg_18() {
    let r = post_change(|b, _| {
        b.as_object_mut().unwrap().remove("redirect_uris");
    });
    assert_refused(&r, 400, Some("invalid_redirect_uri"), "");
}

/// `brazil-dcr-invalid-redirect-uri` (REG-18).
#[test]
fn brazil_dcr_invalid_redirect_uri_reg_18() {
    let r = post_change(|b, _| b["redirect_uris"] = json!(["https://attacker.example/cb"]));
    assert_refused(&r, 400, Some("invalid_redirect_uri"), "");
}

/// `brazil-dcr-invalid-jwks-uri` (REG-17).
#[test]
fn brazil_dcr_invalid_jwks_uri_reg_17() {
    let r = post_change(|b, _| b["jwks_uri"] = json!("https://keystore.example/other.jwks"));
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
}

/// `brazil-dcr-invalid-jwks-by-value` (REG-17).
#[test]
fn brazil_dcr_invalid_jwks_by_value_reg_17() {
    let r = post_change(|b, _| {
        b.as_object_mut().unwrap().remove("jwks_uri");
        b["jwks"] = json!({ "keys": [] });
    });
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
}

/// REG-12, REG-22, REG-23: the SSA's active roles decide the scopes: a PAGTO-only software
/// gets `openid payments` by default and cannot ask for data scopes.
#[test]
fn reg_22_23_active_roles_decide_the_scopes() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let pagto_only = |tpp: &Tpp| {
        let mut claims = tpp.ssa_claims(now());
        claims.insert(
            "software_statement_roles".into(),
            json!([
                { "role": "PAGTO", "status": "Active" },
                { "role": "DADOS", "status": "Inactive" }
            ]),
        );
        sign_ssa(claims)
    };
    let mut body = tpp.registration(now());
    body["software_statement"] = json!(pagto_only(&tpp));
    body["scope"] = json!("openid accounts");
    let r = post_registration(&s.server, Some(&tpp.cert), &body);
    assert_refused(&r, 400, Some("invalid_client_metadata"), "");
    body.as_object_mut().unwrap().remove("scope");
    body["software_statement"] = json!(pagto_only(&tpp));
    let created = register(&s.server, &tpp, &body);
    assert_eq!(created["scope"], json!("openid payments"));
    // No active role at all: unapproved (REG-12).
    let other = Tpp::new(&s.directory);
    let mut claims = other.ssa_claims(now());
    claims.insert(
        "software_statement_roles".into(),
        json!([{ "role": "DADOS", "status": "Inactive" }]),
    );
    let mut body = other.registration(now());
    body["software_statement"] = json!(sign_ssa(claims));
    let r = post_registration(&s.server, Some(&other.cert), &body);
    assert_refused(&r, 400, Some("unapproved_software_statement"), "");
}

/// REG-13/14: the certificate's UID must be the SSA's software_id and its
/// organizationIdentifier `OFBBR-<org_id>`; UID under 2.5.4.45 (mock-bank's mistake) does not
/// count.
#[test]
fn reg_13_14_certificate_uid_and_organization_identifier_bind_to_the_ssa() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let other = Tpp::new(&s.directory);
    for (case, subject) in [
        (
            "another software",
            format!(
                "UID={},2.5.4.97=OFBBR-{},CN=x,C=BR",
                other.software_id, tpp.org_id
            ),
        ),
        (
            "another organisation",
            format!(
                "UID={},2.5.4.97=OFBBR-{},CN=x,C=BR",
                tpp.software_id, other.org_id
            ),
        ),
        (
            "UID under 2.5.4.45",
            format!(
                "2.5.4.45={},2.5.4.97=OFBBR-{},CN=x,C=BR",
                tpp.software_id, tpp.org_id
            ),
        ),
    ] {
        let cert = certificate_header(&subject);
        let r = post_registration(&s.server, Some(&cert), &tpp.registration(now()));
        assert_eq!(r.status, 400, "{case}: {}", text(&r));
        assert_eq!(
            r.json()["error"],
            json!("unapproved_software_statement"),
            "{case}"
        );
    }
    register(&s.server, &tpp, &tpp.registration(now()));
}

/// REG-29: one live registration per software_id; a second POST points to DCM; after DELETE
/// the software registers again.
#[test]
fn reg_29_one_registration_per_software() {
    let s = shared();
    let tpp = Tpp::new(&s.directory);
    let (id, rat) = ids(&register(&s.server, &tpp, &tpp.registration(now())));
    let r = post_registration(&s.server, Some(&tpp.cert), &tpp.registration(now()));
    assert_refused(&r, 400, Some("unapproved_software_statement"), &id);
    let r = manage(&s.server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204);
    let again = register(&s.server, &tpp, &tpp.registration(now()));
    assert_ne!(again["client_id"], json!(id), "client ids are never reused");
}

/// `ciba-host deregister` with `args` and the store options `store` (as `ciba-host up`
/// takes them).
fn deregister(store: &[&str], args: &[&str]) -> std::process::Output {
    std::process::Command::new(e2e::host_binary())
        .arg("deregister")
        .args(store)
        .args(args)
        .output()
        .unwrap()
}

/// Registration.md Q4 (REG-29, REG-36): a TPP that lost its registration access token cannot
/// register its software again; the operator's `ciba-host deregister`, run on the store the
/// server uses (Spin's SQLite file, and Redis through a runtime configuration), removes the
/// registration by `client_id` or by `software_id` without the RAT: the client's requests and
/// tokens fail at once, and the software registers again. It prints what it removed (never
/// the RAT), and exits non-zero when there is nothing to remove.
#[test]
fn reg_29_36_q4_operator_deregister_frees_a_software_whose_rat_is_lost() {
    let directory = start_directory();
    let dir = e2e::temp_dir("deregister");
    let redis = e2e::RedisServer::start();
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    )
    .unwrap();
    let sqlite = dir.join("sqlite");
    let (sqlite_arg, config_arg) = (sqlite.display().to_string(), config.display().to_string());
    let stores: [(Server, [&str; 2]); 2] = [
        (
            Server::bundle_in(dcr_variables(&directory), &sqlite),
            ["--state-dir", &sqlite_arg],
        ),
        (
            Server::bundle_on_redis(dcr_variables(&directory), &redis),
            ["--runtime-config-file", &config_arg],
        ),
    ];
    for (server, store) in &stores {
        let tpp = Tpp::new(&directory);
        let (id, rat) = ids(&register(server, &tpp, &tpp.registration(now())));
        let token = cc_token(server, &tpp, &id, "consents");
        assert_eq!(token.status, 200, "{}", text(&token));
        let access_token = token.json()["access_token"].as_str().unwrap().to_string();
        let consents = |t: &str| {
            let auth = format!("Bearer {t}");
            server.send(
                "GET",
                "/open-banking/consents/v3/consents/urn:bank:x",
                &[
                    ("authorization", &auth),
                    (CERT_HEADER, &tpp.cert),
                    (
                        "x-fapi-interaction-id",
                        "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
                    ),
                ],
                b"",
            )
        };
        assert_eq!(consents(&access_token).status, 404, "a live client's token");
        // The RAT is lost: REG-29 refuses the software.
        let r = post_registration(server, Some(&tpp.cert), &tpp.registration(now()));
        assert_refused(&r, 400, Some("unapproved_software_statement"), &id);

        let out = deregister(store, &["--client-id", &id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&id) && stdout.contains(&tpp.software_id),
            "{stdout}"
        );
        assert!(!stdout.contains(&rat), "never the RAT");
        // The client stops at once: its authentication, its token, its RAT.
        let r = cc_token(server, &tpp, &id, "consents");
        assert_refused(&r, 401, Some("invalid_client"), "");
        assert_eq!(consents(&access_token).status, 401, "tokens die with it");
        let r = manage(server, "GET", &id, Some(&tpp.cert), Some(&rat), None);
        assert_refused(&r, 401, Some("invalid_token"), &id);
        // Nothing left to remove: a non-zero exit that says so.
        let out = deregister(store, &["--client-id", &id]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no dynamic registration"), "{stderr}");

        // The software registers again; by software_id the operator removes that one.
        let (again, again_rat) = ids(&register(server, &tpp, &tpp.registration(now())));
        let out = deregister(store, &["--software-id", &tpp.software_id]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains(&again), "{stdout}");
        let r = manage(
            server,
            "GET",
            &again,
            Some(&tpp.cert),
            Some(&again_rat),
            None,
        );
        assert_refused(&r, 401, Some("invalid_token"), &again);
        register(server, &tpp, &tpp.registration(now()));
    }
    drop(stores);
    let _ = std::fs::remove_dir_all(&dir);
}

/// REG-29: of concurrent registrations of one software, exactly one wins, on the SQLite
/// file and on the in-memory store.
#[test]
fn reg_29_concurrent_registrations_of_one_software_exactly_one_wins() {
    let directory = start_directory();
    for server in [
        Server::bundle(dcr_variables(&directory)),
        Server::bundle_on_disk(dcr_variables(&directory), "reg-29-race"),
    ] {
        let tpp = Tpp::new(&directory);
        let bodies: Vec<Value> = (0..8).map(|_| tpp.registration(now())).collect();
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .iter()
                .map(|body| {
                    let (server, cert) = (&server, &tpp.cert);
                    scope.spawn(move || post_registration(server, Some(cert), body).status)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 201 || *s == 400),
            "{statuses:?}"
        );
    }
}

/// REG-30: a registered client works at bc-authorize, the device API, token, userinfo and
/// the Consents API like a static one; REG-36: DELETE stops its pending request and its
/// tokens at once.
#[test]
fn reg_30_36_registered_client_runs_the_ciba_flow_and_delete_stops_it() {
    let s = shared();
    let server = &s.server;
    let tpp = Tpp::new(&s.directory);
    let (id, rat) = ids(&register(server, &tpp, &ciba_registration(&tpp)));
    let token = cc_token(server, &tpp, &id, "consents");
    assert_eq!(token.status, 200, "{}", text(&token));
    let token = token.json()["access_token"].as_str().unwrap().to_string();
    let lodge = || tpp.lodge_consent(server, &token);
    let consent_id = lodge();
    let start = |consent_id: &str| tpp.start_ciba(server, &id, consent_id, now());
    let poll = |auth_req_id: &str| {
        let body = format!(
            "grant_type={}&auth_req_id={auth_req_id}&{}",
            GRANT.replace(':', "%3A"),
            tpp.client_auth(&id, &server.base, now())
        );
        server.post_form("/token", Some(&tpp.cert), &body)
    };
    let device = |method: &str, path: &str, body: Option<&Value>| {
        let auth = format!("Bearer {DEVICE_TOKEN}");
        let mut headers = vec![
            ("authorization", auth.as_str()),
            (CERT_HEADER, e2e::device_certificate().0.as_str()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let body = body.map(Value::to_string).unwrap_or_default();
        server.send(method, &format!("/device{path}"), &headers, body.as_bytes())
    };
    let auth_req_id = start(&consent_id);
    let pending = poll(&auth_req_id);
    assert_eq!(pending.json()["error"], json!("authorization_pending"));
    let view = device("GET", &format!("/requests/{auth_req_id}"), None);
    assert_eq!(
        view.json()["client_name"],
        json!("TPP App"),
        "{}",
        text(&view)
    );
    let approved = device(
        "POST",
        &format!("/requests/{auth_req_id}/approve"),
        Some(&json!({ "acr": LOA2, "amr": ["pwd"] })),
    );
    assert_eq!(approved.status, 200, "{}", text(&approved));
    let granted = poll(&auth_req_id);
    assert_eq!(granted.status, 200, "{}", text(&granted));
    let access = granted.json()["access_token"].as_str().unwrap().to_string();
    let userinfo = |t: &str| {
        let auth = format!("Bearer {t}");
        server.send(
            "GET",
            "/userinfo",
            &[("authorization", &auth), (CERT_HEADER, &tpp.cert)],
            b"",
        )
    };
    assert_eq!(userinfo(&access).status, 200);
    // A second request stays pending while the client is deleted.
    let second = start(&lodge());
    let r = manage(server, "DELETE", &id, Some(&tpp.cert), Some(&rat), None);
    assert_eq!(r.status, 204);
    assert_eq!(userinfo(&access).status, 401);
    let r = device("GET", &format!("/requests/{second}"), None);
    assert_eq!(r.status, 404, "{}", text(&r));
    let r = poll(&second);
    assert_eq!(r.status, 401, "{}", text(&r));
    assert_eq!(r.json()["error"], json!("invalid_client"));
}

/// REG-2: discovery names the registration endpoint, also among the mTLS aliases.
#[test]
fn reg_2_discovery_lists_the_registration_endpoint() {
    let s = shared();
    let doc = s.server.get("/.well-known/openid-configuration").json();
    let url = json!(format!("{}/register", s.server.base));
    assert_eq!(doc["registration_endpoint"], url);
    assert_eq!(doc["mtls_endpoint_aliases"]["registration_endpoint"], url);
}

/// REG-1, REG-6: other methods get 405 with `Allow`; every answer is JSON, no-store, with
/// an interaction id.
#[test]
fn reg_1_6_methods_and_headers() {
    let s = shared();
    let r = s.server.send("GET", "/register", &[], b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = s.server.send("PATCH", "/register/abc", &[], b"");
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, PUT, DELETE"))
    );
    assert!(r.header("x-fapi-interaction-id").is_some());
    assert_eq!(r.header("pragma"), Some("no-cache"));
}

/// Issue 17 item 7 (KEY-15): once its keys are cached, a registered client's pending poll
/// makes as many key-value calls as a static client's (its registration is read in the same
/// batched read as its request) and no outbound request. Prints both.
#[test]
fn reg_30_a_registered_clients_pending_poll_costs_a_static_clients_store_calls() {
    let directory = start_directory();
    let ciba = e2e::ciba::Ciba::with(Server::bundle(dcr_variables(&directory)));
    let server = &ciba.server;
    let tpp = Tpp::new(&directory);
    let (id, _) = ids(&register(server, &tpp, &ciba_registration(&tpp)));
    // The static client's pending request.
    let consent = ciba.lodge("tpp-1", HOLDER_1_CPF, None);
    let static_req = ciba.start_with_login_hint("tpp-1", &consent);
    // The registered client's.
    let token = cc_token(server, &tpp, &id, "consents");
    let token = token.json()["access_token"].as_str().unwrap().to_string();
    let auth = format!("Bearer {token}");
    let lodged = server.send(
        "POST",
        "/open-banking/consents/v3/consents",
        &[
            ("authorization", &auth),
            (CERT_HEADER, &tpp.cert),
            ("content-type", "application/json"),
            (
                "x-fapi-interaction-id",
                "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
            ),
        ],
        json!({ "data": {
            "loggedUser": { "document": { "identification": HOLDER_1_CPF, "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
        }})
        .to_string()
        .as_bytes(),
    );
    let consent = lodged.json()["data"]["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    let t = ciba.now();
    let claims = json!({
        "iss": id, "aud": server.base, "iat": t, "nbf": t, "exp": t + 300,
        "jti": uuid::Uuid::new_v4().to_string(),
        "scope": format!("openid consent:{consent}"), "login_hint": consent,
    });
    let request = e2e::assertion::sign(
        "PS256",
        &tpp.key,
        &tpp.kid,
        claims.as_object().unwrap().clone(),
    );
    let body = format!(
        "request={request}&{}",
        tpp.client_auth(&id, &server.base, ciba.now())
    );
    let r = server.post_form("/bc-authorize", Some(&tpp.cert), &body);
    assert_eq!(r.status, 200, "{}", text(&r));
    let registered_req = r.json()["auth_req_id"].as_str().unwrap().to_string();
    let keystore_hits = directory.hits(&e2e::directory::application_jwks(
        &tpp.org_id,
        &tpp.software_id,
    ));
    // The fewest calls of three pending polls each (a purge turn adds calls now and then).
    let calls = |poll: &dyn Fn() -> Response| {
        (0..3)
            .map(|_| {
                server.time.advance(6);
                server.faults.count();
                let r = poll();
                assert_eq!(
                    r.json()["error"],
                    json!("authorization_pending"),
                    "{}",
                    text(&r)
                );
                server.faults.ops()
            })
            .min_by_key(Vec::len)
            .unwrap()
    };
    let static_calls = calls(&|| ciba.poll("tpp-1", &static_req));
    let registered_calls = calls(&|| {
        let body = format!(
            "grant_type={}&auth_req_id={registered_req}&{}",
            GRANT.replace(':', "%3A"),
            tpp.client_auth(&id, &server.base, ciba.now())
        );
        server.post_form("/token", Some(&tpp.cert), &body)
    });
    println!(
        "pending poll, static client:     {} calls {static_calls:?}",
        static_calls.len()
    );
    println!(
        "pending poll, registered client: {} calls {registered_calls:?}",
        registered_calls.len()
    );
    assert_eq!(registered_calls.len(), static_calls.len());
    assert_eq!(
        directory.hits(&e2e::directory::application_jwks(
            &tpp.org_id,
            &tpp.software_id
        )),
        keystore_hits,
        "no outbound request on the poll path"
    );
}

/// KEY-17, KEY-14: an SSA whose kid the Directory does not publish is
/// invalid_software_statement after one refetch; a Directory keystore that is down, with
/// nothing cached, is 503 temporarily_unavailable with Retry-After, and nothing is written.
#[test]
fn key_17_directory_keys_unknown_kid_and_outage() {
    let directory = start_directory();
    let server = Server::bundle_on_disk(dcr_variables(&directory), "key-17-outage");
    let tpp = Tpp::new(&directory);
    directory.fail(
        e2e::directory::OPENBANKING_JWKS,
        e2e::directory::Outage::Status(500),
    );
    let rows = server.store_rows();
    let r = post_registration(&server, Some(&tpp.cert), &tpp.registration(now()));
    assert_refused(&r, 503, Some("temporarily_unavailable"), "");
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(server.store_rows(), rows, "nothing written");
    directory.restore(e2e::directory::OPENBANKING_JWKS);
    server.time.advance(31);
    let mut body = tpp.registration(server_now(&server));
    let claims = tpp.ssa_claims(server_now(&server));
    body["software_statement"] = json!(
        jwt_compact::AlgorithmExt::token(
            &jwt_compact::alg::Rsa::ps256(),
            &jwt_compact::Header::empty().with_key_id("not-published"),
            &jwt_compact::Claims::new(claims),
            e2e::dcr::directory_key(),
        )
        .unwrap()
    );
    let r = post_registration(&server, Some(&tpp.cert), &body);
    assert_refused(&r, 400, Some("invalid_software_statement"), "");
    let r = post_registration(
        &server,
        Some(&tpp.cert),
        &tpp.registration(server_now(&server)),
    );
    assert_eq!(r.status, 201, "{}", text(&r));
}

fn server_now(server: &Server) -> i64 {
    now() + server.time.seconds()
}

/// A CIBA client's registration: no `grant_types` (REG-24's default has the CIBA grant).
fn ciba_registration(tpp: &Tpp) -> Value {
    let mut body = tpp.registration(now());
    body.as_object_mut().unwrap().remove("grant_types");
    body["backchannel_token_delivery_mode"] = json!("poll");
    body
}
