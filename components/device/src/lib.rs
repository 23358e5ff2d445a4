//! `/device/...`: the authentication device API (AD-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::device::DeviceEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<DeviceEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_outbound(
        Endpoint::Device,
        request,
        &ENDPOINT,
        DeviceEndpoint::load,
        DeviceEndpoint::handle,
    )
    .await
}
