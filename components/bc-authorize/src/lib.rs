//! `POST /bc-authorize`: the backchannel authentication request (BCA-*, HINT-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::bc_authorize::BcAuthorizeEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<BcAuthorizeEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_outbound(
        Endpoint::BackchannelAuthentication,
        request,
        &ENDPOINT,
        BcAuthorizeEndpoint::load,
        BcAuthorizeEndpoint::handle,
    )
    .await
}
