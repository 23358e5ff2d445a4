//! Every protocol rule of the Open Finance Brasil FAPI-CIBA authorization server (poll mode).
//!
//! Layers, from the outside in:
//! - [`http`]: plain request and response types; the Spin components translate into them.
//! - [`endpoints`]: one module per endpoint, a short list of named steps. Nothing else answers.
//! - [`error`]: the one protocol error type; only it renders error JSON.
//! - [`config`], [`client`], [`users`], [`jose`]: configuration parsed into types whose
//!   constructors hold the profile's ranges; secrets have no printing `Debug`.
//! - [`store`], [`clock`]: the key-value store, time and randomness, behind small interfaces
//!   so that tests run natively with an in-memory store and a fixed clock.
//!
//! Never here: a Spin dependency, a panic on input or configuration, a secret in an error.

#![deny(missing_docs)]

pub mod access_token;
pub mod auth_req;
pub mod binding_message;
pub mod client;
pub mod clock;
pub mod config;
pub mod consent;
pub mod discovery;
pub mod endpoints;
pub mod error;
pub mod fapi;
pub mod form;
pub mod hint;
pub mod http;
pub mod id_token;
pub mod jose;
pub mod rate_limit;
pub mod refresh_token;
pub mod request_object;
pub mod scope;
pub mod store;
pub mod time;
pub mod types;
pub mod users;

#[cfg(test)]
mod config_tests;
#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod flow_tests;
#[cfg(test)]
mod redaction_tests;
#[cfg(test)]
mod registration_tests;
