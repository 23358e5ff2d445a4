//! `GET /jwks`: the public signing and encryption keys (KEY-1…7).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::jwks::Jwks;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static JWKS: OnceLock<Result<Jwks, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve(Endpoint::Jwks, request, |request| {
        Ok(ciba_spin::once(&JWKS, Jwks::load)?.handle(request))
    })
    .await
}
