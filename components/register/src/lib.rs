//! `POST /register`, `GET|PUT|DELETE /register/<client_id>`: Dynamic Client Registration and
//! Management (registration.md REG-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::register::RegisterEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<RegisterEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_outbound(
        Endpoint::Registration,
        request,
        &ENDPOINT,
        RegisterEndpoint::load,
        RegisterEndpoint::handle,
    )
    .await
}
