//! `ciba-bench`: an end-to-end load benchmark of a running bundle (issue 8, 1(c) and (d)).
//!
//! Against `ciba-host dev` by default (its `.dev/` material: the demo client and its key, the
//! demo holder, the device token); any base URL and registrations through the options. Each
//! scenario sends a fixed number of requests over `--concurrency` keep-alive HTTP/1.1
//! connections, every signed input made before its clock starts, and reports requests/s, p50
//! and p99. Then each component's `.wasm` size and the cost of its first request on a fresh
//! local host. A table on stdout; `--json FILE` and `--svg FILE` for the same figures.

#[cfg(not(target_family = "wasm"))]
fn main() {
    ciba_bench::app::main();
}

/// A native tool: it has no dependencies and no code on Wasm, where CI lints the whole
/// workspace (`.ci/run`, `--target wasm32-wasip2 --workspace`).
#[cfg(target_family = "wasm")]
fn main() {}
