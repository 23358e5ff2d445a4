//! `application/x-www-form-urlencoded` bodies (RFC 6749 3.2, 4.1.3; CIBA 7.1).
//!
//! A parameter sent twice is refused here, once, for every endpoint (RFC 6749 3.1:
//! "Request and response parameters MUST NOT be included more than once"); a parameter
//! with an empty value counts as absent (RFC 6749 3.1).

use crate::error::ProtocolError;
use crate::http::Request;

/// Most parameters a form may carry; no endpoint needs more than a dozen.
const MAX_PARAMETERS: usize = 64;

/// A form whose parameter names are unique. Its values are client assertions, request
/// objects, `auth_req_id`s and refresh tokens: `Debug` prints the names only.
#[derive(Clone, PartialEq, Eq)]
pub struct Form(Vec<(String, String)>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Form")
            .field(&self.names().collect::<Vec<_>>())
            .finish()
    }
}

impl Form {
    /// Parses the body of a form POST; the content type must say so (BCA-1, TOK-1).
    pub fn parse(request: &Request) -> Result<Self, ProtocolError> {
        let form_type = request
            .header_values("content-type")
            .next()
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(ProtocolError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        Self::parse_body(&request.body)
    }

    /// Parses form-encoded bytes (WHATWG URL 5.1, as RFC 6749 B uses it), strictly: a name or
    /// value that does not decode to UTF-8 (`%FF`, raw Latin-1) is refused, never replaced.
    pub fn parse_body(body: &[u8]) -> Result<Self, ProtocolError> {
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
            let (name, value) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let (name, value) = (decode(name)?, decode(value)?);
            if value.is_empty() {
                continue;
            }
            if params.iter().any(|(n, _)| *n == name) {
                return Err(ProtocolError::InvalidRequest("a parameter is repeated"));
            }
            if params.len() == MAX_PARAMETERS {
                return Err(ProtocolError::InvalidRequest("too many parameters"));
            }
            params.push((name, value));
        }
        Ok(Self(params))
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or `invalid_request` naming what is missing.
    pub fn require(&self, name: &str, missing: &'static str) -> Result<&str, ProtocolError> {
        self.get(name).ok_or(ProtocolError::InvalidRequest(missing))
    }

    /// Every parameter name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// `+` is a space, then percent-decoding, then strict UTF-8.
fn decode(raw: &[u8]) -> Result<String, ProtocolError> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes)
        .map_err(|_| ProtocolError::InvalidRequest("the form is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_are_absent() {
        let form = Form::parse_body(b"grant_type=client_credentials&scope=&a=%20b+c").unwrap();
        assert_eq!(form.get("grant_type"), Some("client_credentials"));
        assert_eq!(form.get("scope"), None);
        assert_eq!(form.get("a"), Some(" b c"));
        assert_eq!(
            Form::parse_body(b"scope=a&scope=b"),
            Err(ProtocolError::InvalidRequest("a parameter is repeated"))
        );
    }

    #[test]
    fn invalid_utf_8_is_refused_not_replaced() {
        let refused = Err(ProtocolError::InvalidRequest("the form is not valid UTF-8"));
        assert_eq!(Form::parse_body(b"scope=%FF"), refused);
        assert_eq!(Form::parse_body(b"sc%C3ope=x"), refused);
        assert_eq!(Form::parse_body(&[b's', b'=', 0xE9]), refused);
        let form = Form::parse_body("a=%C3%A9&b=%2B1&c=x=y".as_bytes()).unwrap();
        assert_eq!(form.get("a"), Some("é"));
        assert_eq!(form.get("b"), Some("+1"));
        assert_eq!(form.get("c"), Some("x=y"));
    }
}
