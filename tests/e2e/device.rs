//! The device API (design.md; AD-2…9): its token, its errors, and its refusals leaving
//! requests as they were, over HTTP.

use std::sync::OnceLock;

use serde_json::json;

use e2e::ciba::{Ciba, DEVICE_TOKEN, HOLDER_1_CPF, LOA2, text};

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
            &[("authorization", &format!("Bearer {token}"))],
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
