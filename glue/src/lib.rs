//! The only code that touches spin-sdk. The components call [`serve`] with an endpoint of the
//! shared crate; this crate supplies what the rules need from the runtime: variables
//! (`wasi:config`), the key-value store (`wasi:keyvalue` with its atomics), the clock,
//! randomness, and the translation of HTTP requests and responses.

use std::sync::OnceLock;

use bytes::Bytes;
use ciba::config::{ConfigError, Variables};
use ciba::error::{Endpoint, ProtocolError};
use ciba::http::{MAX_BODY_BYTES, Method};
use http_body_util::{BodyExt, Full};
use spin_sdk::experimental::wasi::config::store as config;

pub mod fetch;
pub mod kv;

pub use kv::SpinStore;

/// Variables through `wasi:config/store`, which Spin maps to the component's variables.
pub struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        config::get(name).map_err(|_| ConfigError::new(name, "the runtime could not resolve it"))
    }
}

/// The wall clock.
pub struct SystemClock;

impl ciba::clock::Clock for SystemClock {
    fn now(&self) -> ciba::clock::UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// The runtime's secure random source (`wasi:random`).
pub struct OsRandom;

impl ciba::clock::Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), ciba::store::StoreError> {
        getrandom::fill(buf).map_err(|_| ciba::store::StoreError("no random source".into()))
    }
}

/// Per-instance state built from configuration once (Spin reuses an instance across
/// requests). A configuration problem is logged once, naming the variable only, and every
/// request then answers 500 `server_error`.
pub fn once<T>(
    cell: &'static OnceLock<Result<T, ConfigError>>,
    load: impl FnOnce(&dyn Variables) -> Result<T, ConfigError>,
) -> Result<&'static T, ProtocolError> {
    cell.get_or_init(|| {
        let loaded = load(&SpinVariables);
        if let Err(e) = &loaded {
            eprintln!("{e}");
        }
        loaded
    })
    .as_ref()
    .map_err(|_| ProtocolError::ServerError("the server is misconfigured"))
}

/// Reads a Spin request into the shared crate's plain request, refusing header values over
/// their limits ([`ciba::http::check_header_limits`]) and bodies over [`MAX_BODY_BYTES`]
/// before they are buffered.
///
/// The body is read only as far as the request says it goes: not at all when there is none
/// (neither `Content-Length` nor `Transfer-Encoding`, or `Content-Length: 0`); exactly
/// `Content-Length` bytes otherwise (refused unread when that is over the limit, refused when
/// the body ends short); only a chunked body to its end, within the limit. Reading a body to
/// its end waits for its trailers, and under Spin 4.1 (no TCP_NODELAY, the response body
/// streamed after its head) that costs a kept-alive request about 40 ms, every time
/// (design.md, "Running without Spin").
pub async fn read_request(
    request: spin_sdk::http::Request,
) -> Result<ciba::http::Request, ProtocolError> {
    let (parts, body) = request.into_parts();
    // Header values over their limits are refused before anything else is read.
    ciba::http::check_header_limits(
        parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    )?;
    let headers = parts
        .headers
        .iter()
        // Every occurrence is kept, even one that is not visible ASCII: a header's count
        // matters (a second client-certificate header is refused, `certificate.rs`).
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (n.as_str().to_string(), value)
        })
        .collect::<Vec<_>>();
    // Spin appends its own headers after the client's: a client-sent `spin-path-info`
    // comes first, so only the last value is Spin's.
    let path_info = headers
        .iter()
        .rev()
        .find(|(n, _)| n == "spin-path-info")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let chunked = parts.headers.contains_key(http::header::TRANSFER_ENCODING);
    let mut lengths = parts.headers.get_all(http::header::CONTENT_LENGTH).iter();
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(Some)
            .ok_or(BodyError::Unreadable),
        (Some(_), Some(_)) => Err(BodyError::Unreadable),
    };
    let mut body = std::pin::pin!(body);
    let body = async {
        // At most this many bytes, and exactly this many unless chunked.
        let expected = match (chunked, length?) {
            (true, _) => MAX_BODY_BYTES,
            (false, None | Some(0)) => return Ok(Vec::new()),
            (false, Some(n)) if n > MAX_BODY_BYTES => return Err(BodyError::TooLarge),
            (false, Some(n)) => n,
        };
        let mut read = Vec::with_capacity(if chunked { 0 } else { expected });
        while chunked || read.len() < expected {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if read.len() + data.len() > expected {
                            return Err(if chunked {
                                BodyError::TooLarge
                            } else {
                                BodyError::Unreadable
                            });
                        }
                        read.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => return Err(BodyError::Unreadable),
                None if chunked => break,
                None => return Err(BodyError::Unreadable),
            }
        }
        Ok(read)
    }
    .await
    .map_err(|e| match e {
        BodyError::TooLarge => {
            ProtocolError::PayloadTooLarge("the request body is larger than 64 KiB")
        }
        BodyError::Unreadable => ProtocolError::InvalidRequest("the request body is unreadable"),
    })?;
    Ok(ciba::http::Request {
        method: Method::parse(parts.method.as_str()),
        path_info,
        query: parts.uri.query().map(str::to_string),
        headers,
        body,
    })
}

