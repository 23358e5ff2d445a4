//! Store faults (issue 9, part 3): every step of the flow is run once for each key-value call
//! it makes, with that call failed by the host (`Server::faults`, as `ciba-host up
//! --fail-kv-op N` does), then the flow is continued without faults and its invariants
//! checked:
//!
//! - the answer is 500 `server_error`, or the step's normal answer when the failed call did
//!   not matter;
//! - an `auth_req_id` whose poll says "already used" was answered with its tokens, and a poll
//!   that failed can be retried until it gets them (TOK-10);
//! - a decision is applied whole: an approved request has an authorised consent, a denied one
//!   a rejected consent, and an authorised consent has an approved request (AD-4/5/6); one
//!   consent gives one grant, even with a second request on it (AD-5, CONS-1);
//! - a single-use input (an AD-generated hint id, a QR code) is not used up by a request that
//!   failed (HINT-13/15), and a retry with fresh client assertions succeeds;
//! - at rest, the store holds no consent authorised without its approved request and no
//!   decision half-applied.
//!
//! `cargo test -p e2e --test e2e faults_ -- --nocapture` prints, per step, the calls it makes,
//! the faults injected, the answers and the inconsistencies found (README, "Store faults and
//! what is atomic").

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::Digest;

use ciba_host::kv::KvOp;
use e2e::ciba::{
    AD_GENERATED, AS_GENERATED, CERT_HEADER, Ciba, HOLDER_1_CPF, LOA2, ciba_variables, text,
};
use e2e::{Response, Server};

/// A fixture whose store (a SQLite file, or a Redis server) this test reads at rest.
struct Faulty {
    c: Ciba,
    at_rest: AtRest,
}

enum AtRest {
    Sqlite(PathBuf),
    Redis(e2e::RedisServer),
}

impl Faulty {
    fn new(name: &str) -> Self {
        let dir = e2e::temp_dir(&format!("faults-{name}"));
        let c = Ciba::with(Server::bundle_in(ciba_variables(), &dir));
        Self {
            c,
            at_rest: AtRest::Sqlite(dir.join("sqlite_key_value.db")),
        }
    }

    fn on_redis() -> Self {
        let redis = e2e::RedisServer::start();
        let c = Ciba::with(Server::bundle_on_redis(ciba_variables(), &redis));
        Self {
            c,
            at_rest: AtRest::Redis(redis),
        }
    }

    /// The requests and consents at rest.
    fn rows(&self) -> Vec<(String, Vec<u8>)> {
        let wanted = |key: &str| key.starts_with("auth_req:") || key.starts_with("consent:");
        match &self.at_rest {
            AtRest::Sqlite(db) => {
                let conn = rusqlite::Connection::open(db).unwrap();
                let mut stmt = conn
                    .prepare("SELECT key, value FROM spin_key_value")
                    .unwrap();
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .unwrap()
                    .map(Result::unwrap)
                    .filter(|(k, _): &(String, Vec<u8>)| wanted(k))
                    .collect()
            }
            AtRest::Redis(redis) => {
                let kv = ciba_host::kv_redis::RedisKv::open(&redis.url()).unwrap();
                kv.keys()
                    .unwrap()
                    .into_iter()
                    .filter(|k| wanted(k))
                    .filter_map(|k| kv.get(&k).unwrap().map(|v| (k, v)))
                    .collect()
            }
        }
    }
}

/// What a step needs, made fresh before each run.
#[derive(Default, Clone)]
struct Given {
    token: Option<String>,
    consent: Option<String>,
    auth_req_id: Option<String>,
    hint_id: Option<String>,
    qr: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    /// A second pending request on the same consent (AD-5, CONS-1: one consent, one grant).
    other_id: Option<String>,
}

impl Given {
    fn consent(&self) -> &str {
        self.consent.as_deref().unwrap()
    }
    fn id(&self) -> &str {
        self.auth_req_id.as_deref().unwrap()
    }
}

/// How a step's flow is continued after the fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Then {
    /// The party that made the call retries it (or reads what it did), then the flow goes on.
    Retry,
    /// The device does not come back: the client polls on (approve and deny only).
    ClientPolls,
}

/// One step of the flow.
struct Step {
    name: &'static str,
    setup: fn(&Ciba) -> Given,
    run: fn(&Ciba, &Given) -> Response,
    /// The normal answer's status.
    ok: u16,
    /// Continues the flow without faults after `answer`; the inconsistencies found.
    check: fn(&Ciba, &Given, &Response, Then) -> Vec<String>,
    thens: &'static [Then],
}

/// The figures of one step.
#[derive(Default, Debug)]
struct Tally {
    ops: usize,
    calls: Vec<KvOp>,
    injected: u64,
    server_errors: usize,
    normal: usize,
    inconsistencies: Vec<String>,
}

fn reference(auth_req_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(auth_req_id.as_bytes()))
}

// ---------------------------------------------------------------------------------------
// Building blocks of the flow.

fn cc_token(c: &Ciba) -> Response {
    let body = format!(
        "grant_type=client_credentials&scope=consents&{}",
        c.client_auth("tpp-1")
    );
    c.post("tpp-1", "/token", &body)
}

fn consent_body() -> Value {
    json!({ "data": {
        "loggedUser": { "document": { "identification": HOLDER_1_CPF, "rel": "CPF" } },
        "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
    }})
}

fn lodge(c: &Ciba, token: &str) -> Response {
    c.consents("tpp-1", token, "POST", "", Some(&consent_body()))
}

