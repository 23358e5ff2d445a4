//! `ciba-host wasm-bench`: the shared crate's hot steps (signatures, verifications, form
//! parsing, the QR JWE) timed inside Wasm, on this host's engine settings
//! ([`crate::runtime::engine_config`]: wasmtime, Cranelift), so that they compare with the
//! native figures of `cargo bench -p ciba --bench hot_paths` step by step (issue 8, 1(b)).
//!
//! The steps and their timing are the `ciba-hot-paths` crate (`bench/hot-paths`), a
//! `wasi:cli/command` built here for wasm32-wasip2 with `--profile component`, as the
//! components are (RSA arithmetic at opt-level 3). Its three RSA keys are generated natively
//! and handed over on stdin. With `--native`, the same binary is also built and run natively
//! (same profile, same keys, same timing), for a side-by-side table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The package of the steps.
pub const PACKAGE: &str = "ciba-hot-paths";
/// The Wasm target, as the components'.
const WASM_TARGET: &str = "wasm32-wasip2";
/// The most output read from the guest.
const MAX_OUTPUT: usize = 1024 * 1024;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed batches per step.
    pub samples: usize,
    /// Also run the steps natively.
    pub native: bool,
}

/// One run of the steps, as `ciba-hot-paths --json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    /// Where they ran (`wasm32-wasi`, `x86_64-linux`).
    pub target: String,
    /// Timed batches per step.
    pub samples: usize,
    /// Every step, in order.
    pub steps: Vec<StepFigures>,
}

/// One step's time per run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepFigures {
    /// The step (as criterion names it natively).
    pub name: String,
    /// Median, nanoseconds.
    pub median_ns: f64,
    /// First quartile, nanoseconds.
    pub q1_ns: f64,
    /// Third quartile, nanoseconds.
    pub q3_ns: f64,
    /// Runs per timed batch.
    pub runs_per_sample: u64,
}

/// The figures inside Wasm, and natively when asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Inside Wasm, on the host's engine settings.
    pub wasm: Figures,
    /// Natively (`--native`).
    pub native: Option<Figures>,
}

/// Builds the steps, runs them inside Wasm (and natively with `options.native`) with the
/// workspace at `workspace`.
pub async fn run(workspace: &Path, options: &Options) -> anyhow::Result<Report> {
    let keys = keys_json()?;
    let samples = options.samples.to_string();
    let args = ["--json", "--keys", "-", "--samples", &samples];
    let wasm = build(workspace, Some(WASM_TARGET))?;
    let native = if options.native {
        Some(build(workspace, None)?)
    } else {
        None
    };
    eprintln!(
        "Running {} in Wasm ({} samples per step)",
        wasm.display(),
        options.samples
    );
    let wasm = parse(&run_wasm(&wasm, &args, keys.as_bytes()).await?)?;
    let native = match native {
        Some(binary) => {
            eprintln!("Running {} natively", binary.display());
            Some(parse(&run_native(&binary, &args, keys.as_bytes())?)?)
        }
        None => None,
    };
    Ok(Report { wasm, native })
}

/// The steps' three RSA-2048 keys as private JWKs, in the form `ciba_hot_paths::Keys::from_json`
/// reads: `{"client": …, "signing": … (with x5c), "encryption": …}`.
pub fn keys_json() -> anyhow::Result<String> {
    let client = devkeys::rsa_key(2048)?;
    Ok(serde_json::json!({
        "client": devkeys::private_jwk(&client, "k1", "sig", "PS256", None),
        "signing": devkeys::signing_jwk("sig-1")?,
        "encryption": devkeys::encryption_jwk("enc-1")?,
    })
    .to_string())
}

