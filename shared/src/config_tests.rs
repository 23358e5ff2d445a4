//! Each bad variable gives its own clear error, naming the variable and never the value.

use serde_json::{Value, json};

use crate::config::{Config, ConfigError, Issuer, var};
use crate::fixtures::{client, keys, variables};

fn load_with(name: &'static str, value: impl Into<String>) -> Result<Config, ConfigError> {
    let mut vars = variables();
    vars.insert(name, value.into());
    Config::load(&vars)
}

fn problem(name: &'static str, value: impl Into<String>) -> String {
    let value = value.into();
    let err = load_with(name, value.clone()).expect_err("must be refused");
    assert_eq!(err.variable, name, "{err}");
    let text = err.to_string();
    assert!(text.contains(name), "{text}");
    if value.len() > 8 {
        assert!(
            !text.contains(&value),
            "the error must not echo the value: {text}"
        );
    }
    text
}

fn with_member(jwk: &Value, member: &str, value: Value) -> Value {
    let mut jwk = jwk.clone();
    jwk[member] = value;
    jwk
}

fn without(jwk: &Value, member: &str) -> Value {
    let mut jwk = jwk.clone();
    jwk.as_object_mut().unwrap().remove(member);
    jwk
}

fn set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

#[test]
fn a_valid_configuration_loads() {
    let config = Config::load(&variables()).unwrap();
    assert_eq!(config.issuer.as_str(), "https://auth.bank.example");
    assert_eq!(config.keys.signing.active().kid(), "sig-current");
    assert_eq!(config.lifetimes.access_token, 900);
    assert!(config.client_cert_header.mtls());
    assert!(config.clients.get("tpp-1").is_some());
    assert!(config.users.by_sub("u1").is_some());
}

#[test]
fn every_variable_is_required_and_named_when_missing() {
    for name in [
        var::ISSUER,
        var::SIGNING_KEYS,
        var::ENCRYPTION_KEYS,
        var::CLIENTS,
        var::USERS,
        var::DEVICE_API_TOKEN,
        var::ACCESS_TOKEN_TTL,
        var::AUTH_REQ_TTL,
        var::POLL_INTERVAL,
        var::ID_TOKEN_TTL,
        var::REFRESH_TOKEN_TTL,
    ] {
        let mut vars = variables();
        vars.remove(name);
        let err = Config::load(&vars).unwrap_err();
        assert_eq!(err.variable, name);
        assert!(err.to_string().contains("is not set"), "{err}");
        assert_eq!(
            load_with(name, "  ").unwrap_err().variable,
            name,
            "blank counts as missing"
        );
    }
}

#[test]
fn client_cert_header_may_be_empty_which_turns_mtls_off() {
    let config = load_with(var::CLIENT_CERT_HEADER, "").unwrap();
    assert!(!config.client_cert_header.mtls());
    let config = load_with(var::CLIENT_CERT_HEADER, "X-Client-Cert").unwrap();
    assert_eq!(config.client_cert_header.name(), Some("x-client-cert"));
    problem(var::CLIENT_CERT_HEADER, "x client cert");
}

#[test]
fn tkn_3_access_token_ttl_only_300_to_900() {
    for ok in ["300", "900"] {
        assert!(load_with(var::ACCESS_TOKEN_TTL, ok).is_ok());
    }
    for bad in ["299", "901", "3600", "-1", "abc", "1.5"] {
        let text = problem(var::ACCESS_TOKEN_TTL, bad);
        assert!(
            text.contains("300") || text.contains("whole number"),
            "{text}"
        );
    }
}

#[test]
fn bca_26_27_tkn_5_tok_19_other_lifetimes_are_ranged() {
    assert!(load_with(var::AUTH_REQ_TTL, "360").is_ok());
    problem(var::AUTH_REQ_TTL, "361");
    problem(var::AUTH_REQ_TTL, "0");
    problem(var::POLL_INTERVAL, "4");
    problem(var::POLL_INTERVAL, "61");
    let text = problem(var::ID_TOKEN_TTL, "3600");
    assert!(text.contains("15552000"), "180 days is the floor: {text}");
    problem(var::REFRESH_TOKEN_TTL, "60");
}

