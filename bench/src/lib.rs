//! The library of `ciba-bench` and `ciba-soak`: the registrations a run acts as, the signed
//! inputs it prepares, the HTTP load runner and the reports, against any base URL (the local
//! host, `spin up`, a deployment). The e2e tests call [`soak`] against the in-process host.
//!
//! Native only: on Wasm, where CI lints the whole workspace (`.ci/run`, `--target
//! wasm32-wasip2 --workspace`), the crate is empty.

#![cfg(not(target_family = "wasm"))]

pub mod app;
pub mod cold;
pub mod flow;
pub mod keystore;
pub mod load;
pub mod register;
pub mod report;
pub mod soak;
