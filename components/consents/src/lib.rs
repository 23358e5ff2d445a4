//! `/open-banking/consents/v3/consents[/<consentId>]`: the Lodging Intent (CONS-*).

use std::sync::OnceLock;

use ciba::config::ConfigError;
use ciba::endpoints::Deps;
use ciba::endpoints::consents::ConsentsEndpoint;
use ciba::error::{Endpoint, ProtocolError};
use ciba_spin::{OsRandom, SpinStore, SystemClock};
use spin_sdk::http::{IntoResponse, Request};
use spin_sdk::http_service;

static ENDPOINT: OnceLock<Result<ConsentsEndpoint, ConfigError>> = OnceLock::new();

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    ciba_spin::serve(Endpoint::Consents, request, |request| {
        let endpoint = ciba_spin::once(&ENDPOINT, ConsentsEndpoint::load)?;
        let store = SpinStore::open_default()
            .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?;
        let deps = Deps {
            store: &store,
            clock: &SystemClock,
            random: &OsRandom,
        };
        Ok(endpoint.handle(request, &deps))
    })
    .await
}
