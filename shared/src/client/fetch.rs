//! Outbound HTTP, behind a small interface like the clock and the store (registration.md
//! KEY-18): clients' `jwks_uri` and the Directory's keystore are fetched through [`Fetch`],
//! so unit tests need no network. The Spin glue implements it with Spin's outbound HTTP
//! (`wasi:http` outgoing handler); the rules that make a fetch safe (allowed origins, a
//! timeout, a size cap, no redirects, KEY-10) are the caller's, in this crate.

use std::time::Duration;

/// One outbound GET, as the caller limits it (KEY-10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest<'a> {
    /// The absolute URL, already checked against the allowed origins.
    pub url: &'a str,
    /// The whole exchange, connection included, must finish within this.
    pub timeout: Duration,
    /// The most body bytes to read; a longer body is a [`FetchError::TooLarge`].
    pub max_body: usize,
}

/// What came back. Redirects are never followed: a 3xx arrives here as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, at most `max_body` bytes.
    pub body: Vec<u8>,
}

impl FetchResponse {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a fetch gave no response. Never carries a secret: URLs fetched here are public
/// keystore addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The runtime refused the destination (Spin: not in `allowed_outbound_hosts`).
    NotAllowed,
    /// No answer within the timeout.
    Timeout,
    /// The body passed `max_body`.
    TooLarge,
    /// Anything else: DNS, connection, TLS, protocol.
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAllowed => f.write_str("destination not allowed by the runtime"),
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge => f.write_str("response body too large"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// Outbound HTTP GET.
pub trait Fetch {
    /// Performs one GET; follows no redirect.
    fn get(&self, request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError>;
}

/// The fetcher of a component that makes no outbound request: every fetch fails as
/// not allowed.
pub struct NoFetch;

impl Fetch for NoFetch {
    fn get(&self, _request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
        Err(FetchError::NotAllowed)
    }
}
