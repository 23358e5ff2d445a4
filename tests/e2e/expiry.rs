//! Expiry (issue 9, part 4; issue 16, item 5): the store does not grow with traffic. N complete
//! flows of every kind (granted and refreshed, denied, abandoned, AD-generated and AS-generated
//! hints, an id_token cancellation), then the components' clock moved a day, a hundred days,
//! then twelve years, with the sweep triggered each time by ordinary `client_credentials`
//! requests (their turns, README "Expiry and store size"): after a day only the consents, their
//! refresh tokens and the cancellation remain; after a hundred days only the consents that were
//! authorised (CONS-1: the others are kept their window plus the audit period); after twelve
//! years only one holder's handful of keys.
//!
//! `EXPIRY_FLOWS=1000 cargo test -p e2e --test e2e expiry -- --nocapture` runs it with more
//! flows (200 by default) and prints the store's size at each stage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use ciba::consent::{AUDIT_PERIOD, AUTHORISATION_WINDOW};
use ciba::store::{keys, purge};
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

/// The bucket end in the name of a key of the purge index (`purge_n:<end>`,
/// `purge_at:<end>:<n>`).
fn index_bucket(key: &str) -> Option<i64> {
    let rest = key
        .strip_prefix("purge_n:")
        .or_else(|| key.strip_prefix("purge_at:"))?;
    rest.split(':').next()?.parse().ok()
}

