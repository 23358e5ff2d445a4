//! Flow tests of the shared crate: the endpoints one after another against an in-memory
//! store, a fixed clock and a counting random source, natively and without a runtime.

use std::cell::Cell;

use serde_json::{Value, json};

use crate::client::auth::JWT_BEARER;
use crate::clock::{CountingRandom, FixedClock, UnixTime};
use crate::config::var;
use crate::endpoints::Deps;
use crate::endpoints::bc_authorize::BcAuthorizeEndpoint;
use crate::endpoints::consents::ConsentsEndpoint;
use crate::endpoints::device::DeviceEndpoint;
use crate::endpoints::token::TokenEndpoint;
use crate::fixtures::{client_jws, variables};
use crate::http::{Method, Request, Response};
use crate::store::memory::MemoryStore;

const ISSUER: &str = "https://auth.bank.example";

struct Flow {
    store: MemoryStore,
    random: CountingRandom,
    now: Cell<UnixTime>,
    jti: Cell<u32>,
    bc: BcAuthorizeEndpoint,
    token: TokenEndpoint,
    device: DeviceEndpoint,
    consents: ConsentsEndpoint,
}

fn form_request(body: String) -> Request {
    Request {
        method: Method::Post,
        path_info: String::new(),
        query: None,
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.into_bytes(),
    }
}

fn json_of(response: &Response) -> Value {
    serde_json::from_slice(&response.body).unwrap()
}

impl Flow {
    fn new() -> Self {
        let mut vars = variables();
        // Without mTLS: certificates are tested over HTTP.
        vars.remove(var::CLIENT_CERT_HEADER);
        Self {
            store: MemoryStore::new(),
            random: CountingRandom::default(),
            now: Cell::new(1_800_000_000),
            jti: Cell::new(0),
            bc: BcAuthorizeEndpoint::load(&vars).unwrap(),
            token: TokenEndpoint::load(&vars).unwrap(),
            device: DeviceEndpoint::load(&vars).unwrap(),
            consents: ConsentsEndpoint::load(&vars).unwrap(),
        }
    }

