//! `POST /token`: client authentication and the grants (TOK-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::token::TokenEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<TokenEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_outbound(
        Endpoint::Token,
        request,
        &ENDPOINT,
        TokenEndpoint::load,
        TokenEndpoint::handle,
    )
    .await
}
