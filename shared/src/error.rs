//! The protocol error: one enum, each variant one `error` code.
//!
//! The HTTP status depends on the endpoint (CIBA 13 at bc-authorize, RFC 6749 5.2 at token,
//! RFC 6750 3.1 at userinfo), so [`ProtocolError::status`] takes the [`Endpoint`] and matches
//! exhaustively: there is no catch-all arm. `error_description` is a fixed string chosen by the
//! check that failed; it never echoes input (BCA-28: only `%x20-21 / %x23-5B / %x5D-7E`).
//! Nothing else in the product builds error JSON: [`ProtocolError::to_response`] does.

use crate::http::Response;

/// The endpoint that answers, which decides some status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /.well-known/openid-configuration`
    Discovery,
    /// `GET /jwks`
    Jwks,
    /// `POST /bc-authorize`
    BackchannelAuthentication,
    /// `POST /token`
    Token,
    /// `GET, POST /userinfo`
    UserInfo,
    /// `/device/...`
    Device,
    /// `/open-banking/consents/v3/consents`
    Consents,
    /// `POST /register`, `GET|PUT|DELETE /register/{client_id}` (REG-1)
    Registration,
}

/// Every failure a caller can be told about.
///
/// Each variant carries the fixed description of the check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// `invalid_request`: malformed, missing or duplicated parameters (RFC 6749 5.2, CIBA 13).
    InvalidRequest(&'static str),
    /// `invalid_client`: client authentication failed (CLI-1).
    InvalidClient(&'static str),
    /// `invalid_grant`: the grant is unknown, consumed, or belongs to another client (TOK-4/10).
    InvalidGrant(&'static str),
    /// `unauthorized_client`: the client may not use this grant or flow (BCA-2).
    UnauthorizedClient(&'static str),
    /// `unsupported_grant_type` (RFC 6749 5.2).
    UnsupportedGrantType(&'static str),
    /// `invalid_scope` (BCA-12/13/14, TOK-20).
    InvalidScope(&'static str),
    /// `authorization_pending` (CIBA 11).
    AuthorizationPending(&'static str),
    /// `slow_down` (CIBA 11, TOK-7).
    SlowDown(&'static str),
    /// `access_denied` (CIBA 11/13, BCA-16, TOK-8).
    AccessDenied(&'static str),
    /// `expired_token` (CIBA 11, TOK-9).
    ExpiredToken(&'static str),
    /// `expired_login_hint_token` (CIBA 13).
    ExpiredLoginHintToken(&'static str),
    /// `unknown_user_id` (CIBA 13, HINT-2).
    UnknownUserId(&'static str),
    /// `invalid_binding_message` (CIBA 13, BCA-18).
    InvalidBindingMessage(&'static str),
    /// `expired_id_token_hint` (BR-CIBA 5.2.2-21).
    ExpiredIdTokenHint(&'static str),
    /// `invalid_id_token_hint` (BR-CIBA 5.2.2-21).
    InvalidIdTokenHint(&'static str),
    /// `invalid_token`: a bearer token that is missing, unknown, expired or not bound (RFC 6750 3.1).
    InvalidToken(&'static str),
    /// `insufficient_scope` (RFC 6750 3.1, UI-5).
    InsufficientScope(&'static str),
    /// The caller is authenticated but may not see this resource (a consent of another
    /// client, CONS).
    Forbidden(&'static str),
    /// `CONSENTIMENTO_EM_STATUS_REJEITADO`: revoking a consent that is already rejected
    /// (Consents API v3, CONS-1).
    ConsentAlreadyRejected(&'static str),
    /// `invalid_request` with 413: the body is larger than any request of this server needs
    /// ([`crate::http::MAX_BODY_BYTES`]); refused before it is read.
    PayloadTooLarge(&'static str),
    /// The route exists but not for this method (BCA-1).
    MethodNotAllowed(&'static str),
    /// No such resource under this route.
    NotFound(&'static str),
    /// `server_error`: a fault on our side, such as bad configuration or an unreachable store.
    ServerError(&'static str),
    /// `temporarily_unavailable`: a transient fault worth retrying.
    TemporarilyUnavailable(&'static str),
    /// `invalid_client_metadata` (RFC 7591 3.2.2; registration.md's error table).
    InvalidClientMetadata(&'static str),
    /// `invalid_redirect_uri` (RFC 7591 3.2.2, REG-18).
    InvalidRedirectUri(&'static str),
    /// `invalid_software_statement`: the SSA cannot be trusted (REG-8…11).
    InvalidSoftwareStatement(&'static str),
    /// `unapproved_software_statement`: a valid SSA that policy refuses (REG-12/14/15/29).
    UnapprovedSoftwareStatement(&'static str),
    /// `invalid_webhook_uris` (DCR-SW, REG-19).
    InvalidWebhookUris(&'static str),
    /// `access_denied` with 429 and `Retry-After` (its seconds): an abuse limit is full
    /// (BCA-31). CIBA 13's code for requests the OP refuses on its own; the status and header
    /// of RFC 6585 4 tell HTTP clients to retry later.
    TooManyRequests(&'static str, u32),
    /// `temporarily_unavailable` with 503 and `Retry-After` (its seconds): something this
    /// server depends on is down and nothing cached can stand in, such as a client's key set
    /// that cannot be fetched (registration.md KEY-14). Not the client's fault, so never
    /// `invalid_client`.
    RetryLater(&'static str, u32),
}

impl ProtocolError {
    /// The `error` code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::AuthorizationPending(_) => "authorization_pending",
            Self::SlowDown(_) => "slow_down",
            Self::AccessDenied(_) => "access_denied",
            Self::ExpiredToken(_) => "expired_token",
            Self::ExpiredLoginHintToken(_) => "expired_login_hint_token",
            Self::UnknownUserId(_) => "unknown_user_id",
            Self::InvalidBindingMessage(_) => "invalid_binding_message",
            Self::ExpiredIdTokenHint(_) => "expired_id_token_hint",
            Self::InvalidIdTokenHint(_) => "invalid_id_token_hint",
            Self::InvalidToken(_) => "invalid_token",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::Forbidden(_) => "forbidden",
            Self::ConsentAlreadyRejected(_) => "CONSENTIMENTO_EM_STATUS_REJEITADO",
            Self::PayloadTooLarge(_) => "invalid_request",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::NotFound(_) => "not_found",
            Self::ServerError(_) => "server_error",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
            Self::TooManyRequests(..) => "access_denied",
            Self::InvalidClientMetadata(_) => "invalid_client_metadata",
            Self::InvalidRedirectUri(_) => "invalid_redirect_uri",
            Self::InvalidSoftwareStatement(_) => "invalid_software_statement",
            Self::UnapprovedSoftwareStatement(_) => "unapproved_software_statement",
            Self::InvalidWebhookUris(_) => "invalid_webhook_uris",
            Self::RetryLater(..) => "temporarily_unavailable",
        }
    }

    /// The fixed `error_description` of the check that failed.
    pub fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::AuthorizationPending(d)
            | Self::SlowDown(d)
            | Self::AccessDenied(d)
            | Self::ExpiredToken(d)
            | Self::ExpiredLoginHintToken(d)
            | Self::UnknownUserId(d)
            | Self::InvalidBindingMessage(d)
            | Self::ExpiredIdTokenHint(d)
            | Self::InvalidIdTokenHint(d)
            | Self::InvalidToken(d)
            | Self::InsufficientScope(d)
            | Self::Forbidden(d)
            | Self::ConsentAlreadyRejected(d)
            | Self::PayloadTooLarge(d)
            | Self::MethodNotAllowed(d)
            | Self::NotFound(d)
            | Self::ServerError(d)
            | Self::TemporarilyUnavailable(d)
            | Self::InvalidClientMetadata(d)
            | Self::InvalidRedirectUri(d)
            | Self::InvalidSoftwareStatement(d)
            | Self::UnapprovedSoftwareStatement(d)
            | Self::InvalidWebhookUris(d)
            | Self::TooManyRequests(d, _)
            | Self::RetryLater(d, _) => d,
        }
    }

    /// The HTTP status at `endpoint` (BCA-29 at bc-authorize, CIBA 11 / RFC 6749 5.2 at
    /// token, RFC 6750 3.1 at userinfo and the resource APIs).
    pub fn status(&self, endpoint: Endpoint) -> u16 {
        use Endpoint::*;
        match self {
            Self::InvalidClient(_) => 401,
            Self::InvalidToken(_) => 401,
            Self::InsufficientScope(_) => 403,
            // CIBA 13: 403 at the backchannel endpoint; CIBA 11 / RFC 6749 5.2: 400 at token.
            Self::AccessDenied(_) => match endpoint {
                Token => 400,
                BackchannelAuthentication
                | UserInfo
                | Device
                | Consents
                | Discovery
                | Jwks
                | Registration => 403,
            },
            // The device API: 409 for a request in the wrong state, 410 once expired (AD-4).
            Self::InvalidGrant(_) if endpoint == Device => 409,
            Self::ExpiredToken(_) if endpoint == Device => 410,
            Self::InvalidRequest(_)
            | Self::InvalidGrant(_)
            | Self::UnauthorizedClient(_)
            | Self::UnsupportedGrantType(_)
            | Self::InvalidScope(_)
            | Self::AuthorizationPending(_)
            | Self::SlowDown(_)
            | Self::ExpiredToken(_)
            | Self::ExpiredLoginHintToken(_)
            | Self::UnknownUserId(_)
            | Self::InvalidBindingMessage(_)
            | Self::ExpiredIdTokenHint(_)
            | Self::InvalidIdTokenHint(_)
            | Self::InvalidClientMetadata(_)
            | Self::InvalidRedirectUri(_)
            | Self::InvalidSoftwareStatement(_)
            | Self::UnapprovedSoftwareStatement(_)
            | Self::InvalidWebhookUris(_) => 400,
            Self::Forbidden(_) => 403,
            Self::ConsentAlreadyRejected(_) => 422,
            Self::PayloadTooLarge(_) => 413,
            Self::MethodNotAllowed(_) => 405,
            Self::NotFound(_) => 404,
            Self::ServerError(_) => 500,
            Self::TemporarilyUnavailable(_) => 503,
            Self::TooManyRequests(..) => 429,
            Self::RetryLater(..) => 503,
        }
    }

    /// The whole HTTP answer: `{"error", "error_description"}` and nothing else (BCA-28),
    /// `Cache-Control: no-store` (design.md, Errors), and at bearer-token endpoints the
    /// `WWW-Authenticate` challenge of RFC 6750 3.
    pub fn to_response(&self, endpoint: Endpoint) -> Response {
        let body = match endpoint {
            // The Open Finance Brasil APIs answer with their `ResponseError` shape.
            Endpoint::Consents => serde_json::json!({
                "errors": [{
                    "code": self.code(),
                    "title": self.code(),
                    "detail": self.description(),
                }],
            }),
            _ => serde_json::json!({
                "error": self.code(),
                "error_description": self.description(),
            }),
        };
        let mut response = Response::json(self.status(endpoint), &body);
        response.error = Some(*self);
        let bearer_endpoint = matches!(
            endpoint,
            Endpoint::UserInfo | Endpoint::Consents | Endpoint::Device
        );
        if bearer_endpoint && matches!(self, Self::InvalidToken(_) | Self::InsufficientScope(_)) {
            response.headers.push((
                "www-authenticate",
                format!("Bearer error=\"{}\"", self.code()),
            ));
        }
        if let Self::TooManyRequests(_, retry_after) | Self::RetryLater(_, retry_after) = self {
            response
                .headers
                .push(("retry-after", retry_after.to_string()));
        }
        if let Self::MethodNotAllowed(_) = self {
            let allow = match endpoint {
                Endpoint::Discovery | Endpoint::Jwks => "GET",
                Endpoint::BackchannelAuthentication | Endpoint::Token => "POST",
                Endpoint::UserInfo => "GET, POST",
                Endpoint::Device => "GET, POST",
                Endpoint::Consents => "GET, POST, DELETE",
                // REG-1: the collection takes POST; `/register/{client_id}` overrides this.
                Endpoint::Registration => "POST",
            };
            response.headers.push(("allow", allow.to_string()));
        }
        response
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.description())
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// BCA-28: descriptions use only %x20-21 / %x23-5B / %x5D-7E.
    fn description_is_safe(d: &str) -> bool {
        d.bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
    }

    #[test]
    fn bca_28_error_body_has_only_error_and_description() {
        let r = ProtocolError::InvalidRequest("request is required")
            .to_response(Endpoint::BackchannelAuthentication);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["error", "error_description"]);
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(description_is_safe(
            v["error_description"].as_str().unwrap()
        ));
        assert!(!description_is_safe("has \"quotes\""));
        assert!(!description_is_safe("line\nbreak"));
    }

    #[test]
    fn bca_29_status_codes_depend_on_the_endpoint() {
        let denied = ProtocolError::AccessDenied("x");
        assert_eq!(denied.status(Endpoint::BackchannelAuthentication), 403);
        assert_eq!(denied.status(Endpoint::Token), 400);
        assert_eq!(
            ProtocolError::InvalidClient("x").status(Endpoint::Token),
            401
        );
        assert_eq!(
            ProtocolError::InvalidClient("x").status(Endpoint::BackchannelAuthentication),
            401
        );
        assert_eq!(ProtocolError::ServerError("x").status(Endpoint::Jwks), 500);
    }

    #[test]
    fn key_14_retry_later_is_503_temporarily_unavailable_with_retry_after() {
        for endpoint in [
            Endpoint::Token,
            Endpoint::BackchannelAuthentication,
            Endpoint::Device,
        ] {
            let r = ProtocolError::RetryLater("x", 30).to_response(endpoint);
            assert_eq!(r.status, 503);
            assert_eq!(r.header("retry-after"), Some("30"));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"], "temporarily_unavailable");
        }
    }

    #[test]
    fn ui_3_bearer_errors_carry_www_authenticate() {
        let r = ProtocolError::InvalidToken("x").to_response(Endpoint::UserInfo);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
    }
}
