//! Figures and their renderings: percentiles, the text table, JSON and the SVG chart.
//! Pure functions of the measured numbers.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

/// The nearest-rank percentile `p` (0 < p <= 100) of `sorted` (ascending), in ms.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// The median of `values` (the mean of the two middle ones for an even count), in ms.
pub fn median_ms(values: &[Duration]) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One scenario's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// Its name.
    pub name: String,
    /// Requests sent.
    pub requests: usize,
    /// Requests not answered as the scenario expects.
    pub errors: usize,
    /// Requests per second over the whole run.
    pub rps: f64,
    /// Median latency, ms.
    pub p50: f64,
    /// 99th percentile latency, ms.
    pub p99: f64,
    /// What else to say (answer split, first error).
    pub note: String,
    /// Why it did not run, when it did not.
    pub skipped: Option<String>,
}

impl Scenario {
    /// Figures from latencies (any order), the wall time and the error count.
    pub fn measured(
        name: &str,
        latencies: &[Duration],
        elapsed: Duration,
        errors: usize,
        note: String,
    ) -> Self {
        let mut sorted = latencies.to_vec();
        sorted.sort();
        let secs = elapsed.as_secs_f64();
        Self {
            name: name.to_string(),
            requests: sorted.len(),
            errors,
            rps: if secs > 0.0 {
                sorted.len() as f64 / secs
            } else {
                0.0
            },
            p50: percentile_ms(&sorted, 50.0),
            p99: percentile_ms(&sorted, 99.0),
            note,
            skipped: None,
        }
    }

    /// A scenario that did not run.
    pub fn skipped(name: &str, why: &str) -> Self {
        Self {
            name: name.to_string(),
            requests: 0,
            errors: 0,
            rps: 0.0,
            p50: 0.0,
            p99: 0.0,
            note: String::new(),
            skipped: Some(why.to_string()),
        }
    }
}

/// One component's size and first-request cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// The component id in spin.toml.
    pub id: String,
    /// Its route.
    pub route: String,
    /// The `.wasm` file's size in bytes (None when not built).
    pub wasm_bytes: Option<u64>,
    /// The request measured (`POST /token client_credentials`, ...).
    pub request: String,
    /// The first request on a fresh host, ms.
    pub first_ms: Option<f64>,
    /// The median of the next requests, ms.
    pub next_median_ms: Option<f64>,
    /// How many next requests the median is of.
    pub next_count: usize,
    /// Anything wrong (an unexpected status).
    pub note: String,
}

/// Everything measured, for the renderings.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The base URL loaded.
    pub base: String,
    /// Requests per scenario.
    pub requests: usize,
    /// Connections.
    pub concurrency: usize,
    /// When (UTC, RFC 3339).
    pub date: String,
    /// The scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// The components (empty when not measured).
    pub components: Vec<Component>,
    /// How the components were measured, or why not.
    pub components_note: String,
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

