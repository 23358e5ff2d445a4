//! `ciba-soak`: concurrency soak of a running bundle's exactly-once steps (issue 9, part 1):
//! see `ciba_bench::soak` and `--help`.

#[cfg(not(target_family = "wasm"))]
fn main() {
    ciba_bench::soak::main();
}

/// A native tool: nothing on Wasm (see the library).
#[cfg(target_family = "wasm")]
fn main() {}