#[test]
fn disc_1_issuer_is_an_https_url() {
    assert!(Issuer::parse("https://auth.bank.example").is_ok());
    assert!(Issuer::parse("https://auth.bank.example:8443/ciba").is_ok());
    assert!(
        [
            "http://127.0.0.1:3000",
            "http://127.1.2.3",
            "http://[::1]:3000",
            "http://LOCALHOST:8080"
        ]
        .iter()
        .all(|i| Issuer::parse(i).is_ok()),
        "loopback for development"
    );
    assert!(Issuer::parse("http://localhost:3000").is_ok());
    for bad in [
        "http://auth.bank.example",
        "https://auth.bank.example/",
        "https://auth.bank.example?x=1",
        "https://auth.bank.example#f",
        "https://user@auth.bank.example",
        "https://",
        "https://auth.bank.example:99999",
        "ftp://auth.bank.example",
        "auth.bank.example",
        "https://auth bank",
        // DISC-1: names that only look like loopback addresses.
        "http://127.attacker.example",
        "http://127.0.0.1.attacker.example:3000",
        "http://localhost.attacker.example",
        "http://[::2]:3000",
        "http://128.0.0.1",
    ] {
        assert!(Issuer::parse(bad).is_err(), "{bad}");
        problem(var::ISSUER, bad);
    }
}

#[test]
fn device_api_token_is_long_and_never_printed() {
    let text = problem(var::DEVICE_API_TOKEN, "short");
    assert!(text.contains("32"));
    let config = Config::load(&variables()).unwrap();
    assert!(config.device_api_token.matches(&"d".repeat(43)));
    assert!(!config.device_api_token.matches(&"d".repeat(42)));
    assert!(!config.device_api_token.matches(&"d".repeat(44)));
    // The length difference of 256 once wrapped to 0 in a u8 and matched.
    assert!(!config.device_api_token.matches(&"d".repeat(43 + 256)));
    assert!(!config.device_api_token.matches(""));
    assert!(
        !format!("{config:?}").contains(&"d".repeat(43)),
        "Debug must redact it"
    );
}

#[test]
fn key_1_to_3_signing_keys_must_be_rsa_private_keys_of_2048_bits() {
    let k = keys();
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "JWK Set"),
        ("[]".into(), "JWK Set"),
        (set(&[]), "empty"),
        (
            set(&[with_member(&k.signing, "kty", json!("EC"))]),
            "kty must be RSA",
        ),
        (
            set(&[with_member(&k.signing, "k", json!("c2VjcmV0"))]),
            "symmetric",
        ),
        (set(&[without(&k.signing, "kid")]), "kid is required"),
        (set(&[without(&k.signing, "d")]), "d is required"),
        (
            set(&[with_member(&k.signing, "alg", json!("RS256"))]),
            "alg must be PS256",
        ),
        (
            set(&[with_member(&k.signing, "use", json!("enc"))]),
            "use must be sig",
        ),
        (
            set(&[with_member(&k.signing, "d", json!("AQAB"))]),
            "do not form an RSA key",
        ),
        (
            set(&[with_member(&k.signing, "n", json!("not base64!"))]),
            "base64url",
        ),
        (
            set(&[k.signing.clone(), k.signing.clone()]),
            "kid is not unique",
        ),
    ];
    for (value, expected) in cases {
        let text = problem(var::SIGNING_KEYS, value);
        assert!(text.contains(expected), "expected {expected:?} in {text}");
    }
}

#[test]
fn key_3_a_1024_bit_key_is_refused() {
    let small = devkeys::rsa_key(1024).unwrap();
    let cert = devkeys::self_signed_certificate(&small, "CN=small", 1).unwrap();
    let jwk = devkeys::private_jwk(&small, "small", "sig", "PS256", Some(&cert));
    let text = problem(var::SIGNING_KEYS, set(&[jwk]));
    assert!(text.contains("2048"), "{text}");
}

#[test]
fn key_4_signing_keys_need_a_certificate_for_their_own_key() {
    let k = keys();
    let text = problem(var::SIGNING_KEYS, set(&[without(&k.signing, "x5c")]));
    assert!(text.contains("x5c is required"), "{text}");
    // The retired key's certificate on the current key.
    let swapped = with_member(&k.signing, "x5c", k.retired["x5c"].clone());
    let text = problem(var::SIGNING_KEYS, set(&[swapped]));
    assert!(text.contains("different key"), "{text}");
    let text = problem(
        var::SIGNING_KEYS,
        set(&[with_member(&k.signing, "x5c", json!(["AAAA"]))]),
    );
    assert!(text.contains("X.509"), "{text}");
    let text = problem(
        var::SIGNING_KEYS,
        set(&[with_member(&k.signing, "x5t#S256", json!("wrong"))]),
    );
    assert!(text.contains("x5t#S256"), "{text}");
}

