//! The abuse limits of `POST /bc-authorize` (BCA-31; FAPI-CIBA 7.2) over HTTP: per client and
//! per holder, on the request rate and on pending requests; 429 `access_denied` with
//! `Retry-After` over a limit; a refused request, for whatever reason, uses none of the
//! budget.

use serde_json::{Map, Value, json};

use e2e::ciba::{Ciba, HOLDER_1_CPF, assert_oauth_error, ciba_variables, text};
use e2e::{ABUSE_LIMITS, Response, Server};

/// A server with the limits README suggests for production (600 a minute and 1,000 pending
/// per client, 20 an hour and 5 pending per holder), but for `changes`.
fn with_limits(name: &str, changes: &[(&'static str, &str)]) -> Ciba {
    let mut vars = ciba_variables();
    for (limit, value) in ABUSE_LIMITS.iter().zip(["600", "1000", "20", "5"]) {
        vars.insert(limit, value.to_string());
    }
    for (limit, value) in changes {
        vars.insert(limit, value.to_string());
    }
    Ciba::with(Server::bundle_on_disk(vars, name))
}

/// Moves the server's clock to the start of a fresh window of `period` seconds, so that a test
/// counting within one window does not see it end halfway.
fn fresh_window(c: &Ciba, period: i64) {
    c.server
        .time
        .advance(period - c.now().rem_euclid(period) + 1);
}

/// A signed request by `login_hint` for `consent_id` from `client_id`, with fresh client
/// authentication: the whole form body.
fn body(c: &Ciba, client_id: &str, consent_id: &str) -> String {
    let mut claims = c.request_claims(client_id, consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    signed_body(c, client_id, claims)
}

fn signed_body(c: &Ciba, client_id: &str, claims: Map<String, Value>) -> String {
    format!(
        "request={}&{}",
        c.sign_request(client_id, claims),
        c.client_auth(client_id)
    )
}

fn send(c: &Ciba, client_id: &str, body: &str) -> Response {
    c.post(client_id, "/bc-authorize", body)
}

/// Asserts a 200 and returns the `auth_req_id`.
fn accepted(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", text(response));
    response.json()["auth_req_id"].as_str().unwrap().to_string()
}

/// Asserts the documented refusal: 429 `access_denied`, only `error` and
/// `error_description`, `Cache-Control: no-store`, and a `Retry-After` of at most `max`
/// seconds; returns the description.
fn too_many(response: &Response, max: u64) -> String {
    assert_oauth_error(response, 429, "access_denied");
    let retry_after: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=max).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    response.json()["error_description"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn bca_31_over_the_client_rate_429_until_the_minute_passes() {
    let c = with_limits("rate-client", &[("client_rate_limit", "3")]);
    fresh_window(&c, 60);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    for _ in 0..3 {
        accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    }
    let over = body(&c, "tpp-1", &consent);
    let rows = c.server.store_rows();
    let description = too_many(&send(&c, "tpp-1", &over), 60);
    assert!(description.contains("client"), "{description}");
    assert_eq!(c.server.store_rows(), rows, "a refusal wrote to the store");
    // Another client has its own budget.
    let other = c.lodge("tpp-2", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-2", &body(&c, "tpp-2", &other)));
    // The refused request used up nothing: the same request object and client assertion
    // are accepted once the window has passed.
    c.server.time.advance(60);
    accepted(&send(&c, "tpp-1", &over));
}

#[test]
fn bca_31_over_the_holder_s_pending_requests_429_until_one_is_decided_or_expires() {
    // The suggested production limit: 5 pending per holder.
    let c = with_limits("pending-holder", &[]);
    let ours = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let theirs = c.lodge("tpp-2", HOLDER_1_CPF, None);
    let mut ids = Vec::new();
    for i in 0..5 {
        // From two clients: the limit is the holder's.
        let (client, consent) = if i % 2 == 0 {
            ("tpp-1", &ours)
        } else {
            ("tpp-2", &theirs)
        };
        ids.push(accepted(&send(&c, client, &body(&c, client, consent))));
    }
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &ours)), 720);
    assert!(description.contains("holder"), "{description}");
    let listed = c.device("GET", "/requests?subject=holder-1", None).json();
    assert_eq!(listed["requests"].as_array().unwrap().len(), 5, "{listed}");
    // The holder decides one (denying it rejects its consent): its place is free.
    assert_eq!(c.deny(&ids[0]).status, 200);
    let next = c.lodge("tpp-1", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &next)));
    too_many(&send(&c, "tpp-2", &body(&c, "tpp-2", &theirs)), 720);
    // Requests nobody decides stop counting once they can no longer be pending.
    c.server.time.advance(720);
    let fresh = c.lodge("tpp-1", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &fresh)));
}

#[test]
fn bca_31_over_the_holder_s_hourly_rate_429_until_the_hour_passes() {
    let c = with_limits("rate-holder", &[("holder_rate_limit", "3")]);
    fresh_window(&c, 3600);
    for _ in 0..3 {
        // Each decided at once: only the rate limits.
        let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
        assert_eq!(c.deny(&id).status, 200);
    }
    let consent = c.lodge("tpp-2", HOLDER_1_CPF, None);
    let description = too_many(&send(&c, "tpp-2", &body(&c, "tpp-2", &consent)), 3600);
    assert!(description.contains("holder"), "{description}");
    c.server.time.advance(3600);
    let consent = c.lodge("tpp-2", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-2", &body(&c, "tpp-2", &consent)));
}

#[test]
fn bca_31_over_the_client_s_pending_requests_429() {
    let c = with_limits("pending-client", &[("client_pending_limit", "2")]);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let first = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 720);
    assert!(
        description.contains("client has too many pending"),
        "{description}"
    );
    assert_eq!(c.deny(&first).status, 200);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
}

