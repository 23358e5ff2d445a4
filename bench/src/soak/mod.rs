//! `ciba-soak`: bounded concurrency trials of every step the bundle must do at most once
//! (issue 9, part 1), against any base URL with the registrations it is given.
//!
//! Each trial sets up its own request (consent, backchannel request, hint, QR token, …),
//! then fires one burst of concurrent requests that race for the same single-use thing and
//! counts who won. A trial *holds* when exactly one racer won and every other got the
//! protocol's refusal; it is a *violation* when two or more won (a double issuance), none
//! won, or any answer was a 5xx or not one the protocol allows; it is an *error* when it
//! could not be set up or a racer's connection failed (the trial proves nothing). Trials of
//! a scenario run `parallel` at a time, each with its own connections; every request a trial
//! leaves pending is denied at its end, so a soak does not pile up pending requests.

mod pool;
mod trials;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::flow::{Bench, Registrations};

pub use trials::Soak;

/// The races, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// (a) The device approves, then `burst` CIBA polls race for the tokens (TOK-10).
    PollAfterApproval,
    /// (b) `burst` backchannel requests with one request object, each with its own client
    /// assertion: one `jti` (BCA-11).
    RequestObjectJti,
    /// (c) `burst` token requests with one client assertion (CLI-6).
    ClientAssertionJti,
    /// (d) `burst` device claims of one AS-generated `login_hint_token` (HINT-15, AD-8).
    QrClaim,
    /// (e) `burst` backchannel requests naming one AD-generated hint id (HINT-13).
    AdGeneratedHint,
    /// (f) Approvals and denials of one request at once: one decision wins, and the poll
    /// and the consent follow it (AD-4, AD-6, TOK-8/10).
    ApproveVsDeny,
    /// (g) `burst` polls of a pending request: `authorization_pending` or `slow_down` only,
    /// and the interval raised only as the answers said (TOK-6/7/12).
    SlowDown,
    /// (h) Two requests on one consent, approved at once: one grant (AD-5, CONS-1).
    OneConsentTwoRequests,
    /// (i) Approvals of one request racing the client's `DELETE` of its consent: the
    /// approval answers what happened (AD-5, CONS-1).
    ApproveVsConsentDelete,
}

impl Kind {
    /// Every scenario, in order.
    pub const ALL: [Kind; 9] = [
        Kind::PollAfterApproval,
        Kind::RequestObjectJti,
        Kind::ClientAssertionJti,
        Kind::QrClaim,
        Kind::AdGeneratedHint,
        Kind::ApproveVsDeny,
        Kind::SlowDown,
        Kind::OneConsentTwoRequests,
        Kind::ApproveVsConsentDelete,
    ];

    /// Its name on the command line and in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::PollAfterApproval => "poll-after-approval",
            Kind::RequestObjectJti => "request-object-jti",
            Kind::ClientAssertionJti => "client-assertion-jti",
            Kind::QrClaim => "qr-login-hint-token",
            Kind::AdGeneratedHint => "ad-generated-hint",
            Kind::ApproveVsDeny => "approve-vs-deny",
            Kind::SlowDown => "slow-down",
            Kind::OneConsentTwoRequests => "one-consent-two-requests",
            Kind::ApproveVsConsentDelete => "approve-vs-consent-delete",
        }
    }

    /// What one trial does, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::PollAfterApproval => {
                "approve, then concurrent CIBA polls: one 200 with tokens, the rest invalid_grant; the token works at userinfo"
            }
            Kind::RequestObjectJti => {
                "one request object (one jti) in concurrent bc-authorize calls: one 200, the rest invalid_request"
            }
            Kind::ClientAssertionJti => {
                "one client assertion (one jti) in concurrent client_credentials requests: one 200, the rest invalid_client"
            }
            Kind::QrClaim => {
                "one as-generated login_hint_token in concurrent POST /device/claims: one 200, the rest 409"
            }
            Kind::AdGeneratedHint => {
                "one ad-generated hint id in concurrent bc-authorize calls: one 200, the rest expired_login_hint_token"
            }
            Kind::ApproveVsDeny => {
                "concurrent approvals and denials of one request: one 200, the rest 409; the poll and the consent follow the winner"
            }
            Kind::SlowDown => {
                "concurrent polls of a pending request: only authorization_pending or slow_down; a poll after the interval the answers imply is pending"
            }
            Kind::OneConsentTwoRequests => {
                "two requests on one consent, concurrent approvals of both: one 200, the rest 403 access_denied or 409; only the winner's poll gets tokens; the consent is AUTHORISED"
            }
            Kind::ApproveVsConsentDelete => {
                "concurrent approvals of one request and the client's DELETE of its consent: at most one 200, and only if the consent was authorised before it was revoked; no tokens"
            }
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// How much to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Trials per scenario.
    pub trials: usize,
    /// Concurrent requests per race.
    pub burst: usize,
    /// Trials in flight at once.
    pub parallel: usize,
    /// The scenarios to run.
    pub scenarios: Vec<Kind>,
    /// No trial starts after this much time (the run then counts as incomplete).
    pub time_limit: Duration,
    /// In (g), probe the interval on one trial in this many (0: never): those trials wait
    /// out the interval their answers imply, up to 5 s per `slow_down`.
    pub probe_every: usize,
    /// More servers sharing the first's store (`--base` given again: replicas on one Redis),
    /// as `host:port`: every trial spreads its calls over all of them, the sequential ones in
    /// turn and a burst's racers alternately, so a poll lands on another instance than the
    /// approval.
    pub also: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            trials: 100,
            burst: 20,
            parallel: 4,
            scenarios: Kind::ALL.to_vec(),
            time_limit: Duration::from_secs(3600),
            probe_every: 10,
            also: Vec::new(),
        }
    }
}

