//! Outbound HTTP for the shared crate's [`Fetch`] (clients' `jwks_uri`, the Directory's
//! keystore; registration.md KEY-10): Spin's `wasi:http/outgoing-handler` 0.2, through the
//! `wasip2` bindings, limited by the component's `allowed_outbound_hosts`.
//!
//! Why WASIp2 and not spin-sdk 7's async client: the shared crate is synchronous (its rules
//! run to the end without awaiting, as every other dependency of theirs is synchronous), and a
//! WASIp3 future cannot be driven to completion from inside it. The WASIp2 interface has
//! blocking pollables, which Spin serves to WASIp3 components too, so a fetch is one ordinary
//! call. The cost: while a fetch blocks, the instance runs nothing else, so requests
//! interleaved on it wait too, for at most the fetch's 3 s timeout. Fetches are rare (a cache
//! miss of a key set: once per `client_jwks_ttl` per URI per instance, KEY-12…15), so this is
//! paid by few requests; the hot paths never fetch.
//!
//! The deadline covers the whole exchange: the connect, first-byte and between-bytes
//! timeouts are set from what is left, and every wait also polls a timer at the deadline.
//! Redirects are not followed (Spin's client follows none); the body is read only up to
//! `max_body` bytes.

use std::time::Duration;

use ciba::client::fetch::{Fetch, FetchError, FetchRequest, FetchResponse};
use wasip2::clocks::monotonic_clock;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::poll;
use wasip2::io::streams::StreamError;

/// Spin's outbound HTTP.
pub struct SpinFetch;

/// Whether the deadline came before `ready`.
fn wait(ready: &poll::Pollable, deadline: monotonic_clock::Instant) -> Result<(), FetchError> {
    let timer = monotonic_clock::subscribe_instant(deadline);
    let woken = poll::poll(&[ready, &timer]);
    if woken.contains(&0) {
        Ok(())
    } else {
        Err(FetchError::Timeout)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn failed(code: ErrorCode) -> FetchError {
    match code {
        ErrorCode::HttpRequestDenied => FetchError::NotAllowed,
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => FetchError::Timeout,
        other => FetchError::Failed(format!("{other:?}")),
    }
}

/// `scheme`, `authority`, `path?query` of an absolute http(s) URL (the shared crate made it).
fn split(url: &str) -> Option<(Scheme, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return None,
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    Some((scheme, authority, if path.is_empty() { "/" } else { path }))
}

impl Fetch for SpinFetch {
    fn get(&self, request: &FetchRequest<'_>) -> Result<FetchResponse, FetchError> {
        let deadline = monotonic_clock::now().saturating_add(nanos(request.timeout));
        let left = || Some(deadline.saturating_sub(monotonic_clock::now()));
        let (scheme, authority, path) =
            split(request.url).ok_or_else(|| FetchError::Failed("not an http(s) URL".into()))?;
        let headers = Fields::new();
        headers
            .append("accept", b"application/json, application/jwk-set+json")
            .map_err(|_| FetchError::Failed("cannot set a header".into()))?;
        let outgoing = OutgoingRequest::new(headers);
        let built = outgoing.set_method(&Method::Get).is_ok()
            && outgoing.set_scheme(Some(&scheme)).is_ok()
            && outgoing.set_authority(Some(authority)).is_ok()
            && outgoing.set_path_with_query(Some(path)).is_ok();
        if !built {
            return Err(FetchError::Failed("not a valid request URL".into()));
        }
        let options = RequestOptions::new();
        // Best effort: a runtime that refuses a timeout still meets the deadline below.
        let _ = options.set_connect_timeout(left());
        let _ = options.set_first_byte_timeout(left());
        let _ = options.set_between_bytes_timeout(left());
        let future = outgoing_handler::handle(outgoing, Some(options)).map_err(failed)?;
        wait(&future.subscribe(), deadline)?;
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(failed(code)),
            Some(Err(())) | None => return Err(FetchError::Failed("no response".into())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(&value).into_owned(),
                )
            })
            .collect();
        let body = response
            .consume()
            .map_err(|()| FetchError::Failed("no body".into()))?;
        let mut read = Vec::new();
        {
            let stream = body
                .stream()
                .map_err(|()| FetchError::Failed("no body stream".into()))?;
            loop {
                wait(&stream.subscribe(), deadline)?;
                // One byte past the cap is enough to know it is too large.
                let room = request
                    .max_body
                    .saturating_sub(read.len())
                    .saturating_add(1);
                match stream.read(room as u64) {
                    Ok(chunk) => {
                        read.extend_from_slice(&chunk);
                        if read.len() > request.max_body {
                            return Err(FetchError::TooLarge);
                        }
                    }
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(FetchError::Failed(e.to_debug_string()));
                    }
                }
            }
        }
        Ok(FetchResponse {
            status,
            headers,
            body: read,
        })
    }
}
