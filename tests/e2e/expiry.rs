//! Expiry (issue 9, part 4): the store does not grow with traffic. N complete flows of every
//! kind (granted and refreshed, denied, abandoned, AD-generated and AS-generated hints, an
//! id_token cancellation), then the components' clock moved a day, then twelve years, with
//! the sweep triggered each time by ordinary `client_credentials` requests (their turns,
//! README "Expiry and store size"): after a day only the consents, their refresh tokens and the
//! cancellation remain; after twelve years only one holder's handful of keys.
//!
//! `EXPIRY_FLOWS=1000 cargo test -p e2e --test e2e expiry -- --nocapture` runs it with more
//! flows (200 by default) and prints the store's size at each stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use ciba::store::keys;
use e2e::Server;
use e2e::ciba::{
    AD_GENERATED, AS_GENERATED, Ciba, HOLDER_1_CPF, LOA2, assert_oauth_error, ciba_variables, text,
};

/// One key of the store, as the host's SQLite file holds it.
struct Row {
    key: String,
    bytes: usize,
}

fn rows(db: &Path) -> Vec<Row> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT key, length(key) + length(value) FROM spin_key_value")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            key: r.get(0)?,
            bytes: r.get::<_, i64>(1)? as usize,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The shape of a key: its first segment (`jti`, `auth_req`, `purge:req`, …).
fn shape(key: &str) -> String {
    let mut parts = key.split(':');
    let first = parts.next().unwrap_or_default();
    match first {
        "purge" | "rate" | "pending" => format!("{first}:{}", parts.next().unwrap_or_default()),
        _ => first.to_string(),
    }
}

/// Keys, bytes and keys per shape, printed for the README.
fn report(stage: &str, rows: &[Row]) -> BTreeMap<String, usize> {
    let mut by_shape = BTreeMap::new();
    for row in rows {
        *by_shape.entry(shape(&row.key)).or_insert(0) += 1;
    }
    let bytes: usize = rows.iter().map(|r| r.bytes).sum();
    println!("{stage}: {} keys, {bytes} bytes; {by_shape:?}", rows.len());
    by_shape
}

/// The keys whose time has passed at `now`, and the records of the tags among them.
fn expired(rows: &[Row], now: i64) -> Vec<String> {
    let all: std::collections::HashSet<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let mut out = Vec::new();
    for row in rows {
        if keys::forget_after(&row.key).is_some_and(|t| t <= now) {
            out.push(row.key.clone());
            out.extend(
                keys::tagged(&row.key)
                    .into_iter()
                    .filter(|k| all.contains(k.as_str())),
            );
        }
    }
    out
}

/// One `client_credentials` request (a turn at the purge), timed in milliseconds (client
/// side: its assertion's signature included).
fn timed_turn(c: &Ciba) -> f64 {
    let start = std::time::Instant::now();
    assert!(!c.consents_token("tpp-1").is_empty());
    start.elapsed().as_secs_f64() * 1000.0
}

/// `median / slowest` of `took`.
fn spread(took: &mut [f64]) -> String {
    took.sort_by(f64::total_cmp);
    format!(
        "median {:.1} ms, slowest {:.1} ms",
        took[took.len() / 2],
        took[took.len() - 1]
    )
}

/// Sends `client_credentials` requests (each takes a turn at the purge) until no key whose
/// time has passed is left; how many it took. Prints their times, then those of one more
/// cycle of [`ciba::store::purge::SWEEP_EVERY`] turns, one of which sweeps a clean store.
fn sweep_by_traffic(c: &Ciba, db: &Path) -> usize {
    let mut took = Vec::new();
    for sent in 1..=2_000 {
        took.push(timed_turn(c));
        if expired(&rows(db), c.now()).is_empty() {
            let mut after: Vec<f64> = (0..ciba::store::purge::SWEEP_EVERY)
                .map(|_| timed_turn(c))
                .collect();
            println!(
                "  {sent} requests until nothing expired was left: {}; the next {}: {}",
                spread(&mut took),
                after.len(),
                spread(&mut after)
            );
            return sent + after.len();
        }
    }
    panic!("the sweeps did not catch up");
}

fn refresh(c: &Ciba, refresh_token: &str) -> e2e::Response {
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh_token}&{}",
        c.client_auth("tpp-1")
    );
    c.post("tpp-1", "/token", &body)
}

/// What the flows left that must outlive a day.
#[derive(Default)]
struct Left {
    consents: usize,
    refresh_tokens: Vec<String>,
    auth_req_ids: Vec<String>,
}

