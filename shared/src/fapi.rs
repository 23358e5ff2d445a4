//! `x-fapi-interaction-id` (FAPI1-B 6.2.1-11; FAPI-BR 5.2.2-23; AMB-17): an RFC 4122 UUID
//! that correlates a request across the client and the server.

use crate::clock::Random;
use crate::error::ProtocolError;
use crate::http::Request;

/// The header's name.
pub const HEADER: &str = "x-fapi-interaction-id";

/// The client's interaction id when it sent a valid one.
pub fn received(request: &Request) -> Option<String> {
    request
        .header_values(HEADER)
        .next()
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
        .map(|u| u.hyphenated().to_string())
}

/// At AS endpoints: echo the client's id, or make a fresh one (BCA-30, AMB-17).
pub fn echo_or_new(request: &Request, random: &dyn Random) -> String {
    received(request).unwrap_or_else(|| {
        let mut bytes = [0u8; 16];
        // Without randomness the id only loses its uniqueness, not any security.
        let _ = random.fill(&mut bytes);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string()
    })
}

/// At the Consents API: required, and echoed (FAPI-BR 5.2.2-23, AMB-17).
pub fn required(request: &Request) -> Result<String, ProtocolError> {
    received(request).ok_or(ProtocolError::InvalidRequest(
        "x-fapi-interaction-id must be an RFC 4122 UUID",
    ))
}