/// The text tables.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} requests per scenario, concurrency {}, against {} ({})\n",
        report.requests, report.concurrency, report.base, report.date
    );
    let _ = writeln!(
        out,
        "{:<20} {:>8} {:>7} {:>10} {:>8} {:>8}  note",
        "scenario", "requests", "errors", "req/s", "p50 ms", "p99 ms"
    );
    for s in &report.scenarios {
        match &s.skipped {
            Some(why) => {
                let _ = writeln!(out, "{:<20} skipped: {why}", s.name);
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<20} {:>8} {:>7} {:>10.0} {:>8.2} {:>8.2}  {}",
                    s.name, s.requests, s.errors, s.rps, s.p50, s.p99, s.note
                );
            }
        }
    }
    if !report.components.is_empty() || !report.components_note.is_empty() {
        let _ = writeln!(out, "\ncomponents: {}", report.components_note);
        let _ = writeln!(
            out,
            "{:<13} {:>9} {:>10} {:>14}  request",
            "component", "wasm KiB", "first ms", "next p50 ms"
        );
        for c in &report.components {
            let kib = c
                .wasm_bytes
                .map_or("-".into(), |b| format!("{:.0}", b as f64 / 1024.0));
            let _ = writeln!(
                out,
                "{:<13} {:>9} {:>10} {:>14}  {}{}",
                c.id,
                kib,
                opt_ms(c.first_ms),
                opt_ms(c.next_median_ms),
                c.request,
                if c.note.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.note)
                }
            );
        }
    }
    out
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The same figures as JSON.
pub fn json(report: &Report) -> Value {
    json!({
        "base": report.base,
        "date": report.date,
        "requests": report.requests,
        "concurrency": report.concurrency,
        "scenarios": report.scenarios.iter().map(|s| match &s.skipped {
            Some(why) => json!({ "name": s.name, "skipped": why }),
            None => json!({
                "name": s.name,
                "requests": s.requests,
                "errors": s.errors,
                "requests_per_s": round2(s.rps),
                "p50_ms": round2(s.p50),
                "p99_ms": round2(s.p99),
                "note": s.note,
            }),
        }).collect::<Vec<_>>(),
        "components_note": report.components_note,
        "components": report.components.iter().map(|c| json!({
            "id": c.id,
            "route": c.route,
            "wasm_bytes": c.wasm_bytes,
            "request": c.request,
            "first_request_ms": c.first_ms.map(round2),
            "next_median_ms": c.next_median_ms.map(round2),
            "next_count": c.next_count,
            "note": c.note,
        })).collect::<Vec<_>>(),
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A bar chart of requests/s and p50 per scenario, two panels side by side, as SVG text.
pub fn svg(report: &Report) -> String {
    const ROW: f64 = 24.0;
    const TOP: f64 = 56.0;
    const LABEL: f64 = 150.0;
    const PANEL: f64 = 300.0;
    const GAP: f64 = 90.0;
    let rows = &report.scenarios;
    let height = TOP + ROW * rows.len() as f64 + 30.0;
    let width = LABEL + 2.0 * PANEL + GAP + 70.0;
    let measured = || rows.iter().filter(|s| s.skipped.is_none());
    let max_rps = measured().map(|s| s.rps).fold(0.0, f64::max).max(1.0);
    let max_p50 = measured().map(|s| s.p50).fold(0.0, f64::max).max(0.001);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="20" font-size="14" font-weight="bold">{}</text>
<text x="{}" y="44" font-weight="bold">requests/s</text>
<text x="{}" y="44" font-weight="bold">p50 latency (ms)</text>"##,
        escape(&format!(
            "ciba-bench: {} requests per scenario, concurrency {}, {}",
            report.requests, report.concurrency, report.date
        )),
        LABEL,
        LABEL + PANEL + GAP,
    );
    for (i, s) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LABEL - 8.0,
            y + 15.0,
            escape(&s.name)
        );
        if let Some(why) = &s.skipped {
            let _ = writeln!(
                out,
                r##"<text x="{LABEL}" y="{}" fill="#888888">skipped: {}</text>"##,
                y + 15.0,
                escape(why)
            );
            continue;
        }
        for (x0, value, max, color, text) in [
            (LABEL, s.rps, max_rps, "#3b6ea5", format!("{:.0}", s.rps)),
            (
                LABEL + PANEL + GAP,
                s.p50,
                max_p50,
                "#d9822b",
                format!("{:.2}", s.p50),
            ),
        ] {
            let w = (value / max * PANEL).max(1.0);
            let _ = writeln!(
                out,
                r#"<rect x="{x0}" y="{}" width="{w:.1}" height="{}" fill="{color}"/><text x="{:.1}" y="{}">{text}</text>"#,
                y + 3.0,
                ROW - 6.0,
                x0 + w + 4.0,
                y + 15.0,
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// `unix` seconds as an RFC 3339 UTC date-time (proleptic Gregorian calendar).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile_ms(&sorted, 50.0), 50.0);
        assert_eq!(percentile_ms(&sorted, 99.0), 99.0);
        assert_eq!(percentile_ms(&sorted, 100.0), 100.0);
        assert_eq!(percentile_ms(&ms(&[7]), 99.0), 7.0);
        assert_eq!(percentile_ms(&ms(&[1, 2, 3]), 50.0), 2.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
        assert_eq!(median_ms(&ms(&[4, 1, 3, 2])), 2.5);
        assert_eq!(median_ms(&ms(&[5, 1, 3])), 3.0);
    }

    #[test]
    fn scenario_figures_from_latencies_and_wall_time() {
        let s = Scenario::measured(
            "jwks",
            &ms(&[3, 1, 2, 4]),
            Duration::from_secs(2),
            1,
            String::new(),
        );
        assert_eq!(
            (s.requests, s.errors, s.rps, s.p50, s.p99),
            (4, 1, 2.0, 2.0, 4.0)
        );
    }

    fn sample() -> Report {
        Report {
            base: "http://127.0.0.1:3100".into(),
            requests: 4,
            concurrency: 8,
            date: rfc3339(0),
            scenarios: vec![
                Scenario::measured(
                    "a<b",
                    &ms(&[1, 2]),
                    Duration::from_secs(1),
                    0,
                    String::new(),
                ),
                Scenario::measured(
                    "jwks",
                    &ms(&[4, 4]),
                    Duration::from_millis(500),
                    0,
                    String::new(),
                ),
                Scenario::skipped("userinfo", "404"),
            ],
            components: vec![Component {
                id: "jwks".into(),
                route: "/jwks".into(),
                wasm_bytes: Some(2048),
                request: "GET /jwks".into(),
                first_ms: Some(12.345),
                next_median_ms: None,
                next_count: 0,
                note: String::new(),
            }],
            components_note: "fresh host".into(),
        }
    }

    #[test]
    fn json_carries_every_figure_and_marks_skips() {
        let j = json(&sample());
        assert_eq!(j["scenarios"][1]["requests_per_s"], 4.0);
        assert_eq!(j["scenarios"][1]["p50_ms"], 4.0);
        assert_eq!(
            j["scenarios"][2],
            json!({ "name": "userinfo", "skipped": "404" })
        );
        assert_eq!(j["components"][0]["first_request_ms"], 12.35);
        assert_eq!(j["components"][0]["next_median_ms"], Value::Null);
        assert_eq!(j["date"], "1970-01-01T00:00:00Z");
    }

    #[test]
    fn svg_scales_bars_to_the_largest_and_escapes_names() {
        let text = svg(&sample());
        assert!(text.starts_with("<svg ") && text.ends_with("</svg>\n"));
        assert!(text.contains(">a&lt;b</text>"));
        assert!(!text.contains("a<b"));
        // 4 req/s is the largest: a full-width bar; 2 req/s half of it.
        assert!(text.contains(r##"width="300.0" height="18" fill="#3b6ea5""##));
        assert!(text.contains(r##"width="150.0" height="18" fill="#3b6ea5""##));
        assert!(text.contains("skipped: 404"));
        assert_eq!(text.matches("<rect").count(), 1 + 2 * 2);
    }

    #[test]
    fn table_has_a_row_per_scenario_and_component() {
        let text = table(&sample());
        assert!(text.contains("userinfo             skipped: 404"));
        assert!(
            text.lines()
                .any(|l| l.starts_with("jwks") && l.contains("GET /jwks"))
        );
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
