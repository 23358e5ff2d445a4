//! Encrypted id_tokens (TKN-4, REG-26, DISC-17) over HTTP: a client that registered
//! `id_token_encrypted_response_alg=RSA-OAEP` gets its PS256 id_token as a nested JWE to the
//! first RSA-OAEP `enc` key it publishes on the fake Directory of `e2e::directory`; a client
//! without it still gets the JWS.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use e2e::assertion::now;
use e2e::ciba::{Ciba, GRANT, HOLDER_1_CPF, LOA2, assert_oauth_error, ciba_variables, text};
use e2e::dcr::{Tpp, dcr_variables, post_registration, start_directory};
use e2e::directory::{Directory, Outage, application_jwks};
use e2e::{Server, material};

/// The `kid` under which `tpp-1` publishes its encryption key.
const ENC_KID: &str = "tpp-1-enc";

/// `tpp-1`'s encryption key, generated once per run (private JWK, `use: enc`).
fn enc_private() -> &'static Value {
    static KEY: OnceLock<Value> = OnceLock::new();
    KEY.get_or_init(|| devkeys::encryption_jwk(ENC_KID).unwrap())
}

/// Its public half, as the Directory publishes it.
fn enc_public() -> Value {
    let key = devkeys::private_key_from_jwk(enc_private()).unwrap();
    devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(&key),
        ENC_KID,
        "enc",
        "RSA-OAEP",
    )
}

/// `tpp-1`'s key set with its signing key, and its encryption key when `with_enc`.
fn published(with_enc: bool) -> Value {
    let mut keys = vec![material().client_public.clone()];
    if with_enc {
        keys.push(enc_public());
    }
    json!({ "keys": keys })
}

/// A server whose `tpp-1` keeps its keys on a fake Directory and registered id_token
/// encryption in the `clients` variable; `tpp-2` keeps its keys by value and does not encrypt.
struct Encrypting {
    c: Ciba,
    directory: Directory,
    path: String,
    /// The folder of the server's store.
    dir: std::path::PathBuf,
}