/// The consent's status as its client reads it (with one token per server, to spare the
/// signatures).
fn consent_status(c: &Ciba, consent_id: &str) -> String {
    static READERS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());
    let token = {
        let mut readers = READERS.lock().unwrap();
        match readers.iter().find(|(base, _)| *base == c.server.base) {
            Some((_, token)) => token.clone(),
            None => {
                let token = c.consents_token("tpp-1");
                readers.push((c.server.base.clone(), token.clone()));
                token
            }
        }
    };
    let response = c.consents("tpp-1", &token, "GET", consent_id, None);
    assert_eq!(response.status, 200, "{}", text(&response));
    let data = &response.json()["data"];
    let mut status = data["status"].as_str().unwrap().to_string();
    if let Some(code) = data["rejection"]["reason"]["code"].as_str() {
        status = format!("{status}/{code}");
    }
    status
}

fn login_hint_request(c: &Ciba, consent_id: &str) -> String {
    let mut claims = c.request_claims("tpp-1", consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    c.sign_request("tpp-1", claims)
}

fn ad_hint_request(c: &Ciba, consent_id: &str, hint_id: &str) -> String {
    let mut claims = c.request_claims("tpp-1", consent_id);
    claims.insert(
        "login_hint_token".into(),
        json!(json!({ "format": AD_GENERATED, "id": hint_id }).to_string()),
    );
    claims.insert("binding_message".into(), json!("Faults AD"));
    c.sign_request("tpp-1", claims)
}

fn as_generated_request(c: &Ciba, consent_id: &str) -> String {
    let mut claims = c.request_claims("tpp-1", consent_id);
    claims.insert("login_hint_token".into(), json!(AS_GENERATED));
    claims.insert("binding_message".into(), json!("Faults QR"));
    c.sign_request("tpp-1", claims)
}

fn issue_hint(c: &Ciba) -> Response {
    c.device("POST", "/hints", Some(&json!({ "subject": "holder-1" })))
}

fn claim(c: &Ciba, qr: &str) -> Response {
    c.device(
        "POST",
        "/claims",
        Some(&json!({ "login_hint_token": qr, "subject": "holder-1" })),
    )
}

fn device_status(c: &Ciba, id: &str) -> String {
    let response = c.device("GET", &format!("/requests/{id}"), None);
    if response.status != 200 {
        return format!("HTTP {}", response.status);
    }
    response.json()["status"].as_str().unwrap().to_string()
}

/// How many times the holder's pending list shows the request.
fn listed(c: &Ciba, id: &str) -> usize {
    let list = c.device("GET", "/requests?subject=holder-1", None);
    assert_eq!(list.status, 200, "{}", text(&list));
    let reference = reference(id);
    list.json()["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_str() == Some(reference.as_str()))
        .count()
}

fn userinfo(c: &Ciba, access_token: &str) -> Response {
    let auth = format!("Bearer {access_token}");
    c.server.send(
        "GET",
        "/userinfo",
        &[
            ("authorization", &auth),
            (CERT_HEADER, &c.cert),
            (
                "x-fapi-interaction-id",
                "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
            ),
        ],
        b"",
    )
}

fn refresh(c: &Ciba, refresh_token: &str) -> Response {
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh_token}&{}",
        c.client_auth("tpp-1")
    );
    c.post("tpp-1", "/token", &body)
}

fn error_of(response: &Response) -> String {
    serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// 500 `server_error`: as an OAuth error, or in the Consents API's `errors` list.
fn is_server_error(response: &Response) -> bool {
    let consents_code = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string));
    response.status == 500
        && (error_of(response) == "server_error"
            || consents_code.as_deref() == Some("server_error"))
}

/// Records `what` when `ok` is false.
fn expect(found: &mut Vec<String>, ok: bool, what: impl FnOnce() -> String) {
    if !ok {
        found.push(what());
    }
}

// ---------------------------------------------------------------------------------------
// Continuations: the rest of the flow, from a given point, with the invariants it checks.

/// From a pending request: the holder approves, the client polls and gets tokens that work.
fn approve_and_redeem(c: &Ciba, id: &str, found: &mut Vec<String>) {
    let approved = c.approve(id, LOA2);
    expect(found, approved.status == 200, || {
        format!("approving after the fault: {}", text(&approved))
    });
    redeem(c, id, found);
}

/// From an approved request: the poll gets tokens, once, and they work.
fn redeem(c: &Ciba, id: &str, found: &mut Vec<String>) {
    let tokens = c.poll("tpp-1", id);
    if tokens.status != 200 {
        found.push(format!(
            "an approved request's tokens are not obtainable: {}",
            text(&tokens)
        ));
        return;
    }
    tokens_work(c, id, &tokens.json(), found);
}

/// Tokens just handed out: a second poll is refused, userinfo and refresh work, the request
/// reads as consumed and its consent as authorised.
fn tokens_work(c: &Ciba, id: &str, tokens: &Value, found: &mut Vec<String>) {
    let again = c.poll("tpp-1", id);
    expect(found, error_of(&again) == "invalid_grant", || {
        format!("a second poll after the tokens: {}", text(&again))
    });
    let access = tokens["access_token"].as_str().unwrap();
    let info = userinfo(c, access);
    expect(found, info.status == 200, || {
        format!("userinfo with the tokens: {}", text(&info))
    });
    let refreshed = refresh(c, tokens["refresh_token"].as_str().unwrap());
    expect(found, refreshed.status == 200, || {
        format!("refresh with the tokens: {}", text(&refreshed))
    });
    let state = device_status(c, id);
    expect(found, state == "CONSUMED", || {
        format!("the request reads {state} after its tokens were handed out")
    });
}

/// A new request for `consent_id` by login_hint; its id, or the failure recorded.
fn start(c: &Ciba, request: &str, found: &mut Vec<String>, what: &str) -> Option<String> {
    let response = c.bc_authorize("tpp-1", request);
    if response.status != 200 {
        found.push(format!("{what}: {}", text(&response)));
        return None;
    }
    Some(response.json()["auth_req_id"].as_str().unwrap().to_string())
}

