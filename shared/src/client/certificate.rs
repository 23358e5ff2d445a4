//! The client certificate, as the TLS-terminating proxy forwards it in `client_cert_header`
//! (design.md: URL-encoded PEM). The proxy has already checked the chain to a trusted CA
//! (CLI-8: ICP-Brasil in production, the Directory CA in sandbox); this server reads the leaf.

use percent_encoding::percent_decode_str;
use x509_cert::der::Decode;

use crate::client::dn::DistinguishedName;
use crate::config::ClientCertHeader;
use crate::error::ProtocolError;
use crate::http::Request;
use crate::jose::{b64_decode, x5t_s256};

/// OID of `organizationIdentifier` (BR-DCR 7.1-14).
pub const ORGANIZATION_IDENTIFIER: &str = "2.5.4.97";

/// A client certificate that parsed as X.509.
#[derive(Debug, Clone)]
pub struct ClientCertificate {
    x5t_s256: String,
    subject: DistinguishedName,
}

impl ClientCertificate {
    /// Reads the leaf certificate out of a forwarded header value.
    pub fn from_header_value(value: &str) -> Option<Self> {
        let pem = percent_decode_str(value).decode_utf8().ok()?;
        // Exactly one PEM block and nothing around it: a value a proxy joined from two
        // headers (`forged, real`) must not yield its first certificate.
        let pem = pem.trim();
        let body = pem
            .strip_prefix("-----BEGIN CERTIFICATE-----")?
            .strip_suffix("-----END CERTIFICATE-----")?;
        if body.contains("-----") {
            return None;
        }
        let body: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = b64_decode(&body)?;
        let cert = x509_cert::Certificate::from_der(&der).ok()?;
        Some(Self {
            x5t_s256: x5t_s256(&der),
            subject: DistinguishedName::from_name(&cert.tbs_certificate.subject)?,
        })
    }

    /// The certificate the request presents through the proxy, if mTLS is on and one is
    /// there. A header that does not hold a certificate is `invalid_client`.
    pub fn presented(
        request: &Request,
        header: &ClientCertHeader,
    ) -> Result<Option<Self>, ProtocolError> {
        let Some(name) = header.name() else {
            return Ok(None);
        };
        // Every occurrence counts, empty ones included: a proxy that adds an empty header
        // when no certificate was presented must not let the client's own header through.
        let mut values = request.header_values(name);
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ProtocolError::InvalidClient(
                "more than one client certificate header",
            ));
        }
        if value.trim().is_empty() {
            return Ok(None);
        }
        Self::from_header_value(value)
            .map(Some)
            .ok_or(ProtocolError::InvalidClient(
                "the client certificate cannot be read",
            ))
    }

    /// `x5t#S256`, for `cnf` (RFC 8705 3.1, TKN-2).
    pub fn x5t_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// The subject DN.
    pub fn subject(&self) -> &DistinguishedName {
        &self.subject
    }
}