/// What one trial showed.
#[derive(Debug)]
pub enum Verdict {
    /// Exactly once, every answer as the protocol says.
    Held,
    /// The exactly-once rule, or another rule of the race, broke.
    Violated {
        /// More than one racer won.
        double: bool,
        /// What was seen (statuses and error codes, never a token).
        what: String,
    },
}

/// The figures of one scenario.
#[derive(Debug, Clone)]
pub struct ScenarioReport {
    /// The scenario.
    pub kind: Kind,
    /// Trials run.
    pub trials: usize,
    /// Trials that held.
    pub successes: usize,
    /// Trials where more than one racer won.
    pub double: usize,
    /// Trials that broke a rule (double wins included).
    pub violations: usize,
    /// Trials that could not be set up or lost a connection.
    pub errors: usize,
    /// Requests sent in the races.
    pub requests: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Answer counts and other tallies.
    pub counters: BTreeMap<String, u64>,
    /// The first few violations.
    pub first_violations: Vec<String>,
    /// The first few errors.
    pub first_errors: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The server.
    pub base: String,
    /// When it ran (RFC 3339).
    pub date: String,
    /// Trials asked for per scenario.
    pub trials: usize,
    /// Racers per trial.
    pub burst: usize,
    /// Trials in flight at once.
    pub parallel: usize,
    /// One per scenario run.
    pub scenarios: Vec<ScenarioReport>,
    /// Set when the time limit stopped the run.
    pub stopped: Option<String>,
}

impl Report {
    /// Violations in all scenarios.
    pub fn violations(&self) -> usize {
        self.scenarios.iter().map(|s| s.violations).sum()
    }

    /// Errors in all scenarios.
    pub fn errors(&self) -> usize {
        self.scenarios.iter().map(|s| s.errors).sum()
    }

    /// Every trial asked for ran and held.
    pub fn passed(&self) -> bool {
        self.stopped.is_none()
            && self
                .scenarios
                .iter()
                .all(|s| s.successes == self.trials && s.trials == self.trials)
    }
}

const KEEP: usize = 5;

/// Runs every scenario of `options` against `bench`'s server, one after the other.
pub async fn run(bench: Bench, options: &Options) -> anyhow::Result<Report> {
    anyhow::ensure!(options.burst >= 2, "a race needs at least 2 racers");
    let soak = Arc::new(Soak::new(bench, options.burst, &options.also));
    let started = Instant::now();
    let mut report = Report {
        base: soak.base(),
        date: crate::report::rfc3339(crate::flow::unix_now()?),
        trials: options.trials,
        burst: options.burst,
        parallel: options.parallel,
        scenarios: Vec::new(),
        stopped: None,
    };
    for &kind in &options.scenarios {
        eprintln!("{}: {} trials", kind.name(), options.trials);
        let s = scenario(&soak, kind, options, started).await?;
        eprintln!(
            "{}: {} held, {} violations ({} double), {} errors in {:.1} s",
            kind.name(),
            s.successes,
            s.violations,
            s.double,
            s.errors,
            s.elapsed.as_secs_f64()
        );
        let short = s.trials < options.trials;
        report.scenarios.push(s);
        if short {
            report.stopped = Some(format!(
                "the time limit ({} s) stopped the run",
                options.time_limit.as_secs()
            ));
            break;
        }
    }
    Ok(report)
}