/// Why [`read_request`] refused a body.
enum BodyError {
    /// Over [`MAX_BODY_BYTES`], announced or sent.
    TooLarge,
    /// A malformed or repeated `Content-Length`, a body that ends short of it or runs past
    /// it, or a transport error.
    Unreadable,
}

/// Writes the shared crate's response as Spin's.
pub fn write_response(response: ciba::http::Response) -> http::Response<Full<Bytes>> {
    let mut out = http::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = http::StatusCode::from_u16(response.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            out.headers_mut().append(name, value);
        }
    }
    out
}

/// Serves one request: read it, hand it to `handle`, write the answer. Everything the
/// endpoint needs beyond the request, `handle` takes from [`once`] or this crate.
pub async fn serve(
    endpoint: Endpoint,
    request: spin_sdk::http::Request,
    handle: impl FnOnce(&ciba::http::Request) -> Result<ciba::http::Response, ProtocolError>,
) -> http::Response<Full<Bytes>> {
    // Taken from the head before the body is read, so that a request refused for its body
    // (too large, unreadable) still gets its interaction id back.
    let sent_interaction_id: Vec<String> = request
        .headers()
        .get_all(ciba::fapi::HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let answer = match read_request(request).await {
        Ok(request) => handle(&request),
        Err(e) => Err(e),
    };
    let response = ciba::endpoints::with_interaction_id(
        answer.unwrap_or_else(|e| e.to_response(endpoint)),
        sent_interaction_id.iter().map(String::as_str),
        &OsRandom,
    );
    log_refusal(endpoint, &response);
    write_response(response)
}

/// One log line per refused request: the endpoint, the status, the protocol error and its
/// fixed description, the authenticated client and the reason the answer hides where the
/// endpoint gives them (issue 16), and the interaction id. Never a token, an assertion, a
/// body, a CPF, a CNPJ or a consent id.
fn log_refusal(endpoint: Endpoint, response: &ciba::http::Response) {
    if let Some(error) = &response.error {
        let interaction = response.header(ciba::fapi::HEADER).unwrap_or("-");
        let client = match &response.client {
            // Debug quotes and escapes it: a registration's id cannot break the line.
            Some(id) => format!(" client {id:?}"),
            None => String::new(),
        };
        let detail = match response.detail {
            Some(why) => format!(" ({why})"),
            None => String::new(),
        };
        eprintln!(
            "{endpoint:?} {} {}: {}{detail}{client} (x-fapi-interaction-id {interaction})",
            response.status,
            error.code(),
            error.description()
        );
    }
}

/// Serves one request with an endpoint that needs the store, the clock and randomness:
/// configuration from [`once`], the `default` store opened for this request. It makes no
/// outbound request ([`ciba::client::fetch::NoFetch`]), so the component imports no
/// `wasi:http/outgoing-handler`.
pub async fn serve_with_state<T: 'static>(
    endpoint: Endpoint,
    request: spin_sdk::http::Request,
    cell: &'static OnceLock<Result<T, ConfigError>>,
    load: impl FnOnce(&dyn Variables) -> Result<T, ConfigError>,
    handle: impl FnOnce(&T, &ciba::http::Request, &ciba::endpoints::Deps<'_>) -> ciba::http::Response,
) -> http::Response<Full<Bytes>> {
    serve_with(
        endpoint,
        request,
        cell,
        load,
        handle,
        &ciba::client::fetch::NoFetch,
    )
    .await
}

/// [`serve_with_state`] for an endpoint that fetches keys by `jwks_uri` (token, bc-authorize,
/// device, register): outbound HTTP through [`fetch::SpinFetch`], within the component's
/// `allowed_outbound_hosts`.
pub async fn serve_with_outbound<T: 'static>(
    endpoint: Endpoint,
    request: spin_sdk::http::Request,
    cell: &'static OnceLock<Result<T, ConfigError>>,
    load: impl FnOnce(&dyn Variables) -> Result<T, ConfigError>,
    handle: impl FnOnce(&T, &ciba::http::Request, &ciba::endpoints::Deps<'_>) -> ciba::http::Response,
) -> http::Response<Full<Bytes>> {
    serve_with(endpoint, request, cell, load, handle, &fetch::SpinFetch).await
}

async fn serve_with<T: 'static>(
    endpoint: Endpoint,
    request: spin_sdk::http::Request,
    cell: &'static OnceLock<Result<T, ConfigError>>,
    load: impl FnOnce(&dyn Variables) -> Result<T, ConfigError>,
    handle: impl FnOnce(&T, &ciba::http::Request, &ciba::endpoints::Deps<'_>) -> ciba::http::Response,
    fetch: &dyn ciba::client::fetch::Fetch,
) -> http::Response<Full<Bytes>> {
    serve(endpoint, request, |request| {
        let configured = once(cell, load)?;
        let store = SpinStore::open_default()
            .map_err(|_| ProtocolError::ServerError("the store is unavailable"))?;
        let deps = ciba::endpoints::Deps {
            store: &store,
            clock: &SystemClock,
            random: &OsRandom,
            fetch,
        };
        Ok(handle(configured, request, &deps))
    })
    .await
}
