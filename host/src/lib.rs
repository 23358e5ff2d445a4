//! A local runner for this Spin bundle, for where Spin is not installed (CI, a fresh
//! laptop). It reads the same `spin.toml`, serves the same `.wasm` files over HTTP and gives
//! them a key-value store as Spin 4 does (its SQLite file by default, Redis through a runtime
//! configuration), implementing only the interfaces the components import, the way Spin 4 does.
//! It is a runner for this bundle, not a new platform.

pub mod build;
pub mod dev;
pub mod directory;
pub mod kv;
pub mod kv_redis;
pub mod manifest;
pub mod operator;
pub mod outbound;
pub mod routes;
pub mod runtime;
pub mod server;
pub mod stores;
pub mod tls;
pub mod variables;
pub mod wasm_bench;