/// `cargo build --profile component -p ciba-hot-paths`, for `target` (native without one);
/// the binary it made.
pub fn build(workspace: &Path, target: Option<&str>) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--profile", "component", "-p", PACKAGE];
    if let Some(target) = target {
        crate::build::ensure_target(target)?;
        args.extend(["--target", target]);
    }
    eprintln!("Building {PACKAGE} with `cargo {}`", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(&args)
        .current_dir(workspace)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("building {PACKAGE} failed ({status})");
    }
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    Ok(match target {
        Some(target) => target_dir
            .join(target)
            .join("component")
            .join(format!("{PACKAGE}.wasm")),
        None => target_dir
            .join("component")
            .join(format!("{PACKAGE}{}", std::env::consts::EXE_SUFFIX)),
    })
}

/// The guest's store: WASI only.
struct Ctx {
    table: ResourceTable,
    wasi: WasiCtx,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Runs the command component `wasm` with `args` and `stdin` on the host's engine settings;
/// what it printed on stdout (its stderr is this process's).
pub async fn run_wasm(wasm: &Path, args: &[&str], stdin: &[u8]) -> anyhow::Result<String> {
    let engine = Engine::new(&crate::runtime::engine_config())?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let component = Component::new(&engine, &bytes)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
    let wasi = WasiCtxBuilder::new()
        .args(&[PACKAGE])
        .args(args)
        .stdin(MemoryInputPipe::new(stdin.to_vec()))
        .stdout(stdout.clone())
        .inherit_stderr()
        .build();
    let mut store = Store::new(
        &engine,
        Ctx {
            table: ResourceTable::new(),
            wasi,
        },
    );
    let command =
        wasmtime_wasi::p2::bindings::Command::instantiate_async(&mut store, &component, &linker)
            .await?;
    let outcome = command.wasi_cli_run().call_run(&mut store).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(())) => bail!("{PACKAGE} failed inside Wasm (see its message above)"),
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) if exit.0 == 0 => {}
            Some(exit) => bail!("{PACKAGE} exited with {} inside Wasm", exit.0),
            None => return Err(anyhow::Error::from(e).context(format!("{PACKAGE} trapped"))),
        },
    }
    String::from_utf8(stdout.contents().to_vec()).context("the guest's output is not UTF-8")
}

/// Runs the native `binary` with `args` and `stdin`; its stdout.
fn run_native(binary: &Path, args: &[&str], stdin: &[u8]) -> anyhow::Result<String> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    child.stdin.take().context("no stdin")?.write_all(stdin)?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("{} failed ({})", binary.display(), output.status);
    }
    String::from_utf8(output.stdout).context("its output is not UTF-8")
}

fn parse(output: &str) -> anyhow::Result<Figures> {
    serde_json::from_str(output.trim()).with_context(|| format!("unexpected output: {output}"))
}

/// `ns` in µs below a millisecond, in ms above.
fn human(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn quartiles(step: &StepFigures) -> String {
    format!("{} – {}", human(step.q1_ns), human(step.q3_ns))
}

/// The report as a plain table: median and quartiles of the time per run of each step.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "Inside Wasm ({}, on the host's wasmtime engine settings), {} samples per step",
        report.wasm.target, report.wasm.samples
    );
    match &report.native {
        None => {
            out += &format!("\n{:<56} {:>10} {:>23}", "step", "median", "quartiles");
            for step in &report.wasm.steps {
                out += &format!(
                    "\n{:<56} {:>10} {:>23}",
                    step.name,
                    human(step.median_ns),
                    quartiles(step)
                );
            }
        }
        Some(native) => {
            out += &format!("; natively on {}", native.target);
            out += &format!(
                "\n{:<56} {:>10} {:>23} {:>10} {:>23} {:>7}",
                "step", "Wasm", "quartiles", "native", "quartiles", "ratio"
            );
            for step in &report.wasm.steps {
                let Some(n) = native.steps.iter().find(|n| n.name == step.name) else {
                    continue;
                };
                out += &format!(
                    "\n{:<56} {:>10} {:>23} {:>10} {:>23} {:>6.1}×",
                    step.name,
                    human(step.median_ns),
                    quartiles(step),
                    human(n.median_ns),
                    quartiles(n),
                    step.median_ns / n.median_ns
                );
            }
        }
    }
    out
}