/// After a bc-authorize answered 200: the request is listed once, pending, and completes.
fn request_completes(c: &Ciba, id: &str, found: &mut Vec<String>) {
    let shown = listed(c, id);
    expect(found, shown == 1, || {
        format!("the holder's device lists the new request {shown} times")
    });
    let pending = c.poll("tpp-1", id);
    expect(found, error_of(&pending) == "authorization_pending", || {
        format!("the new request's first poll: {}", text(&pending))
    });
    approve_and_redeem(c, id, found);
}

// ---------------------------------------------------------------------------------------
// The steps.

fn nothing(_: &Ciba) -> Given {
    Given::default()
}

fn with_token(c: &Ciba) -> Given {
    Given {
        token: Some(c.consents_token("tpp-1")),
        ..Given::default()
    }
}

fn with_consent(c: &Ciba) -> Given {
    let token = c.consents_token("tpp-1");
    let response = lodge(c, &token);
    assert_eq!(response.status, 201, "{}", text(&response));
    Given {
        consent: Some(
            response.json()["data"]["consentId"]
                .as_str()
                .unwrap()
                .to_string(),
        ),
        token: Some(token),
        ..Given::default()
    }
}

fn with_hint(c: &Ciba) -> Given {
    let issued = issue_hint(c);
    assert_eq!(issued.status, 201, "{}", text(&issued));
    Given {
        hint_id: Some(issued.json()["id"].as_str().unwrap().to_string()),
        ..with_consent(c)
    }
}

fn with_pending(c: &Ciba) -> Given {
    let given = with_consent(c);
    let id = c.start_with_login_hint("tpp-1", given.consent());
    Given {
        auth_req_id: Some(id),
        ..given
    }
}

fn with_two_pending(c: &Ciba) -> Given {
    let given = with_pending(c);
    let other = c.start_with_login_hint("tpp-1", given.consent());
    Given {
        other_id: Some(other),
        ..given
    }
}

fn with_awaiting_claim(c: &Ciba) -> Given {
    let given = with_consent(c);
    let response = c.bc_authorize("tpp-1", &as_generated_request(c, given.consent()));
    assert_eq!(response.status, 200, "{}", text(&response));
    let id = response.json()["auth_req_id"].as_str().unwrap().to_string();
    let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &id), "cibabr+jwt");
    Given {
        auth_req_id: Some(id),
        qr: Some(qr),
        ..given
    }
}

fn with_approved(c: &Ciba) -> Given {
    let given = with_pending(c);
    let approved = c.approve(given.id(), LOA2);
    assert_eq!(approved.status, 200, "{}", text(&approved));
    given
}

fn with_tokens(c: &Ciba) -> Given {
    let given = with_approved(c);
    let tokens = c.poll("tpp-1", given.id());
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
    let tokens = tokens.json();
    Given {
        access_token: Some(tokens["access_token"].as_str().unwrap().to_string()),
        refresh_token: Some(tokens["refresh_token"].as_str().unwrap().to_string()),
        ..given
    }
}

fn check_client_credentials(c: &Ciba, _: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let answer = if answer.status == 200 {
        answer
    } else {
        &cc_token(c)
    };
    if answer.status != 200 {
        found.push(format!("a retry with a fresh assertion: {}", text(answer)));
        return found;
    }
    let lodged = lodge(c, answer.json()["access_token"].as_str().unwrap());
    expect(&mut found, lodged.status == 201, || {
        format!("the token at the Consents API: {}", text(&lodged))
    });
    found
}

fn check_lodge(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let answer = if answer.status == 201 {
        answer
    } else {
        &lodge(c, given.token.as_deref().unwrap())
    };
    if answer.status != 201 {
        found.push(format!("lodging again: {}", text(answer)));
        return found;
    }
    let id = answer.json()["data"]["consentId"]
        .as_str()
        .unwrap()
        .to_string();
    let status = consent_status(c, &id);
    expect(&mut found, status == "AWAITING_AUTHORISATION", || {
        format!("the lodged consent reads {status}")
    });
    found
}

fn check_read(c: &Ciba, given: &Given, _: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let status = consent_status(c, given.consent());
    expect(&mut found, status == "AWAITING_AUTHORISATION", || {
        format!("a read changed the consent to {status}")
    });
    found
}

fn check_revoke(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let token = given.token.as_deref().unwrap();
    let status = consent_status(c, given.consent());
    match (answer.status, status.as_str()) {
        (204, "REJECTED/CUSTOMER_MANUALLY_REJECTED") => {}
        (500, "AWAITING_AUTHORISATION") => {
            let again = c.consents("tpp-1", token, "DELETE", given.consent(), None);
            expect(&mut found, again.status == 204, || {
                format!("revoking again: {}", text(&again))
            });
            let status = consent_status(c, given.consent());
            expect(
                &mut found,
                status == "REJECTED/CUSTOMER_MANUALLY_REJECTED",
                || format!("after revoking again the consent reads {status}"),
            );
        }
        (500, "REJECTED/CUSTOMER_MANUALLY_REJECTED") => {}
        (s, status) => found.push(format!(
            "revocation answered {s}, the consent reads {status}"
        )),
    }
    // A revoked consent takes no new request.
    let refused = c.bc_authorize("tpp-1", &login_hint_request(c, given.consent()));
    expect(&mut found, error_of(&refused) == "invalid_scope", || {
        format!("a request for the revoked consent: {}", text(&refused))
    });
    found
}

