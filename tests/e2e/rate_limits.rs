//! The abuse limits over HTTP. At `POST /bc-authorize` (BCA-31; FAPI-CIBA 7.2): per client and
//! per holder, on the request rate and on pending requests; 429 `access_denied` with
//! `Retry-After` over a limit; every request counts against its client's rate once the client
//! has authenticated, refused or not, and only accepted ones against the other limits; a
//! holder who does not act for a consent's company answers as an unknown one (issue 16).
//! Consent lodging and `client_credentials` grants per client per minute (issue 16). The
//! limits `spin.toml` ships, and the holder's device list that shows every pending request.

use serde_json::{Map, Value, json};

use e2e::ciba::{Ciba, HOLDER_1_CPF, HOLDER_2_CPF, assert_oauth_error, ciba_variables, text};
use e2e::{ABUSE_LIMITS, Response, Server};

/// The production values `spin.toml` ships, in the order of [`ABUSE_LIMITS`]: 600 a minute and
/// 1,000 pending per client, 20 an hour and 5 pending per holder; 300 consents and 300
/// `client_credentials` tokens per client per minute.
const SHIPPED: [&str; 6] = ["600", "1000", "20", "5", "300", "300"];

/// A server with the production limits, but for `changes`.
fn with_limits(name: &str, changes: &[(&'static str, &str)]) -> Ciba {
    let mut vars = ciba_variables();
    for (limit, value) in ABUSE_LIMITS.iter().zip(SHIPPED) {
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

/// A signed request for `consent_id` whose `login_hint` is `hint`, from `tpp-1`.
fn hinted(c: &Ciba, consent_id: &str, hint: &str) -> String {
    let mut claims = c.request_claims("tpp-1", consent_id);
    claims.insert("login_hint".into(), json!(hint));
    signed_body(c, "tpp-1", claims)
}

#[test]
fn bca_31_every_refusal_after_client_authentication_counts_against_the_client_s_rate() {
    let c = with_limits("refusals-count", &[("client_rate_limit", "4")]);
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
    fresh_window(&c, 60);
    // Unauthenticated: charged to nobody (the client_id may not be the sender's).
    let bad_assertion = format!(
        "request={}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=e30.e30.AAAA",
        c.sign_request("tpp-1", c.request_claims("tpp-1", &consent))
    );
    for _ in 0..5 {
        assert_oauth_error(&send(&c, "tpp-1", &bad_assertion), 401, "invalid_client");
    }
    // Authenticated, then refused: each costs what an acceptance costs.
    let refusals: [(&str, String, u16, &str); 3] = [
        (
            "bad request object signature",
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
        (
            "a hint that is not the consent",
            hinted(&c, &consent, "urn:bank:another-consent"),
            400,
            "unknown_user_id",
        ),
    ];
    for (case, form, status, error) in &refusals {
        let response = send(&c, "tpp-1", form);
        assert_eq!(
            (response.status, response.json()["error"].clone()),
            (*status, json!(error)),
            "{case}: {}",
            text(&response)
        );
    }
    // The fourth request of the minute is the last one.
    accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    // Over the rate, a probe gets 429 before anything is looked up: it learns nothing.
    let probe = hinted(&c, &consent, "urn:bank:another-consent");
    let description = too_many(&send(&c, "tpp-1", &probe), 60);
    assert!(
        description.contains("client sent too many"),
        "{description}"
    );
    too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 60);
    // Another client has its own budget; the next minute, this one's is back.
    let other = c.lodge("tpp-2", HOLDER_1_CPF, None);
    accepted(&send(&c, "tpp-2", &body(&c, "tpp-2", &other)));
    c.server.time.advance(60);
    assert_oauth_error(&send(&c, "tpp-1", &probe), 400, "unknown_user_id");
}

/// A company no test holder acts for (valid check digits).
const ANOTHER_CNPJ: &str = "11444777000161";
/// A valid CPF that is nobody's at this bank.
const STRANGER_CPF: &str = "39053344705";

#[test]
fn hint_2_bca_16_a_holder_not_acting_for_the_company_answers_as_an_unknown_holder() {
    let c = with_limits("business-entity-probe", &[]);
    // holder-2 is a customer but does not act for ANOTHER_CNPJ; holder-1 acts for no company;
    // STRANGER_CPF is nobody's. A client that lodges these consents and names each by its
    // consent id must not learn which CPFs are customers, or their companies.
    let answers: Vec<(u16, Value)> = [HOLDER_2_CPF, HOLDER_1_CPF, STRANGER_CPF]
        .map(|cpf| {
            let consent = c.lodge("tpp-1", cpf, Some(ANOTHER_CNPJ));
            let response = send(&c, "tpp-1", &hinted(&c, &consent, &consent));
            assert_oauth_error(&response, 400, "unknown_user_id");
            (response.status, response.json())
        })
        .into();
    assert_eq!(answers[0], answers[2], "a customer without the company");
    assert_eq!(answers[1], answers[2], "a customer with no company");
}

#[test]
fn bca_31_refusals_are_logged_with_their_client_and_no_personal_data() {
    let c = with_limits("refusals-logged", &[]);
    let consent = c.lodge("tpp-1", HOLDER_2_CPF, Some(ANOTHER_CNPJ));
    let response = send(&c, "tpp-1", &hinted(&c, &consent, &consent));
    assert_oauth_error(&response, 400, "unknown_user_id");
    let unknown = send(&c, "tpp-2", &body(&c, "tpp-2", "urn:bank:no-such-consent"));
    assert_oauth_error(&unknown, 400, "invalid_scope");
    let logs = c.server.log_text();
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle}:\n{logs}"))
    };
    let denied = line("unknown_user_id");
    assert!(denied.contains("client \"tpp-1\""), "{denied}");
    assert!(
        denied.contains("the holder does not act for the consent's businessEntity"),
        "the log keeps the reason the answer hides: {denied}"
    );
    let scope = line("invalid_scope");
    assert!(scope.contains("client \"tpp-2\""), "{scope}");
    for secret in [
        HOLDER_2_CPF,
        ANOTHER_CNPJ,
        consent.as_str(),
        "no-such-consent",
    ] {
        assert!(!logs.contains(secret), "a log line holds {secret}:\n{logs}");
    }
}

#[test]
fn bca_31_requests_refused_by_one_limit_use_none_of_the_others() {
    let c = with_limits(
        "refused-by-limit",
        &[("holder_rate_limit", "3"), ("holder_pending_limit", "1")],
    );
    fresh_window(&c, 3600);
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let first = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    // Refused by the holder's pending limit: the holder's hourly rate is untouched.
    for _ in 0..5 {
        let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 720);
        assert!(
            description.contains("holder has too many pending"),
            "{description}"
        );
    }
    assert_eq!(c.deny(&first).status, 200);
    for _ in 0..2 {
        let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
        assert_eq!(c.deny(&id).status, 200);
    }
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 3600);
    assert!(description.contains("named this holder"), "{description}");
}

