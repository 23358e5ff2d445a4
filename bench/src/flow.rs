//! The registrations the benchmark acts as (a client, a holder, the device), the signed inputs
//! it prepares, and the load scenarios in the order the CIBA flow needs them: every signed
//! input of a scenario is made before that scenario's clock starts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use devkeys::rsa::RsaPrivateKey;
use http::HeaderName;
use http::header::AUTHORIZATION;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::load::{self, Req, Run, Sample, Target};
use crate::report::Scenario;

/// The discovery document's path.
pub const DISCOVERY: &str = "/.well-known/openid-configuration";
/// The Consents API collection.
pub const CONSENTS: &str = "/open-banking/consents/v3/consents";
/// The CIBA grant type.
pub const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
/// The acr the device approves at.
pub const LOA2: &str = "urn:brasil:openbanking:loa2";
/// Everything but RFC 3986 unreserved characters: ids and tokens (base64url) pass as they are.
pub const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// The media type of form bodies.
pub const FORM: &str = "application/x-www-form-urlencoded";
/// The media type of the device and Consents APIs.
pub const JSON: &str = "application/json";

/// The client the benchmark acts as.
pub struct Client {
    /// Its `client_id`.
    pub id: String,
    /// Its private signing key.
    pub key: RsaPrivateKey,
    /// That key's `kid`.
    pub kid: String,
    /// The certificate header a TLS-terminating proxy would add: name, URL-encoded PEM.
    pub cert: Option<(HeaderName, String)>,
}

impl Client {
    /// Reads the private JWK (or the first key of a JWK Set) in `path`.
    pub fn load(id: &str, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let jwk = value.get("keys").and_then(|k| k.get(0)).unwrap_or(&value);
        Ok(Self {
            id: id.to_string(),
            key: devkeys::private_key_from_jwk(jwk)
                .with_context(|| format!("{} holds no private RSA JWK", path.display()))?,
            kid: jwk["kid"].as_str().unwrap_or_default().to_string(),
            cert: None,
        })
    }

    /// Sends the PEM certificate in `path`, URL-encoded, in the header `name`.
    pub fn with_cert(mut self, name: &str, path: &Path) -> anyhow::Result<Self> {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        anyhow::ensure!(
            pem.contains("-----BEGIN CERTIFICATE-----"),
            "{} is not a PEM certificate",
            path.display()
        );
        let encoded = utf8_percent_encode(&pem, NON_ALPHANUMERIC).to_string();
        self.cert = Some((HeaderName::from_bytes(name.as_bytes())?, encoded));
        Ok(self)
    }
}

/// The registrations a run acts as, from the command line: the server, the client and its
/// key (and certificate behind an mTLS proxy), the holder, the device token. The defaults are
/// `ciba-host dev`'s (its `.dev/` folder).
#[derive(Debug, Clone)]
pub struct Registrations {
    /// `--base`: the running server (http:// only).
    pub base: String,
    /// `--dev-dir`: where `ciba-host dev` wrote its material.
    pub dev_dir: PathBuf,
    /// `--client-id`.
    pub client_id: String,
    /// `--client-key`: the client's private JWK (or JWK Set); default in `dev_dir`.
    pub client_key: Option<PathBuf>,
    /// `--subject`: the holder's `sub`.
    pub subject: String,
    /// `--cpf`: the holder's CPF.
    pub cpf: String,
    /// `--device-token-file`; default in `dev_dir`.
    pub device_token_file: Option<PathBuf>,
    /// `--cert-header`: the header an mTLS proxy forwards the certificate in.
    pub cert_header: Option<String>,
    /// `--cert-file`: the client's PEM certificate.
    pub cert_file: Option<PathBuf>,
    /// `--device-cert-file`: the bank backend's PEM certificate on the device API, sent in
    /// `--cert-header` (required by a server with mTLS on, design.md).
    pub device_cert_file: Option<PathBuf>,
}