/// bc-authorize (any hint): on 200 the request completes; on 500 a retry with a fresh
/// assertion and a fresh request object (the same hint) is accepted and completes.
fn check_bc_authorize(
    c: &Ciba,
    given: &Given,
    answer: &Response,
    fresh: fn(&Ciba, &Given) -> String,
    as_generated: bool,
) -> Vec<String> {
    let mut found = Vec::new();
    let id = if answer.status == 200 {
        answer.json()["auth_req_id"].as_str().unwrap().to_string()
    } else {
        let Some(id) = start(
            c,
            &fresh(c, given),
            &mut found,
            "a retry with a fresh assertion and request object",
        ) else {
            return found;
        };
        id
    };
    if as_generated {
        let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &id), "cibabr+jwt");
        let claimed = claim(c, &qr);
        expect(&mut found, claimed.status == 200, || {
            format!("claiming the new request: {}", text(&claimed))
        });
    }
    request_completes(c, &id, &mut found);
    found
}

fn check_bca_login_hint(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    check_bc_authorize(
        c,
        given,
        answer,
        |c, g| login_hint_request(c, g.consent()),
        false,
    )
}

fn check_bca_ad(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    check_bc_authorize(
        c,
        given,
        answer,
        |c, g| ad_hint_request(c, g.consent(), g.hint_id.as_deref().unwrap()),
        false,
    )
}

fn check_bca_as(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    check_bc_authorize(
        c,
        given,
        answer,
        |c, g| as_generated_request(c, g.consent()),
        true,
    )
}

fn check_pending_poll(c: &Ciba, given: &Given, _: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let again = c.poll("tpp-1", given.id());
    let error = error_of(&again);
    expect(
        &mut found,
        error == "authorization_pending" || error == "slow_down",
        || format!("polling again: {}", text(&again)),
    );
    approve_and_redeem(c, given.id(), &mut found);
    found
}

/// The decision is whole: the request and its consent moved together.
fn decision_whole(c: &Ciba, given: &Given, found: &mut Vec<String>) {
    let request = device_status(c, given.id());
    let consent = consent_status(c, given.consent());
    let whole = matches!(
        (request.as_str(), consent.as_str()),
        ("PENDING", "AWAITING_AUTHORISATION")
            | ("APPROVED" | "CONSUMED", "AUTHORISED")
            | ("DENIED", "REJECTED/CUSTOMER_MANUALLY_REJECTED")
    );
    expect(found, whole, || {
        format!("decision half-applied: the request reads {request}, its consent {consent}")
    });
}

fn check_approve(c: &Ciba, given: &Given, answer: &Response, then: Then) -> Vec<String> {
    let mut found = Vec::new();
    let id = given.id();
    match then {
        Then::Retry => {
            if answer.status != 200 {
                let again = c.approve(id, LOA2);
                expect(&mut found, matches!(again.status, 200 | 409), || {
                    format!("the device approving again: {}", text(&again))
                });
            }
            decision_whole(c, given, &mut found);
            redeem(c, id, &mut found);
        }
        Then::ClientPolls => {
            let poll = c.poll("tpp-1", id);
            match (poll.status, error_of(&poll).as_str()) {
                (200, _) => tokens_work(c, id, &poll.json(), &mut found),
                (_, "authorization_pending") => approve_and_redeem(c, id, &mut found),
                _ => found.push(format!(
                    "the client's poll after the device's fault: {}",
                    text(&poll)
                )),
            }
        }
    }
    let consent = consent_status(c, given.consent());
    expect(&mut found, consent == "AUTHORISED", || {
        format!("after the grant the consent reads {consent}")
    });
    found
}

/// After a fault in the approval of the first request, the holder approves the second request
/// on the same consent, and the device then retries the first: whichever call failed, exactly
/// one of the two is granted (its tokens work), the other's poll gets `access_denied`, and the
/// consent reads `AUTHORISED`.
fn check_approve_one_of_two(c: &Ciba, given: &Given, _: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let (first, other) = (given.id(), given.other_id.as_deref().unwrap());
    for (what, id) in [("the second request", other), ("the first again", first)] {
        let answer = c.approve(id, LOA2);
        expect(&mut found, matches!(answer.status, 200 | 403 | 409), || {
            format!("approving {what}: {}", text(&answer))
        });
    }
    let mut granted = 0;
    for id in [first, other] {
        let poll = c.poll("tpp-1", id);
        if poll.status == 200 {
            granted += 1;
            tokens_work(c, id, &poll.json(), &mut found);
        } else {
            expect(&mut found, error_of(&poll) == "access_denied", || {
                format!("the poll of the request not granted: {}", text(&poll))
            });
        }
    }
    expect(&mut found, granted == 1, || {
        format!("{granted} requests on one consent were granted")
    });
    let consent = consent_status(c, given.consent());
    expect(&mut found, consent == "AUTHORISED", || {
        format!("after the grant the consent reads {consent}")
    });
    found
}

fn check_deny(c: &Ciba, given: &Given, answer: &Response, then: Then) -> Vec<String> {
    let mut found = Vec::new();
    let id = given.id();
    match then {
        Then::Retry => {
            if answer.status != 200 {
                let again = c.deny(id);
                expect(&mut found, matches!(again.status, 200 | 409), || {
                    format!("the device denying again: {}", text(&again))
                });
            }
            decision_whole(c, given, &mut found);
        }
        Then::ClientPolls => {
            let poll = c.poll("tpp-1", id);
            if error_of(&poll) == "authorization_pending" {
                let again = c.deny(id);
                expect(&mut found, again.status == 200, || {
                    format!("the device denying later: {}", text(&again))
                });
            }
        }
    }
    let poll = c.poll("tpp-1", id);
    expect(&mut found, error_of(&poll) == "access_denied", || {
        format!("the client's poll of the denied request: {}", text(&poll))
    });
    decision_whole(c, given, &mut found);
    // A consent whose holder refused takes no new request.
    let refused = c.bc_authorize("tpp-1", &login_hint_request(c, given.consent()));
    expect(&mut found, error_of(&refused) == "invalid_scope", || {
        format!("a new request for the refused consent: {}", text(&refused))
    });
    found
}

