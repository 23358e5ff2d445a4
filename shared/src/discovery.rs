//! The discovery document (OIDD 3, RFC 8414 2, CIBA 4, FAPI-BR, BR-CIBA-GH §8): DISC-1…20.
//!
//! It is computed from configuration so that it advertises exactly what this server does
//! (DISC-20): poll mode only, PS256 only, and the auth methods the registered clients use.

use serde_json::{Value, json};

use crate::client::registration::RoleScopes;
use crate::client::registry::{AuthMethod, Clients, GRANT_CIBA};
use crate::config::{ClientCertHeader, ConfigError, Issuer, Variables, required, var};
use crate::jose::jwe::A256GCM;
use crate::jose::{PS256, RSA_OAEP};
use crate::users::Users;

/// Route of the JWK Set (design.md).
pub const JWKS_PATH: &str = "/jwks";
/// Route of the token endpoint.
pub const TOKEN_PATH: &str = "/token";
/// Route of the UserInfo endpoint.
pub const USERINFO_PATH: &str = "/userinfo";
/// Route of the backchannel authentication endpoint.
pub const BC_AUTHORIZE_PATH: &str = "/bc-authorize";
/// Route of dynamic client registration (REG-1).
pub const REGISTER_PATH: &str = "/register";

/// `acr` values of the profile (BR-CIBA 5.2.2-5/6, DISC-9).
pub const ACR_LOA2: &str = "urn:brasil:openbanking:loa2";
/// Strong (multi-factor) authentication.
pub const ACR_LOA3: &str = "urn:brasil:openbanking:loa3";
/// The AS-generated login_hint_token type (BR-CIBA-GH 5.2.4.1.1).
pub const LHT_AS_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:as-generated";
/// The AD-generated login_hint_token type (BR-CIBA-GH 5.2.4.1.2).
pub const LHT_AD_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:ad-generated";

/// What discovery is computed from.
#[derive(Debug)]
pub struct DiscoverySettings {
    /// `issuer`.
    pub issuer: Issuer,
    /// `client_cert_header`: with it, mTLS aliases and certificate-bound tokens.
    pub client_cert_header: ClientCertHeader,
    /// `clients`: the auth methods and scopes in use.
    pub clients: Clients,
    /// `users`: whether `cnpj` is served.
    pub users: Users,
    /// `mtls_base_url`: where the mTLS aliases point; `None`, the issuer's own host.
    pub mtls_base_url: Option<Issuer>,
    /// `role_scopes`: the scopes a registration may ask for (REG-22).
    pub role_scopes: RoleScopes,
}

impl DiscoverySettings {
    /// Reads the variables discovery depends on.
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: Issuer::parse(&required(vars, var::ISSUER)?)?,
            client_cert_header: ClientCertHeader::load(vars)?,
            clients: Clients::load(vars)?,
            users: Users::load(vars)?,
            mtls_base_url: load_mtls_base_url(vars)?,
            role_scopes: RoleScopes::load(vars)?,
        })
    }

    /// The document.
    pub fn document(&self) -> Value {
        let issuer = &self.issuer;
        let mtls = self.client_cert_header.mtls();

        // DISC-14/20: the methods registered clients use; tls_client_auth needs the proxy's
        // certificate header. With no client registered, private_key_jwt (CLI-2).
        let mut auth_methods: Vec<&str> = [AuthMethod::PrivateKeyJwt, AuthMethod::TlsClientAuth]
            .into_iter()
            .filter(|m| mtls || *m == AuthMethod::PrivateKeyJwt)
            .filter(|m| self.clients.all().iter().any(|c| c.auth_method == *m))
            .map(AuthMethod::name)
            .collect();
        if auth_methods.is_empty() {
            auth_methods.push(AuthMethod::PrivateKeyJwt.name());
        }

        // DISC-19: openid plus every role scope a static client is registered for and, where
        // registration is offered (REG-2: with mTLS), every scope `role_scopes` lets a
        // registration ask for (REG-22, REG-23): a scope the bank adds for a role is listed.
        // In that order, each once.
        let registrable = self.role_scopes.all().filter(|_| mtls);
        let mut scopes: Vec<&str> = vec!["openid"];
        for scope in self
            .clients
            .all()
            .iter()
            .flat_map(|c| c.scopes.iter().map(String::as_str))
            .chain(registrable)
        {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }

        // DISC-11: cnpj only when the bank serves legal persons.
        let mut claims = vec!["sub", "acr", "auth_time", "cpf"];
        if self.users.serves_legal_persons() {
            claims.push("cnpj");
        }

        let mut doc = json!({
            "issuer": issuer.as_str(),
            "jwks_uri": issuer.url(JWKS_PATH),
            "token_endpoint": issuer.url(TOKEN_PATH),
            "userinfo_endpoint": issuer.url(USERINFO_PATH),
            "backchannel_authentication_endpoint": issuer.url(BC_AUTHORIZE_PATH),
            "backchannel_token_delivery_modes_supported": ["poll"],
            "backchannel_authentication_request_signing_alg_values_supported": [PS256],
            "backchannel_user_code_parameter_supported": false,
            "backchannel_endpoint_login_hint_token_types_supported": [LHT_AS_GENERATED, LHT_AD_GENERATED],
            "grant_types_supported": [GRANT_CIBA, "client_credentials", "refresh_token"],
            "acr_values_supported": [ACR_LOA2, ACR_LOA3],
            "claims_parameter_supported": true,
            "claims_supported": claims,
            "request_parameter_supported": true,
            "request_object_signing_alg_values_supported": [PS256],
            "request_uri_parameter_supported": false,
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": [PS256],
            "tls_client_certificate_bound_access_tokens": mtls,
            "id_token_signing_alg_values_supported": [PS256],
            // DISC-17: encrypted id_tokens are offered (TKN-4), with the profile's only pair.
            "id_token_encryption_alg_values_supported": [RSA_OAEP],
            "id_token_encryption_enc_values_supported": [A256GCM],
            "subject_types_supported": ["public"],
            "response_types_supported": [],
            "scopes_supported": scopes,
        });
        // DISC-3 (BR-DCR 6.1-5/7): the endpoints a client reaches with its certificate, on
        // the mTLS host (`mtls_base_url`), or on the issuer's own host when one proxy asks
        // every caller for a certificate. REG-2: registration needs mTLS (REG-3), so it is
        // offered only with it, and among the aliases.
        if mtls {
            let base = self.mtls_base_url.as_ref().unwrap_or(issuer);
            doc["registration_endpoint"] = json!(issuer.url(REGISTER_PATH));
            doc["mtls_endpoint_aliases"] = json!({
                "token_endpoint": base.url(TOKEN_PATH),
                "userinfo_endpoint": base.url(USERINFO_PATH),
                "backchannel_authentication_endpoint": base.url(BC_AUTHORIZE_PATH),
                "registration_endpoint": base.url(REGISTER_PATH),
            });
        }
        doc
    }
}

