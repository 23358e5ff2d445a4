//! The concurrency soak (issue 9, part 1), short: `ciba-soak`'s own trials
//! (`ciba_bench::soak`, README "Concurrency (soak)") against the in-process host, on the
//! in-memory store and on the SQLite file the host keeps with `--state-dir`, as `tpp-1` with
//! its certificate. Every trial races 20 requests for one single-use thing; the soak fails on
//! any double win, lost win, 5xx or answer the protocol does not allow.
//!
//! The slow-down trials' interval probe waits up to 100 s of real time, so here it runs on the
//! components' clock instead ([`tok_7_overlapping_polls_raise_the_interval_no_more_than_their_slow_downs_said`]).

use std::time::Duration;

use ciba_bench::flow::{Bench, Client};
use ciba_bench::load::Target;
use ciba_bench::soak::{self, Kind, Options, Report};
use e2e::Server;
use e2e::ciba::{
    CERT_HEADER, Ciba, DEVICE_TOKEN, HOLDER_1_CPF, assert_oauth_error, ciba_variables,
};
use http::HeaderName;

/// `tpp-1`, `holder-1` and the device token of the fixture, as the soak's registrations.
fn registrations(c: &Ciba) -> Bench {
    let (key, kid) = Ciba::key("tpp-1");
    Bench {
        target: Target::parse(&c.server.base).unwrap(),
        client: Client {
            id: "tpp-1".into(),
            key: key.clone(),
            kid: kid.into(),
            cert: Some((HeaderName::from_static(CERT_HEADER), c.cert.clone())),
        },
        subject: "holder-1".into(),
        cpf: HOLDER_1_CPF.into(),
        device_token: DEVICE_TOKEN.into(),
        device_cert: Some((
            HeaderName::from_static(CERT_HEADER),
            e2e::device_certificate().0.clone(),
        )),
        issuer: String::new(),
        token_endpoint: String::new(),
        concurrency: 1,
    }
}

fn soak(c: &Ciba, trials: usize) -> Report {
    soak_on(c, trials, Vec::new())
}

/// The soak with its calls spread over `c` and the instances `also` (`host:port`).
fn soak_on(c: &Ciba, trials: usize, also: Vec<String>) -> Report {
    let options = Options {
        trials,
        burst: 20,
        parallel: 4,
        scenarios: Kind::ALL.to_vec(),
        time_limit: Duration::from_secs(300),
        probe_every: 0,
        also,
    };
    let report = soak::run_blocking(registrations(c), &options).unwrap();
    eprintln!("{}", soak::table(&report));
    report
}

fn assert_every_trial_held(report: &Report, trials: usize) {
    assert!(report.passed(), "{}", soak::table(report));
    assert_eq!(report.scenarios.len(), Kind::ALL.len());
    for s in &report.scenarios {
        assert_eq!(
            (s.trials, s.successes, s.violations, s.errors),
            (trials, trials, 0, 0),
            "{}",
            s.kind.name()
        );
        assert_eq!(s.requests, trials * 20, "{}", s.kind.name());
    }
}

#[test]
fn tok_10_bca_11_cli_6_hint_13_hint_15_ad_4_tok_7_exactly_once_under_concurrency_in_memory() {
    let c = Ciba::with(Server::bundle(ciba_variables()));
    assert_every_trial_held(&soak(&c, 20), 20);
}

#[test]
fn tok_10_bca_11_cli_6_hint_13_hint_15_ad_4_tok_7_exactly_once_under_concurrency_on_disk() {
    // The SQLite file in WAL mode, as `ciba-host dev` and `up --state-dir` keep it.
    let c = Ciba::new("soak-on-disk");
    assert_every_trial_held(&soak(&c, 10), 10);
}

#[test]
fn tok_10_bca_11_cli_6_hint_13_hint_15_ad_4_tok_7_exactly_once_under_concurrency_on_redis() {
    let redis = e2e::RedisServer::start();
    let c = Ciba::with(Server::bundle_on_redis(ciba_variables(), &redis));
    assert_every_trial_held(&soak(&c, 10), 10);
}

/// Issue 18 item 3: the soak against two `ciba-host` processes on one Redis, each trial's
/// calls in turn on both and every burst's racers alternating between them.
#[test]
fn tok_10_bca_11_cli_6_hint_13_hint_15_ad_4_tok_7_exactly_once_on_two_hosts_on_one_redis() {
    let redis = e2e::RedisServer::start();
    let (a, b) = crate::redis::two_hosts(&redis);
    let other = b.server.base.trim_start_matches("http://").to_string();
    let report = soak_on(&a, 10, vec![other.clone()]);
    assert!(report.base.contains(&other), "{}", report.base);
    assert_every_trial_held(&report, 10);
}

/// TOK-7/12: 20 polls of a pending request at once get only `authorization_pending` and
/// `slow_down`; a client that then waits the interval those answers imply (the base interval
/// plus 5 s per `slow_down`) is answered `authorization_pending`: polls that overlapped at the
/// store raised nothing they did not answer.
#[test]
fn tok_7_overlapping_polls_raise_the_interval_no_more_than_their_slow_downs_said() {
    let c = Ciba::new("soak-slow-down");
    for _ in 0..3 {
        let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
        let id = c.start_with_login_hint("tpp-1", &consent_id);
        let answers = crate::ciba_grant::concurrent_polls(&c, &id, 20);
        let count = |e: &str| answers.iter().filter(|(s, x)| *s == 400 && x == e).count();
        let (pending, slow) = (count("authorization_pending"), count("slow_down"));
        assert_eq!(pending + slow, 20, "{answers:?}");
        c.server.time.advance(5 + 5 * slow as i64 + 1);
        assert_oauth_error(&c.poll("tpp-1", &id), 400, "authorization_pending");
        assert_eq!(c.deny(&id).status, 200);
    }
}