/// A scenario's figures, shared by its workers.
pub struct Tallies {
    report: Mutex<ScenarioReport>,
}

impl Tallies {
    /// Adds `n` to the counter `name`.
    pub fn count(&self, name: &str, n: u64) {
        if let Ok(mut r) = self.report.lock() {
            *r.counters.entry(name.to_string()).or_default() += n;
        }
    }

    fn record(&self, i: usize, verdict: anyhow::Result<Verdict>) {
        let Ok(mut r) = self.report.lock() else {
            return;
        };
        r.trials += 1;
        match verdict {
            Ok(Verdict::Held) => r.successes += 1,
            Ok(Verdict::Violated { double, what }) => {
                r.violations += 1;
                r.double += usize::from(double);
                if r.first_violations.len() < KEEP {
                    r.first_violations.push(format!("trial {i}: {what}"));
                }
            }
            Err(e) => {
                r.errors += 1;
                if r.first_errors.len() < KEEP {
                    r.first_errors.push(format!("trial {i}: {e:#}"));
                }
            }
        }
    }
}

async fn scenario(
    soak: &Arc<Soak>,
    kind: Kind,
    options: &Options,
    started: Instant,
) -> anyhow::Result<ScenarioReport> {
    let tallies = Arc::new(Tallies {
        report: Mutex::new(ScenarioReport {
            kind,
            trials: 0,
            successes: 0,
            double: 0,
            violations: 0,
            errors: 0,
            requests: 0,
            elapsed: Duration::ZERO,
            counters: BTreeMap::new(),
            first_violations: Vec::new(),
            first_errors: Vec::new(),
        }),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.parallel.max(1) {
        let (soak, tallies, next) = (soak.clone(), tallies.clone(), next.clone());
        let (trials, limit, probe_every) =
            (options.trials, options.time_limit, options.probe_every);
        workers.spawn(async move {
            let mut pool = pool::Pool::new(&soak.authorities());
            let mut later = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= trials || started.elapsed() >= limit {
                    break;
                }
                let probe = kind == Kind::SlowDown && probe_every > 0 && i % probe_every == 0;
                match soak.trial(kind, &mut pool, &tallies, probe).await {
                    trials::Outcome::Now(verdict) => tallies.record(i, verdict),
                    trials::Outcome::Later(task) => later.push((i, task)),
                }
            }
            for (i, task) in later {
                let verdict = task.await.unwrap_or_else(|e| Err(e.into()));
                tallies.record(i, verdict);
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.context("a soak worker panicked")?;
    }
    let mut report = tallies
        .report
        .lock()
        .map_err(|_| anyhow::anyhow!("a soak worker panicked"))?
        .clone();
    report.requests = report.counters.get("racing requests").copied().unwrap_or(0) as usize;
    report.elapsed = t0.elapsed();
    Ok(report)
}

/// The text table.
pub fn table(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "ciba-soak against {} ({}), {} trials per scenario, {} racers each, {} trials at once\n\n",
        report.base, report.date, report.trials, report.burst, report.parallel
    );
    let _ = writeln!(
        out,
        "{:<22} {:>7} {:>10} {:>7} {:>11} {:>7} {:>9} {:>8}",
        "scenario", "trials", "successes", "double", "violations", "errors", "requests", "seconds"
    );
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>10} {:>7} {:>11} {:>7} {:>9} {:>8.1}",
            s.kind.name(),
            s.trials,
            s.successes,
            s.double,
            s.violations,
            s.errors,
            s.requests,
            s.elapsed.as_secs_f64()
        );
    }
    out.push('\n');
    for s in &report.scenarios {
        let counters: Vec<String> = s
            .counters
            .iter()
            .filter(|(k, _)| k.as_str() != "racing requests")
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !counters.is_empty() {
            let _ = writeln!(out, "{}: {}", s.kind.name(), counters.join(", "));
        }
        for v in &s.first_violations {
            let _ = writeln!(out, "{} VIOLATION {v}", s.kind.name());
        }
        for e in &s.first_errors {
            let _ = writeln!(out, "{} error {e}", s.kind.name());
        }
    }
    if report
        .scenarios
        .iter()
        .flat_map(|s| &s.first_errors)
        .any(|e| e.contains("answered 429"))
    {
        let _ = writeln!(
            out,
            "The abuse limits refused requests: run the soak against a bundle with \
             client_rate_limit, client_pending_limit, holder_rate_limit, holder_pending_limit, \
             consent_rate_limit and client_credentials_rate_limit raised (ciba-host dev raises \
             them unless given; spin.toml ships production values)."
        );
    }
    if let Some(why) = &report.stopped {
        let _ = writeln!(out, "INCOMPLETE: {why}");
    }
    let _ = write!(
        out,
        "{}",
        if report.violations() > 0 {
            "FAILED: rules broke under concurrency"
        } else if report.passed() {
            "PASSED: exactly once, every trial"
        } else {
            "INCONCLUSIVE: some trials did not run or could not be judged"
        }
    );
    out
}