impl Encrypting {
    /// Every row of the store but the client assertions' `jti` markers (each authenticated
    /// request adds one, CLI-6), the purge index and the rate counters: the state a refused
    /// redemption must leave as it was.
    fn state(&self) -> Vec<(String, Vec<u8>)> {
        let conn = rusqlite::Connection::open(self.dir.join("sqlite_key_value.db")).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT key, value FROM spin_key_value WHERE key NOT LIKE 'jti:%' \
                 AND key NOT LIKE 'purge%' AND key NOT LIKE 'rate:%' ORDER BY key",
            )
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn encrypting(name: &str, with_enc: bool) -> Encrypting {
    keyed(name, with_enc, true)
}

/// [`encrypting`], or, with `encrypt` false, the same server whose `tpp-1` does not encrypt.
fn keyed(name: &str, with_enc: bool, encrypt: bool) -> Encrypting {
    let directory = Directory::start();
    let path = application_jwks("org-1", "tpp-1");
    directory.serve(&path, published(with_enc));
    let mut vars: HashMap<&'static str, String> = ciba_variables();
    let mut clients: Value = serde_json::from_str(&vars["clients"]).unwrap();
    let tpp1 = clients[0].as_object_mut().unwrap();
    assert_eq!(tpp1["client_id"], json!("tpp-1"));
    tpp1.remove("jwks");
    tpp1.insert("jwks_uri".into(), json!(directory.url(&path)));
    if encrypt {
        tpp1.insert("id_token_encrypted_response_alg".into(), json!("RSA-OAEP"));
        tpp1.insert("id_token_encrypted_response_enc".into(), json!("A256GCM"));
    }
    vars.insert("clients", clients.to_string());
    vars.insert("jwks_allowed_hosts", directory.origin());
    let dir = e2e::temp_dir(name);
    Encrypting {
        c: Ciba::with(Server::bundle_in(vars, &dir)),
        directory,
        path,
        dir,
    }
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The header and claims of a PS256 id_token, after checking its signature with the server's
/// current signing key.
fn verify_jws(token: &str) -> (Value, Value) {
    use jwt_compact::{AlgorithmExt, UntrustedToken};
    let key = devkeys::private_key_from_jwk(&material().signing).unwrap();
    let public = devkeys::rsa::RsaPublicKey::from(&key);
    let untrusted = UntrustedToken::new(token).unwrap();
    assert_eq!(untrusted.algorithm(), "PS256");
    jwt_compact::alg::Rsa::ps256()
        .validator::<Value>(&public)
        .validate(&untrusted)
        .expect("TKN-4: the inner id_token verifies with the current signing key");
    let mut parts = token.split('.');
    (
        b64_json(parts.next().unwrap()),
        b64_json(parts.next().unwrap()),
    )
}

/// The id_token of a token response, opened with `tpp-1`'s private encryption key: the JWE's
/// protected header and the inner JWS.
fn open(id_token: &str) -> (Value, String) {
    assert_eq!(id_token.split('.').count(), 5, "a compact JWE: {id_token}");
    let keys = ciba::jose::keys::KeySet::parse(
        "tpp-1 encryption key",
        &json!({ "keys": [enc_private()] }).to_string(),
        ciba::jose::jwk::KeyUse::Encryption,
    )
    .unwrap();
    let inner = ciba::jose::jwe::decrypt(id_token, &keys, &ciba::clock::CountingRandom::default())
        .expect("TKN-4: the JWE opens with the client's private key");
    (
        b64_json(id_token.split('.').next().unwrap()),
        String::from_utf8(inner).unwrap(),
    )
}

/// The JWE header TKN-4 asks for: the key named by `kid` only (FAPI-BR 5.2.2.1-4/5).
fn assert_jwe_header(header: &Value) {
    assert_eq!(
        header,
        &json!({ "alg": "RSA-OAEP", "enc": "A256GCM", "cty": "JWT", "kid": ENC_KID })
    );
}

/// TKN-4, REG-26: a client that registered RSA-OAEP gets a 5-part id_token whose JWE header
/// names its enc key by `kid` only and which opens, with its private key, to the PS256 JWS
/// with the usual claims; a client that did not still gets the JWS. The encryption key comes
/// from the set already fetched for the client's assertion: one fetch in all.
#[test]
fn tkn_4_reg_26_an_encrypting_client_gets_a_nested_jwe_of_the_ps256_id_token() {
    let e = encrypting("tkn-4-jwe", true);
    let c = &e.c;
    let (consent_id, tokens) = c.grant("tpp-1", HOLDER_1_CPF);
    let id_token = tokens["id_token"].as_str().unwrap();
    let (header, inner) = open(id_token);
    assert_jwe_header(&header);
    let (jws_header, idt) = verify_jws(&inner);
    assert_eq!(jws_header["kid"], material().signing["kid"]);
    assert_eq!(
        jws_header["x5t#S256"],
        json!(e2e::ciba::x5t_s256(&material().signing))
    );
    assert_eq!(idt["iss"], json!(c.server.base));
    assert_eq!(idt["aud"], json!("tpp-1"));
    assert_eq!(idt["sub"], json!("holder-1"));
    assert_eq!(idt["acr"], json!(LOA2));
    let access_token = tokens["access_token"].as_str().unwrap();
    let digest = <sha2::Sha256 as sha2::Digest>::digest(access_token.as_bytes());
    assert_eq!(idt["at_hash"], json!(URL_SAFE_NO_PAD.encode(&digest[..16])));
    assert!(
        tokens["scope"]
            .as_str()
            .unwrap()
            .contains(&format!("consent:{consent_id}"))
    );
    assert_eq!(e.directory.hits(&e.path), 1, "one fetch for every use");
    // tpp-2 registered no encryption: a plain JWS.
    let (_, tokens) = c.grant("tpp-2", HOLDER_1_CPF);
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(id_token.split('.').count(), 3, "{id_token}");
    let (_, idt) = verify_jws(id_token);
    assert_eq!(idt["aud"], json!("tpp-2"));
}

/// TKN-4: a client that registered encryption but publishes no RSA-OAEP `enc` key gets 400
/// invalid_client_metadata, and nothing changes: once it publishes one, the same auth_req_id
/// redeems (after the one-minute refetch gap of KEY-13).
#[test]
fn tkn_4_no_enc_key_is_invalid_client_metadata_and_the_request_redeems_once_published() {
    let e = encrypting("tkn-4-no-enc-key", false);
    let c = &e.c;
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    let state = e.state();
    assert!(state.iter().any(|(k, _)| k.starts_with("auth_req:")));
    let refused = c.poll("tpp-1", &id);
    assert_oauth_error(&refused, 400, "invalid_client_metadata");
    assert!(e.state() == state, "no state change");
    e.directory.serve(&e.path, published(true));
    // Within the minute the cached set stands (KEY-13); the request is still there.
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "invalid_client_metadata");
    c.server.time.advance(61);
    let granted = c.poll("tpp-1", &id);
    assert_eq!(granted.status, 200, "{}", text(&granted));
    let (header, inner) = open(granted.json()["id_token"].as_str().unwrap());
    assert_jwe_header(&header);
    assert_eq!(verify_jws(&inner).1["sub"], json!("holder-1"));
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "invalid_grant");
    assert!(!c.server.log_text().contains(" 500 "));
}

/// TKN-4, KEY-14: when the enc key must be fetched and the keystore is down, the poll gets 503
/// temporarily_unavailable with Retry-After, as for signatures, and changes nothing; the
/// request redeems once the keystore answers.
#[test]
fn tkn_4_key_14_keystore_down_is_503_and_the_request_redeems_after() {
    let e = encrypting("tkn-4-keystore-down", false);
    let c = &e.c;
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    assert_eq!(c.approve(&id, LOA2).status, 200);
    c.server.time.advance(61);
    e.directory.fail(&e.path, Outage::Status(503));
    let state = e.state();
    let down = c.poll("tpp-1", &id);
    assert_oauth_error(&down, 503, "temporarily_unavailable");
    assert_eq!(down.header("retry-after"), Some("30"));
    assert!(e.state() == state, "no state change");
    e.directory.restore(&e.path);
    e.directory.serve(&e.path, published(true));
    c.server.time.advance(31);
    let granted = c.poll("tpp-1", &id);
    assert_eq!(granted.status, 200, "{}", text(&granted));
    assert_jwe_header(&open(granted.json()["id_token"].as_str().unwrap()).0);
}

