//! Cancelling id_tokens by holder and time (issue 16 item 8; HINT-10, BR-CIBA 5.2.2-20):
//! nonsense `not_before` values are 400 and erase nothing; two first cancellations for one
//! holder racing keep the higher time, on the SQLite file and in memory.

use serde_json::{Value, json};

use e2e::Server;
use e2e::ciba::{Ciba, ciba_variables, text};

/// The longest id_token lifetime (`id_token_ttl`'s top): how far ahead `not_before` may be.
const LONGEST_LIFETIME: i64 = 157_680_000;

fn cancel(c: &Ciba, subject: &str, not_before: Value) -> e2e::Response {
    c.device(
        "POST",
        "/id-tokens/revoke",
        Some(&json!({ "subject": subject, "not_before": not_before })),
    )
}

/// The "not before" in force for `subject` (asking to move it to 1 moves nothing).
fn in_force(c: &Ciba, subject: &str) -> i64 {
    let response = cancel(c, subject, json!(1));
    assert_eq!(response.status, 200, "{}", text(&response));
    response.json()["not_before"].as_i64().unwrap()
}

#[test]
fn hint_10_a_nonsense_not_before_is_400_and_erases_no_cancellation() {
    let c = Ciba::new("cancel-bounds");
    let now = c.now();
    let earlier = now - 100;
    assert_eq!(cancel(&c, "holder-1", json!(earlier)).status, 200);
    let rows = c.server.store_rows();
    for value in [
        json!(i64::MAX),
        json!(u64::MAX),
        json!(9_000_000_000_000_000_000u64),
        json!(1e300),
        json!(-1),
        json!(0),
        json!(i64::MIN),
        json!(1.5),
        json!(now + LONGEST_LIFETIME + 3600),
        json!("9999-12-31T23:59:59Z"),
        json!("1969-12-31T23:59:59Z"),
        json!("2026-13-01T00:00:00Z"),
        json!("+275760-09-13T00:00:00Z"),
        json!(true),
        json!(null),
    ] {
        let response = cancel(&c, "holder-1", value.clone());
        assert_eq!(response.status, 400, "{value}: {}", text(&response));
        assert_eq!(
            response.json()["error"],
            json!("invalid_request"),
            "{value}"
        );
    }
    assert_eq!(
        c.server.store_rows(),
        rows,
        "a refused cancellation wrote something"
    );
    assert_eq!(in_force(&c, "holder-1"), earlier, "the cancellation stands");
    // Within range, it rises.
    let later = now + 60;
    assert_eq!(cancel(&c, "holder-1", json!(later)).status, 200);
    assert_eq!(in_force(&c, "holder-1"), later);
}

fn first_cancellations_race(c: &Ciba, trials: usize) {
    let now = c.now();
    let (low, high) = (now - 1000, now - 10);
    for trial in 0..trials {
        let subject = format!("race-holder-{trial}");
        let order = if trial % 2 == 0 {
            [low, high]
        } else {
            [high, low]
        };
        let barrier = std::sync::Barrier::new(2);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = order
                .iter()
                .map(|value| {
                    let (barrier, subject) = (&barrier, &subject);
                    s.spawn(move || {
                        barrier.wait();
                        cancel(c, subject, json!(value)).status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(statuses, [200, 200], "trial {trial}");
        assert_eq!(
            in_force(c, &subject),
            high,
            "trial {trial}: the higher must stay"
        );
    }
}

#[test]
fn hint_10_two_first_cancellations_racing_keep_the_higher_on_disk() {
    first_cancellations_race(&Ciba::new("cancel-race"), 50);
}

#[test]
fn hint_10_two_first_cancellations_racing_keep_the_higher_in_memory() {
    first_cancellations_race(&Ciba::with(Server::bundle(ciba_variables())), 50);
}
