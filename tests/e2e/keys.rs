//! Clients' keys by `jwks_uri` (registration.md KEY-8, KEY-10…18), against the fake Directory
//! of `e2e::directory`.

use std::time::Duration;

use e2e::directory::{Directory, OPENBANKING_JWKS, Outage, application_jwks};
use e2e::request;
use serde_json::json;

/// KEY-18: the fake Directory serves, replaces, fails and counts, as the tests below rely on.
#[test]
fn key_18_the_fake_directory_serves_rotates_fails_and_counts() {
    let directory = Directory::start();
    let path = application_jwks("org-1", "software-1");
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 404);
    directory.serve(&path, json!({"keys": [{"kid": "a"}]}));
    directory.serve(OPENBANKING_JWKS, json!({"keys": []}));
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(
        (got.status, got.json()["keys"][0]["kid"].clone()),
        (200, json!("a"))
    );
    directory.serve_with(
        &path,
        json!({"keys": [{"kid": "b"}]}),
        vec![("cache-control", "max-age=60")],
    );
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(got.json()["keys"][0]["kid"], json!("b"));
    assert_eq!(got.header("cache-control"), Some("max-age=60"));
    directory.fail(&path, Outage::Status(500));
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 500);
    directory.fail(&path, Outage::Redirect(directory.url(OPENBANKING_JWKS)));
    let got = request("GET", &directory.url(&path), &[], b"");
    assert_eq!(got.status, 302);
    directory.fail(&path, Outage::Huge(300 * 1024));
    assert_eq!(
        request("GET", &directory.url(&path), &[], b"").body.len(),
        300 * 1024
    );
    directory.fail(&path, Outage::Hang(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    directory.restore(&path);
    assert_eq!(request("GET", &directory.url(&path), &[], b"").status, 200);
    // The first 404 was before the path existed.
    assert_eq!(directory.hits(&path), 7);
    assert_eq!(directory.hits(OPENBANKING_JWKS), 0);
}
