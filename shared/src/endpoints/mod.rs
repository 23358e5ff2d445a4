//! One module per endpoint: a short list of named steps from a plain request to a response.

pub mod consents;
pub mod jwks;
pub mod token;
pub mod well_known;

use crate::clock::{Clock, Random};
use crate::error::{Endpoint, ProtocolError};
use crate::http::{Method, Request, Response};
use crate::store::KeyValue;

/// Answers a GET-only public document, or the error for any other method.
fn get_only(request: &Request, endpoint: Endpoint, document: &Response) -> Response {
    match request.method {
        Method::Get => document.clone(),
        Method::Post | Method::Delete | Method::Other => {
            ProtocolError::MethodNotAllowed("this endpoint answers GET only").to_response(endpoint)
        }
    }
}

/// What one request may use besides configuration.
pub struct Deps<'a> {
    /// The key-value store.
    pub store: &'a dyn KeyValue,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Randomness.
    pub random: &'a dyn Random,
}
