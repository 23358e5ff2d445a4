//! The client side of the server, in one place: who the clients are and how they prove it.
//!
//! - [`registry`]: the clients this server knows (the `clients` variable), with their keys,
//!   authentication method and grants.
//! - [`auth`]: client authentication at the token, bc-authorize and Consents endpoints
//!   (`private_key_jwt` and `tls_client_auth`, CLI-*).
//! - [`certificate`]: the client certificate the TLS-terminating proxy forwards (CLI-8/9).
//! - [`dn`]: RFC 4514 distinguished names, for `tls_client_auth_subject_dn`.
//! - [`fetch`]: outbound HTTP, for keys published by `jwks_uri` (KEY-10…18).
//! - [`keys`]: where every endpoint gets a client's public keys (KEY-8).
//! - [`keystore`]: keys published at a `jwks_uri`, fetched and cached (KEY-10…17).
//! - [`ssa`]: the Directory's software statement and its binding to the client certificate
//!   (REG-7…15).
//! - [`registration`]: dynamic registrations: metadata rules, records, and the one client
//!   lookup every endpoint uses (REG-16…31).

pub mod auth;
pub mod certificate;
pub mod dn;
pub mod fetch;
pub mod keys;
pub mod keystore;
pub mod registration;
pub mod registry;
pub mod ssa;