fn check_claim(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let id = given.id();
    if answer.status != 200 {
        // The holder scans the same code again.
        let again = claim(c, given.qr.as_deref().unwrap());
        expect(&mut found, again.status == 200, || {
            format!("scanning the same QR code again: {}", text(&again))
        });
    }
    let shown = listed(c, id);
    expect(&mut found, shown == 1, || {
        format!("the holder's device lists the claimed request {shown} times")
    });
    approve_and_redeem(c, id, &mut found);
    found
}

fn check_hint(c: &Ciba, _: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let issued = if answer.status == 201 {
        answer
    } else {
        &issue_hint(c)
    };
    if issued.status != 201 {
        found.push(format!("issuing again: {}", text(issued)));
        return found;
    }
    let given = with_consent(c);
    let request = ad_hint_request(c, given.consent(), issued.json()["id"].as_str().unwrap());
    if let Some(id) = start(c, &request, &mut found, "a request with the hint id") {
        request_completes(c, &id, &mut found);
    }
    found
}

fn check_issuance(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let id = given.id();
    if answer.status == 200 {
        tokens_work(c, id, &answer.json(), &mut found);
    } else {
        // The client polls again.
        redeem(c, id, &mut found);
    }
    found
}

fn check_refresh(c: &Ciba, given: &Given, answer: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let answer = if answer.status == 200 {
        answer
    } else {
        &refresh(c, given.refresh_token.as_deref().unwrap())
    };
    expect(&mut found, answer.status == 200, || {
        format!("refreshing again: {}", text(answer))
    });
    if answer.status == 200 {
        let info = userinfo(c, answer.json()["access_token"].as_str().unwrap());
        expect(&mut found, info.status == 200, || {
            format!("userinfo with the refreshed token: {}", text(&info))
        });
    }
    found
}

fn check_userinfo(c: &Ciba, given: &Given, _: &Response, _: Then) -> Vec<String> {
    let mut found = Vec::new();
    let info = userinfo(c, given.access_token.as_deref().unwrap());
    expect(&mut found, info.status == 200, || {
        format!("userinfo again: {}", text(&info))
    });
    found
}

const RETRY: &[Then] = &[Then::Retry];
const BOTH: &[Then] = &[Then::Retry, Then::ClientPolls];

fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "token: client_credentials",
            setup: nothing,
            run: |c, _| cc_token(c),
            ok: 200,
            check: check_client_credentials,
            thens: RETRY,
        },
        Step {
            name: "consents: lodge",
            setup: with_token,
            run: |c, g| lodge(c, g.token.as_deref().unwrap()),
            ok: 201,
            check: check_lodge,
            thens: RETRY,
        },
        Step {
            name: "consents: read",
            setup: with_consent,
            run: |c, g| {
                c.consents(
                    "tpp-1",
                    g.token.as_deref().unwrap(),
                    "GET",
                    g.consent(),
                    None,
                )
            },
            ok: 200,
            check: check_read,
            thens: RETRY,
        },
        Step {
            name: "consents: revoke",
            setup: with_consent,
            run: |c, g| {
                c.consents(
                    "tpp-1",
                    g.token.as_deref().unwrap(),
                    "DELETE",
                    g.consent(),
                    None,
                )
            },
            ok: 204,
            check: check_revoke,
            thens: RETRY,
        },
        Step {
            name: "bc-authorize: login_hint",
            setup: with_consent,
            run: |c, g| c.bc_authorize("tpp-1", &login_hint_request(c, g.consent())),
            ok: 200,
            check: check_bca_login_hint,
            thens: RETRY,
        },
        Step {
            name: "bc-authorize: ad-generated hint",
            setup: with_hint,
            run: |c, g| {
                c.bc_authorize(
                    "tpp-1",
                    &ad_hint_request(c, g.consent(), g.hint_id.as_deref().unwrap()),
                )
            },
            ok: 200,
            check: check_bca_ad,
            thens: RETRY,
        },
        Step {
            name: "bc-authorize: as-generated",
            setup: with_consent,
            run: |c, g| c.bc_authorize("tpp-1", &as_generated_request(c, g.consent())),
            ok: 200,
            check: check_bca_as,
            thens: RETRY,
        },
        Step {
            name: "token: pending poll",
            setup: with_pending,
            run: |c, g| c.poll("tpp-1", g.id()),
            ok: 400,
            check: check_pending_poll,
            thens: RETRY,
        },
        Step {
            name: "device: approve",
            setup: with_pending,
            run: |c, g| c.approve(g.id(), LOA2),
            ok: 200,
            check: check_approve,
            thens: BOTH,
        },
        Step {
            name: "device: approve, two requests on the consent",
            setup: with_two_pending,
            run: |c, g| c.approve(g.id(), LOA2),
            ok: 200,
            check: check_approve_one_of_two,
            thens: RETRY,
        },
        Step {
            name: "device: deny",
            setup: with_pending,
            run: |c, g| c.deny(g.id()),
            ok: 200,
            check: check_deny,
            thens: BOTH,
        },
        Step {
            name: "device: claim (QR)",
            setup: with_awaiting_claim,
            run: |c, g| claim(c, g.qr.as_deref().unwrap()),
            ok: 200,
            check: check_claim,
            thens: RETRY,
        },
        Step {
            name: "device: hints",
            setup: nothing,
            run: |c, _| issue_hint(c),
            ok: 201,
            check: check_hint,
            thens: RETRY,
        },
        Step {
            name: "token: CIBA issuance",
            setup: with_approved,
            run: |c, g| c.poll("tpp-1", g.id()),
            ok: 200,
            check: check_issuance,
            thens: RETRY,
        },
        Step {
            name: "token: refresh",
            setup: with_tokens,
            run: |c, g| refresh(c, g.refresh_token.as_deref().unwrap()),
            ok: 200,
            check: check_refresh,
            thens: RETRY,
        },
        Step {
            name: "userinfo",
            setup: with_tokens,
            run: |c, g| userinfo(c, g.access_token.as_deref().unwrap()),
            ok: 200,
            check: check_userinfo,
            thens: RETRY,
        },
    ]
}

