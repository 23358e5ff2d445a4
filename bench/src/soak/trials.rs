//! One trial of each race: its set-up through the public API (consent, backchannel request,
//! hint, QR token), the burst, and the judgement. Signing happens on blocking threads before
//! each burst, so the racers leave together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use devkeys::rsa::{BigUint, RsaPublicKey};
use http::header::AUTHORIZATION;
use percent_encoding::utf8_percent_encode;
use serde_json::{Value, json};

use super::pool::Pool;
use super::{Kind, Tallies, Verdict};
use crate::flow::{self, Bench, CIBA_GRANT, ESCAPED, JSON, LOA2, form_value, member};
use crate::load::{Req, Sample};

/// The AS-generated login_hint_token type (HINT-14).
const AS_GENERATED: &str = "urn:brasil:openbanking:ciba:login-hint-token-type:as-generated";
/// `typ` of the QR code's JWS (HINT-15).
const CIBA_BR_JWT: &str = "cibabr+jwt";
/// What the device shows (BCA-17/18).
const BINDING_MESSAGE: &str = "Soak 1234";

/// The soak's session: the registrations, a cached `client_credentials` token for lodging
/// consents, and the server's encryption key for QR tokens.
pub struct Soak {
    bench: Bench,
    /// `host:port` of every instance: the bench's target first, then `--base` given again.
    authorities: Vec<String>,
    burst: usize,
    cc_token: tokio::sync::Mutex<Option<(String, Instant)>>,
    qr_key: tokio::sync::OnceCell<(RsaPublicKey, String)>,
}

/// A trial's result now, or a probe still waiting out an interval.
pub enum Outcome {
    /// Judged.
    Now(anyhow::Result<Verdict>),
    /// Judged when the task ends.
    Later(tokio::task::JoinHandle<anyhow::Result<Verdict>>),
}

/// `200`, `400 invalid_grant`, `0` (transport): what a racer got, without its body (which
/// may hold tokens).
fn answer(s: &Sample) -> String {
    match (s.status, member(s, &["error"])) {
        (0, _) => "no answer (connection failed)".to_string(),
        (status, Some(e)) if status >= 400 => format!("{status} {e}"),
        (status, _) => status.to_string(),
    }
}

fn violated(what: String) -> Verdict {
    Verdict::Violated {
        double: false,
        what,
    }
}

fn oauth_error(s: &Sample, status: u16, error: &str) -> bool {
    s.status == status && member(s, &["error"]).as_deref() == Some(error)
}

/// Exactly one racer won, every other was refused as the protocol says: the winner's
/// index. Otherwise the violation, or an error when a lost connection leaves the race
/// undecided.
fn exactly_one(
    samples: &[Sample],
    won: impl Fn(&Sample) -> bool,
    refused: impl Fn(&Sample) -> bool,
) -> anyhow::Result<Result<usize, Verdict>> {
    let winners: Vec<usize> = (0..samples.len()).filter(|&i| won(&samples[i])).collect();
    if winners.len() > 1 {
        return Ok(Err(Verdict::Violated {
            double: true,
            what: format!("{} of {} racers won", winners.len(), samples.len()),
        }));
    }
    if let Some(s) = samples.iter().find(|s| s.status >= 500) {
        return Ok(Err(violated(format!("a racer got {}", answer(s)))));
    }
    if let Some(s) = samples
        .iter()
        .find(|s| s.status != 0 && !won(s) && !refused(s))
    {
        return Ok(Err(violated(format!("a racer got {}", answer(s)))));
    }
    if let Some(s) = samples.iter().find(|s| s.status == 0) {
        bail!(
            "a racer's connection failed: {}",
            String::from_utf8_lossy(&s.body)
        );
    }
    match winners.first() {
        Some(&i) => Ok(Ok(i)),
        None => Ok(Err(violated(format!(
            "none of {} racers won",
            samples.len()
        )))),
    }
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn b64_int(text: Option<&str>, what: &str) -> anyhow::Result<BigUint> {
    let text = text.with_context(|| format!("the encryption key has no {what}"))?;
    Ok(BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(text)?))
}

