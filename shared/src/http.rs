//! Plain HTTP request and response types: the components translate Spin's types into these,
//! so every rule can be tested natively without a runtime.

use serde::Serialize;

/// Largest request body read into memory; a larger one is refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest value of any request header, in bytes. The longest one this server reads is the
/// forwarded client certificate: the URL-encoded PEM of one leaf certificate, 3 to 7 KiB for
/// an ICP-Brasil or Directory certificate, so this is more than twice that.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;

/// Longest `Authorization` value, in bytes: this server's tokens are 43 characters, a client
/// assertion never travels there (client secrets are refused, CLI-2), and the device token
/// is the operator's choice; 4 KiB is far above all of them.
pub const MAX_AUTHORIZATION_BYTES: usize = 4 * 1024;

/// Refuses a request whose header values are longer than this server reads: 400
/// `invalid_request`, as every protocol here answers a malformed request (RFC 6749 5.2 and
/// TOK-2 at the token endpoint, CIBA 13 and BCA-29 at bc-authorize, RFC 6750 3.1 at the
/// resource endpoints). A header block over the HTTP server's own limits (hyper, as Spin
/// and the local host run it: about 100 headers or 400 KiB) gets 431 from that server
/// before any component runs.
pub fn check_header_limits<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Result<(), crate::error::ProtocolError> {
    use crate::error::ProtocolError::InvalidRequest;
    for (name, value) in headers {
        if value.len() > MAX_HEADER_VALUE_BYTES {
            return Err(InvalidRequest("a header value is longer than 16 KiB"));
        }
        if name.eq_ignore_ascii_case("authorization") && value.len() > MAX_AUTHORIZATION_BYTES {
            return Err(InvalidRequest(
                "the Authorization header is longer than 4 KiB",
            ));
        }
    }
    Ok(())
}

/// An HTTP method the endpoints tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT` (registration management, REG-1)
    Put,
    /// `DELETE`
    Delete,
    /// Any other method: always refused.
    Other,
}

impl Method {
    /// Maps a method name; unknown names become [`Method::Other`].
    pub fn parse(name: &str) -> Self {
        match name {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            _ => Self::Other,
        }
    }
}

/// An incoming request, fully read. `Debug` prints the method and the header names only: the
/// path may hold an `auth_req_id` (the device API), the headers a bearer token or the device
/// token, the body a client assertion or a request object.
#[derive(Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The path below the route's base, as the runtime reports it (`spin-path-info`).
    pub path_info: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lower case, values as received (repeated headers stay repeated).
    pub headers: Vec<(String, String)>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path_info", &Redacted(self.path_info.len()))
            .field("query", &self.query.as_ref().map(|q| Redacted(q.len())))
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body", &Redacted(self.body.len()))
            .finish()
    }
}

/// `[redacted N bytes]`: how much there was, not what.
struct Redacted(usize);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[redacted {} bytes]", self.0)
    }
}

impl Request {
    /// All values of header `name` (lower case).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An outgoing response. `Debug` prints the body of an error response (fixed strings,
/// [`crate::error`]) and only the size of any other: it may hold tokens, an id_token, a CPF.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The protocol error this response reports, for the adapter's log line (never sent).
    pub error: Option<crate::error::ProtocolError>,
    /// The authenticated client a refusal is for, for the log line (never sent): a client id
    /// is a registration, not personal data, and traces probing to its client (issue 16).
    pub client: Option<String>,
    /// Why, for the log line, where the answer on the wire hides it (HINT-2: a holder who
    /// does not act for the consent's businessEntity answers as an unknown one). A fixed
    /// string, never input.
    pub detail: Option<&'static str>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Response");
        out.field("status", &self.status)
            .field("headers", &self.headers)
            .field("error", &self.error)
            .field("client", &self.client)
            .field("detail", &self.detail);
        match self.error {
            Some(_) => out.field("body", &String::from_utf8_lossy(&self.body)),
            None => out.field("body", &Redacted(self.body.len())),
        };
        out.finish()
    }
}

impl Response {
    /// A JSON response that no cache may keep (FAPI1-B 6.2.1-10 for tokens; design.md for errors).
    pub fn json<T: Serialize + ?Sized>(status: u16, value: &T) -> Self {
        // Serialising a `serde_json::Value` or a plain struct of strings cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Self {
            status,
            headers: vec![
                ("content-type", "application/json".to_string()),
                ("cache-control", "no-store".to_string()),
                ("pragma", "no-cache".to_string()),
            ],
            body,
            error: None,
            client: None,
            detail: None,
        }
    }

    /// A JSON document that caches may keep for `max_age` seconds (discovery and JWKS are
    /// public and change only with configuration).
    pub fn public_json<T: Serialize + ?Sized>(value: &T, max_age: u32) -> Self {
        let mut response = Self::json(200, value);
        response.headers = vec![
            ("content-type", "application/json".to_string()),
            ("cache-control", format!("public, max-age={max_age}")),
        ];
        response
    }

    /// `204 No Content`, not cacheable.
    pub fn no_content() -> Self {
        Self {
            status: 204,
            headers: vec![("cache-control", "no-store".to_string())],
            body: Vec::new(),
            error: None,
            client: None,
            detail: None,
        }
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProtocolError;

    #[test]
    fn header_values_over_their_limits_are_invalid_requests() {
        let cert = "c".repeat(MAX_HEADER_VALUE_BYTES);
        let bearer = format!("Bearer {}", "t".repeat(MAX_AUTHORIZATION_BYTES - 7));
        let at_limits = [
            ("x-client-cert", cert.as_bytes()),
            ("Authorization", bearer.as_bytes()),
        ];
        assert_eq!(check_header_limits(at_limits), Ok(()));
        let long_cert = format!("{cert}c");
        assert_eq!(
            check_header_limits([("x-client-cert", long_cert.as_bytes())]),
            Err(ProtocolError::InvalidRequest(
                "a header value is longer than 16 KiB"
            ))
        );
        let long_bearer = format!("{bearer}t");
        assert_eq!(
            check_header_limits([("authorization", long_bearer.as_bytes())]),
            Err(ProtocolError::InvalidRequest(
                "the Authorization header is longer than 4 KiB"
            ))
        );
        // Another header may be as long as any.
        assert_eq!(
            check_header_limits([("x-other", long_bearer.as_bytes())]),
            Ok(())
        );
    }
}