/// What the sweep owes at `now`: the index's buckets whose end is [`purge::GRACE`] behind, and
/// every key named with a time that such a bucket covers (each was announced in the bucket
/// that ends after its time: one left behind was never announced).
fn expired(rows: &[Row], now: i64) -> Vec<String> {
    let due = |bucket: i64| bucket + purge::GRACE <= now;
    rows.iter()
        .filter(|row| {
            index_bucket(&row.key).is_some_and(due)
                || keys::forget_after(&row.key)
                    .and_then(keys::purge_bucket)
                    .is_some_and(due)
        })
        .map(|row| row.key.clone())
        .collect()
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
/// cycle of [`purge::SWEEP_EVERY`] turns, one of which sweeps a clean store.
fn sweep_by_traffic(c: &Ciba, db: &Path) -> usize {
    let mut took = Vec::new();
    for sent in 1..=2_000 {
        took.push(timed_turn(c));
        if expired(&rows(db), c.now()).is_empty() {
            let mut after: Vec<f64> = (0..purge::SWEEP_EVERY).map(|_| timed_turn(c)).collect();
            println!(
                "  {sent} requests until nothing expired was left: {}; the next {}: {}",
                spread(&mut took),
                after.len(),
                spread(&mut after)
            );
            return sent + after.len();
        }
    }
    let left = expired(&rows(db), c.now());
    panic!(
        "the sweeps did not catch up: {} keys, e.g. {:?}",
        left.len(),
        left.iter()
            .map(|k| shape(k))
            .collect::<std::collections::BTreeSet<_>>()
    );
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
/// their refresh tokens, the cancellation, each announced in the purge index), a holder's
/// bounded keys, the sweep's turn and cursor, the tokens of the requests that triggered the
/// sweeps, and the rate counters of those requests (their minute has not ended).
const AFTER_A_DAY: [&str; 13] = [
    "consent",
    "rt",
    "idt_cancelled",
    "holder_seq",
    "holder_req",
    "sweep_turn",
    "purge_cursor",
    "purge_n",
    "purge_at",
    "jti",
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
        "CONS-1: every consent stays through its audit period"
    );
    assert_eq!(shapes["rt"], left.refresh_tokens.len(), "TOK-19");
    assert!(
        shapes["holder_req"] <= holder_slots,
        "a ring of {holder_slots} slots"
    );
    // Only the sweeping requests' own tokens besides: a jti marker and an access token each,
    // each with its entry in the index.
    assert!(shapes.get("jti").copied().unwrap_or(0) <= turns);
    assert!(shapes.get("at").copied().unwrap_or(0) <= turns);
    let live = left.consents + left.refresh_tokens.len() + 1;
    // The sweeping traffic's own per-minute counters, each announced once.
    let rate_counters: usize = shapes
        .iter()
        .filter(|(shape, _)| shape.starts_with("rate:"))
        .map(|(_, n)| *n)
        .sum();
    assert!(
        shapes["purge_at"] <= live + 2 * turns + rate_counters,
        "one entry per live key"
    );
    assert!(
        after_a_day.len() <= 2 * live + 4 * turns + holder_slots + 64,
        "bounded by what can still matter"
    );
    // What was purged is gone for its readers; what stays still works.
    assert_oauth_error(
        &c.poll("tpp-1", &left.auth_req_ids[2]),
        400,
        "invalid_grant",
    );
    assert_eq!(refresh(&c, &left.refresh_tokens[0]).status, 200);

    // Past the audit period: the consents never authorised (abandoned, denied) have gone;
    // those that were authorised stay, with their refresh tokens (CONS-1).
    c.server.time.advance(100 * 86_400);
    let turns = sweep_by_traffic(&c, &db);
    let after_100_days = rows(&db);
    let shapes = report(
        &format!("a hundred days later ({turns} requests)"),
        &after_100_days,
    );
    assert_eq!(
        shapes["consent"],
        left.refresh_tokens.len(),
        "CONS-1: only the authorised consents stay"
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
    let per_holder = [
        "holder_seq",
        "holder_req",
        "idt_not_before",
        "sweep_turn",
        "purge_cursor",
    ];
    // The sweeping traffic's own keys: a jti marker and an access token a request, each with
    // its entry in the index, and the entries of its per-minute counters.
    let rate_counters: usize = shapes
        .iter()
        .filter(|(shape, _)| shape.starts_with("rate:"))
        .map(|(_, n)| *n)
        .sum();
    for (shape, count) in &shapes {
        assert!(
            per_holder.contains(&shape.as_str()) || *count <= 2 * turns + rate_counters,
            "{count} {shape} keys outlived their time"
        );
    }
    assert!(
        after_years.len() <= holder_slots + 20 + 5 * turns,
        "{}",
        after_years.len()
    );
    assert_oauth_error(&refresh(&c, &left.refresh_tokens[0]), 400, "invalid_grant");
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

/// A consent's status as its client reads it, or the HTTP status when it cannot.
fn consent_status(c: &Ciba, consent_id: &str) -> Result<String, u16> {
    let token = c.consents_token("tpp-1");
    let read = c.consents("tpp-1", &token, "GET", consent_id, None);
    if read.status != 200 {
        return Err(read.status);
    }
    Ok(read.json()["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

#[test]
fn cons_1_a_consent_never_authorised_is_purged_after_its_window_and_the_audit_period() {
    let dir: PathBuf = e2e::temp_dir("consent-purge");
    let c = Ciba::with(Server::bundle_in(ciba_variables(), &dir));
    let db = dir.join("sqlite_key_value.db");
    let abandoned = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let revoked = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let token = c.consents_token("tpp-1");
    assert_eq!(
        c.consents("tpp-1", &token, "DELETE", &revoked, None).status,
        204
    );
    let (granted, _) = c.grant("tpp-1", HOLDER_1_CPF);
    let stored = |id: &str| rows(&db).iter().any(|r| r.key == keys::consent(id));

    // The audit period's last minute: the client still reads both as rejected.
    c.server
        .time
        .advance(AUTHORISATION_WINDOW + AUDIT_PERIOD - 60);
    assert_eq!(consent_status(&c, &abandoned).as_deref(), Ok("REJECTED"));
    assert_eq!(consent_status(&c, &revoked).as_deref(), Ok("REJECTED"));

    // Past it (and the index bucket's end): gone for their readers, and from the store once
    // the sweep came by; the authorised one stays.
    c.server
        .time
        .advance(60 + keys::PURGE_BUCKET + purge::GRACE);
    assert_eq!(consent_status(&c, &abandoned), Err(404));
    assert_eq!(consent_status(&c, &revoked), Err(404));
    assert_eq!(consent_status(&c, &granted).as_deref(), Ok("AUTHORISED"));
    c.server.faults.count();
    sweep_by_traffic(&c, &db);
    let calls = c.server.faults.ops();
    assert!(
        calls.len() > 2_000,
        "the first sweeping turn is among the calls seen"
    );
    assert!(
        !calls.contains(&ciba_host::kv::KvOp::ListKeys),
        "issue 16: no request lists the store's keys"
    );
    assert!(!stored(&abandoned), "purged");
    assert!(!stored(&revoked), "purged");
    assert!(
        stored(&granted),
        "an authorised consent keeps its retention"
    );
    assert_eq!(consent_status(&c, &granted).as_deref(), Ok("AUTHORISED"));
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

/// Puts `n` live access tokens (valid 30 days) straight into the SQLite file, as the host's
/// schema holds them, in one transaction; with `index`, each announced in the purge index as
/// this version does (spread over a thousand future buckets).
fn fill(db: &Path, n: usize, now: i64, index: bool) {
    fill_with(db, n, now, index, "", 86_400);
}

/// [`fill`] with a prefix for the tokens' hashes, and their time `ahead` of `now` (plus up to
/// 1,000 hours).
fn fill_with(db: &Path, n: usize, now: i64, index: bool, prefix: &str, ahead: i64) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut put = tx
            .prepare(
                "INSERT OR REPLACE INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
            )
            .unwrap();
        let value = json!({
            "v": 1,
            "exp": now + ahead.min(30 * 86_400),
            "marker": "AAAAAAAAAAAAAAAAAAAAAA",
            "data": { "client_id": "tpp-1", "scope": "consents", "cnf": keys::digest("cert") },
        })
        .to_string();
        let mut counts = BTreeMap::new();
        for i in 0..n {
            let spread = if ahead < 86_400 { 0 } else { (i % 1000) as i64 };
            let until = now + ahead + spread * keys::PURGE_BUCKET;
            let key = format!("at:{prefix}{}:{until}", keys::digest(&i.to_string()));
            put.execute(rusqlite::params![key, value.as_bytes()])
                .unwrap();
            if index {
                let bucket = keys::purge_bucket(until).unwrap();
                let count = counts.entry(bucket).or_insert(0i64);
                *count += 1;
                put.execute(rusqlite::params![
                    keys::purge_entry(bucket, *count),
                    key.as_bytes()
                ])
                .unwrap();
            }
        }
        for (bucket, count) in counts {
            put.execute(rusqlite::params![
                keys::purge_count(bucket),
                count.to_le_bytes().to_vec()
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Sets the sweep's turn counter, so that the next request sweeps (`SWEEP_EVERY - 1`) or not.
fn set_turn(db: &Path, turn: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    conn.execute(
        "INSERT OR REPLACE INTO spin_key_value (store, key, value) VALUES ('default', ?1, ?2)",
        rusqlite::params![keys::SWEEP_TURN, turn.to_le_bytes().to_vec()],
    )
    .unwrap();
}

/// The README's figures for the sweeping request (issue 16): its latency, and the store's
/// size, with `SWEEP_KEYS` live keys (10,000 by default) in the SQLite file as Spin opens it.
/// A measurement, not a check: run it with
/// `SWEEP_KEYS=1000000 cargo test --release -p e2e --test e2e expiry_sweep_cost -- --ignored --nocapture`;
/// `SWEEP_MANIFEST=<spin.toml>` runs another build (the README's "before" figures: the previous
/// version's components, with `SWEEP_INDEX=0`, since it wrote no index).
#[test]
#[ignore = "a measurement for the README, minutes with a million keys"]
fn expiry_sweep_cost_with_many_live_keys() {
    let var = |name: &str| std::env::var(name).ok();
    let n: usize = var("SWEEP_KEYS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let samples: usize = var("SWEEP_SAMPLES")
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let index = var("SWEEP_INDEX").as_deref() != Some("0");
    let manifest = var("SWEEP_MANIFEST").map_or_else(e2e::bundle_manifest, PathBuf::from);
    let dir: PathBuf = e2e::temp_dir("sweep-cost");
    let server =
        Server::try_start(&manifest, ciba_variables(), e2e::Store::Dir(dir.clone())).unwrap();
    let c = Ciba::with(server);
    let db = dir.join("sqlite_key_value.db");
    timed_turn(&c);
    let started = std::time::Instant::now();
    fill(&db, n, c.now(), index);
    let filled = started.elapsed().as_secs_f64();
    let all = rows(&db);
    let bytes: usize = all.iter().map(|r| r.bytes).sum();
    let file = std::fs::metadata(&db).unwrap().len();
    // One sweep first (a first sweep sets the cursor up), then the samples.
    set_turn(&db, purge::SWEEP_EVERY - 1);
    timed_turn(&c);
    let mut sweeping = Vec::new();
    let mut other = Vec::new();
    for _ in 0..samples {
        set_turn(&db, purge::SWEEP_EVERY - 1);
        sweeping.push(timed_turn(&c));
        set_turn(&db, 0);
        other.push(timed_turn(&c));
    }
    let median = |took: &mut Vec<f64>| {
        took.sort_by(f64::total_cmp);
        took[took.len() / 2]
    };
    let (sweep_ms, other_ms) = (median(&mut sweeping), median(&mut other));
    // SWEEP_EXPIRED=k: k more tokens that expire at once, then the sweeps that work them off.
    let expired: usize = var("SWEEP_EXPIRED")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if expired > 0 {
        // `~` is no base64url character: these keys are told apart from the live ones.
        fill_with(&db, expired, c.now(), index, "~", 10);
        c.server.time.advance(2 * keys::PURGE_BUCKET + purge::GRACE);
        let left = || -> i64 {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.query_row(
                "SELECT COUNT(*) FROM spin_key_value WHERE key GLOB 'at:~*'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        let mut took = Vec::new();
        while left() > 0 && took.len() < 1_000 {
            set_turn(&db, purge::SWEEP_EVERY - 1);
            took.push(timed_turn(&c));
        }
        println!(
            "{expired} expired tokens: {} sweeping requests to drop them, each (ms): {:.1?}; {}",
            took.len(),
            took,
            spread(&mut took.clone())
        );
    }
    println!(
        "{n} live keys (index {index}, filled in {filled:.1} s): {} keys, {bytes} bytes of keys and values, file {file} bytes; \
         client_credentials, median of {samples}: sweeping {sweep_ms:.1} ms, not sweeping {other_ms:.1} ms (ratio {:.2})",
        all.len(),
        sweep_ms / other_ms
    );
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}
