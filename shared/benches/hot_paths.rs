//! The hot steps of the shared crate, natively (issue 8, 1(a)): what every authenticated
//! request pays (client-assertion verification), what bc-authorize adds (request-object
//! verification), what an approval pays (id_token signing), form parsing, the QR JWE, and raw
//! PS256 signing and verification through `rsa` 0.9 and 0.10. The steps are the
//! `ciba-hot-paths` crate's (bench/hot-paths), which `ciba-host wasm-bench` times inside Wasm
//! (1(b)): see bench/BENCHMARKS.md.
//!
//! `cargo bench -p ciba --bench hot_paths`

#![allow(missing_docs)]

use ciba_hot_paths::{HotPaths, Keys, Step};
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(c: &mut Criterion) {
    let hot = Keys::generate()
        .and_then(|keys| HotPaths::new(&keys))
        .expect("the steps' fixture");
    for step in Step::ALL {
        c.bench_function(step.name(), |b| b.iter(|| hot.run(step)));
    }
}

criterion_group!(hot_paths, benches);
criterion_main!(hot_paths);