#[test]
fn key_2_5_encryption_keys_are_rsa_oaep_and_kids_unique_across_sets() {
    let k = keys();
    let text = problem(
        var::ENCRYPTION_KEYS,
        set(&[with_member(&k.encryption, "alg", json!("RSA1_5"))]),
    );
    assert!(text.contains("RSA-OAEP"), "{text}");
    let text = problem(
        var::ENCRYPTION_KEYS,
        set(&[with_member(&k.encryption, "use", json!("sig"))]),
    );
    assert!(text.contains("use must be enc"), "{text}");
    let reused = with_member(&k.encryption, "kid", json!("sig-current"));
    let text = problem(var::ENCRYPTION_KEYS, set(&[reused]));
    assert!(text.contains("also used by a signing key"), "{text}");
}

#[test]
fn key_6_the_first_signing_key_signs_and_all_stay_for_verification() {
    let config = Config::load(&variables()).unwrap();
    let signing = &config.keys.signing;
    assert_eq!(signing.active().kid(), "sig-current");
    assert!(signing.by_kid("sig-retired").is_some());
    assert_eq!(signing.all().len(), 2);
}

#[test]
fn key_material_is_never_printed() {
    let config = Config::load(&variables()).unwrap();
    let printed = format!("{config:?}");
    let d = keys().signing["d"].as_str().unwrap();
    assert!(
        !printed.contains(&d[..32]),
        "private exponent in Debug output"
    );
    assert!(
        printed.contains("sig-current"),
        "kids may be shown: {printed}"
    );
}

#[test]
fn cli_2_clients_register_only_allowed_methods_and_metadata() {
    let base = client("c1");
    let cases: Vec<(Value, &str)> = vec![
        (
            with_member(
                &base,
                "token_endpoint_auth_method",
                json!("client_secret_basic"),
            ),
            "CLI-2",
        ),
        (
            with_member(
                &base,
                "token_endpoint_auth_method",
                json!("tls_client_auth"),
            ),
            "subject_dn",
        ),
        (
            with_member(&base, "backchannel_token_delivery_mode", json!("ping")),
            "poll",
        ),
        (
            with_member(
                &base,
                "backchannel_authentication_request_signing_alg",
                json!("RS256"),
            ),
            "PS256",
        ),
        (
            with_member(&base, "grant_types", json!(["authorization_code"])),
            "grant_types",
        ),
        (
            with_member(&base, "scope", json!("openid consent:abc")),
            "scope",
        ),
        (
            with_member(&base, "jwks_uri", json!("https://tpp.example/jwks")),
            "exactly one",
        ),
        (without(&base, "jwks"), "exactly one"),
        (
            with_member(
                &without(&base, "jwks"),
                "jwks_uri",
                json!("http://tpp.example/jwks"),
            ),
            "https",
        ),
        (with_member(&base, "client_id", json!("")), "client_id"),
        (
            with_member(&base, "unknown_member", json!(1)),
            "known members",
        ),
        (
            with_member(
                &base,
                "jwks",
                json!({ "keys": [with_member(&keys().client_public, "d", json!("AQAB"))] }),
            ),
            "private members",
        ),
    ];
    for (registration, expected) in cases {
        let text = problem(var::CLIENTS, json!([registration]).to_string());
        assert!(text.contains(expected), "expected {expected:?} in {text}");
    }
    let text = problem(
        var::CLIENTS,
        json!([client("c1"), client("c1")]).to_string(),
    );
    assert!(
        text.contains("clients[1]: client_id is not unique"),
        "{text}"
    );
    let tls = json!({
        "client_id": "mtls-client",
        "jwks_uri": "https://tpp.example/jwks",
        "token_endpoint_auth_method": "tls_client_auth",
        "tls_client_auth_subject_dn": "CN=tpp,O=TPP,C=BR",
        "scope": "consents",
        "grant_types": ["client_credentials"],
    });
    assert!(load_with(var::CLIENTS, json!([tls]).to_string()).is_ok());
}

/// The public half of the fixture's encryption key, as a client would publish it.
fn client_enc_key(kid: &str) -> Value {
    let private = devkeys::private_key_from_jwk(&keys().encryption).unwrap();
    devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(&private),
        kid,
        "enc",
        "RSA-OAEP",
    )
}