impl Soak {
    /// A session over `bench` (discovery already read), racing `burst` requests per trial.
    /// `also` are more instances on the same store (`host:port`).
    pub fn new(bench: Bench, burst: usize, also: &[String]) -> Self {
        let mut authorities = vec![bench.target.authority.clone()];
        authorities.extend_from_slice(also);
        Self {
            authorities,
            bench,
            burst,
            cc_token: tokio::sync::Mutex::new(None),
            qr_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The server's base URL (every instance's, joined by ` + `).
    pub fn base(&self) -> String {
        self.authorities
            .iter()
            .map(|a| format!("http://{a}{}", self.bench.target.prefix))
            .collect::<Vec<_>>()
            .join(" + ")
    }

    /// `host:port` of every instance.
    pub fn authorities(&self) -> Vec<String> {
        self.authorities.clone()
    }

    /// Signs on a blocking thread.
    async fn signed<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Bench) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.bench)).await?
    }

    /// `n` fresh client assertions.
    async fn auths(self: &Arc<Self>, n: usize) -> anyhow::Result<Vec<String>> {
        self.signed(move |b| (0..n).map(|_| b.client_auth()).collect())
            .await
    }

    fn poll(&self, id: &str, auth: &str) -> anyhow::Result<Req> {
        self.bench.client_post(
            "/token",
            format!(
                "grant_type={}&auth_req_id={}&{auth}",
                form_value(CIBA_GRANT),
                form_value(id)
            ),
        )
    }

    fn bc_authorize(&self, request_object: &str, auth: &str) -> anyhow::Result<Req> {
        self.bench
            .client_post("/bc-authorize", format!("request={request_object}&{auth}"))
    }

    fn device(&self, path: &str, body: &Value) -> anyhow::Result<Req> {
        Req::post(
            self.bench.target.path(&format!("/device{path}")),
            JSON,
            body.to_string(),
        )
        .header(
            AUTHORIZATION,
            &format!("Bearer {}", self.bench.device_token),
        )
        .and_then(|r| self.bench.device_certificate(r))
    }

    fn decide(&self, id: &str, decision: &str) -> anyhow::Result<Req> {
        let path = format!("/requests/{}/{decision}", utf8_percent_encode(id, ESCAPED));
        let body = if decision == "approve" {
            json!({ "acr": LOA2, "amr": ["pwd"], "subject": self.bench.subject })
        } else {
            json!({})
        };
        self.device(&path, &body)
    }

    /// A `client_credentials` token (scope `consents`), reused while it has more than half
    /// its life left.
    async fn consents_token(self: &Arc<Self>, pool: &mut Pool) -> anyhow::Result<String> {
        let mut cached = self.cc_token.lock().await;
        if let Some((token, fresh_until)) = cached.as_ref()
            && Instant::now() < *fresh_until
        {
            return Ok(token.clone());
        }
        let auth = self.auths(1).await?.remove(0);
        let req = self.bench.client_post(
            "/token",
            format!("grant_type=client_credentials&scope=consents&{auth}"),
        )?;
        let s = pool.one(&req).await?;
        let token = member(&s, &["access_token"])
            .filter(|_| s.status == 200)
            .with_context(|| format!("client_credentials answered {}", answer(&s)))?;
        let life = s.json()["expires_in"].as_u64().unwrap_or(300);
        *cached = Some((
            token.clone(),
            Instant::now() + Duration::from_secs(life / 2),
        ));
        Ok(token)
    }

    /// A fresh consent of the holder, awaiting authorisation.
    async fn lodge(self: &Arc<Self>, pool: &mut Pool) -> anyhow::Result<String> {
        let token = self.consents_token(pool).await?;
        let req = self.bench.lodge_requests(1, &token)?.remove(0);
        let s = pool.one(&req).await?;
        member(&s, &["data", "consentId"])
            .filter(|_| s.status == 201)
            .with_context(|| format!("lodging a consent answered {}", answer(&s)))
    }

    /// The consent's status, read through the Consents API.
    async fn consent_status(
        self: &Arc<Self>,
        pool: &mut Pool,
        consent_id: &str,
    ) -> anyhow::Result<String> {
        Ok(self.consent_read(pool, consent_id).await?.0)
    }

    /// The consent's status and, when rejected, its rejection code.
    async fn consent_read(
        self: &Arc<Self>,
        pool: &mut Pool,
        consent_id: &str,
    ) -> anyhow::Result<(String, Option<String>)> {
        let token = self.consents_token(pool).await?;
        let req = Req::get(self.bench.target.path(&format!(
            "{}/{}",
            flow::CONSENTS,
            utf8_percent_encode(consent_id, ESCAPED)
        )))
        .header(
            http::HeaderName::from_static("x-fapi-interaction-id"),
            &uuid_v4(),
        )?;
        let s = pool.one(&self.bench.bearer(req, &token)?).await?;
        let status = member(&s, &["data", "status"])
            .filter(|_| s.status == 200)
            .with_context(|| format!("reading the consent answered {}", answer(&s)))?;
        Ok((status, member(&s, &["data", "rejection", "reason", "code"])))
    }

    /// The client's `DELETE` of a consent.
    async fn consent_delete(
        self: &Arc<Self>,
        pool: &mut Pool,
        consent_id: &str,
    ) -> anyhow::Result<Req> {
        let token = self.consents_token(pool).await?;
        let req = Req {
            method: http::Method::DELETE,
            ..Req::get(self.bench.target.path(&format!(
                "{}/{}",
                flow::CONSENTS,
                utf8_percent_encode(consent_id, ESCAPED)
            )))
        }
        .header(
            http::HeaderName::from_static("x-fapi-interaction-id"),
            &uuid_v4(),
        )?;
        self.bench.bearer(req, &token)
    }

    /// A backchannel request with `claims` accepted: its `auth_req_id` and poll interval.
    async fn start(
        self: &Arc<Self>,
        pool: &mut Pool,
        claims: Value,
    ) -> anyhow::Result<(String, u64)> {
        let (object, auth) = self
            .signed(move |b| Ok((b.sign(claims, None)?, b.client_auth()?)))
            .await?;
        let s = pool.one(&self.bc_authorize(&object, &auth)?).await?;
        let id = member(&s, &["auth_req_id"])
            .filter(|_| s.status == 200)
            .with_context(|| format!("bc-authorize answered {}", answer(&s)))?;
        Ok((id, s.json()["interval"].as_u64().unwrap_or(5)))
    }

    /// Claims of a request object naming the holder by a `login_hint_token`.
    fn hinted_claims(&self, consent_id: &str, login_hint_token: &str) -> anyhow::Result<Value> {
        let mut claims = self.bench.request_claims(consent_id)?;
        if let Some(map) = claims.as_object_mut() {
            map.remove("login_hint");
            map.insert("login_hint_token".into(), json!(login_hint_token));
            map.insert("binding_message".into(), json!(BINDING_MESSAGE));
        }
        Ok(claims)
    }

    /// Denies a request the trial leaves pending; a refusal (already decided) is fine.
    async fn close(&self, pool: &mut Pool, id: &str) -> anyhow::Result<()> {
        let s = pool.one(&self.decide(id, "deny")?).await?;
        anyhow::ensure!(
            s.status == 200 || s.status == 409,
            "denying the trial's request answered {}",
            answer(&s)
        );
        Ok(())
    }

    /// The server's first encryption key (`use: enc` in its JWKS), for QR tokens.
    async fn qr_key(&self, pool: &mut Pool) -> anyhow::Result<&(RsaPublicKey, String)> {
        self.qr_key
            .get_or_try_init(|| async {
                let s = pool.one(&Req::get(self.bench.target.path("/jwks"))).await?;
                anyhow::ensure!(s.status == 200, "/jwks answered {}", answer(&s));
                let set = s.json();
                let key = set["keys"]
                    .as_array()
                    .and_then(|keys| keys.iter().find(|k| k["use"] == "enc"))
                    .context("the JWKS has no encryption key")?;
                let public = RsaPublicKey::new(
                    b64_int(key["n"].as_str(), "n")?,
                    b64_int(key["e"].as_str(), "e")?,
                )?;
                Ok((public, key["kid"].as_str().unwrap_or_default().to_string()))
            })
            .await
    }

    fn count_answers(&self, tallies: &Tallies, samples: &[Sample]) {
        tallies.count("racing requests", samples.len() as u64);
        for s in samples {
            tallies.count(&format!("answer {}", answer(s)), 1);
        }
    }

    /// Runs one trial of `kind`.
    pub async fn trial(
        self: &Arc<Self>,
        kind: Kind,
        pool: &mut Pool,
        tallies: &Arc<Tallies>,
        probe: bool,
    ) -> Outcome {
        match kind {
            Kind::PollAfterApproval => Outcome::Now(self.poll_after_approval(pool, tallies).await),
            Kind::RequestObjectJti => Outcome::Now(self.request_object_jti(pool, tallies).await),
            Kind::ClientAssertionJti => {
                Outcome::Now(self.client_assertion_jti(pool, tallies).await)
            }
            Kind::QrClaim => Outcome::Now(self.qr_claim(pool, tallies).await),
            Kind::AdGeneratedHint => Outcome::Now(self.ad_generated_hint(pool, tallies).await),
            Kind::ApproveVsDeny => Outcome::Now(self.approve_vs_deny(pool, tallies).await),
            Kind::OneConsentTwoRequests => {
                Outcome::Now(self.one_consent_two_requests(pool, tallies).await)
            }
            Kind::ApproveVsConsentDelete => {
                Outcome::Now(self.approve_vs_consent_delete(pool, tallies).await)
            }
            Kind::SlowDown => match self.slow_down(pool, tallies, probe).await {
                Ok(SlowDown::Judged(v)) => Outcome::Now(Ok(v)),
                Ok(SlowDown::Probe(task)) => Outcome::Later(task),
                Err(e) => Outcome::Now(Err(e)),
            },
        }
    }

    /// (a) TOK-10: the device approves, then `burst` polls, each with its own assertion,
    /// race for the tokens; the winner's access token must work at userinfo.
    async fn poll_after_approval(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let claims = self.bench.request_claims(&consent)?;
        let (id, _) = self.start(pool, claims).await?;
        let s = pool.one(&self.decide(&id, "approve")?).await?;
        anyhow::ensure!(s.status == 200, "the approval answered {}", answer(&s));
        let polls = self
            .auths(self.burst)
            .await?
            .iter()
            .map(|auth| self.poll(&id, auth))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(polls).await?;
        self.count_answers(tallies, &samples);
        let issued = |s: &Sample| {
            s.status == 200
                && ["access_token", "refresh_token", "id_token"]
                    .iter()
                    .all(|k| member(s, &[k]).is_some())
        };
        let winner = match exactly_one(&samples, issued, |s| oauth_error(s, 400, "invalid_grant"))?
        {
            Ok(i) => i,
            Err(v) => return Ok(v),
        };
        let token = member(&samples[winner], &["access_token"]).unwrap_or_default();
        let req = self
            .bench
            .bearer(Req::get(self.bench.target.path("/userinfo")), &token)?;
        let s = pool.one(&req).await?;
        if s.status != 200 || member(&s, &["sub"]).as_deref() != Some(&self.bench.subject) {
            return Ok(violated(format!(
                "userinfo refused the issued access token: {}",
                answer(&s)
            )));
        }
        tallies.count("userinfo 200 with the holder's sub", 1);
        Ok(Verdict::Held)
    }

    /// (b) BCA-11: one request object, `burst` backchannel requests each with its own
    /// assertion.
    async fn request_object_jti(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let claims = self.bench.request_claims(&consent)?;
        let n = self.burst;
        let (object, auths) = self
            .signed(move |b| {
                let object = b.sign(claims, None)?;
                let auths: Vec<String> =
                    (0..n).map(|_| b.client_auth()).collect::<Result<_, _>>()?;
                Ok((object, auths))
            })
            .await?;
        let reqs = auths
            .iter()
            .map(|auth| self.bc_authorize(&object, auth))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(reqs).await?;
        self.count_answers(tallies, &samples);
        let accepted = |s: &Sample| s.status == 200 && member(s, &["auth_req_id"]).is_some();
        let verdict = exactly_one(&samples, accepted, |s| {
            oauth_error(s, 400, "invalid_request")
        })?;
        self.close_accepted(pool, &samples, accepted).await?;
        Ok(verdict.err().unwrap_or(Verdict::Held))
    }

    /// Denies every request the race accepted, so none stays pending.
    async fn close_accepted(
        &self,
        pool: &mut Pool,
        samples: &[Sample],
        accepted: impl Fn(&Sample) -> bool,
    ) -> anyhow::Result<()> {
        for s in samples.iter().filter(|s| accepted(s)) {
            if let Some(id) = member(s, &["auth_req_id"]) {
                self.close(pool, &id).await?;
            }
        }
        Ok(())
    }

    /// (c) CLI-6: one client assertion in `burst` `client_credentials` requests.
    async fn client_assertion_jti(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let auth = self.auths(1).await?.remove(0);
        let req = self.bench.client_post(
            "/token",
            format!("grant_type=client_credentials&scope=consents&{auth}"),
        )?;
        let samples = pool.burst(vec![req; self.burst]).await?;
        self.count_answers(tallies, &samples);
        let issued = |s: &Sample| s.status == 200 && member(s, &["access_token"]).is_some();
        let verdict = exactly_one(&samples, issued, |s| oauth_error(s, 401, "invalid_client"))?;
        Ok(verdict.err().unwrap_or(Verdict::Held))
    }

    /// (d) HINT-15, AD-8: one AS-generated login_hint_token (the QR code, as the client made
    /// it) claimed `burst` times by the device.
    async fn qr_claim(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let claims = self.hinted_claims(&consent, AS_GENERATED)?;
        let (id, _) = self.start(pool, claims).await?;
        let (key, kid) = self.qr_key(pool).await?.clone();
        let (issuer, client_id, auth_request_id) = (
            self.bench.issuer.clone(),
            self.bench.client.id.clone(),
            id.clone(),
        );
        let qr = self
            .signed(move |b| {
                let now = flow::unix_now()?;
                let jws = b.sign(
                    json!({
                        "iss": client_id,
                        "aud": issuer,
                        "jti": uuid_v4(),
                        "iat": now,
                        "exp": now + 240,
                        "auth_request_id": auth_request_id,
                    }),
                    Some(CIBA_BR_JWT),
                )?;
                devkeys::encrypt_jwe(jws.as_bytes(), &key, &kid)
            })
            .await?;
        let claim = self.device(
            "/claims",
            &json!({ "login_hint_token": qr, "subject": self.bench.subject }),
        )?;
        let samples = pool.burst(vec![claim; self.burst]).await?;
        self.count_answers(tallies, &samples);
        let verdict = exactly_one(
            &samples,
            |s| s.status == 200,
            |s| oauth_error(s, 409, "invalid_grant"),
        )?;
        self.close(pool, &id).await?;
        Ok(verdict.err().unwrap_or(Verdict::Held))
    }

    /// (e) HINT-13: one AD-generated hint id named by `burst` backchannel requests, each
    /// with its own request object and assertion.
    async fn ad_generated_hint(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let s = pool
            .one(&self.device("/hints", &json!({ "subject": self.bench.subject }))?)
            .await?;
        let hint = member(&s, &["login_hint_token"])
            .filter(|_| s.status == 201)
            .with_context(|| format!("POST /device/hints answered {}", answer(&s)))?;
        let claims = (0..self.burst)
            .map(|_| self.hinted_claims(&consent, &hint))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let signed = self
            .signed(move |b| {
                claims
                    .into_iter()
                    .map(|c| Ok((b.sign(c, None)?, b.client_auth()?)))
                    .collect::<anyhow::Result<Vec<(String, String)>>>()
            })
            .await?;
        let reqs = signed
            .iter()
            .map(|(object, auth)| self.bc_authorize(object, auth))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(reqs).await?;
        self.count_answers(tallies, &samples);
        let accepted = |s: &Sample| s.status == 200 && member(s, &["auth_req_id"]).is_some();
        let verdict = exactly_one(&samples, accepted, |s| {
            oauth_error(s, 400, "expired_login_hint_token")
        })?;
        self.close_accepted(pool, &samples, accepted).await?;
        Ok(verdict.err().unwrap_or(Verdict::Held))
    }

    /// (f) AD-4/6, TOK-8/10: approvals and denials of one request at once (half each,
    /// interleaved): one decision wins, the poll answers as it says, the consent follows it.
    async fn approve_vs_deny(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let claims = self.bench.request_claims(&consent)?;
        let (id, _) = self.start(pool, claims).await?;
        let reqs = (0..self.burst)
            .map(|i| self.decide(&id, if i % 2 == 0 { "approve" } else { "deny" }))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(reqs).await?;
        self.count_answers(tallies, &samples);
        let winner = match exactly_one(
            &samples,
            |s| s.status == 200,
            |s| oauth_error(s, 409, "invalid_grant"),
        )? {
            Ok(i) => i,
            Err(v) => return Ok(v),
        };
        let approved = winner % 2 == 0;
        tallies.count(if approved { "approve won" } else { "deny won" }, 1);
        let auth = self.auths(1).await?.remove(0);
        let s = pool.one(&self.poll(&id, &auth)?).await?;
        let poll_follows = if approved {
            s.status == 200 && member(&s, &["access_token"]).is_some()
        } else {
            oauth_error(&s, 400, "access_denied")
        };
        if !poll_follows {
            return Ok(violated(format!(
                "the {} won, but the poll got {}",
                if approved { "approval" } else { "denial" },
                answer(&s)
            )));
        }
        let status = self.consent_status(pool, &consent).await?;
        let expected = if approved { "AUTHORISED" } else { "REJECTED" };
        if status != expected {
            return Ok(violated(format!(
                "the {} won, but the consent is {status}",
                if approved { "approval" } else { "denial" }
            )));
        }
        Ok(Verdict::Held)
    }

    /// (h) AD-5, CONS-1: two requests on one consent, `burst` approvals split between them
    /// at once. One approval wins (200); the others get 403 `access_denied` (the other
    /// request, now denied) or 409 `invalid_grant` (a request already decided). Then both
    /// requests are polled: the winner's gets tokens, the other `access_denied`; the consent is
    /// AUTHORISED. Two grants, or two 200s, are a double win.
    async fn one_consent_two_requests(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let mut ids = Vec::new();
        for _ in 0..2 {
            let claims = self.bench.request_claims(&consent)?;
            ids.push(self.start(pool, claims).await?.0);
        }
        let reqs = (0..self.burst)
            .map(|i| self.decide(&ids[i % 2], "approve"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(reqs).await?;
        self.count_answers(tallies, &samples);
        let winner = match exactly_one(
            &samples,
            |s| s.status == 200,
            |s| oauth_error(s, 403, "access_denied") || oauth_error(s, 409, "invalid_grant"),
        )? {
            Ok(i) => i % 2,
            Err(v) => {
                for id in &ids {
                    self.close(pool, id).await?;
                }
                return Ok(v);
            }
        };
        let auths = self.auths(2).await?;
        let mut grants = 0;
        let mut wrong = None;
        for (i, id) in ids.iter().enumerate() {
            let s = pool.one(&self.poll(id, &auths[i])?).await?;
            let granted = s.status == 200 && member(&s, &["access_token"]).is_some();
            grants += usize::from(granted);
            let follows = if i == winner {
                granted
            } else {
                oauth_error(&s, 400, "access_denied")
            };
            if !follows && wrong.is_none() {
                wrong = Some(format!(
                    "the {} request's poll got {}",
                    if i == winner { "approved" } else { "other" },
                    answer(&s)
                ));
            }
        }
        if grants > 1 {
            return Ok(Verdict::Violated {
                double: true,
                what: "both requests on one consent got tokens".into(),
            });
        }
        if let Some(what) = wrong {
            return Ok(violated(what));
        }
        let status = self.consent_status(pool, &consent).await?;
        if status != "AUTHORISED" {
            return Ok(violated(format!(
                "one approval won, but the consent is {status}"
            )));
        }
        Ok(Verdict::Held)
    }

    /// (i) AD-5, CONS-1: `burst - 1` approvals of one request and the client's `DELETE` of
    /// its consent, at once. The DELETE is answered 204. If an approval moved the consent
    /// first, exactly one approval is 200 and the consent reads revoked after authorisation
    /// (`CUSTOMER_MANUALLY_REVOKED`); if the DELETE came first, every approval is refused (403
    /// `access_denied`, or 409 once the request is denied) and the consent reads rejected
    /// before authorisation (`CUSTOMER_MANUALLY_REJECTED`). Either way the client's poll gets
    /// no tokens. A 200 for a consent rejected before authorisation, two 200s, or tokens, are
    /// a double win.
    async fn approve_vs_consent_delete(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
    ) -> anyhow::Result<Verdict> {
        let consent = self.lodge(pool).await?;
        let claims = self.bench.request_claims(&consent)?;
        let (id, _) = self.start(pool, claims).await?;
        let mut reqs = (1..self.burst)
            .map(|_| self.decide(&id, "approve"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        reqs.push(self.consent_delete(pool, &consent).await?);
        let samples = pool.burst(reqs).await?;
        self.count_answers(tallies, &samples);
        let Some((delete, approvals)) = samples.split_last() else {
            bail!("the race answered nothing");
        };
        if let Some(s) = samples.iter().find(|s| s.status == 0) {
            bail!(
                "a racer's connection failed: {}",
                String::from_utf8_lossy(&s.body)
            );
        }
        let wins = approvals.iter().filter(|s| s.status == 200).count();
        if wins > 1 {
            return Ok(Verdict::Violated {
                double: true,
                what: format!("{wins} approvals of one request won"),
            });
        }
        if delete.status != 204 {
            return Ok(violated(format!("the DELETE got {}", answer(delete))));
        }
        if let Some(s) = approvals.iter().find(|s| {
            s.status != 200
                && !oauth_error(s, 403, "access_denied")
                && !oauth_error(s, 409, "invalid_grant")
        }) {
            return Ok(violated(format!("an approval got {}", answer(s))));
        }
        let (status, code) = self.consent_read(pool, &consent).await?;
        let auth = self.auths(1).await?.remove(0);
        let poll = pool.one(&self.poll(&id, &auth)?).await?;
        if poll.status == 200 {
            return Ok(Verdict::Violated {
                double: true,
                what: "tokens for a consent its client revoked".into(),
            });
        }
        let (expected_code, expected_poll) = if wins == 1 {
            tallies.count("approval first", 1);
            ("CUSTOMER_MANUALLY_REVOKED", "invalid_grant")
        } else {
            tallies.count("DELETE first", 1);
            ("CUSTOMER_MANUALLY_REJECTED", "access_denied")
        };
        if status != "REJECTED" || code.as_deref() != Some(expected_code) {
            return Ok(Verdict::Violated {
                double: wins == 1,
                what: format!(
                    "{} approval won, and the consent reads {status} {}",
                    if wins == 1 { "an" } else { "no" },
                    code.unwrap_or_default()
                ),
            });
        }
        if !oauth_error(&poll, 400, expected_poll) {
            return Ok(violated(format!("the poll got {}", answer(&poll))));
        }
        Ok(Verdict::Held)
    }

    /// (g) TOK-6/7/12: `burst` polls of a pending request at once. Every answer is
    /// `authorization_pending` or `slow_down`, never a 5xx. With `probe`, the client then
    /// waits the interval the answers imply (the base interval, plus 5 s per `slow_down` it
    /// got) and polls again: the server must not ask for more (the interval is raised only by
    /// the `slow_down`s it answered, never by polls that overlapped at the store).
    async fn slow_down(
        self: &Arc<Self>,
        pool: &mut Pool,
        tallies: &Tallies,
        probe: bool,
    ) -> anyhow::Result<SlowDown> {
        let consent = self.lodge(pool).await?;
        let claims = self.bench.request_claims(&consent)?;
        let (id, interval) = self.start(pool, claims).await?;
        let polls = self
            .auths(self.burst)
            .await?
            .iter()
            .map(|auth| self.poll(&id, auth))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let samples = pool.burst(polls).await?;
        let ended = Instant::now();
        self.count_answers(tallies, &samples);
        let pending = samples
            .iter()
            .filter(|s| oauth_error(s, 400, "authorization_pending"))
            .count();
        let slow = samples
            .iter()
            .filter(|s| oauth_error(s, 400, "slow_down"))
            .count();
        // Two first polls that both insert the absent pace record may both read their own
        // write back (an insert into an absent key is an unconditional upsert on Spin's SQLite
        // store), and both be told authorization_pending: counted, not a violation (TOK-7's
        // source: the conformance suite accepts authorization_pending on rapid polls).
        match pending {
            0 => tallies.count("bursts without authorization_pending", 1),
            1 => {}
            _ => tallies.count("bursts with more than one authorization_pending", 1),
        }
        let verdict = if let Some(s) = samples.iter().find(|s| s.status >= 500) {
            Some(violated(format!("a poll got {}", answer(s))))
        } else if let Some(s) = samples.iter().find(|s| {
            s.status != 0
                && !oauth_error(s, 400, "authorization_pending")
                && !oauth_error(s, 400, "slow_down")
        }) {
            Some(violated(format!("a poll got {}", answer(s))))
        } else if let Some(s) = samples.iter().find(|s| s.status == 0) {
            self.close(pool, &id).await?;
            bail!(
                "a poll's connection failed: {}",
                String::from_utf8_lossy(&s.body)
            );
        } else {
            None
        };
        if verdict.is_some() || !probe {
            self.close(pool, &id).await?;
            return Ok(SlowDown::Judged(verdict.unwrap_or(Verdict::Held)));
        }
        // The interval the answers imply, and a second more: the server counts whole
        // seconds from the last poll it recorded, which is no later than the burst's end.
        let wait = Duration::from_secs(interval + 5 * slow as u64 + 1);
        tallies.count("interval probes", 1);
        let me = self.clone();
        let auth = self.auths(1).await?.remove(0);
        let probe = self.poll(&id, &auth)?;
        Ok(SlowDown::Probe(tokio::spawn(async move {
            if let Some(left) = wait.checked_sub(ended.elapsed()) {
                tokio::time::sleep(left).await;
            }
            let mut pool = Pool::new(&me.authorities());
            let s = pool.one(&probe).await?;
            me.close(&mut pool, &id).await?;
            if oauth_error(&s, 400, "authorization_pending") {
                Ok(Verdict::Held)
            } else {
                Ok(violated(format!(
                    "after {slow} slow_down answers, a poll {} s later got {}",
                    wait.as_secs(),
                    answer(&s)
                )))
            }
        })))
    }
}

/// A slow-down trial judged at once, or waiting to probe the interval.
enum SlowDown {
    Judged(Verdict),
    Probe(tokio::task::JoinHandle<anyhow::Result<Verdict>>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sample(status: u16, body: &str) -> Sample {
        Sample {
            latency: Duration::ZERO,
            status,
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn exactly_one_counts_double_wins_and_wrong_answers() {
        let won = |s: &Sample| s.status == 200;
        let refused = |s: &Sample| oauth_error(s, 400, "invalid_grant");
        let grant = r#"{"error":"invalid_grant"}"#;
        let one = [sample(400, grant), sample(200, "{}"), sample(400, grant)];
        assert_eq!(exactly_one(&one, won, refused).unwrap().ok(), Some(1));
        let two = [sample(200, "{}"), sample(200, "{}")];
        assert!(matches!(
            exactly_one(&two, won, refused).unwrap(),
            Err(Verdict::Violated { double: true, .. })
        ));
        let none = [sample(400, grant), sample(400, grant)];
        assert!(matches!(
            exactly_one(&none, won, refused).unwrap(),
            Err(Verdict::Violated { double: false, .. })
        ));
        let crashed = [
            sample(200, "{}"),
            sample(500, r#"{"error":"server_error"}"#),
        ];
        let Err(Verdict::Violated { what, .. }) = exactly_one(&crashed, won, refused).unwrap()
        else {
            panic!("a 500 is a violation");
        };
        assert_eq!(what, "a racer got 500 server_error");
        let lost = [sample(200, "{}"), sample(0, "reset")];
        assert!(exactly_one(&lost, won, refused).is_err(), "undecided");
    }

    #[test]
    fn answers_never_carry_a_body() {
        assert_eq!(answer(&sample(200, r#"{"access_token":"secret"}"#)), "200");
        assert_eq!(
            answer(&sample(
                400,
                r#"{"error":"slow_down","error_description":"x"}"#
            )),
            "400 slow_down"
        );
    }
}
