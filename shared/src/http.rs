//! Plain HTTP request and response types: the components translate Spin's types into these,
//! so every rule can be tested natively without a runtime.

use serde::Serialize;

/// Largest request body read into memory; a larger one is refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// An HTTP method the endpoints tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
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
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Response");
        out.field("status", &self.status)
            .field("headers", &self.headers)
            .field("error", &self.error);
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