/// TKN-4 (issue 17, item 5): the poll that issues an encrypted id_token makes the same
/// key-value calls as the same client's without encryption: the enc key comes from the set
/// the client assertion just used, in instance memory. `-- --nocapture` prints the calls.
#[test]
fn tkn_4_an_encrypting_client_s_issuance_costs_no_more_store_calls() {
    let issuance = |e: &Encrypting| {
        let c = &e.c;
        // The fewest of three (a purge turn adds calls now and then).
        (0..3)
            .map(|_| {
                let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
                let id = c.start_with_login_hint("tpp-1", &consent_id);
                assert_eq!(c.approve(&id, LOA2).status, 200);
                c.server.faults.count();
                let granted = c.poll("tpp-1", &id);
                assert_eq!(granted.status, 200, "{}", text(&granted));
                let calls = c.server.faults.ops();
                (
                    calls,
                    granted.json()["id_token"].as_str().unwrap().to_string(),
                )
            })
            .min_by_key(|(calls, _)| calls.len())
            .unwrap()
    };
    let plain = keyed("tkn-4-cost-plain", true, false);
    let (plain_calls, plain_token) = issuance(&plain);
    let encrypting = encrypting("tkn-4-cost-jwe", true);
    let (jwe_calls, jwe_token) = issuance(&encrypting);
    assert_eq!(plain_token.split('.').count(), 3);
    assert_eq!(jwe_token.split('.').count(), 5);
    println!(
        "tkn-4 | CIBA issuance, jwks_uri client | JWS {} calls {plain_calls:?} | JWE {} calls {jwe_calls:?}",
        plain_calls.len(),
        jwe_calls.len()
    );
    assert_eq!(jwe_calls, plain_calls);
    assert_eq!(encrypting.directory.hits(&encrypting.path), 1, "no refetch");
}

/// REG-26, TKN-4: a TPP registers `id_token_encrypted_response_alg=RSA-OAEP` by DCR (the enc
/// member left out gets A256GCM), publishes its enc key beside its signing key in its
/// `application.jwks` on the Directory, and its CIBA grant's id_token is a JWE to that key.
#[test]
fn reg_26_tkn_4_a_registered_client_with_rsa_oaep_gets_an_encrypted_id_token() {
    let directory = start_directory();
    let c = Ciba::with(Server::bundle(dcr_variables(&directory)));
    let server = &c.server;
    let tpp = Tpp::new(&directory);
    let signing = devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(&tpp.key),
        &tpp.kid,
        "sig",
        "PS256",
    );
    directory.serve(
        &application_jwks(&tpp.org_id, &tpp.software_id),
        json!({ "keys": [signing, enc_public()] }),
    );
    let mut body = tpp.registration(now());
    body.as_object_mut().unwrap().remove("grant_types");
    body["backchannel_token_delivery_mode"] = json!("poll");
    body["id_token_encrypted_response_alg"] = json!("RSA-OAEP");
    let created = post_registration(server, Some(&tpp.cert), &body);
    assert_eq!(created.status, 201, "{}", text(&created));
    let created = created.json();
    assert_eq!(
        created["id_token_encrypted_response_alg"],
        json!("RSA-OAEP")
    );
    assert_eq!(created["id_token_encrypted_response_enc"], json!("A256GCM"));
    let id = created["client_id"].as_str().unwrap().to_string();
    let token = |form: &str| {
        let body = format!("{form}&{}", tpp.client_auth(&id, &server.base, c.now()));
        server.post_form("/token", Some(&tpp.cert), &body)
    };
    let cc = token("grant_type=client_credentials&scope=consents");
    assert_eq!(cc.status, 200, "{}", text(&cc));
    let consent_id = tpp.lodge_consent(server, cc.json()["access_token"].as_str().unwrap());
    let auth_req_id = tpp.start_ciba(server, &id, &consent_id, c.now());
    assert_eq!(c.approve(&auth_req_id, LOA2).status, 200);
    let granted = token(&format!(
        "grant_type={}&auth_req_id={auth_req_id}",
        GRANT.replace(':', "%3A")
    ));
    assert_eq!(granted.status, 200, "{}", text(&granted));
    let (header, inner) = open(granted.json()["id_token"].as_str().unwrap());
    assert_jwe_header(&header);
    let (_, idt) = verify_jws(&inner);
    assert_eq!(idt["aud"], json!(id));
    assert_eq!(idt["sub"], json!("holder-1"));
    assert_eq!(idt["acr"], json!(LOA2));
}
