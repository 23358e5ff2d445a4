//! `GET, POST /userinfo`: the account holder's claims for a CIBA access token (UI-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::userinfo::UserInfoEndpoint;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<UserInfoEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve_with_state(
        Endpoint::UserInfo,
        request,
        &ENDPOINT,
        UserInfoEndpoint::load,
        UserInfoEndpoint::handle,
    )
    .await
}