/// REG-26, TKN-4: a static client may register id_token encryption by hand, with the checks
/// a registration gets; a `jwks` by value must then hold an RSA-OAEP `enc` key.
#[test]
fn reg_26_tkn_4_static_clients_register_id_token_encryption_as_dcr_does() {
    use crate::client::registry::IdTokenEncryption;
    let with_enc = with_member(
        &client("c1"),
        "jwks",
        json!({ "keys": [keys().client_public, client_enc_key("c1-enc")] }),
    );
    let encrypting = |members: Value| {
        let mut c = with_enc.clone();
        for (k, v) in members.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for ok in [
        json!({ "id_token_encrypted_response_alg": "RSA-OAEP" }),
        json!({ "id_token_encrypted_response_alg": "RSA-OAEP",
                "id_token_encrypted_response_enc": "A256GCM" }),
    ] {
        let config = load_with(var::CLIENTS, json!([encrypting(ok)]).to_string()).unwrap();
        let c1 = config.clients.get("c1").unwrap();
        assert_eq!(
            c1.id_token_encryption,
            Some(IdTokenEncryption::RsaOaepA256Gcm)
        );
        // KEY-9: the enc key is kept, and never verifies.
        let crate::client::registry::ClientKeys::Jwks(jwks) = &c1.keys else {
            panic!("by value");
        };
        assert_eq!(jwks.len(), 2);
    }
    let plain = load_with(var::CLIENTS, json!([with_enc.clone()]).to_string()).unwrap();
    assert_eq!(plain.clients.get("c1").unwrap().id_token_encryption, None);
    let cases: Vec<(Value, &str)> = vec![
        (
            encrypting(json!({ "id_token_encrypted_response_enc": "A256GCM" })),
            "needs id_token_encrypted_response_alg",
        ),
        (
            encrypting(json!({ "id_token_encrypted_response_alg": "RSA1_5" })),
            "RSA-OAEP with A256GCM only",
        ),
        (
            encrypting(json!({ "id_token_encrypted_response_alg": "RSA-OAEP",
                               "id_token_encrypted_response_enc": "A128CBC-HS256" })),
            "RSA-OAEP with A256GCM only",
        ),
        (
            with_member(
                &client("c1"),
                "id_token_encrypted_response_alg",
                json!("RSA-OAEP"),
            ),
            "no RSA-OAEP encryption key",
        ),
        (
            // An RSA-OAEP-256 key is no RSA-OAEP key (KEY-11).
            with_member(
                &encrypting(json!({ "id_token_encrypted_response_alg": "RSA-OAEP" })),
                "jwks",
                json!({ "keys": [
                    keys().client_public,
                    with_member(&client_enc_key("c1-enc"), "alg", json!("RSA-OAEP-256")),
                ] }),
            ),
            "no RSA-OAEP encryption key",
        ),
    ];
    for (registration, expected) in cases {
        let text = problem(var::CLIENTS, json!([registration]).to_string());
        assert!(text.contains(expected), "expected {expected:?} in {text}");
    }
    // By jwks_uri, the key is looked for when an id_token is issued.
    let by_uri = json!({
        "client_id": "c2",
        "jwks_uri": "https://keystore.directory.openbankingbrasil.org.br/o/s/application.jwks",
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": "openid",
        "grant_types": ["urn:openid:params:grant-type:ciba"],
        "id_token_encrypted_response_alg": "RSA-OAEP",
    });
    assert!(load_with(var::CLIENTS, json!([by_uri]).to_string()).is_ok());
}

#[test]
fn tkn_9_users_need_a_valid_unique_cpf_and_never_leak_it() {
    let cases = [
        (
            json!([{ "sub": "u1", "cpf": "52998224724" }]),
            "cpf is not a valid CPF",
        ),
        (
            json!([{ "sub": "u1", "cpf": 52998224725u64 }]),
            "JSON array",
        ),
        (
            json!([{ "sub": "u1", "cpf": "52998224725", "cnpj": "11222333000182" }]),
            "cnpj",
        ),
        (json!([{ "sub": "", "cpf": "52998224725" }]), "sub"),
        (
            json!([{ "sub": "u1", "cpf": "52998224725" }, { "sub": "u1", "cpf": "01234567890" }]),
            "users[1]: sub is not unique",
        ),
        (
            json!([{ "sub": "u1", "cpf": "52998224725" }, { "sub": "u2", "cpf": "52998224725" }]),
            "users[1]: cpf is not unique",
        ),
    ];
    for (users, expected) in cases {
        let text = problem(var::USERS, users.to_string());
        assert!(text.contains(expected), "expected {expected:?} in {text}");
        assert!(!text.contains("52998224725"), "PII in error: {text}");
    }
    let config = load_with(
        var::USERS,
        json!([{ "sub": "u1", "cpf": "52998224725", "cnpj": ["11222333000181"] }]).to_string(),
    )
    .unwrap();
    assert!(config.users.serves_legal_persons());
}
