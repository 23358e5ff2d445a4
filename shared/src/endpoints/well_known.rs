//! `GET /.well-known/openid-configuration` (DISC-1…20).

use crate::config::{ConfigError, Variables};
use crate::discovery::DiscoverySettings;
use crate::error::Endpoint;
use crate::http::{Request, Response};

/// The rendered document, built once per component instance.
#[derive(Debug, Clone)]
pub struct WellKnown(Response);

/// Clients may cache discovery for an hour; it changes only with configuration.
const MAX_AGE: u32 = 3600;

impl WellKnown {
    /// Reads configuration and renders the document.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let settings = DiscoverySettings::load(vars)?;
        Ok(Self(Response::public_json(&settings.document(), MAX_AGE)))
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        super::get_only(request, Endpoint::Discovery, &self.0)
    }
}