/// `mtls_base_url`: empty, or a URL of the issuer's form (DISC-1: https, no path end slash,
/// no query or fragment; http only on loopback).
fn load_mtls_base_url(vars: &dyn Variables) -> Result<Option<Issuer>, ConfigError> {
    match vars.get(var::MTLS_BASE_URL)? {
        Some(text) if !text.trim().is_empty() => Issuer::parse(text.trim())
            .map(Some)
            .map_err(|e| ConfigError::new(var::MTLS_BASE_URL, e.problem)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(extra: &[(&'static str, &str)]) -> Result<Value, ConfigError> {
        let mut vars = crate::fixtures::variables();
        for (name, value) in extra {
            vars.insert(name, value.to_string());
        }
        DiscoverySettings::load(&vars).map(|s| s.document())
    }

    fn scopes(d: &Value) -> Vec<&str> {
        d["scopes_supported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    /// DISC-19 with REG-22: `scopes_supported` is openid, the static clients' scopes, then
    /// every scope of `role_scopes` (a scope the bank adds for a role too), each once, in a
    /// stable order; without mTLS nothing can register (REG-2/3), so no role scope is listed.
    #[test]
    fn disc_19_reg_22_scopes_supported_lists_the_role_scopes_once() {
        let mut expected = vec!["openid"];
        let d = document(&[(var::CLIENTS, "[]")]).unwrap();
        let defaults = [
            "accounts",
            "credit-cards-accounts",
            "consents",
            "customers",
            "invoice-financings",
            "financings",
            "loans",
            "unarranged-accounts-overdraft",
            "resources",
            "payments",
        ];
        expected.extend(defaults);
        assert_eq!(scopes(&d), expected, "REG-22's table");
        let table =
            r#"{"DADOS":"openid accounts payments","PAGTO":"openid payments recurring-payments"}"#;
        let d = document(&[
            (var::CLIENTS, "[]"),
            (crate::client::registration::var::ROLE_SCOPES, table),
        ])
        .unwrap();
        assert_eq!(
            scopes(&d),
            ["openid", "accounts", "payments", "recurring-payments"],
            "role by role, each scope once"
        );
        let d = document(&[
            (var::CLIENTS, "[]"),
            (crate::client::registration::var::ROLE_SCOPES, table),
            (var::CLIENT_CERT_HEADER, ""),
        ])
        .unwrap();
        assert_eq!(scopes(&d), ["openid"], "no registration without mTLS");
    }

    #[test]
    fn disc_3_mtls_aliases_follow_mtls_base_url() {
        let d = document(&[]).unwrap();
        assert_eq!(
            d["mtls_endpoint_aliases"]["token_endpoint"],
            json!("https://auth.bank.example/token")
        );
        let d = document(&[(var::MTLS_BASE_URL, "https://matls-auth.bank.example")]).unwrap();
        assert_eq!(
            d["mtls_endpoint_aliases"],
            json!({
                "token_endpoint": "https://matls-auth.bank.example/token",
                "userinfo_endpoint": "https://matls-auth.bank.example/userinfo",
                "backchannel_authentication_endpoint": "https://matls-auth.bank.example/bc-authorize",
                "registration_endpoint": "https://matls-auth.bank.example/register",
            })
        );
        // REG-2: the plain registration endpoint stays on the issuer.
        assert_eq!(
            d["registration_endpoint"],
            json!("https://auth.bank.example/register")
        );
        assert_eq!(
            d["token_endpoint"],
            json!("https://auth.bank.example/token")
        );
        for bad in [
            "http://matls.example",
            "https://matls.example/",
            "matls.example",
        ] {
            let e = document(&[(var::MTLS_BASE_URL, bad)]).unwrap_err();
            assert_eq!(e.variable, var::MTLS_BASE_URL, "{bad}");
        }
        let off = document(&[
            (var::MTLS_BASE_URL, "https://matls-auth.bank.example"),
            (var::CLIENT_CERT_HEADER, ""),
        ])
        .unwrap();
        assert!(
            off.get("mtls_endpoint_aliases").is_none(),
            "no mTLS, no aliases"
        );
    }
}
