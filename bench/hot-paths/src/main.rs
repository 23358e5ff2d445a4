//! Times the shared crate's hot steps where it runs: inside Wasm when built for wasm32-wasip2
//! (a `wasi:cli/command`; `ciba-host wasm-bench` builds it with `--profile component` and runs
//! it on the local host's engine), or natively.
//!
//! `ciba-hot-paths [--samples N] [--json] [--keys FILE|-]`
//!
//! Each step is first run in batches that double until one takes at least 1 ms (which also
//! warms it up); then `N` such batches are timed with `std::time::Instant`, and the median,
//! first and third quartile of the time per run are printed, as a table or, with `--json`, as
//! one JSON object. The three RSA keys are read from `FILE` (`-`: stdin), as
//! `ciba_hot_paths::Keys::to_json` writes them; without `--keys` they are generated here,
//! which inside Wasm takes seconds.

use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ciba_hot_paths::{HotPaths, Keys, Step};
use serde_json::json;

/// The shortest batch that is timed.
const MIN_BATCH: Duration = Duration::from_millis(1);
/// The most runs in one batch.
const MAX_BATCH: u32 = 1 << 20;

struct Args {
    samples: usize,
    json: bool,
    keys: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        samples: 101,
        json: false,
        keys: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--samples" => {
                out.samples = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .context("--samples takes a positive number")?
            }
            "--json" => out.json = true,
            "--keys" => out.keys = Some(args.next().context("--keys takes a file or -")?),
            "--help" | "-h" => {
                println!("ciba-hot-paths [--samples N] [--json] [--keys FILE|-]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(out)
}

/// One step's figures: time per run, in nanoseconds.
struct Measurement {
    step: Step,
    batch: u32,
    median: f64,
    q1: f64,
    q3: f64,
}

fn time_batch(hot: &HotPaths, step: Step, batch: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..batch {
        hot.run(step);
    }
    start.elapsed()
}

fn measure(hot: &HotPaths, step: Step, samples: usize) -> Measurement {
    let mut batch = 1;
    while batch < MAX_BATCH && time_batch(hot, step, batch) < MIN_BATCH {
        batch *= 2;
    }
    let mut times: Vec<f64> = (0..samples)
        .map(|_| time_batch(hot, step, batch).as_nanos() as f64 / f64::from(batch))
        .collect();
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Measurement {
        step,
        batch,
        median: at(0.5),
        q1: at(0.25),
        q3: at(0.75),
    }
}

/// `ns` as µs below a millisecond, as ms above.
fn human(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let keys = match args.keys.as_deref() {
        None => Keys::generate()?,
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Keys::from_json(&text)?
        }
        Some(file) => Keys::from_json(
            &std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?,
        )?,
    };
    let hot = HotPaths::new(&keys)?;
    let target = if cfg!(target_family = "wasm") {
        // `std::env::consts::OS` is empty on wasm32-wasip2.
        "wasm32-wasip2".to_string()
    } else {
        format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
    };
    let results: Vec<Measurement> = Step::ALL
        .iter()
        .map(|step| measure(&hot, *step, args.samples))
        .collect();
    if args.json {
        let steps: Vec<_> = results
            .iter()
            .map(|m| {
                json!({
                    "name": m.step.name(),
                    "median_ns": m.median.round(),
                    "q1_ns": m.q1.round(),
                    "q3_ns": m.q3.round(),
                    "runs_per_sample": m.batch,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "target": target, "samples": args.samples, "steps": steps })
        );
    } else {
        println!("{target}, {} samples per step", args.samples);
        println!(
            "{:<56} {:>12} {:>25} {:>8}",
            "step", "median", "quartiles", "runs"
        );
        for m in &results {
            println!(
                "{:<56} {:>12} {:>25} {:>8}",
                m.step.name(),
                human(m.median),
                format!("{} – {}", human(m.q1), human(m.q3)),
                m.batch
            );
        }
    }
    Ok(())
}
