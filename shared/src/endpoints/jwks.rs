//! `GET /jwks` (KEY-1…7): the public halves of the signing and encryption keys.

use crate::config::{ConfigError, Variables, load_keys};
use crate::error::Endpoint;
use crate::http::{Request, Response};

/// The rendered JWK Set, built once per component instance.
#[derive(Debug, Clone)]
pub struct Jwks(Response);

/// Short enough that a rotation is seen within minutes.
const MAX_AGE: u32 = 300;

impl Jwks {
    /// Reads the key variables and renders their public halves.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        let keys = load_keys(vars)?;
        Ok(Self(Response::public_json(&keys.public_jwks(), MAX_AGE)))
    }

    /// Answers one request.
    pub fn handle(&self, request: &Request) -> Response {
        super::get_only(request, Endpoint::Jwks, &self.0)
    }
}
