//! `ciba-host wasm-bench`: the steps build for wasm32-wasip2, run on the host's engine settings
//! and report every step (one sample each: this checks the harness, not the figures).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use ciba_host::wasm_bench::{Options, run, table};

const STEPS: [&str; 9] = [
    "form: parse a token request",
    "client assertion: verify",
    "request object: verify",
    "id_token: sign",
    "QR JWE: decrypt",
    "PS256 verify, raw: rsa 0.9",
    "PS256 verify, raw: rsa 0.10",
    "PS256 sign, raw: rsa 0.9",
    "PS256 sign, raw: rsa 0.10",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_step_runs_inside_wasm() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let report = run(
        workspace,
        &Options {
            samples: 1,
            native: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.wasm.target, "wasm32-wasip2");
    assert_eq!(report.wasm.steps.len(), STEPS.len());
    for (figures, name) in report.wasm.steps.iter().zip(STEPS) {
        assert!(
            figures.name.starts_with(name),
            "{} is not {name}",
            figures.name
        );
        assert!(figures.median_ns > 0.0);
    }
    let table = table(&report);
    for name in STEPS {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
}