/// The same figures as JSON.
pub fn json(report: &Report) -> Value {
    json!({
        "tool": "ciba-soak",
        "base": report.base,
        "date": report.date,
        "trials": report.trials,
        "burst": report.burst,
        "parallel": report.parallel,
        "stopped": report.stopped,
        "passed": report.passed(),
        "violations": report.violations(),
        "errors": report.errors(),
        "scenarios": report.scenarios.iter().map(|s| json!({
            "name": s.kind.name(),
            "what": s.kind.describe(),
            "trials": s.trials,
            "successes": s.successes,
            "double_wins": s.double,
            "violations": s.violations,
            "errors": s.errors,
            "requests": s.requests,
            "seconds": (s.elapsed.as_secs_f64() * 10.0).round() / 10.0,
            "counters": s.counters,
            "first_violations": s.first_violations,
            "first_errors": s.first_errors,
        })).collect::<Vec<_>>(),
    })
}

const HELP: &str = "ciba-soak: concurrency soak of the CIBA bundle's exactly-once steps

  ciba-soak [--base URL]... [--trials N] [--burst B] [--parallel P] [--scenario NAME]...
            [--time-limit SECS] [--probe-every K] [--json FILE]
            [--dev-dir DIR] [--client-id ID] [--client-key JWK_FILE]
            [--subject SUB] [--cpf CPF] [--device-token-file FILE]
            [--cert-header NAME --cert-file PEM [--device-cert-file PEM]]

  --base URL            the running server (http:// only), default http://127.0.0.1:3000; given
                        again, more instances on the same store (replicas on one Redis, with the
                        same base path): each trial's calls go to them in turn, a burst's racers
                        alternately
  --trials N            trials per scenario (default 100); --burst B racers per trial (default 20)
  --parallel P          trials in flight at once, each on its own B connections (default 4)
  --scenario NAME       run only these (repeatable): poll-after-approval, request-object-jti,
                        client-assertion-jti, qr-login-hint-token, ad-generated-hint,
                        approve-vs-deny, slow-down, one-consent-two-requests,
                        approve-vs-consent-delete
  --time-limit SECS     start no trial after this long (default 3600); a run cut short is
                        reported INCOMPLETE
  --probe-every K       slow-down: on one trial in K, wait out the interval the answers
                        imply (5 s, plus 5 s per slow_down) and poll again (default 10; 0: never)
  --json FILE           the figures as JSON
  --dev-dir DIR         where `ciba-host dev` wrote its material (default .dev); the defaults below
                        come from it: --client-id demo-client, --client-key DIR/demo_client_private_key.json,
                        --subject demo-user-1, --cpf 52998224725, --device-token-file DIR/device_api_token.txt
  --cert-header NAME --cert-file PEM
                        send this client certificate (URL-encoded PEM) in header NAME, as the
                        TLS-terminating proxy of an mTLS deployment would
  --device-cert-file PEM
                        with mTLS on, the bank backend's certificate for /device/... (its
                        x5t#S256 listed in device_api_certificates), in the same header

The client must be registered for the CIBA, client_credentials (scope consents) and
refresh_token grants, and the holder's CPF must be the one given. Exit status: 0 when every
trial held, 1 on any violation, 2 when some trial could not be judged or the time limit cut
the run short.";

struct Args {
    registrations: Registrations,
    options: Options,
    json: Option<PathBuf>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut out = Args {
        registrations: Registrations::default(),
        options: Options::default(),
        json: None,
    };
    let mut chosen = Vec::new();
    let mut bases = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        if arg == "--base" {
            bases.push(value()?);
            continue;
        }
        if out.registrations.take(&arg, &mut value)? {
            continue;
        }
        let o = &mut out.options;
        match arg.as_str() {
            "--trials" => o.trials = value()?.parse().context("--trials")?,
            "--burst" => o.burst = value()?.parse().context("--burst")?,
            "--parallel" => o.parallel = value()?.parse().context("--parallel")?,
            "--time-limit" => {
                o.time_limit = Duration::from_secs(value()?.parse().context("--time-limit")?)
            }
            "--probe-every" => o.probe_every = value()?.parse().context("--probe-every")?,
            "--scenario" => {
                let name = value()?;
                chosen.push(
                    Kind::parse(&name)
                        .with_context(|| format!("no scenario {name}; see --help"))?,
                );
            }
            "--json" => out.json = Some(value()?.into()),
            "--help" | "-h" => return Ok(None),
            other => bail!("unknown argument {other}; see --help"),
        }
    }
    if !chosen.is_empty() {
        out.options.scenarios = Kind::ALL
            .into_iter()
            .filter(|k| chosen.contains(k))
            .collect();
    }
    if let Some((first, more)) = bases.split_first() {
        let prefix = crate::load::Target::parse(first)?.prefix;
        for base in more {
            let target = crate::load::Target::parse(base)?;
            anyhow::ensure!(
                target.prefix == prefix,
                "every --base must have the same path ({base})"
            );
            out.options.also.push(target.authority);
        }
        out.registrations.base.clone_from(first);
    }
    let o = &out.options;
    if o.trials == 0 || o.parallel == 0 || o.burst < 2 {
        bail!("--trials and --parallel must be at least 1, --burst at least 2");
    }
    out.registrations.check()?;
    Ok(Some(out))
}