#[test]
fn bca_31_requests_refused_for_other_reasons_use_none_of_the_budget() {
    let c = with_limits(
        "refused-free",
        &[("client_rate_limit", "2"), ("holder_pending_limit", "3")],
    );
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let tampered = {
        let good = c.sign_request("tpp-1", {
            let mut claims = c.request_claims("tpp-1", &consent);
            claims.insert("login_hint".into(), json!(consent));
            claims
        });
        let (head, _) = good.rsplit_once('.').unwrap();
        format!("{head}.{}", "A".repeat(342))
    };
    let replayed = body(&c, "tpp-1", &consent);
    accepted(&send(&c, "tpp-1", &replayed));
    // The client assertion of that request, with a fresh request object: refused when the
    // assertion is used up, after the request was counted, so the count is taken back.
    let (_, used_assertion) = replayed.split_once('&').unwrap();
    let fresh_request = |c: &Ciba| {
        let mut claims = c.request_claims("tpp-1", &consent);
        claims.insert("login_hint".into(), json!(consent));
        c.sign_request("tpp-1", claims)
    };
    fresh_window(&c, 60);
    // A new minute: the client's budget is 2 again; the holder has 1 request of 3 pending.
    for _ in 0..3 {
        let form = format!("request={}&{used_assertion}", fresh_request(&c));
        let response = send(&c, "tpp-1", &form);
        assert_oauth_error(&response, 401, "invalid_client");
    }
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "bad signature",
            format!("request={tampered}&{}", c.client_auth("tpp-1")),
            400,
            "invalid_request",
        ),
        (
            "unknown consent",
            body(&c, "tpp-1", "urn:bank:no-such-consent"),
            400,
            "invalid_scope",
        ),
        ("replayed request", replayed.clone(), 400, "invalid_request"),
        (
            "bad client assertion",
            format!(
                "request={}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=e30.e30.AAAA",
                c.sign_request("tpp-1", c.request_claims("tpp-1", &consent))
            ),
            401,
            "invalid_client",
        ),
    ];
    for (case, form, status, error) in &cases {
        for _ in 0..3 {
            let response = send(&c, "tpp-1", form);
            assert_eq!(
                (response.status, response.json()["error"].clone()),
                (*status, json!(error)),
                "{case}: {}",
                text(&response)
            );
        }
    }
    // Fifteen refusals later, both requests of the minute are still there, and no more.
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 60);
}

#[test]
fn bca_31_requests_refused_by_one_limit_use_none_of_the_others() {
    let c = with_limits(
        "refused-by-limit",
        &[("client_rate_limit", "3"), ("holder_pending_limit", "1")],
    );
    fresh_window(&c, 60);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let first = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    // Refused by the holder's pending limit, after the client's rate counted them: taken back.
    for _ in 0..5 {
        let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 720);
        assert!(
            description.contains("holder has too many pending"),
            "{description}"
        );
    }
    assert_eq!(c.deny(&first).status, 200);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let second = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    assert_eq!(c.deny(&second).status, 200);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 60);
    assert!(
        description.contains("client sent too many"),
        "{description}"
    );
}

/// Trials of the concurrency test: `BCA31_TRIALS` (1 by default, for CI; README runs more).
fn trials() -> usize {
    std::env::var("BCA31_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[test]
fn bca_31_concurrent_requests_never_pass_a_limit_together() {
    let c = with_limits(
        "concurrent",
        &[
            ("holder_pending_limit", "3"),
            ("holder_rate_limit", "1000000"),
        ],
    );
    let mut first_round = Vec::new();
    for trial in 0..trials() {
        if trial > 0 {
            // The previous trial's requests can no longer be pending.
            c.server.time.advance(720);
        }
        first_round.push(concurrent_trial(&c));
    }
    eprintln!(
        "bca_31 concurrency: {} trials of 12 concurrent requests against a limit of 3; \
         accepted in the concurrent round: {first_round:?}; never more than 3",
        first_round.len()
    );
}

/// 12 concurrent requests for one holder against a pending limit of 3; how many passed.
fn concurrent_trial(c: &Ciba) -> usize {
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let bodies: Vec<String> = (0..12).map(|_| body(c, "tpp-1", &consent)).collect();
    let barrier = std::sync::Barrier::new(bodies.len());
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|b| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    send(c, "tpp-1", b).status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // Never more than the limit; a request racing a refused one may be refused too, so the
    // limit may be reached by fewer: the next sequential request fills it.
    assert!((1..=3).contains(&accepted), "{statuses:?}");
    for _ in accepted..3 {
        self::accepted(&send(c, "tpp-1", &body(c, "tpp-1", &consent)));
    }
    too_many(&send(c, "tpp-1", &body(c, "tpp-1", &consent)), 720);
    let listed = c.device("GET", "/requests?subject=holder-1", None).json();
    let pending = listed["requests"].as_array().unwrap().len();
    assert_eq!(pending, 3, "{listed}");
    accepted
}