    fn with_deps<T>(&self, f: impl FnOnce(&Deps<'_>) -> T) -> T {
        let clock = FixedClock(self.now.get());
        f(&Deps {
            store: &self.store,
            clock: &clock,
            random: &self.random,
            fetch: &crate::client::fetch::NoFetch,
        })
    }

    fn next_jti(&self) -> String {
        self.jti.set(self.jti.get() + 1);
        format!("jti-{}", self.jti.get())
    }

    fn client_auth(&self) -> String {
        let now = self.now.get();
        let assertion = client_jws(
            "client-key-1",
            json!({ "iss": "tpp-1", "sub": "tpp-1", "aud": format!("{ISSUER}/token"),
                    "iat": now, "exp": now + 60, "jti": self.next_jti() }),
        );
        format!(
            "client_assertion_type={}&client_assertion={assertion}",
            JWT_BEARER.replace(':', "%3A")
        )
    }

    fn token_call(&self, body: String) -> Response {
        self.with_deps(|deps| self.token.handle(&form_request(body), deps))
    }

    fn lodge(&self) -> String {
        self.lodge_for(
            json!({ "document": { "identification": "52998224725", "rel": "CPF" } }),
            None,
        )
    }

    fn lodge_for(&self, logged_user: Value, business_entity: Option<Value>) -> String {
        let cc = self.token_call(format!(
            "grant_type=client_credentials&scope=consents&{}",
            self.client_auth()
        ));
        let token = json_of(&cc)["access_token"].as_str().unwrap().to_string();
        let request = Request {
            method: Method::Post,
            path_info: String::new(),
            query: None,
            headers: vec![
                ("authorization".into(), format!("Bearer {token}")),
                ("content-type".into(), "application/json".into()),
                (
                    "x-fapi-interaction-id".into(),
                    "7c9e6679-7425-40de-944b-e07fc1f90ae7".into(),
                ),
            ],
            body: json!({ "data": {
                "loggedUser": logged_user,
                "businessEntity": business_entity,
                "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
            }})
            .to_string()
            .into_bytes(),
        };
        let response = self.with_deps(|deps| self.consents.handle(&request, deps));
        assert_eq!(response.status, 201);
        json_of(&response)["data"]["consentId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn request_object(&self, consent_id: &str, changes: Value) -> String {
        let now = self.now.get();
        let mut claims = json!({
            "iss": "tpp-1", "aud": ISSUER, "iat": now, "nbf": now, "exp": now + 300,
            "jti": self.next_jti(), "scope": format!("openid consent:{consent_id}"),
            "login_hint": consent_id,
        });
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        client_jws("client-key-1", claims)
    }

    fn bc_authorize(&self, request_object: &str) -> Response {
        let body = format!("request={request_object}&{}", self.client_auth());
        self.with_deps(|deps| self.bc.handle(&form_request(body), deps))
    }

    fn poll(&self, id: &str) -> Response {
        self.token_call(format!(
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={id}&{}",
            self.client_auth()
        ))
    }

    fn device(&self, method: Method, path: &str, body: Value) -> Response {
        let request = Request {
            method,
            path_info: path.to_string(),
            query: None,
            headers: vec![
                ("authorization".into(), format!("Bearer {}", "d".repeat(43))),
                ("content-type".into(), "application/json".into()),
            ],
            body: body.to_string().into_bytes(),
        };
        self.with_deps(|deps| self.device.handle(&request, deps))
    }
}

#[test]
fn tok_6_to_10_a_login_hint_grant_from_request_to_tokens_once() {
    let f = Flow::new();
    let consent_id = f.lodge();
    let ack = f.bc_authorize(&f.request_object(&consent_id, json!({})));
    assert_eq!(ack.status, 200, "{}", String::from_utf8_lossy(&ack.body));
    let id = json_of(&ack)["auth_req_id"].as_str().unwrap().to_string();
    assert_eq!(
        json_of(&f.poll(&id))["error"],
        json!("authorization_pending")
    );
    f.now.set(f.now.get() + 1);
    assert_eq!(json_of(&f.poll(&id))["error"], json!("slow_down"));
    let approved = f.device(
        Method::Post,
        &format!("/requests/{id}/approve"),
        json!({ "acr": "urn:brasil:openbanking:loa2" }),
    );
    assert_eq!(
        approved.status,
        200,
        "{}",
        String::from_utf8_lossy(&approved.body)
    );
    let tokens = f.poll(&id);
    assert_eq!(
        tokens.status,
        200,
        "{}",
        String::from_utf8_lossy(&tokens.body)
    );
    let body = json_of(&tokens);
    assert!(
        body["id_token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3)
    );
    assert_eq!(json_of(&f.poll(&id))["error"], json!("invalid_grant"));
}

#[test]
fn bca_refusals_leave_the_store_as_it_was_but_for_the_client_s_rate_count() {
    use crate::store::{KeyValue, keys};
    let f = Flow::new();
    let consent_id = f.lodge();
    // BCA-31, issue 16: a refusal after client authentication counts against the client's
    // rate, one key per minute; nothing else changes.
    let now = f.now.get();
    let rate = keys::client_rate("tpp-1", now - now.rem_euclid(60) + 60);
    // The first refusal makes the minute's counter and announces it to the purge; nothing
    // else, and later refusals add nothing.
    let keys_now = || -> std::collections::BTreeSet<String> {
        f.store.list_keys(None).unwrap().keys.into_iter().collect()
    };
    let at_start = keys_now();
    let mut before = None;
    let mut refused = 0;
    for (changes, error) in [
        (
            json!({ "aud": "https://elsewhere.example" }),
            "invalid_request",
        ),
        (json!({ "exp": f.now.get() + 601 }), "invalid_request"),
        (json!({ "scope": "openid" }), "invalid_scope"),
        (json!({ "login_hint": "nobody" }), "unknown_user_id"),
        (json!({ "login_hint": null }), "invalid_request"),
        (
            json!({ "binding_message": "x".repeat(41) }),
            "invalid_binding_message",
        ),
        (json!({ "user_code": "1" }), "invalid_request"),
    ] {
        let response = f.bc_authorize(&f.request_object(&consent_id, changes.clone()));
        assert_eq!(json_of(&response)["error"], json!(error), "{changes}");
        let before = *before.get_or_insert_with(|| {
            let added = keys_now();
            for key in added.difference(&at_start) {
                assert!(
                    key == &rate || key.starts_with("purge_"),
                    "{changes}: the refusal wrote {key}"
                );
            }
            f.store.len()
        });
        assert_eq!(f.store.len(), before, "{changes}: the store changed");
        refused += 1;
        assert_eq!(f.store.increment(&rate, 0), Ok(refused), "{changes}");
    }
}

#[test]
fn tok_9_expiry_is_read_from_the_clock() {
    let f = Flow::new();
    let consent_id = f.lodge();
    let ack = f.bc_authorize(&f.request_object(&consent_id, json!({})));
    let id = json_of(&ack)["auth_req_id"].as_str().unwrap().to_string();
    f.now.set(f.now.get() + 300);
    assert_eq!(json_of(&f.poll(&id))["error"], json!("expired_token"));
    let late = f.device(
        Method::Post,
        &format!("/requests/{id}/approve"),
        json!({ "acr": "urn:brasil:openbanking:loa2" }),
    );
    assert_eq!(late.status, 410);
}

#[test]
fn bca_11_a_replay_is_refused_as_a_replay_before_its_ad_generated_hint_is_read() {
    let f = Flow::new();
    let issue_hint = || {
        let issued = f.device(Method::Post, "/hints", json!({ "subject": "u1" }));
        assert_eq!(issued.status, 201);
        json_of(&issued)["id"].as_str().unwrap().to_string()
    };
    let request = |hint_id: &str| {
        f.request_object(
            &f.lodge(),
            json!({
                "login_hint": null,
                "login_hint_token": json!({
                    "format": crate::discovery::LHT_AD_GENERATED, "id": hint_id,
                }).to_string(),
                "binding_message": "AD 1",
            }),
        )
    };
    let hint_id = issue_hint();
    let first = request(&hint_id);
    assert_eq!(f.bc_authorize(&first).status, 200);
    let before = f.store.len();
    let replay = f.bc_authorize(&first);
    assert_eq!(
        (replay.status, json_of(&replay)),
        (
            400,
            json!({ "error": "invalid_request",
                    "error_description": "the request object jti was already used" })
        )
    );
    assert_eq!(f.store.len(), before, "the replay changed the store");
    // The id stays used by the first request; a fresh id works.
    let again = f.bc_authorize(&request(&hint_id));
    assert_eq!(json_of(&again)["error"], json!("expired_login_hint_token"));
    assert_eq!(f.bc_authorize(&request(&issue_hint())).status, 200);
}

#[test]
fn hint_2_bca_16_a_holder_who_does_not_act_for_the_business_entity_answers_as_an_unknown_one() {
    let f = Flow::new();
    let cpf = |n: &str| json!({ "document": { "identification": n, "rel": "CPF" } });
    let cnpj = json!({ "document": { "identification": "11222333000181", "rel": "CNPJ" } });
    // A customer (u1) who does not act for the CNPJ, and a CPF that is nobody's here.
    let customer = f.lodge_for(cpf("52998224725"), Some(cnpj.clone()));
    let stranger = f.lodge_for(cpf("11144477735"), Some(cnpj));
    let answers: Vec<Response> = [&customer, &stranger]
        .map(|consent| f.bc_authorize(&f.request_object(consent, json!({}))))
        .into();
    assert_eq!(answers[0].status, 400);
    assert_eq!(json_of(&answers[0])["error"], json!("unknown_user_id"));
    assert_eq!(
        (answers[0].status, &answers[0].body),
        (answers[1].status, &answers[1].body),
        "the two answers differ"
    );
    // The log line keeps the client and the real reason; the wire does not.
    for answer in &answers {
        assert_eq!(answer.client.as_deref(), Some("tpp-1"));
    }
    assert_eq!(
        answers[0].detail,
        Some("the holder does not act for the consent's businessEntity")
    );
    assert_eq!(answers[1].detail, None);
}

/// AD-5, CONS-1: two requests on one consent: the first approval moves the consent to
/// AUTHORISED for its request; the second is denied (403, the consent's real state), and only
/// the first is redeemed.
#[test]
fn ad_5_cons_1_one_consent_one_grant() {
    let f = Flow::new();
    let consent_id = f.lodge();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let ack = f.bc_authorize(&f.request_object(&consent_id, json!({})));
        assert_eq!(ack.status, 200, "{}", String::from_utf8_lossy(&ack.body));
        ids.push(json_of(&ack)["auth_req_id"].as_str().unwrap().to_string());
    }
    let approve = |id: &str| {
        f.device(
            Method::Post,
            &format!("/requests/{id}/approve"),
            json!({ "acr": "urn:brasil:openbanking:loa2" }),
        )
    };
    let first = approve(&ids[1]);
    assert_eq!(
        first.status,
        200,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    assert_eq!(json_of(&first)["consent_status"], json!("AUTHORISED"));
    let before = f.store.len();
    let second = approve(&ids[0]);
    assert_eq!(second.status, 403);
    assert_eq!(json_of(&second)["error"], json!("access_denied"));
    assert!(
        json_of(&second)["error_description"]
            .as_str()
            .unwrap()
            .contains("another request")
    );
    assert_eq!(
        f.store.len(),
        before,
        "only the refused request's record moved"
    );
    let view = f.device(Method::Get, &format!("/requests/{}", ids[0]), json!({}));
    assert_eq!(json_of(&view)["status"], json!("DENIED"));
    assert_eq!(json_of(&f.poll(&ids[0]))["error"], json!("access_denied"));
    assert_eq!(f.poll(&ids[1]).status, 200);
    // Approving the winner again is "already decided", never a second grant.
    assert_eq!(approve(&ids[1]).status, 409);
}

/// AD-4, AD-6: an approval that moved the consent and then lost the request's own race to
/// the holder's denial granted nothing: the denial rejects the consent it authorised.
#[test]
fn ad_6_a_denial_that_wins_after_the_consent_moved_rejects_it() {
    let f = Flow::new();
    let consent_id = f.lodge();
    let ack = f.bc_authorize(&f.request_object(&consent_id, json!({})));
    let id = json_of(&ack)["auth_req_id"].as_str().unwrap().to_string();
    let reference = crate::auth_req::AuthReqId::parse(&id).unwrap().reference();
    // The approval's first write, then the denial.
    let moved = f.with_deps(|deps| {
        crate::consent::authorise_for(
            deps.store,
            &consent_id,
            &reference,
            deps.clock.now(),
            deps.random,
        )
    });
    assert!(matches!(
        moved,
        Ok(crate::consent::Authorisation::Granted(_))
    ));
    let denied = f.device(Method::Post, &format!("/requests/{id}/deny"), json!({}));
    assert_eq!(
        denied.status,
        200,
        "{}",
        String::from_utf8_lossy(&denied.body)
    );
    let consent = f.with_deps(|deps| {
        crate::store::record::get::<crate::consent::Consent>(
            deps.store,
            &crate::store::keys::consent(&consent_id),
            deps.clock.now(),
        )
    });
    let consent = consent.unwrap().unwrap().data;
    assert_eq!(consent.status, crate::consent::Status::Rejected);
    assert_eq!(
        consent.rejection.map(|r| r.code),
        Some(crate::consent::RejectionCode::CustomerManuallyRejected)
    );
    // The approval's second write now loses: 409, and no grant.
    let late = f.device(
        Method::Post,
        &format!("/requests/{id}/approve"),
        json!({ "acr": "urn:brasil:openbanking:loa2" }),
    );
    assert_eq!(late.status, 409);
    assert_eq!(json_of(&f.poll(&id))["error"], json!("access_denied"));
}

/// AD-4, AD-5, CONS-1: an approval whose move of the consent landed has won the consent's
/// race, even when the client's DELETE revokes the consent before the approval's request
/// write: another approval of the same request (a device retry, or two taps at once) finds
/// the consent revoked but moved by this request, and completes the approval rather than
/// denying it, so the consent's REVOKED always goes with an approved request. Found by
/// ciba-soak on two hosts on one Redis (approve-vs-consent-delete, 1 trial in 1,000: no
/// approval answered 200 and the consent read CUSTOMER_MANUALLY_REVOKED).
#[test]
fn ad_5_cons_1_an_approval_completes_when_its_consent_move_landed_and_a_revocation_followed() {
    let f = Flow::new();
    let consent_id = f.lodge();
    let ack = f.bc_authorize(&f.request_object(&consent_id, json!({})));
    let id = json_of(&ack)["auth_req_id"].as_str().unwrap().to_string();
    let reference = crate::auth_req::AuthReqId::parse(&id).unwrap().reference();
    // The first approval's consent move, then the client's DELETE.
    f.with_deps(|deps| {
        let now = deps.clock.now();
        let moved =
            crate::consent::authorise_for(deps.store, &consent_id, &reference, now, deps.random);
        assert!(matches!(
            moved,
            Ok(crate::consent::Authorisation::Granted(_))
        ));
        let revoked = crate::store::record::update::<crate::consent::Consent, ()>(
            deps.store,
            &crate::store::keys::consent(&consent_id),
            now,
            deps.random,
            |current| {
                let current = current.unwrap();
                Ok((current.data.revoke(now).unwrap(), current.exp))
            },
        );
        assert!(matches!(revoked, Ok(Ok(_))));
    });
    let approve = || {
        f.device(
            Method::Post,
            &format!("/requests/{id}/approve"),
            json!({ "acr": "urn:brasil:openbanking:loa2" }),
        )
    };
    let second = approve();
    assert_eq!(
        second.status,
        200,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    assert_eq!(json_of(&second)["status"], json!("APPROVED"));
    assert_eq!(json_of(&second)["consent_status"], json!("REJECTED"));
    // No tokens for a revoked consent, and the request stays approved.
    assert_eq!(json_of(&f.poll(&id))["error"], json!("invalid_grant"));
    assert_eq!(approve().status, 409);
}