/// Parses the arguments, runs, prints; exits 1 on a violation, 2 when not every trial could
/// be judged.
pub fn main() {
    let code = match parse_args(std::env::args().skip(1)) {
        Ok(None) => {
            println!("{HELP}");
            0
        }
        Ok(Some(args)) => match main_with(args) {
            Ok(report) if report.violations() > 0 => 1,
            Ok(report) if !report.passed() => 2,
            Ok(_) => 0,
            Err(e) => {
                eprintln!("Error: {e:#}");
                2
            }
        },
        Err(e) => {
            eprintln!("Error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn main_with(args: Args) -> anyhow::Result<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("no Tokio runtime")?;
    let report = runtime.block_on(async {
        let bench = args.registrations.bench(1).await?;
        run(bench, &args.options).await
    })?;
    println!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&json(&report))?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

/// Runs `options` against `bench`'s server on a runtime of its own, for callers without
/// one (the e2e tests); reads the discovery document first when `bench` has no issuer yet.
pub fn run_blocking(mut bench: Bench, options: &Options) -> anyhow::Result<Report> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("no Tokio runtime")?
        .block_on(async {
            if bench.issuer.is_empty() {
                bench.discover().await?;
            }
            run(bench, options).await
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Option<Args>> {
        parse_args(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn options_pick_scenarios_in_order_and_refuse_nonsense() {
        let a = parse(&[
            "--trials",
            "7",
            "--scenario",
            "slow-down",
            "--scenario",
            "poll-after-approval",
            "--base",
            "http://h:1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.options.trials, 7);
        assert_eq!(
            a.options.scenarios,
            vec![Kind::PollAfterApproval, Kind::SlowDown]
        );
        assert_eq!(a.registrations.base, "http://h:1");
        assert!(a.options.also.is_empty());
        let two = parse_args(
            ["--base", "http://h:1/p", "--base", "http://k:2/p/"]
                .into_iter()
                .map(String::from),
        )
        .unwrap()
        .unwrap();
        assert_eq!(two.registrations.base, "http://h:1/p");
        assert_eq!(two.options.also, ["k:2"]);
        assert!(
            parse_args(
                ["--base", "http://h:1/p", "--base", "http://k:2/q"]
                    .into_iter()
                    .map(String::from)
            )
            .is_err()
        );
        assert!(parse(&["--scenario", "nope"]).is_err());
        assert!(parse(&["--burst", "1"]).is_err());
        assert!(parse(&["--cert-file", "x.pem"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