impl Default for Registrations {
    fn default() -> Self {
        Self {
            base: "http://127.0.0.1:3000".into(),
            dev_dir: ".dev".into(),
            client_id: "demo-client".into(),
            client_key: None,
            subject: "demo-user-1".into(),
            cpf: "52998224725".into(),
            device_token_file: None,
            cert_header: None,
            cert_file: None,
            device_cert_file: None,
        }
    }
}

impl Registrations {
    /// Takes `arg` (and its value, from `value`) when it is a registration option; `false`
    /// for any other argument.
    pub fn take(
        &mut self,
        arg: &str,
        value: &mut dyn FnMut() -> anyhow::Result<String>,
    ) -> anyhow::Result<bool> {
        match arg {
            "--base" => self.base = value()?,
            "--dev-dir" => self.dev_dir = value()?.into(),
            "--client-id" => self.client_id = value()?,
            "--client-key" => self.client_key = Some(value()?.into()),
            "--subject" => self.subject = value()?,
            "--cpf" => self.cpf = value()?,
            "--device-token-file" => self.device_token_file = Some(value()?.into()),
            "--cert-header" => self.cert_header = Some(value()?),
            "--cert-file" => self.cert_file = Some(value()?.into()),
            "--device-cert-file" => self.device_cert_file = Some(value()?.into()),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The options that only make sense together.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.cert_header.is_some() == self.cert_file.is_some(),
            "--cert-header and --cert-file go together"
        );
        anyhow::ensure!(
            self.device_cert_file.is_none() || self.cert_header.is_some(),
            "--device-cert-file needs --cert-header"
        );
        Ok(())
    }

    /// Reads the key, the certificate and the device token, then the server's discovery
    /// document.
    pub async fn bench(&self, concurrency: usize) -> anyhow::Result<Bench> {
        let key_file = self
            .client_key
            .clone()
            .unwrap_or_else(|| self.dev_dir.join("demo_client_private_key.json"));
        let mut client = Client::load(&self.client_id, &key_file)?;
        if let (Some(name), Some(file)) = (&self.cert_header, &self.cert_file) {
            client = client.with_cert(name, file)?;
        }
        let device_cert = match (&self.cert_header, &self.device_cert_file) {
            (Some(name), Some(file)) => Client::load(&self.client_id, &key_file)?
                .with_cert(name, file)?
                .cert
                .take(),
            _ => None,
        };
        let token_file = self
            .device_token_file
            .clone()
            .unwrap_or_else(|| self.dev_dir.join("device_api_token.txt"));
        let device_token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("cannot read {}", token_file.display()))?
            .trim()
            .to_string();
        let mut bench = Bench {
            target: Target::parse(&self.base)?,
            client,
            subject: self.subject.clone(),
            cpf: self.cpf.clone(),
            device_token,
            device_cert,
            issuer: String::new(),
            token_endpoint: String::new(),
            concurrency,
        };
        bench.discover().await?;
        Ok(bench)
    }
}

/// Everything the scenarios need.
pub struct Bench {
    /// The server.
    pub target: Target,
    /// The client.
    pub client: Client,
    /// The holder's `sub`.
    pub subject: String,
    /// The holder's CPF.
    pub cpf: String,
    /// The device API token.
    pub device_token: String,
    /// The bank backend's certificate on the device API (header name, URL-encoded PEM),
    /// when the server has mTLS on.
    pub device_cert: Option<(HeaderName, String)>,
    /// The issuer (from discovery): the request objects' `aud`.
    pub issuer: String,
    /// The token endpoint (from discovery): the client assertions' `aud`.
    pub token_endpoint: String,
    /// Connections.
    pub concurrency: usize,
}

