//! `GET /jwks`: KEY-1…7.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::Digest;
use x509_cert::der::{Decode, Encode};

use crate::server;
use e2e::material;

fn keys() -> Vec<Value> {
    let response = server().get("/jwks");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()["keys"].as_array().unwrap().clone()
}

fn by_kid<'a>(keys: &'a [Value], kid: &str) -> &'a Value {
    keys.iter()
        .find(|k| k["kid"] == json!(kid))
        .unwrap_or_else(|| panic!("no key {kid}"))
}

#[test]
fn key_1_only_public_rsa_members_are_published() {
    for key in keys() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} published in {key}");
        }
        assert_eq!(key["kty"], json!("RSA"), "no oct or other keys");
    }
    let text = String::from_utf8(server().get("/jwks").body.to_vec()).unwrap();
    let d = material().signing["d"].as_str().unwrap();
    assert!(!text.contains(d));
}

#[test]
fn key_2_kids_are_unique_and_use_and_alg_are_set() {
    let keys = keys();
    let mut kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    kids.sort_unstable();
    kids.dedup();
    assert_eq!(kids.len(), keys.len(), "duplicate kid");
    for key in &keys {
        match key["use"].as_str().unwrap() {
            "sig" => assert_eq!(key["alg"], json!("PS256")),
            "enc" => assert_eq!(key["alg"], json!("RSA-OAEP")),
            other => panic!("unexpected use {other}"),
        }
    }
}

#[test]
fn key_3_rsa_moduli_are_at_least_2048_bits() {
    for key in keys() {
        let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        assert!(bits >= 2048, "{} has {bits} bits", key["kid"]);
        assert_eq!(key["e"], json!("AQAB"));
    }
}

#[test]
fn key_4_signing_keys_carry_their_certificate_and_its_thumbprint() {
    for key in keys().iter().filter(|k| k["use"] == json!("sig")) {
        let chain = key["x5c"].as_array().expect("x5c");
        let der = STANDARD.decode(chain[0].as_str().unwrap()).unwrap();
        let thumbprint = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&der));
        assert_eq!(key["x5t#S256"], json!(thumbprint));
        let cert = x509_cert::Certificate::from_der(&der).unwrap();
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap();
        let n = URL_SAFE_NO_PAD.decode(key["n"].as_str().unwrap()).unwrap();
        assert!(
            spki.windows(n.len()).any(|w| w == n.as_slice()),
            "the certificate must certify the published key"
        );
    }
}

#[test]
fn key_5_an_rsa_oaep_encryption_key_is_published() {
    let keys = keys();
    let enc = by_kid(&keys, "enc-2026");
    assert_eq!(enc["use"], json!("enc"));
    assert_eq!(enc["alg"], json!("RSA-OAEP"));
    assert_eq!(enc["n"], material().encryption["n"]);
}

#[test]
fn key_6_7_current_and_retired_signing_keys_stay_published_current_first() {
    let keys = keys();
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["sig-2026", "sig-2025", "enc-2026"]);
    assert_eq!(by_kid(&keys, "sig-2025")["n"], material().retired["n"]);
}

#[test]
fn jwks_answers_get_only() {
    let response = server().send("DELETE", "/jwks", &[], b"");
    assert_eq!(response.status, 405);
    assert_eq!(response.json()["error"], json!("method_not_allowed"));
}
