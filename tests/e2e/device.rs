//! The device API (design.md; AD-2…9): its token, its errors, and its refusals leaving
//! requests as they were, over HTTP.

use std::sync::OnceLock;

use serde_json::json;

use e2e::ciba::{CERT_HEADER, Ciba, DEVICE_TOKEN, HOLDER_1_CPF, LOA2, text};

fn ciba() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| Ciba::new("device"))
}

#[test]
fn ad_2_the_device_token_is_required_and_compared_whole() {
    let c = ciba();
    let call = |token: &str| {
        c.server.send(
            "GET",
            "/device/requests?subject=holder-1",
            &[
                ("authorization", &format!("Bearer {token}")),
                (CERT_HEADER, e2e::device_certificate().0.as_str()),
            ],
            b"",
        )
    };
    assert_eq!(call(DEVICE_TOKEN).status, 200);
    // The right token plus 256 characters once matched (a length folded into a u8).
    let longer = format!("{DEVICE_TOKEN}{}", "x".repeat(256));
    let truncated = &DEVICE_TOKEN[..DEVICE_TOKEN.len() - 1];
    for wrong in [
        longer.as_str(),
        truncated,
        "",
        "a-device-token-of-at-least-32-characterz",
    ] {
        let response = call(wrong);
        assert_eq!(response.status, 401, "{wrong:?}: {}", text(&response));
        assert_eq!(response.json()["error"], json!("invalid_token"));
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
    let none = c
        .server
        .send("GET", "/device/requests?subject=holder-1", &[], b"");
    assert_eq!(none.status, 401);
}

#[test]
fn ad_4_unknown_requests_routes_and_bad_bodies() {
    let c = ciba();
    assert_eq!(
        c.device("GET", &format!("/requests/{}", "A".repeat(43)), None)
            .status,
        404
    );
    assert_eq!(c.approve(&"A".repeat(43), LOA2).status, 404);
    assert_eq!(c.device("GET", "/nothing", None).status, 404);
    assert_eq!(c.device("DELETE", "/hints", None).status, 405);
    assert_eq!(
        c.device("GET", "/requests", None).status,
        400,
        "subject is required"
    );

    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    let path = format!("/requests/{id}/approve");
    for (case, body) in [
        ("no acr", json!({ "amr": ["pwd"] })),
        ("unknown acr", json!({ "acr": "urn:other" })),
        ("amr not a list", json!({ "acr": LOA2, "amr": "pwd" })),
        (
            "another subject",
            json!({ "acr": LOA2, "subject": "holder-2" }),
        ),
        ("not an object", json!([1])),
    ] {
        let response = c.device("POST", &path, Some(&body));
        assert_eq!(response.status, 400, "{case}: {}", text(&response));
        assert_eq!(response.json()["error"], json!("invalid_request"));
    }
    let response = c.server.send(
        "POST",
        &format!("/device{path}"),
        &[
            ("authorization", &format!("Bearer {DEVICE_TOKEN}")),
            (CERT_HEADER, e2e::device_certificate().0.as_str()),
            ("content-type", "text/plain"),
        ],
        b"acr=loa2",
    );
    assert_eq!(response.status, 400);
    // None of that decided anything; a percent-encoded id names the same request.
    let encoded: String = id
        .chars()
        .map(|ch| match ch {
            '-' => "%2D".to_string(),
            '_' => "%5F".to_string(),
            other => other.to_string(),
        })
        .collect();
    let view = c
        .device("GET", &format!("/requests/{encoded}"), None)
        .json();
    assert_eq!(view["status"], json!("PENDING"));
    assert_eq!(c.approve(&id, LOA2).status, 200);
}

#[test]
fn ad_9_hints_are_issued_only_for_known_holders() {
    let c = ciba();
    let response = c.device("POST", "/hints", Some(&json!({ "subject": "nobody" })));
    assert_eq!(response.status, 400);
    let response = c.device("POST", "/hints", Some(&json!({})));
    assert_eq!(response.status, 400);
    let a = c
        .device("POST", "/hints", Some(&json!({ "subject": "holder-1" })))
        .json();
    let b = c
        .device("POST", "/hints", Some(&json!({ "subject": "holder-1" })))
        .json();
    assert_ne!(a["id"], b["id"]);
    assert!(
        a["id"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|d| d.is_ascii_digit())
    );
}

#[test]
fn ad_4_concurrent_approve_and_deny_one_decision_wins() {
    let c = ciba();
    for _ in 0..3 {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = c.start_with_login_hint("tpp-1", &consent_id);
        let barrier = std::sync::Barrier::new(6);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let (barrier, id) = (&barrier, &id);
                    s.spawn(move || {
                        barrier.wait();
                        if i % 2 == 0 {
                            c.approve(id, LOA2)
                        } else {
                            c.deny(id)
                        }
                        .status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 409),
            "{statuses:?}"
        );
        let state = c.device("GET", &format!("/requests/{id}"), None).json()["status"].clone();
        let poll = c.poll("tpp-1", &id);
        match state.as_str().unwrap() {
            "APPROVED" => assert_eq!(poll.status, 200, "{}", text(&poll)),
            "DENIED" => assert_eq!(poll.json()["error"], json!("access_denied")),
            other => panic!("{other}"),
        }
    }
}

/// A device API call with the right token and `cert` (none: no certificate header).
fn with_certificate(c: &Ciba, method: &str, path: &str, cert: Option<&str>) -> e2e::Response {
    let auth = format!("Bearer {DEVICE_TOKEN}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(cert) = cert {
        headers.push((CERT_HEADER, cert));
    }
    let body = if method == "POST" {
        json!({ "acr": LOA2, "amr": ["pwd"] }).to_string()
    } else {
        String::new()
    };
    c.server
        .send(method, &format!("/device{path}"), &headers, body.as_bytes())
}

/// Issue 16 item 11 (design.md, The device API): with mTLS on, the right device token without
/// the bank backend's listed certificate is 401 and changes nothing; the listed one works.
#[test]
fn ad_2_with_mtls_on_the_device_token_alone_approves_nothing() {
    // A server of its own: the test counts the store's rows.
    let c = &Ciba::new("device-mtls");
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    let rows = c.server.store_rows();
    let other = e2e::certificate_header("CN=someone-else,O=Elsewhere,C=BR");
    let approve = format!("/requests/{id}/approve");
    for (what, cert) in [
        ("no certificate", None),
        ("another certificate", Some(other.as_str())),
        ("a client's certificate", Some(c.cert.as_str())),
        ("not a certificate", Some("garbage")),
    ] {
        for (method, path) in [
            ("POST", approve.as_str()),
            ("GET", "/requests?subject=holder-1"),
            ("GET", "/holders"),
        ] {
            let response = with_certificate(c, method, path, cert);
            assert_eq!(response.status, 401, "{what} {path}: {}", text(&response));
            assert_eq!(response.json()["error"], json!("invalid_token"));
        }
    }
    assert_eq!(
        c.server.store_rows(),
        rows,
        "a refused call wrote something"
    );
    let view = c.device("GET", &format!("/requests/{id}"), None);
    assert_eq!(view.json()["status"], json!("PENDING"));
    assert_eq!(
        c.poll("tpp-1", &id).json()["error"],
        json!("authorization_pending")
    );
    let listed = with_certificate(c, "POST", &approve, Some(&e2e::device_certificate().0));
    assert_eq!(listed.status, 200, "{}", text(&listed));
    assert_eq!(c.poll("tpp-1", &id).status, 200);
}

/// The token alone stays for sandboxes: without mTLS no certificate is asked for, and
/// `device_api_certificates` may be left unset.
#[test]
fn ad_2_without_mtls_the_device_token_alone_works_for_sandboxes() {
    let mut vars = e2e::ciba::ciba_variables();
    vars.remove("client_cert_header");
    vars.remove("device_api_certificates");
    let c = Ciba::with(e2e::Server::bundle(vars));
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let id = c.start_with_login_hint("tpp-1", &consent_id);
    let approved = with_certificate(&c, "POST", &format!("/requests/{id}/approve"), None);
    assert_eq!(approved.status, 200, "{}", text(&approved));
    assert_eq!(c.poll("tpp-1", &id).status, 200);
}

/// With mTLS on, `device_api_certificates` missing, empty or not a list of thumbprints is a
/// configuration error naming it: the device API answers 500 and approves nothing.
#[test]
fn ad_2_with_mtls_on_device_api_certificates_is_required_and_named_when_bad() {
    for (value, problem) in [
        (None, "is required while client_cert_header is set"),
        (Some("[]"), "must list at least one thumbprint"),
        (
            Some(r#"["not-a-thumbprint"]"#),
            "must be a JSON array of x5t#S256 thumbprints",
        ),
    ] {
        let mut vars = e2e::ciba::ciba_variables();
        match value {
            Some(v) => vars.insert("device_api_certificates", v.to_string()),
            None => vars.remove("device_api_certificates"),
        };
        let c = Ciba::with(e2e::Server::bundle(vars));
        let response = c.device("GET", "/holders", None);
        assert_eq!(response.status, 500, "{value:?}: {}", text(&response));
        let log = c.server.log_text();
        assert!(
            log.contains(&format!(
                "configuration variable `device_api_certificates`: {problem}"
            )),
            "{value:?}: {log}"
        );
        // The other endpoints do not read it.
        assert_eq!(
            c.server.get("/.well-known/openid-configuration").status,
            200
        );
    }
}
