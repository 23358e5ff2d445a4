//! One module per endpoint: a short list of named steps from a plain request to a response.

pub mod bc_authorize;
pub mod consents;
pub mod device;
pub mod device_page;
pub mod jwks;
pub mod register;
pub mod token;
pub mod userinfo;
pub mod well_known;

use crate::clock::{Clock, Random};
use crate::error::{Endpoint, ProtocolError};
use crate::http::{Method, Request, Response};
use crate::store::KeyValue;

/// Answers a GET-only public document, or the error for any other method.
fn get_only(request: &Request, endpoint: Endpoint, document: &Response) -> Response {
    match request.method {
        Method::Get => document.clone(),
        Method::Post | Method::Put | Method::Delete | Method::Other => {
            ProtocolError::MethodNotAllowed("this endpoint answers GET only").to_response(endpoint)
        }
    }
}

/// Puts `x-fapi-interaction-id` on a response, whoever made it (an endpoint, or the adapter
/// refusing a request before any endpoint ran): the client's id echoed byte for byte, or a
/// fresh one (BCA-30, UI-7, AMB-17).
pub fn with_interaction_id<'a>(
    mut response: Response,
    sent: impl Iterator<Item = &'a str>,
    random: &dyn Random,
) -> Response {
    if response.header(crate::fapi::HEADER).is_none() {
        response
            .headers
            .push((crate::fapi::HEADER, crate::fapi::echo_or_new(sent, random)));
    }
    response
}

/// Takes this request's turn at the purge, after its answer is decided (see
/// [`crate::store::purge`]): requests off the hot paths call it when they succeed. Best
/// effort: a store error here leaves the answer as it is, and the next sweep does the work.
fn purge_turn(deps: &Deps<'_>) {
    let _ = crate::store::purge::take_turn(deps.store, deps.clock.now());
}

/// Answers with `answer` on a view of the store that gathers the request's purge
/// announcements ([`crate::store::purge::Gathering`], issue 18), then writes what is still
/// gathered. Best effort once the answer is decided: what a fault loses there is only the
/// entry of a counter named with its time (the operator's listing sweep drops it).
fn gathering(deps: &Deps<'_>, answer: impl FnOnce(&Deps<'_>) -> Response) -> Response {
    let store = crate::store::purge::Gathering::new(deps.store);
    let response = answer(&Deps {
        store: &store,
        clock: deps.clock,
        random: deps.random,
        fetch: deps.fetch,
    });
    let _ = store.flush();
    response
}

/// What one request may use besides configuration.
pub struct Deps<'a> {
    /// The key-value store.
    pub store: &'a dyn KeyValue,
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Randomness.
    pub random: &'a dyn Random,
    /// Outbound HTTP (clients' `jwks_uri`, the Directory's keystore).
    pub fetch: &'a dyn crate::client::fetch::Fetch,
}
