//! `GET /.well-known/openid-configuration`: the discovery document (DISC-1…20).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::well_known::WellKnown;
use ciba::error::Endpoint;
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static DOCUMENT: OnceLock<Result<WellKnown, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve(Endpoint::Discovery, request, |request| {
        Ok(ciba_spin::once(&DOCUMENT, WellKnown::load)?.handle(request))
    })
    .await
}
