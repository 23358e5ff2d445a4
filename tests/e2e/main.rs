//! End-to-end tests over real HTTP against the built `.wasm` components behind the local
//! host. Test names carry the requirement IDs of `requirements.md`.

#![allow(clippy::unwrap_used)]

mod bc_authorize;
mod cancellations;
mod ciba_grant;
mod configuration;
mod consents;
mod device;
mod device_page;
mod discovery;
mod docs;
mod expiry;
mod faults;
mod host;
mod id_token_encryption;
mod jwks;
mod keys;
mod lifecycle;
mod limits;
mod one_grant;
mod rate_limits;
mod redis;
mod registration;
mod review;
mod secrets;
mod soak;
mod store;
mod token;
mod userinfo;

use std::sync::OnceLock;

use e2e::{Server, variables};

/// One server with the valid default configuration (mTLS on), shared by the tests that only
/// read from it.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::bundle(variables()))
}