/// Runs `step` once without faults to count its calls, then once per call and continuation
/// with that call failed.
fn run_step(f: &Faulty, step: &Step) -> Tally {
    let c = &f.c;
    let faults = &c.server.faults;
    let mut tally = Tally::default();
    // The step's own calls. A turn that sweeps (store::purge: a store's first turn, then one
    // in 128) and the first increment of an abuse-limit counter in its window (announced to
    // the purge) make calls besides, which a clean run must not count, or the faults past the
    // step's calls would find nothing to fail: the shortest of three clean runs.
    let mut ops: Vec<KvOp> = Vec::new();
    for run in 0..3 {
        let given = (step.setup)(c);
        faults.count();
        let clean = (step.run)(c, &given);
        assert_eq!(clean.status, step.ok, "{}: {}", step.name, text(&clean));
        let seen = faults.ops();
        if run == 0 || seen.len() < ops.len() {
            ops = seen;
        }
    }
    tally.ops = ops.len();
    tally.calls = ops.clone();
    for k in 1..=ops.len() {
        for &then in step.thens {
            let given = (step.setup)(c);
            let before = faults.injected();
            faults.arm(k as u64);
            let answer = (step.run)(c, &given);
            let failed = faults.ops().get(k - 1).copied();
            faults.count();
            let label = format!("{} (call {k}, {failed:?}; then {then:?})", step.name);
            if faults.injected() != before + 1 {
                tally
                    .inconsistencies
                    .push(format!("{label}: the fault was not injected"));
                continue;
            }
            tally.injected += 1;
            if is_server_error(&answer) {
                tally.server_errors += 1;
            } else if answer.status == step.ok {
                tally.normal += 1;
            } else {
                tally
                    .inconsistencies
                    .push(format!("{label}: answered {}", text(&answer)));
            }
            for problem in (step.check)(c, &given, &answer, then) {
                tally.inconsistencies.push(format!("{label}: {problem}"));
            }
        }
    }
    tally
}

/// The records at rest: no consent authorised without its approved request, no approved
/// request without its authorised consent, no holder's denial without its rejected consent.
fn scan(rows: Vec<(String, Vec<u8>)>) -> Vec<String> {
    let mut consents: HashMap<String, Value> = HashMap::new();
    let mut requests: Vec<Value> = Vec::new();
    for (key, value) in rows {
        let envelope: Value = serde_json::from_slice(&value).unwrap();
        let data = envelope["data"].clone();
        if key.starts_with("consent:") {
            consents.insert(data["consent_id"].as_str().unwrap().to_string(), data);
        } else {
            requests.push(data);
        }
    }
    let mut found = Vec::new();
    let mut granted: HashSet<&str> = HashSet::new();
    let mut grants: HashMap<&str, usize> = HashMap::new();
    for r in &requests {
        let consent_id = r["consent_id"].as_str().unwrap();
        let consent = consents
            .get(consent_id)
            .map(|c| c["status"].as_str().unwrap())
            .unwrap_or("MISSING");
        match r["status"].as_str().unwrap() {
            "APPROVED" | "CONSUMED" => {
                granted.insert(consent_id);
                *grants.entry(consent_id).or_default() += 1;
                if consent != "AUTHORISED" {
                    found.push(format!(
                        "at rest: a request reads {} and its consent {consent}",
                        r["status"]
                    ));
                }
            }
            "DENIED" if r["denial"] == json!("HOLDER_DENIED") && consent != "REJECTED" => {
                found.push(format!(
                    "at rest: a request denied by its holder, its consent {consent}"
                ));
            }
            _ => {}
        }
    }
    if grants.values().any(|n| *n > 1) {
        found.push("at rest: two requests granted on one consent".into());
    }
    for (id, consent) in &consents {
        if consent["status"] == json!("AUTHORISED") && !granted.contains(id.as_str()) {
            found.push("at rest: a consent authorised without an approved request".into());
        }
    }
    found
}

fn report(name: &str, tally: &Tally, seconds: f64) {
    println!(
        "faults | {name:<32} | calls {:>3} | writes {:>3} | faults {:>3} | 500 {:>3} | normal {:>3} | inconsistencies {:>3} | {seconds:.1} s",
        tally.ops,
        tally.calls.iter().filter(|op| op.is_write()).count(),
        tally.injected,
        tally.server_errors,
        tally.normal,
        tally.inconsistencies.len()
    );
    println!("faults |   calls: {:?}", tally.calls);
}

/// Runs the step `name` with each of its calls failed, on a server of its own, then scans the
/// store at rest; prints the step's figures and fails on any inconsistency.
fn every_call_fails_cleanly(name: &str) {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    every_call_fails_cleanly_on(name, &Faulty::new(&slug));
}

fn every_call_fails_cleanly_on(name: &str, f: &Faulty) {
    let step = steps().into_iter().find(|s| s.name == name).unwrap();
    let started = std::time::Instant::now();
    let mut tally = run_step(f, &step);
    tally.inconsistencies.extend(scan(f.rows()));
    let label = match f.at_rest {
        AtRest::Sqlite(_) => name.to_string(),
        AtRest::Redis(_) => format!("{name} (Redis)"),
    };
    report(&label, &tally, started.elapsed().as_secs_f64());
    assert!(
        tally.inconsistencies.is_empty(),
        "{name}: {} inconsistencies:\n{}",
        tally.inconsistencies.len(),
        tally.inconsistencies.join("\n")
    );
}

