//! `/open-banking/consents/v3/consents[/<consentId>]`: the Lodging Intent (CONS-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::consents::ConsentsEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<ConsentsEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_state(
        Endpoint::Consents,
        request,
        &ENDPOINT,
        ConsentsEndpoint::load,
        ConsentsEndpoint::handle,
    )
    .await
}
