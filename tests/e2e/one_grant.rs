//! One consent, one grant (issue 16 item 7; AD-5/6/7, CONS-1): the consent's move to
//! `AUTHORISED` decides an approval. Two requests on one consent approved at the same moment
//! give one grant; an approval racing the client's `DELETE` of the consent answers what
//! happened. Over HTTP, with threads, on the SQLite file, in memory and on Redis.

use serde_json::{Value, json};

use e2e::Server;
use e2e::ciba::{Ciba, HOLDER_1_CPF, LOA2, ciba_variables, text};

/// `n` calls at once (a barrier releases them together); their answers in order.
fn at_once<'a>(
    calls: Vec<Box<dyn Fn() -> e2e::Response + Send + Sync + 'a>>,
) -> Vec<e2e::Response> {
    let barrier = std::sync::Barrier::new(calls.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = calls
            .iter()
            .map(|call| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    call()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn status_of(c: &Ciba, id: &str) -> Value {
    c.device("GET", &format!("/requests/{id}"), None).json()["status"].clone()
}

fn two_requests_one_grant(c: &Ciba, trials: usize) {
    for trial in 0..trials {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let ids = [
            c.start_with_login_hint("tpp-1", &consent_id),
            c.start_with_login_hint("tpp-1", &consent_id),
        ];
        let answers = at_once(
            ids.iter()
                .map(|id| Box::new(move || c.approve(id, LOA2)) as Box<dyn Fn() -> _ + Send + Sync>)
                .collect(),
        );
        let won: Vec<usize> = (0..2).filter(|&i| answers[i].status == 200).collect();
        let said = || {
            format!(
                "trial {trial}: {} / {}",
                text(&answers[0]),
                text(&answers[1])
            )
        };
        assert_eq!(won.len(), 1, "one approval, exactly: {}", said());
        let (winner, loser) = (won[0], 1 - won[0]);
        assert_eq!(answers[loser].status, 403, "{}", said());
        assert_eq!(answers[loser].json()["error"], json!("access_denied"));
        assert_eq!(status_of(c, &ids[winner]), json!("APPROVED"));
        assert_eq!(status_of(c, &ids[loser]), json!("DENIED"));
        let polls = [c.poll("tpp-1", &ids[0]), c.poll("tpp-1", &ids[1])];
        assert_eq!(polls[winner].status, 200, "{}", text(&polls[winner]));
        assert_eq!(polls[loser].json()["error"], json!("access_denied"));
        assert_eq!(
            c.consent("tpp-1", &consent_id)["status"],
            json!("AUTHORISED")
        );
    }
}

fn approve_racing_delete(c: &Ciba, trials: usize) {
    let (mut approved, mut refused) = (0, 0);
    for trial in 0..trials {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = c.start_with_login_hint("tpp-1", &consent_id);
        let token = c.consents_token("tpp-1");
        let answers = at_once(vec![
            Box::new(|| c.approve(&id, LOA2)),
            Box::new(|| c.consents("tpp-1", &token, "DELETE", &consent_id, None)),
        ]);
        let (approve, delete) = (&answers[0], &answers[1]);
        let said = || format!("trial {trial}: {} / {}", text(approve), text(delete));
        assert_eq!(delete.status, 204, "{}", said());
        let consent = c.consent("tpp-1", &consent_id);
        let code = consent["rejection"]["reason"]["code"].clone();
        let poll = c.poll("tpp-1", &id);
        match approve.status {
            // The approval moved the consent first: it was authorised, then revoked.
            200 => {
                approved += 1;
                assert_eq!(code, json!("CUSTOMER_MANUALLY_REVOKED"), "{}", said());
                assert_eq!(status_of(c, &id), json!("APPROVED"));
                assert_eq!(
                    poll.json()["error"],
                    json!("invalid_grant"),
                    "{}",
                    text(&poll)
                );
            }
            // The DELETE came first: the approval is refused and the request denied.
            403 => {
                refused += 1;
                assert_eq!(approve.json()["error"], json!("access_denied"));
                assert_eq!(code, json!("CUSTOMER_MANUALLY_REJECTED"), "{}", said());
                assert_eq!(status_of(c, &id), json!("DENIED"));
                assert_eq!(
                    poll.json()["error"],
                    json!("access_denied"),
                    "{}",
                    text(&poll)
                );
            }
            _ => panic!("{}", said()),
        }
        assert_ne!(poll.status, 200, "no tokens for a revoked consent");
    }
    eprintln!("approve racing DELETE: approval first {approved}, DELETE first {refused}");
}

#[test]
fn ad_5_cons_1_two_requests_on_one_consent_approved_at_once_give_one_grant_on_disk() {
    two_requests_one_grant(&Ciba::new("one-grant"), 10);
}

#[test]
fn ad_5_cons_1_two_requests_on_one_consent_approved_at_once_give_one_grant_in_memory() {
    two_requests_one_grant(&Ciba::with(Server::bundle(ciba_variables())), 10);
}

#[test]
fn ad_5_cons_1_an_approval_racing_the_consent_s_delete_answers_what_happened_on_disk() {
    approve_racing_delete(&Ciba::new("one-grant-delete"), 10);
}

#[test]
fn ad_5_cons_1_an_approval_racing_the_consent_s_delete_answers_what_happened_in_memory() {
    approve_racing_delete(&Ciba::with(Server::bundle(ciba_variables())), 10);
}

#[test]
fn ad_5_cons_1_two_requests_on_one_consent_approved_at_once_give_one_grant_on_redis() {
    let redis = e2e::RedisServer::start();
    two_requests_one_grant(
        &Ciba::with(Server::bundle_on_redis(ciba_variables(), &redis)),
        10,
    );
}

#[test]
fn ad_5_cons_1_an_approval_racing_the_consent_s_delete_answers_what_happened_on_redis() {
    let redis = e2e::RedisServer::start();
    approve_racing_delete(
        &Ciba::with(Server::bundle_on_redis(ciba_variables(), &redis)),
        10,
    );
}
