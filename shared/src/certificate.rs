//! The client certificate, as the TLS-terminating proxy forwards it in `client_cert_header`
//! (design.md: URL-encoded PEM). The proxy has already checked the chain to a trusted CA
//! (CLI-8: ICP-Brasil in production, the Directory CA in sandbox); this server reads the leaf.

use percent_encoding::percent_decode_str;
use x509_cert::der::Decode;

use crate::config::ClientCertHeader;
use crate::dn::DistinguishedName;
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
        let begin = "-----BEGIN CERTIFICATE-----";
        let start = pem.find(begin)? + begin.len();
        let end = start + pem[start..].find("-----END CERTIFICATE-----")?;
        let body: String = pem[start..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
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
        let mut values = request.header_values(name).filter(|v| !v.trim().is_empty());
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ProtocolError::InvalidClient(
                "more than one client certificate",
            ));
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
