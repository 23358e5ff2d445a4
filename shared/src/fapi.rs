//! `x-fapi-interaction-id` (FAPI1-B 6.2.1-11; FAPI-BR 5.2.2-23; AMB-17): an RFC 4122 UUID
//! that correlates a request across the client and the server. The client's value comes back
//! byte for byte; the server never rewrites it (no lower-casing, no other UUID forms).

use crate::clock::Random;
use crate::error::ProtocolError;
use crate::http::Request;

/// The header's name.
pub const HEADER: &str = "x-fapi-interaction-id";

/// Whether `value` is a UUID in the text form of RFC 4122 3: 8-4-4-4-12 hexadecimal digits,
/// either case. Braced, `urn:uuid:` and unhyphenated forms are not that form.
pub fn is_uuid_text(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The client's interaction id, exactly as sent, when it sent one valid id.
pub fn received<'a>(mut values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let first = values.next()?;
    (values.next().is_none() && is_uuid_text(first)).then_some(first)
}

/// The id every response carries: the client's, echoed, or a fresh random UUID when it sent
/// none or one that is not a UUID (BCA-30, AMB-17: AS endpoints never refuse for it).
pub fn echo_or_new<'a>(values: impl Iterator<Item = &'a str>, random: &dyn Random) -> String {
    match received(values) {
        Some(id) => id.to_string(),
        None => {
            let mut bytes = [0u8; 16];
            // Without randomness the id only loses its uniqueness, not any security.
            let _ = random.fill(&mut bytes);
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .hyphenated()
                .to_string()
        }
    }
}

/// At the Consents API the header is required (FAPI-BR 5.2.2-23, AMB-17).
pub fn require(request: &Request) -> Result<(), ProtocolError> {
    received(request.header_values(HEADER))
        .map(drop)
        .ok_or(ProtocolError::InvalidRequest(
            "x-fapi-interaction-id must be an RFC 4122 UUID",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::CountingRandom;

    #[test]
    fn bca_30_a_uuid_is_echoed_byte_for_byte() {
        let random = CountingRandom::default();
        for id in [
            "5B8F2C1E-1D2A-4B3C-9D4E-5F6A7B8C9D0E",
            "5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e",
            "5b8F2c1e-1D2a-4b3c-9d4e-5f6a7b8c9d0E",
        ] {
            assert_eq!(echo_or_new([id].into_iter(), &random), id);
        }
        for not_text_form in [
            "{5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e}",
            "urn:uuid:5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0e",
            "5b8f2c1e1d2a4b3c9d4e5f6a7b8c9d0e",
            "5b8f2c1e-1d2a-4b3c-9d4e-5f6a7b8c9d0g",
            "",
        ] {
            let fresh = echo_or_new([not_text_form].into_iter(), &random);
            assert_ne!(fresh, not_text_form);
            assert!(is_uuid_text(&fresh));
        }
    }
}