#[test]
fn bca_31_spin_toml_ships_the_production_limits() {
    // The manifest's defaults: no limit variable set.
    let mut vars = ciba_variables();
    for limit in ABUSE_LIMITS {
        vars.remove(limit);
    }
    let c = Ciba::with(Server::bundle_on_disk(vars, "shipped-limits"));
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    for _ in 0..5 {
        accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    }
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 720);
    assert!(
        description.contains("holder has too many pending"),
        "{description}"
    );
}

#[test]
fn ad_2_bca_31_the_device_list_shows_every_request_a_holder_may_have_pending() {
    // More than the 16 the list read before: other clients' pending requests cannot push one
    // out of the holder's sight.
    let c = with_limits(
        "pending-listed",
        &[
            ("holder_pending_limit", "20"),
            ("holder_rate_limit", "1000"),
        ],
    );
    let consent = c.lodge("tpp-1", HOLDER_1_CPF, None);
    for _ in 0..20 {
        accepted(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)));
    }
    let description = too_many(&send(&c, "tpp-1", &body(&c, "tpp-1", &consent)), 720);
    assert!(
        description.contains("holder has too many pending"),
        "{description}"
    );
    let listed = c.device("GET", "/requests?subject=holder-1", None).json();
    let mut references: Vec<&str> = listed["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    references.dedup();
    assert_eq!(references.len(), 20, "{listed}");
}

/// Asserts the Consents API's refusal over a limit: 429, `Retry-After` within the minute, and
/// the Open Finance `errors` shape with `access_denied`.
fn consents_too_many(response: &Response) {
    assert_eq!(response.status, 429, "{}", text(response));
    let retry_after: u64 = response
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(response.json()["errors"][0]["code"], json!("access_denied"));
}

/// A consent lodging request's body.
fn lodging() -> Value {
    json!({ "data": {
        "loggedUser": { "document": { "identification": HOLDER_1_CPF, "rel": "CPF" } },
        "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
    }})
}

#[test]
fn bca_31_cons_1_consent_lodging_is_limited_per_client_per_minute() {
    let c = with_limits("consent-rate", &[("consent_rate_limit", "3")]);
    let token = c.consents_token("tpp-1");
    let other = c.consents_token("tpp-2");
    fresh_window(&c, 60);
    for _ in 0..3 {
        let lodged = c.consents("tpp-1", &token, "POST", "", Some(&lodging()));
        assert_eq!(lodged.status, 201, "{}", text(&lodged));
    }
    let rows = c.server.store_rows();
    consents_too_many(&c.consents("tpp-1", &token, "POST", "", Some(&lodging())));
    assert_eq!(c.server.store_rows(), rows, "a refusal wrote to the store");
    // Another client has its own budget; the next minute, this one's is back.
    let lodged = c.consents("tpp-2", &other, "POST", "", Some(&lodging()));
    assert_eq!(lodged.status, 201, "{}", text(&lodged));
    c.server.time.advance(60);
    let lodged = c.consents("tpp-1", &token, "POST", "", Some(&lodging()));
    assert_eq!(lodged.status, 201, "{}", text(&lodged));
}

#[test]
fn tok_20_client_credentials_grants_are_limited_per_client_per_minute() {
    let c = with_limits("cc-rate", &[("client_credentials_rate_limit", "3")]);
    let grant = |client: &str| {
        let body = format!(
            "grant_type=client_credentials&scope=consents&{}",
            c.client_auth(client)
        );
        c.post(client, "/token", &body)
    };
    fresh_window(&c, 60);
    for _ in 0..3 {
        let issued = grant("tpp-1");
        assert_eq!(issued.status, 200, "{}", text(&issued));
    }
    let refused = grant("tpp-1");
    assert_oauth_error(&refused, 429, "access_denied");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(grant("tpp-2").status, 200, "another client's budget");
    c.server.time.advance(60);
    assert_eq!(grant("tpp-1").status, 200, "the next minute");
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