/// Runs `f(0..n)` on every core, keeping the order.
pub fn parallel<T: Send>(
    n: usize,
    f: impl Fn(usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let chunk = n.div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| scope.spawn(move || (start..n.min(start + chunk)).map(f).collect()))
            .collect();
        let mut out = Vec::with_capacity(n);
        for handle in handles {
            let part: anyhow::Result<Vec<T>> = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?;
            out.extend(part?);
        }
        Ok(out)
    })
}

/// `text` as a form value.
pub fn form_value(text: &str) -> String {
    utf8_percent_encode(text, ESCAPED).to_string()
}

/// The time, in seconds since the epoch.
pub fn unix_now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

impl Bench {
    /// Adds the bank backend's certificate to a device API request, when there is one.
    pub fn device_certificate(&self, req: Req) -> anyhow::Result<Req> {
        match &self.device_cert {
            Some((name, value)) => req.header(name.clone(), value),
            None => Ok(req),
        }
    }

    /// Reads the issuer and the token endpoint from the discovery document.
    pub async fn discover(&mut self) -> anyhow::Result<()> {
        let samples =
            load::sequential(&self.target, &[Req::get(self.target.path(DISCOVERY))]).await?;
        let doc = samples[0].json();
        anyhow::ensure!(
            samples[0].status == 200,
            "discovery answered {}",
            samples[0].describe()
        );
        self.issuer = doc["issuer"]
            .as_str()
            .context("discovery has no issuer")?
            .to_string();
        self.token_endpoint = doc["token_endpoint"]
            .as_str()
            .context("discovery has no token_endpoint")?
            .to_string();
        Ok(())
    }