#[test]
fn faults_tok_20_client_credentials() {
    every_call_fails_cleanly("token: client_credentials");
}

#[test]
fn faults_cons_1_lodge() {
    every_call_fails_cleanly("consents: lodge");
}

#[test]
fn faults_cons_1_read() {
    every_call_fails_cleanly("consents: read");
}

#[test]
fn faults_cons_1_revoke() {
    every_call_fails_cleanly("consents: revoke");
}

#[test]
fn faults_bca_24_login_hint() {
    every_call_fails_cleanly("bc-authorize: login_hint");
}

/// HINT-13: a request that failed after using up its AD-generated hint id gives it back.
#[test]
fn faults_hint_13_ad_generated_hint() {
    every_call_fails_cleanly("bc-authorize: ad-generated hint");
}

#[test]
fn faults_hint_14_as_generated() {
    every_call_fails_cleanly("bc-authorize: as-generated");
}

#[test]
fn faults_tok_6_pending_poll() {
    every_call_fails_cleanly("token: pending poll");
}

/// AD-4/5: an approval stopped between the consent's move and the request's write is
/// completed by the device's retry (the client's poll meanwhile says pending).
#[test]
fn faults_ad_5_approve() {
    every_call_fails_cleanly("device: approve");
}

/// AD-5, CONS-1: the same with a second request on the consent, which the continuation then
/// approves: whichever call failed, one consent gives one grant.
#[test]
fn faults_ad_5_cons_1_approve_one_of_two_requests() {
    every_call_fails_cleanly("device: approve, two requests on the consent");
}

/// AD-4/6: likewise for a denial.
#[test]
fn faults_ad_6_deny() {
    every_call_fails_cleanly("device: deny");
}

/// HINT-15, AD-8: a claim that failed leaves the QR code usable and the request listed once.
#[test]
fn faults_hint_15_claim() {
    every_call_fails_cleanly("device: claim (QR)");
}

#[test]
fn faults_ad_9_hints() {
    every_call_fails_cleanly("device: hints");
}

/// TOK-10: a redemption that failed after winning its marker gives it back, so the next poll
/// gets the tokens.
#[test]
fn faults_tok_10_issuance() {
    every_call_fails_cleanly("token: CIBA issuance");
}

#[test]
fn faults_tok_15_refresh() {
    every_call_fails_cleanly("token: refresh");
}

#[test]
fn faults_ui_1_userinfo() {
    every_call_fails_cleanly("userinfo");
}

// On Redis (issue 18): every swap reports cas-failed, so a step's calls differ from the
// SQLite file's (each swap is followed by the re-read that finds the marker); the steps whose
// exactly-once rests on swaps, failed call by call.

#[test]
fn faults_ad_5_approve_on_redis() {
    every_call_fails_cleanly_on("device: approve", &Faulty::on_redis());
}

#[test]
fn faults_ad_6_deny_on_redis() {
    every_call_fails_cleanly_on("device: deny", &Faulty::on_redis());
}

#[test]
fn faults_tok_6_pending_poll_on_redis() {
    every_call_fails_cleanly_on("token: pending poll", &Faulty::on_redis());
}

#[test]
fn faults_tok_10_issuance_on_redis() {
    every_call_fails_cleanly_on("token: CIBA issuance", &Faulty::on_redis());
}

#[test]
fn faults_tok_15_refresh_on_redis() {
    every_call_fails_cleanly_on("token: refresh", &Faulty::on_redis());
}

#[test]
fn faults_bca_24_login_hint_on_redis() {
    every_call_fails_cleanly_on("bc-authorize: login_hint", &Faulty::on_redis());
}

/// Every step's calls on Redis, counted (no fault): `-- --nocapture` prints them beside the
/// SQLite file's (`faults_` above).
#[test]
fn faults_every_step_s_calls_on_redis() {
    let f = Faulty::on_redis();
    let faults = &f.c.server.faults;
    for step in steps() {
        // The fewest of three runs, as run_step counts (a run may also do a sweep turn).
        let mut calls: Vec<KvOp> = Vec::new();
        for run in 0..3 {
            let given = (step.setup)(&f.c);
            faults.count();
            let answer = (step.run)(&f.c, &given);
            assert_eq!(answer.status, step.ok, "{}: {}", step.name, text(&answer));
            let seen = faults.ops();
            if run == 0 || seen.len() < calls.len() {
                calls = seen;
            }
        }
        let writes = calls.iter().filter(|op| op.is_write()).count();
        println!(
            "faults | {:<44} | Redis calls {:>3} | writes {:>3} | {calls:?}",
            step.name,
            calls.len(),
            writes
        );
    }
    assert!(scan(f.rows()).is_empty());
}

// ---------------------------------------------------------------------------------------
// Issue 18: fewer and cheaper store calls, counted by the host.

/// The answer of `run` and the calls it made, counted by the host.
fn calls_of(c: &Ciba, run: impl FnOnce(&Ciba) -> Response, ok: u16) -> (Response, Vec<KvOp>) {
    c.server.faults.count();
    let answer = run(c);
    assert_eq!(answer.status, ok, "{}", text(&answer));
    (answer, c.server.faults.ops())
}

fn swaps(calls: &[KvOp]) -> usize {
    calls
        .iter()
        .filter(|op| matches!(op, KvOp::CasCurrent | KvOp::CasSwap))
        .count()
}