/// Flow `i`: one of six kinds, each to its end.
fn flow(c: &Ciba, i: usize, left: &mut Left) {
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    left.consents += 1;
    let mut claims = c.request_claims("tpp-1", &consent_id);
    match i % 6 {
        0 => {
            let issued = c.device("POST", "/hints", Some(&json!({ "subject": "holder-1" })));
            assert_eq!(issued.status, 201, "{}", text(&issued));
            let token = json!({ "format": AD_GENERATED, "id": issued.json()["id"] }).to_string();
            claims.insert("login_hint_token".into(), json!(token));
            claims.insert("binding_message".into(), json!("AD"));
        }
        1 => {
            claims.insert("login_hint_token".into(), json!(AS_GENERATED));
            claims.insert("binding_message".into(), json!("QR"));
        }
        _ => {
            claims.insert("login_hint".into(), json!(consent_id));
        }
    }
    let id = c.start("tpp-1", claims);
    left.auth_req_ids.push(id.clone());
    if i % 6 == 1 {
        let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &id), "cibabr+jwt");
        let claimed = c.device(
            "POST",
            "/claims",
            Some(&json!({ "login_hint_token": qr, "subject": "holder-1" })),
        );
        assert_eq!(claimed.status, 200, "{}", text(&claimed));
    }
    assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
    match i % 6 {
        // Abandoned: the holder never decides; the client polls once more, too soon.
        2 => assert_oauth_error(&c.poll("tpp-1", &id), 400, "slow_down"),
        3 => assert_eq!(c.deny(&id).status, 200),
        _ => {
            assert_eq!(c.approve(&id, LOA2).status, 200);
            let tokens = c.poll("tpp-1", &id);
            assert_eq!(tokens.status, 200, "{}", text(&tokens));
            let rt = tokens.json()["refresh_token"].as_str().unwrap().to_string();
            let refreshed = refresh(c, &rt);
            assert_eq!(refreshed.status, 200, "{}", text(&refreshed));
            if i == 0 {
                // HINT-10: a cancellation, by jti.
                let id_token = tokens.json()["id_token"].as_str().unwrap().to_string();
                let payload = id_token.split('.').nth(1).unwrap();
                let claims: Value = serde_json::from_slice(
                    &base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        payload,
                    )
                    .unwrap(),
                )
                .unwrap();
                let cancelled = c.device(
                    "POST",
                    "/id-tokens/revoke",
                    Some(&json!({ "jti": claims["jti"] })),
                );
                assert_eq!(cancelled.status, 200, "{}", text(&cancelled));
            }
            left.refresh_tokens.push(rt);
        }
    }
}

fn flows() -> usize {
    std::env::var("EXPIRY_FLOWS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200)
}

/// The shapes that may remain once a day has passed: what can still matter (the consents,
/// their refresh tokens, the cancellation, each with its tag), a holder's bounded keys, the
/// sweep's turn, and the tokens of the requests that triggered the sweeps.
const AFTER_A_DAY: [&str; 13] = [
    "consent",
    "purge:consent",
    "rt",
    "idt_cancelled",
    "purge:idt_cancelled",
    "holder_seq",
    "holder_req",
    "sweep_turn",
    "jti",
    "purge:jti",
    "at",
    "rate:bca",
    "rate:cc",
];

#[test]
fn expiry_the_store_keeps_only_what_can_still_matter_after_n_flows() {
    let n = flows();
    let dir: PathBuf = e2e::temp_dir("expiry");
    // The holder's list is a ring of max(16, holder_pending_limit) slots: a limit above the
    // flows' abandoned requests (a sixth of them, pending at once), not the lifted one.
    let holder_slots = 16 + n / 6;
    let mut vars = ciba_variables();
    vars.insert("holder_pending_limit", holder_slots.to_string());
    let c = Ciba::with(Server::bundle_in(vars, &dir));
    let db = dir.join("sqlite_key_value.db");
    let started = std::time::Instant::now();
    let mut left = Left::default();
    for i in 0..n {
        flow(&c, i, &mut left);
    }
    println!(
        "{n} flows in {:.1} s ({} granted)",
        started.elapsed().as_secs_f64(),
        left.refresh_tokens.len()
    );
    let after_flows = rows(&db);
    report(&format!("after {n} flows"), &after_flows);

    // A day later: every request, hint, access token and jti marker has passed its time.
    c.server.time.advance(86_400);
    let turns = sweep_by_traffic(&c, &db);
    let after_a_day = rows(&db);
    let shapes = report(&format!("a day later ({turns} requests)"), &after_a_day);
    for shape in shapes.keys() {
        assert!(
            AFTER_A_DAY.contains(&shape.as_str()),
            "{shape} keys outlived their time"
        );
    }
    assert_eq!(
        shapes["consent"], left.consents,
        "CONS-1: every consent stays"
    );
    assert_eq!(shapes["purge:consent"], left.consents);
    assert_eq!(shapes["rt"], left.refresh_tokens.len(), "TOK-19");
    assert!(
        shapes["holder_req"] <= holder_slots,
        "a ring of {holder_slots} slots"
    );
    // Only the sweeping requests' own tokens besides: a jti marker with its tag and an access
    // token each.
    assert!(shapes.get("jti").copied().unwrap_or(0) <= turns);
    assert!(shapes.get("purge:jti").copied().unwrap_or(0) <= turns);
    assert!(shapes.get("at").copied().unwrap_or(0) <= turns);
    assert!(
        after_a_day.len()
            <= 2 * left.consents + left.refresh_tokens.len() + 3 * turns + holder_slots + 10,
        "bounded by what can still matter"
    );
    // What was purged is gone for its readers; what stays still works.
    assert_oauth_error(
        &c.poll("tpp-1", &left.auth_req_ids[2]),
        400,
        "invalid_grant",
    );
    assert_eq!(refresh(&c, &left.refresh_tokens[0]).status, 200);

    // Twelve years later: the consents (kept a year past the longest, ten-year window) and
    // the refresh tokens have gone too; what stays is per holder, not per flow.
    c.server.time.advance(12 * 366 * 86_400);
    let turns = sweep_by_traffic(&c, &db);
    let after_years = rows(&db);
    let shapes = report(
        &format!("twelve years later ({turns} requests)"),
        &after_years,
    );
    let per_holder = ["holder_seq", "holder_req", "idt_not_before", "sweep_turn"];
    for (shape, count) in &shapes {
        assert!(
            per_holder.contains(&shape.as_str()) || *count <= turns,
            "{count} {shape} keys outlived their time"
        );
    }
    assert!(
        after_years.len() <= holder_slots + 6 + 3 * turns,
        "{}",
        after_years.len()
    );
    assert_oauth_error(&refresh(&c, &left.refresh_tokens[0]), 400, "invalid_grant");
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}