    /// `n` fresh client assertions (single use, CLI-6), the form fields that carry them.
    pub fn client_auths(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let started = Instant::now();
        let out = parallel(n, |_| self.client_auth())?;
        eprintln!(
            "  signed {n} client assertions in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(out)
    }

    /// One fresh client assertion (single use, CLI-6), as the form fields that carry it.
    pub fn client_auth(&self) -> anyhow::Result<String> {
        let a = devkeys::client_assertion(
            &self.client.key,
            &self.client.kid,
            &self.client.id,
            &self.token_endpoint,
        )?;
        Ok(format!(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
        ))
    }

    /// `claims` signed PS256 with the client's key (its `kid`, and `typ` when given).
    pub fn sign(&self, claims: Value, typ: Option<&str>) -> anyhow::Result<String> {
        use jwt_compact::{AlgorithmExt, Claims, Header};
        let mut header = Header::empty().with_key_id(&self.client.kid);
        if let Some(typ) = typ {
            header = header.with_token_type(typ);
        }
        Ok(
            jwt_compact::alg::Rsa::ps256().token(
                &header,
                &Claims::new(claims),
                &self.client.key,
            )?,
        )
    }

    /// The claims of a backchannel request object for `consent_id` (fresh `jti`, five
    /// minutes), `login_hint` = the consent id.
    pub fn request_claims(&self, consent_id: &str) -> anyhow::Result<Value> {
        let now = unix_now()?;
        Ok(json!({
            "iss": self.client.id,
            "aud": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": devkeys::random_token()?,
            "scope": format!("openid consent:{consent_id}"),
            "login_hint": consent_id,
        }))
    }

    /// A signed backchannel request object for `consent_id`, `login_hint` = the consent id.
    pub fn request_object(&self, consent_id: &str) -> anyhow::Result<String> {
        self.sign(self.request_claims(consent_id)?, None)
    }

    /// A form POST to `path` from the client (with its certificate).
    pub fn client_post(&self, path: &str, body: String) -> anyhow::Result<Req> {
        let req = Req::post(self.target.path(path), FORM, body);
        match &self.client.cert {
            Some((name, value)) => req.header(name.clone(), value),
            None => Ok(req),
        }
    }

    /// A request to a resource with a bearer `token` (with the client's certificate).
    pub fn bearer(&self, req: Req, token: &str) -> anyhow::Result<Req> {
        let req = req.header(AUTHORIZATION, &format!("Bearer {token}"))?;
        match &self.client.cert {
            Some((name, value)) => req.header(name.clone(), value),
            None => Ok(req),
        }
    }

    /// `client_credentials` token requests (scope `consents`), one per assertion.
    pub fn cc_requests(&self, n: usize) -> anyhow::Result<Vec<Req>> {
        self.client_auths(n)?
            .into_iter()
            .map(|auth| {
                self.client_post(
                    "/token",
                    format!("grant_type=client_credentials&scope=consents&{auth}"),
                )
            })
            .collect()
    }

    /// Lodging requests for `n` consents of the holder, with the `client_credentials` token.
    pub fn lodge_requests(&self, n: usize, token: &str) -> anyhow::Result<Vec<Req>> {
        let body = json!({ "data": {
            "loggedUser": { "document": { "identification": self.cpf, "rel": "CPF" } },
            "permissions": ["ACCOUNTS_READ", "RESOURCES_READ"],
        }})
        .to_string();
        (0..n)
            .map(|i| {
                let req = Req::post(self.target.path(CONSENTS), JSON, body.clone()).header(
                    HeaderName::from_static("x-fapi-interaction-id"),
                    &format!("7c9e6679-7425-40de-944b-{i:012x}"),
                )?;
                self.bearer(req, token)
            })
            .collect()
    }

    /// Backchannel requests, one per consent, each with its request object and assertion.
    pub fn bc_requests(&self, consents: &[String]) -> anyhow::Result<Vec<Req>> {
        let started = Instant::now();
        let objects = parallel(consents.len(), |i| self.request_object(&consents[i]))?;
        eprintln!(
            "  signed {} request objects in {:.1} s",
            consents.len(),
            started.elapsed().as_secs_f64()
        );
        let auths = self.client_auths(consents.len())?;
        objects
            .iter()
            .zip(auths)
            .map(|(o, auth)| self.client_post("/bc-authorize", format!("request={o}&{auth}")))
            .collect()
    }

    /// CIBA grant token requests, one per `auth_req_id`.
    pub fn poll_requests(&self, ids: &[String]) -> anyhow::Result<Vec<Req>> {
        let grant = form_value(CIBA_GRANT);
        ids.iter()
            .zip(self.client_auths(ids.len())?)
            .map(|(id, auth)| {
                self.client_post(
                    "/token",
                    format!("grant_type={grant}&auth_req_id={}&{auth}", form_value(id)),
                )
            })
            .collect()
    }

    /// The device approves each request at loa2, for the holder.
    pub fn approve_requests(&self, ids: &[String]) -> anyhow::Result<Vec<Req>> {
        let body = json!({ "acr": LOA2, "amr": ["pwd"], "subject": self.subject }).to_string();
        ids.iter()
            .map(|id| {
                Req::post(
                    self.target.path(&format!(
                        "/device/requests/{}/approve",
                        utf8_percent_encode(id, ESCAPED)
                    )),
                    JSON,
                    body.clone(),
                )
                .header(AUTHORIZATION, &format!("Bearer {}", self.device_token))
                .and_then(|r| self.device_certificate(r))
            })
            .collect()
    }

    /// Refresh grant token requests, one per refresh token.
    pub fn refresh_requests(&self, tokens: &[String]) -> anyhow::Result<Vec<Req>> {
        tokens
            .iter()
            .zip(self.client_auths(tokens.len())?)
            .map(|(rt, auth)| {
                self.client_post(
                    "/token",
                    format!(
                        "grant_type=refresh_token&refresh_token={}&{auth}",
                        form_value(rt)
                    ),
                )
            })
            .collect()
    }

    /// `GET /userinfo` with each access token.
    pub fn userinfo_requests(&self, tokens: &[String]) -> anyhow::Result<Vec<Req>> {
        tokens
            .iter()
            .map(|at| self.bearer(Req::get(self.target.path("/userinfo")), at))
            .collect()
    }

    async fn run(&self, reqs: Vec<Req>) -> anyhow::Result<Run> {
        load::run(&self.target, reqs, self.concurrency).await
    }
}

/// A member of a JSON response, when it is a string.
pub fn member(sample: &Sample, path: &[&str]) -> Option<String> {
    let mut value = sample.json();
    for key in path {
        value = value.get(key)?.clone();
    }
    value.as_str().map(str::to_string)
}

/// The scenario's figures: a request is served when `ok` says so; the note gets `note` and
/// the first error.
fn figures(name: &str, run: &Run, ok: impl Fn(&Sample) -> bool, note: String) -> Scenario {
    let latencies: Vec<Duration> = run.samples.iter().map(|s| s.latency).collect();
    let failed: Vec<&Sample> = run.samples.iter().filter(|s| !ok(s)).collect();
    let mut note = note;
    if let Some(first) = failed.first() {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(&format!("first error: {}", first.describe()));
    }
    let s = Scenario::measured(name, &latencies, run.elapsed, failed.len(), note);
    eprintln!(
        "{name}: {} requests, {} errors, {:.0} req/s, p50 {:.2} ms",
        s.requests, s.errors, s.rps, s.p50
    );
    s
}

fn oauth_error(sample: &Sample) -> Option<String> {
    member(sample, &["error"])
}

/// Every scenario, in the flow's order. A scenario whose inputs an earlier one failed to
/// produce is reported as skipped.
pub async fn scenarios(bench: &Bench, n: usize) -> anyhow::Result<Vec<Scenario>> {
    let mut out = Vec::new();
    let ok_200 = |s: &Sample| s.status == 200;

    eprintln!("discovery");
    let run = bench
        .run(vec![Req::get(bench.target.path(DISCOVERY)); n])
        .await?;
    out.push(figures("discovery", &run, ok_200, String::new()));

    eprintln!("jwks");
    let run = bench
        .run(vec![Req::get(bench.target.path("/jwks")); n])
        .await?;
    out.push(figures("jwks", &run, ok_200, String::new()));

    eprintln!("client_credentials");
    let run = bench.run(bench.cc_requests(n)?).await?;
    let access = |s: &Sample| s.status == 200 && member(s, &["access_token"]).is_some();
    out.push(figures("client_credentials", &run, access, String::new()));
    // The rest of the flow: each stage feeds the next; stop at the first that yields nothing.
    let rest = [
        "consents (lodge)",
        "bc-authorize",
        "poll (pending)",
        "device approve",
        "token (issue)",
        "refresh",
        "userinfo",
    ];
    let skip_rest = |out: &mut Vec<Scenario>, why: &str| {
        let done = out.len() - 3;
        for name in &rest[done..] {
            out.push(Scenario::skipped(name, why));
        }
    };
    let Some(cc_token) = run
        .samples
        .iter()
        .find_map(|s| member(s, &["access_token"]))
    else {
        skip_rest(&mut out, "client_credentials issued no token");
        return Ok(out);
    };

    eprintln!("consents (lodge)");
    let run = bench.run(bench.lodge_requests(n, &cc_token)?).await?;
    let consent_id = |s: &Sample| {
        if s.status == 201 {
            member(s, &["data", "consentId"])
        } else {
            None
        }
    };
    out.push(figures(
        "consents (lodge)",
        &run,
        |s| consent_id(s).is_some(),
        String::new(),
    ));
    let consents: Vec<String> = run.samples.iter().filter_map(consent_id).collect();
    if consents.is_empty() {
        skip_rest(&mut out, "no consent was lodged");
        return Ok(out);
    }

    eprintln!("bc-authorize");
    let run = bench.run(bench.bc_requests(&consents)?).await?;
    let auth_req_id = |s: &Sample| {
        if s.status == 200 {
            member(s, &["auth_req_id"])
        } else {
            None
        }
    };
    out.push(figures(
        "bc-authorize",
        &run,
        |s| auth_req_id(s).is_some(),
        String::new(),
    ));
    let ids: Vec<String> = run.samples.iter().filter_map(auth_req_id).collect();
    if ids.is_empty() {
        skip_rest(&mut out, "bc-authorize accepted no request");
        return Ok(out);
    }

    eprintln!("poll (pending)");
    let run = bench.run(bench.poll_requests(&ids)?).await?;
    let polled_at = Instant::now();
    let count = |error: &str| {
        run.samples
            .iter()
            .filter(|s| s.status == 400 && oauth_error(s).as_deref() == Some(error))
            .count()
    };
    let (pending, slow) = (count("authorization_pending"), count("slow_down"));
    out.push(figures(
        "poll (pending)",
        &run,
        |s| {
            s.status == 400
                && matches!(
                    oauth_error(s).as_deref(),
                    Some("authorization_pending" | "slow_down")
                )
        },
        format!("authorization_pending {pending}, slow_down {slow}"),
    ));

    eprintln!("device approve");
    let run = bench.run(bench.approve_requests(&ids)?).await?;
    out.push(figures("device approve", &run, ok_200, String::new()));
    let approved: Vec<String> = ids
        .iter()
        .zip(&run.samples)
        .filter(|(_, s)| s.status == 200)
        .map(|(id, _)| id.clone())
        .collect();
    if approved.is_empty() {
        skip_rest(&mut out, "the device approved no request");
        return Ok(out);
    }

    eprintln!("token (issue)");
    let reqs = bench.poll_requests(&approved)?;
    // The next poll of a request must wait the interval (5 s, 10 s after a slow_down).
    let wait = Duration::from_millis(if slow > 0 { 10_500 } else { 5_500 });
    if let Some(left) = wait.checked_sub(polled_at.elapsed()) {
        eprintln!(
            "  waiting {:.1} s for the poll interval",
            left.as_secs_f64()
        );
        tokio::time::sleep(left).await;
    }
    let run = bench.run(reqs).await?;
    let issued = |s: &Sample| {
        s.status == 200
            && member(s, &["access_token"]).is_some()
            && member(s, &["refresh_token"]).is_some()
    };
    let slow_again = run
        .samples
        .iter()
        .filter(|s| oauth_error(s).as_deref() == Some("slow_down"))
        .count();
    out.push(figures(
        "token (issue)",
        &run,
        issued,
        if slow_again > 0 {
            format!("slow_down {slow_again}")
        } else {
            String::new()
        },
    ));
    let tokens: Vec<(String, String)> = run
        .samples
        .iter()
        .filter(|s| issued(s))
        .filter_map(|s| {
            Some((
                member(s, &["access_token"])?,
                member(s, &["refresh_token"])?,
            ))
        })
        .collect();
    if tokens.is_empty() {
        skip_rest(&mut out, "no token was issued");
        return Ok(out);
    }
    let (access_tokens, refresh_tokens): (Vec<String>, Vec<String>) = tokens.into_iter().unzip();

    eprintln!("refresh");
    let run = bench.run(bench.refresh_requests(&refresh_tokens)?).await?;
    out.push(figures("refresh", &run, access, String::new()));

    eprintln!("userinfo");
    let probe = load::sequential(
        &bench.target,
        &bench.userinfo_requests(&access_tokens[..1])?,
    )
    .await?;
    if probe[0].status == 404 && oauth_error(&probe[0]).is_none() {
        out.push(Scenario::skipped(
            "userinfo",
            "GET /userinfo answered 404 (no such route yet)",
        ));
        return Ok(out);
    }
    let run = bench.run(bench.userinfo_requests(&access_tokens)?).await?;
    out.push(figures(
        "userinfo",
        &run,
        |s| s.status == 200 && member(s, &["sub"]).is_some(),
        String::new(),
    ));
    Ok(out)
}
