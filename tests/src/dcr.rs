//! Dynamic client registration against the fake Directory ([`crate::directory`]): the
//! Directory's SSA signing key (served as `openbanking.jwks`), software statements it signs,
//! and TPPs with their client keys (served as their `application.jwks`) and their Brasil
//! client certificates (UID = `software_id`, organizationIdentifier = `OFBBR-<org_id>`).

use std::collections::HashMap;
use std::sync::OnceLock;

use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{Map, Value, json};

use crate::assertion::{self, claims_at};
use crate::ciba::CERT_HEADER;
use crate::directory::{Directory, OPENBANKING_JWKS, application_jwks};
use crate::{Response, Server, certificate_header, variables};

/// The `iss` of the fake Directory's SSAs (`ssa_issuer`).
pub const SSA_ISSUER: &str = "Open Banking Open Banking Brasil sandbox SSA issuer";

/// The `kid` of the Directory's SSA signing key.
pub const DIRECTORY_KID: &str = "directory-ssa-1";

/// The Directory's SSA signing key, generated once per run.
pub fn directory_key() -> &'static devkeys::rsa::RsaPrivateKey {
    static KEY: OnceLock<devkeys::rsa::RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| devkeys::rsa_key(2048).unwrap())
}

/// Its public half as a JWK Set (what `openbanking.jwks` serves).
pub fn directory_jwks() -> Value {
    json!({ "keys": [devkeys::public_jwk(
        &devkeys::rsa::RsaPublicKey::from(directory_key()),
        DIRECTORY_KID,
        "sig",
        "PS256",
    )] })
}

/// The bundle's variables with registration pointed at `directory` (mTLS on).
pub fn dcr_variables(directory: &Directory) -> HashMap<&'static str, String> {
    let mut vars = variables();
    vars.insert("ssa_issuer", SSA_ISSUER.to_string());
    vars.insert("ssa_jwks_uri", directory.url(OPENBANKING_JWKS));
    vars.insert("jwks_allowed_hosts", directory.origin());
    vars
}