/// TOK-6/7, issue 18: a pending poll makes no compare-and-swap (on Redis each one opens a
/// connection): the request and its pace in one `get-many`, the pace and the assertion
/// marker's purge entry in one `set-many`.
#[test]
fn tok_6_tok_7_a_pending_poll_makes_no_compare_and_swap_and_one_set_many() {
    let f = Faulty::new("poll-calls");
    let c = &f.c;
    for _ in 0..2 {
        let given = with_pending(c);
        let (_, calls) = calls_of(c, |c| c.poll("tpp-1", given.id()), 400);
        assert_eq!(swaps(&calls), 0, "{calls:?}");
        assert_eq!(
            calls.iter().filter(|op| **op == KvOp::GetMany).count(),
            1,
            "{calls:?}"
        );
        let writes: Vec<&KvOp> = calls.iter().filter(|op| op.is_write()).collect();
        assert_eq!(
            writes,
            [&KvOp::Increment, &KvOp::Increment, &KvOp::SetMany],
            "the marker, its entry's slot, then one write: {calls:?}"
        );
        // Polled again at once: still paced (TOK-7).
        let again = c.poll("tpp-1", given.id());
        assert_eq!(error_of(&again), "slow_down", "{}", text(&again));
    }
}

/// TOK-10, issue 18: the issuance writes both tokens and their purge entries in one
/// `set-many` (one transaction on Spin's SQLite store), and no compare-and-swap.
#[test]
fn tok_10_issuance_writes_both_tokens_in_one_set_many() {
    let f = Faulty::new("issuance-calls");
    let c = &f.c;
    let given = with_approved(c);
    let (tokens, calls) = calls_of(c, |c| c.poll("tpp-1", given.id()), 200);
    assert_eq!(swaps(&calls), 0, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|op| **op == KvOp::SetMany).count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|op| **op == KvOp::Set).count(),
        1,
        "besides, only the request's CONSUMED: {calls:?}"
    );
    assert_eq!(calls.last(), Some(&KvOp::Set), "{calls:?}");
    let mut found = Vec::new();
    tokens_work(c, given.id(), &tokens.json(), &mut found);
    assert!(found.is_empty(), "{found:?}");
}

/// AD-2, issue 18: the device's list of a holder's requests reads without writing (the
/// holder's slot count was read through an increment of 0, a transaction on Spin's SQLite).
#[test]
fn ad_2_the_device_list_reads_without_writing() {
    let f = Faulty::new("list-calls");
    let c = &f.c;
    with_pending(c);
    let (_, calls) = calls_of(
        c,
        |c| c.device("GET", "/requests?subject=holder-1", None),
        200,
    );
    assert!(!calls.is_empty());
    assert!(calls.iter().all(|op| !op.is_write()), "{calls:?}");
}

/// Issue 18: Spin 4.1's Redis store refuses every `get-many` of two keys or more; the glue
/// remembers the refusal for the instance's life (Spin reuses it for up to 128 requests), so
/// a pending poll after the first multi-key read on an instance pays no refused call: one
/// `get` per key, and no `get-many`.
#[test]
fn tok_6_on_redis_a_refused_get_many_is_paid_once_per_instance() {
    let f = Faulty::on_redis();
    let c = &f.c;
    let first = with_pending(c);
    let (_, calls) = calls_of(c, |c| c.poll("tpp-1", first.id()), 400);
    let second = with_pending(c);
    let (_, again) = calls_of(c, |c| c.poll("tpp-1", second.id()), 400);
    assert!(!again.contains(&KvOp::GetMany), "{again:?}");
    assert!(again.contains(&KvOp::Get), "{again:?}");
    assert!(again.len() <= calls.len(), "{calls:?} then {again:?}");
    assert_eq!(swaps(&again), 0, "{again:?}");
}

/// AD-5, CONS-1: an approval whose consent move landed but whose request write failed (a
/// store fault: 500), then the client's DELETE of the consent, then the device's retry: the
/// retry completes the approval (200), since that approval won the consent's race and the
/// DELETE came second; the consent reads revoked and the poll gets `invalid_grant`. Before
/// the fix the retry denied the request (403): no approval won, yet the consent read
/// `CUSTOMER_MANUALLY_REVOKED` (found by ciba-soak on two hosts on one Redis).
#[test]
fn ad_5_cons_1_a_retried_approval_completes_after_its_consent_move_and_a_delete() {
    let f = Faulty::new("approve-move-then-delete");
    let c = &f.c;
    let faults = &c.server.faults;
    let given = with_pending(c);
    faults.count();
    assert_eq!(c.approve(given.id(), LOA2).status, 200);
    let calls = faults.ops().len();
    let mut completed = 0;
    for k in 1..=calls {
        let given = with_pending(c);
        faults.arm(k as u64);
        let first = c.approve(given.id(), LOA2);
        faults.count();
        if first.status != 500
            || consent_status(c, given.consent()) != "AUTHORISED"
            || c.device("GET", &format!("/requests/{}", given.id()), None)
                .json()["status"]
                != json!("PENDING")
        {
            continue;
        }
        // The consent moved, the request did not: the client revokes, the device retries.
        let token = c.consents_token("tpp-1");
        let deleted = c.consents("tpp-1", &token, "DELETE", given.consent(), None);
        assert_eq!(deleted.status, 204, "{}", text(&deleted));
        let retry = c.approve(given.id(), LOA2);
        assert_eq!(retry.status, 200, "call {k}: {}", text(&retry));
        assert_eq!(
            consent_status(c, given.consent()),
            "REJECTED/CUSTOMER_MANUALLY_REVOKED"
        );
        assert_eq!(error_of(&c.poll("tpp-1", given.id())), "invalid_grant");
        completed += 1;
    }
    assert!(completed >= 1, "no fault fell between the two writes");
}