/// A fake Directory serving the SSA keys.
pub fn start_directory() -> Directory {
    let directory = Directory::start();
    directory.serve(OPENBANKING_JWKS, directory_jwks());
    directory
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A TPP's software on the Directory: its ids, client key (published as its
/// `application.jwks`), certificate and redirect URIs.
pub struct Tpp {
    /// `org_id`.
    pub org_id: String,
    /// `software_id`.
    pub software_id: String,
    /// The client's signing key.
    pub key: devkeys::rsa::RsaPrivateKey,
    /// Its `kid`.
    pub kid: String,
    /// The client certificate as the proxy forwards it.
    pub cert: String,
    /// `software_jwks_uri`.
    pub jwks_uri: String,
    /// `software_redirect_uris`.
    pub redirect_uris: Vec<String>,
}

impl Tpp {
    /// A new software of a new organisation, its keys published on `directory`.
    pub fn new(directory: &Directory) -> Self {
        let (org_id, software_id) = (uuid(), uuid());
        let key = devkeys::rsa_key(2048).unwrap();
        let kid = format!("{software_id}-sig");
        let path = application_jwks(&org_id, &software_id);
        directory.serve(
            &path,
            json!({ "keys": [devkeys::public_jwk(
                &devkeys::rsa::RsaPublicKey::from(&key),
                &kid,
                "sig",
                "PS256",
            )] }),
        );
        let cert = certificate_header(&format!(
            "UID={software_id},2.5.4.97=OFBBR-{org_id},CN=tpp.example,O=TPP Ltda,C=BR"
        ));
        Self {
            jwks_uri: directory.url(&path),
            redirect_uris: vec![
                "https://tpp.example/cb".to_string(),
                "https://tpp.example/cb2".to_string(),
            ],
            org_id,
            software_id,
            key,
            kid,
            cert,
        }
    }

    /// The claims of a fresh SSA for this software, issued at `now` (roles DADOS and PAGTO).
    pub fn ssa_claims(&self, now: i64) -> Map<String, Value> {
        json!({
            "iss": SSA_ISSUER,
            "iat": now,
            "jti": uuid(),
            "org_id": self.org_id,
            "org_name": "TPP Ltda",
            "org_status": "Active",
            "software_id": self.software_id,
            "software_client_id": self.software_id,
            "software_client_name": "TPP App",
            "software_jwks_uri": self.jwks_uri,
            "software_redirect_uris": self.redirect_uris,
            "software_statement_roles": [
                { "role": "DADOS", "authorisation_domain": "Open Banking", "status": "Active" },
                { "role": "PAGTO", "authorisation_domain": "Open Banking", "status": "Active" },
            ],
            "software_roles": ["DADOS", "PAGTO"],
            "software_version": "1.0",
            "software_mode": "Live",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    /// A fresh SSA signed by the Directory.
    pub fn ssa(&self, now: i64) -> String {
        sign_ssa(self.ssa_claims(now))
    }

    /// The registration request the OIDF Brazil DCR modules send (registration.md §3): the
    /// redirect-flow grants and response type, `jwks_uri` = `software_jwks_uri`, one SSA
    /// redirect URI, private_key_jwt.
    pub fn registration(&self, now: i64) -> Value {
        json!({
            "grant_types": ["authorization_code", "implicit", "refresh_token", "client_credentials"],
            "jwks_uri": self.jwks_uri,
            "token_endpoint_auth_method": "private_key_jwt",
            "response_types": ["code id_token"],
            "redirect_uris": [self.redirect_uris[0]],
            "software_statement": self.ssa(now),
        })
    }

    /// A client assertion of the registered `client_id` for the token endpoint of `issuer`.
    pub fn client_auth(&self, client_id: &str, issuer: &str, now: i64) -> String {
        let a = assertion::sign(
            "PS256",
            &self.key,
            &self.kid,
            claims_at(client_id, &format!("{issuer}/token"), now),
        );
        assertion::form(&a)
    }

    /// Lodges a consent for holder-1 with the client's `consents` access token (201), as
    /// the registered client `client_id`: its `consentId`.
    pub fn lodge_consent(&self, server: &Server, access_token: &str) -> String {
        let auth = format!("Bearer {access_token}");
        let lodged = server.send(
            "POST",
            "/open-banking/consents/v3/consents",
            &[
                ("authorization", &auth),
                (CERT_HEADER, &self.cert),
                ("content-type", "application/json"),
                (
                    "x-fapi-interaction-id",
                    "3f1c6a4e-8f7d-4c2b-9a1e-2b3c4d5e6f70",
                ),
            ],
            json!({ "data": {
                "loggedUser": { "document": { "identification": crate::ciba::HOLDER_1_CPF, "rel": "CPF" } },
                "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
            }})
            .to_string()
            .as_bytes(),
        );
        assert_eq!(lodged.status, 201, "{}", crate::ciba::text(&lodged));
        lodged.json()["data"]["consentId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A backchannel request of the registered client `client_id` for `consent_id`
    /// (`login_hint` = the consent), at `now`: its `auth_req_id` (200).
    pub fn start_ciba(
        &self,
        server: &Server,
        client_id: &str,
        consent_id: &str,
        now: i64,
    ) -> String {
        let claims = json!({
            "iss": client_id, "aud": server.base, "iat": now, "nbf": now, "exp": now + 300,
            "jti": uuid(),
            "scope": format!("openid consent:{consent_id}"),
            "login_hint": consent_id,
        });
        let request = assertion::sign(
            "PS256",
            &self.key,
            &self.kid,
            claims.as_object().unwrap().clone(),
        );
        let body = format!(
            "request={request}&{}",
            self.client_auth(client_id, &server.base, now)
        );
        let started = server.post_form("/bc-authorize", Some(&self.cert), &body);
        assert_eq!(started.status, 200, "{}", crate::ciba::text(&started));
        started.json()["auth_req_id"].as_str().unwrap().to_string()
    }
}

/// Signs SSA claims with the Directory's key.
pub fn sign_ssa(claims: Map<String, Value>) -> String {
    jwt_compact::alg::Rsa::ps256()
        .token(
            &Header::empty().with_key_id(DIRECTORY_KID),
            &Claims::new(claims),
            directory_key(),
        )
        .unwrap()
}

/// `POST /register` with `body`, presenting `cert` (none: no certificate).
pub fn post_registration(server: &Server, cert: Option<&str>, body: &Value) -> Response {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(cert) = cert {
        headers.push((CERT_HEADER, cert));
    }
    server.send("POST", "/register", &headers, body.to_string().as_bytes())
}

/// A DCM call on `client_id`: `method`, with `cert` and the RAT `rat` when given.
pub fn manage(
    server: &Server,
    method: &str,
    client_id: &str,
    cert: Option<&str>,
    rat: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let bearer = rat.map(|r| format!("Bearer {r}"));
    let mut headers = vec![];
    if let Some(cert) = cert {
        headers.push((CERT_HEADER, cert));
    }
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    server.send(
        method,
        &format!("/register/{client_id}"),
        &headers,
        body.as_bytes(),
    )
}
