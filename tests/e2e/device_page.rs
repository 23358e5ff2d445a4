//! The sandbox device page (issue 10): off unless `device_page` is `on`; served with a strict
//! Content-Security-Policy when on; and used in a real browser (headless Chromium through
//! chromedriver) for whole flows: a backchannel request shows up with its binding message, a
//! click approves it and the client's poll gets tokens; a click denies another and the poll
//! gets `access_denied`; an AS-generated request is claimed by pasting its QR token.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them);
//! `CHROMIUM` and `CHROMEDRIVER` name other binaries. Its screenshots are kept under
//! `target/device-page-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use sha2::Digest;

use e2e::ciba::{
    AS_GENERATED, CERT_HEADER, Ciba, DEVICE_TOKEN, HOLDER_1_CPF, LOA3, ciba_variables, text,
};
use e2e::{Server, root, temp_dir};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const FILES: [(&str, &str); 3] = [
    ("/device/", "text/html; charset=utf-8"),
    ("/device/app.js", "text/javascript; charset=utf-8"),
    ("/device/app.css", "text/css; charset=utf-8"),
];

/// The bundle of [`ciba_variables`] with the page on.
fn page_on() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| {
        let mut vars = ciba_variables();
        vars.insert("device_page", "on".to_string());
        Ciba::with(Server::bundle(vars))
    })
}

/// The page on a sandbox without mTLS: a browser cannot present the bank backend's
/// certificate, so with mTLS on the page works only behind a proxy that forwards one (README,
/// The device API).
fn page_on_sandbox() -> &'static Ciba {
    static CIBA: OnceLock<Ciba> = OnceLock::new();
    CIBA.get_or_init(|| {
        let mut vars = ciba_variables();
        vars.insert("device_page", "on".to_string());
        vars.remove("client_cert_header");
        vars.remove("device_api_certificates");
        Ciba::with(Server::bundle(vars))
    })
}

#[test]
fn device_page_is_off_unless_turned_on() {
    // The default configuration: the page's paths are unknown device API calls, as before.
    let server = crate::server();
    let auth = format!("Bearer {DEVICE_TOKEN}");
    let device_cert = (CERT_HEADER, e2e::device_certificate().0.as_str());
    for (path, _) in FILES {
        let anonymous = server.get(path);
        assert_eq!(anonymous.status, 401, "{path}: the device token first");
        let response = server.send("GET", path, &[("authorization", &auth), device_cert], b"");
        assert_eq!(response.status, 404, "{path}: {}", text(&response));
        assert_eq!(response.header("content-security-policy"), None);
    }
    let bare = server.send(
        "GET",
        "/device",
        &[("authorization", &auth), device_cert],
        b"",
    );
    assert_eq!(bare.status, 404);
}

#[test]
fn device_page_is_served_with_strict_headers_when_on() {
    let c = page_on();
    for (path, content_type) in FILES {
        let response = c.server.get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            response.header("content-security-policy"),
            Some(CSP),
            "{path}"
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert!(!response.body.is_empty());
    }
    let bare = c.server.get("/device");
    assert_eq!(
        (bare.status, bare.header("location")),
        (308, Some("device/"))
    );
    let html = String::from_utf8_lossy(&c.server.get("/device/").body).into_owned();
    assert!(html.contains(r#"<script src="app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="app.css">"#));
    // Only GET of those three paths is public; the API behind them still wants the token.
    assert_eq!(c.server.get("/device/index.html").status, 401);
    assert_eq!(c.server.send("POST", "/device/", &[], b"").status, 401);
    assert_eq!(
        c.server.get("/device/requests?subject=holder-1").status,
        401
    );
}

#[test]
fn device_holders_needs_the_device_token() {
    let c = page_on();
    let anonymous = c.server.get("/device/holders");
    assert_eq!(anonymous.status, 401, "{}", text(&anonymous));
    assert_eq!(anonymous.json()["error"], json!("invalid_token"));
    let wrong = c.server.send(
        "GET",
        "/device/holders",
        &[(
            "authorization",
            "Bearer not-the-device-token-but-long-enough",
        )],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let listed = c.device("GET", "/holders", None);
    assert_eq!(listed.status, 200, "{}", text(&listed));
    assert_eq!(
        listed.json(),
        json!({ "holders": [
            { "sub": "holder-1", "name": "Holder One" },
            { "sub": "holder-2", "name": null },
        ]})
    );
    // The same call with the page off (it is part of the device API, not of the page).
    let off = crate::server().send(
        "GET",
        "/device/holders",
        &[
            ("authorization", &format!("Bearer {DEVICE_TOKEN}")),
            (CERT_HEADER, e2e::device_certificate().0.as_str()),
        ],
        b"",
    );
    assert_eq!(off.status, 200, "{}", text(&off));
}

const INSTALL: &str = "the device page test drives headless Chromium through chromedriver: \
    install Debian's packages with `sudo apt-get install -y chromium chromium-driver` \
    (what .ci/run does), or set CHROMIUM and CHROMEDRIVER to the binaries' paths";

/// A binary named by `var`, or Debian's path.
fn binary(var: &str, debian: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(debian));
    assert!(path.exists(), "{} not found: {INSTALL}", path.display());
    path
}

/// chromedriver on a free loopback port; stopped (this child only) when dropped.
struct Driver {
    child: Child,
    url: String,
}

/// On a machine with Debian's apt and root (this workplace's machines, CI), installs the
/// browser when it is missing, saying so, as the component build adds its Rust target: the
/// README's `cargo test` is the whole set-up. Elsewhere the test fails with [`INSTALL`].
fn install_browser_if_missing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let have = |var: &str, path: &str| {
            std::env::var_os(var).is_some() || std::path::Path::new(path).exists()
        };
        if have("CHROMIUM", "/usr/bin/chromium") && have("CHROMEDRIVER", "/usr/bin/chromedriver") {
            return;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root || !std::path::Path::new("/usr/bin/apt-get").exists() {
            return;
        }
        // Straight to stderr, past the test harness's capture: the install takes a while.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "The device page test needs Debian's chromium and chromium-driver: installing them \
             with apt-get (once)."
        );
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "chromium", "chromium-driver"][..],
        ] {
            let _ = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .status();
        }
    });
}

impl Driver {
    fn start() -> Self {
        install_browser_if_missing();
        binary("CHROMIUM", "/usr/bin/chromium");
        let path = binary("CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start ({e}): {INSTALL}", path.display()));
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chromium session: headless, a fresh profile, nothing fetched but the page.
async fn browser(driver: &Driver) -> Client {
    let chromium = binary("CHROMIUM", "/usr/bin/chromium");
    let profile = temp_dir("chromium-profile");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=900,1200",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no Chromium session ({e}): {INSTALL}"))
}

/// Screenshots of the page, kept as test artifacts.
fn screenshot_dir() -> PathBuf {
    let dir = root().join("target/device-page-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// The id the device API lists a request under: base64url(SHA-256(auth_req_id)).
fn reference(auth_req_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(auth_req_id.as_bytes()))
}

/// The card of request `id`, once the page's poll has shown it.
async fn card(browser: &Client, id: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(&format!(
            r#"li.request[data-id="{}"]"#,
            reference(id)
        )))
        .await
        .unwrap()
}

/// Waits until the status line starts with `start`.
async fn message(browser: &Client, start: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = browser
            .find(Locator::Css("#message"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.starts_with(start) {
            return text;
        }
        assert!(Instant::now() < deadline, "no {start:?} message: {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a card is still on the page.
async fn on_page(browser: &Client, id: &str) -> bool {
    let selector = format!(r#"li.request[data-id="{}"]"#, reference(id));
    browser.find(Locator::Css(&selector)).await.is_ok()
}

/// A request of `tpp-1` for a fresh consent of holder-1, by `login_hint`; pending.
fn pending_request(c: &Ciba, binding_message: &str) -> String {
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint".into(), json!(consent_id));
    claims.insert("binding_message".into(), json!(binding_message));
    let id = c.start("tpp-1", claims);
    let poll = c.poll("tpp-1", &id);
    assert_eq!(poll.json()["error"], json!("authorization_pending"));
    id
}

/// The claims of a JWT, unverified (the id_token's signature is tested elsewhere).
fn jwt_claims(jwt: &str) -> Value {
    let payload = URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[test]
fn ad_3_ad_6_the_device_page_approves_and_denies_in_chromium() {
    // The browser first: without it, fail at once with how to install it.
    let driver = Driver::start();
    // A browser presents no bank certificate: the page runs on a sandbox without mTLS.
    let c = page_on_sandbox();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let browser = rt.block_on(browser(&driver));
    // Whatever happens, the session ends (and Chromium with it); a failure leaves a screenshot.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        approve_deny_and_claim(c, &rt, &browser)
    }));
    rt.block_on(async {
        if outcome.is_err() {
            let _ = browser
                .screenshot()
                .await
                .map(|png| std::fs::write(screenshot_dir().join("failure.png"), png));
        }
        let _ = browser.close().await;
    });
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The whole flow through the page, with the fixture as the client.
fn approve_deny_and_claim(c: &Ciba, rt: &tokio::runtime::Runtime, browser: &Client) {
    let page = format!("{}/device/", c.server.base);

    // Sign in: the token goes to sessionStorage, never into the URL.
    rt.block_on(async {
        browser.goto(&page).await.unwrap();
        // The stylesheet applied (the policy let it in) and violations are recorded from now.
        let background = browser
            .execute(
                "document.addEventListener('securitypolicyviolation', \
                   (e) => (window.violations = window.violations || []).push(e.violatedDirective)); \
                 return getComputedStyle(document.body).backgroundColor;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(background, json!("rgb(242, 244, 248)"));
        screenshot(browser, "1-sign-in").await;
        let token = browser.find(Locator::Css("#token")).await.unwrap();
        token.send_keys(DEVICE_TOKEN).await.unwrap();
        browser
            .find(Locator::Css("#sign-in-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#holder option[value='holder-1']"))
            .await
            .unwrap();
        browser
            .find(Locator::Css("#holder"))
            .await
            .unwrap()
            .select_by_value("holder-1")
            .await
            .unwrap();
        assert!(!browser.current_url().await.unwrap().as_str().contains(DEVICE_TOKEN));
        let stored = browser
            .execute(
                "return [sessionStorage.getItem('ciba-device-token'), localStorage.length];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(stored, json!([DEVICE_TOKEN, 0]));
    });

    // A request arrives; the page shows it with its binding message, as text (the message
    // is the client's: markup in it must stay text).
    let binding = "Compra <b>1234</b> & co";
    let approved_id = pending_request(c, binding);
    rt.block_on(async {
        let card = card(browser, &approved_id).await;
        let message_text = card
            .find(Locator::Css(".binding-message"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(message_text, binding);
        assert!(card.find(Locator::Css(".binding-message b")).await.is_err());
        let client = card.find(Locator::Css(".client")).await.unwrap();
        assert_eq!(client.text().await.unwrap(), "tpp-1");
        let permissions = card.find(Locator::Css(".permissions")).await.unwrap();
        assert!(permissions.text().await.unwrap().contains("ACCOUNTS_READ"));
        let left = card.find(Locator::Css(".time-left")).await.unwrap();
        assert!(left.text().await.unwrap().ends_with(" left"));
        screenshot(browser, "2-pending").await;
        // Approve at loa3.
        card.find(Locator::Css(".acr"))
            .await
            .unwrap()
            .select_by_value(LOA3)
            .await
            .unwrap();
        card.find(Locator::Css(".approve"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        message(browser, "Approved the request of tpp-1").await;
        assert!(!on_page(browser, &approved_id).await);
        screenshot(browser, "3-approved").await;
    });

    // The client's next poll gets the tokens, at the acr chosen on the page.
    c.server.time.advance(6);
    let tokens = c.poll("tpp-1", &approved_id);
    assert_eq!(tokens.status, 200, "{}", text(&tokens));
    let tokens = tokens.json();
    assert!(tokens["access_token"].is_string());
    let id_token = jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(id_token["sub"], json!("holder-1"));
    assert_eq!(id_token["acr"], json!(LOA3));

    // Another request, denied on the page: the poll gets access_denied.
    let denied_id = pending_request(c, "Pix 42");
    rt.block_on(async {
        let card = card(browser, &denied_id).await;
        card.find(Locator::Css(".deny"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        message(browser, "Denied the request of tpp-1").await;
        assert!(!on_page(browser, &denied_id).await);
        screenshot(browser, "4-denied").await;
    });
    c.server.time.advance(6);
    let denied = c.poll("tpp-1", &denied_id);
    assert_eq!(
        denied.json()["error"],
        json!("access_denied"),
        "{}",
        text(&denied)
    );

    // An AS-generated request, claimed by pasting the client's QR token; then an AD-generated
    // hint id.
    let consent_id = c.lodge("tpp-1", HOLDER_1_CPF, None);
    let mut claims = c.request_claims("tpp-1", &consent_id);
    claims.insert("login_hint_token".into(), json!(AS_GENERATED));
    claims.insert("binding_message".into(), json!("QR 7"));
    let qr_id = c.start("tpp-1", claims);
    let qr = c.qr_token("tpp-1", &c.qr_claims("tpp-1", &qr_id), "cibabr+jwt");
    rt.block_on(async {
        let field = browser
            .find(Locator::Css("#login-hint-token"))
            .await
            .unwrap();
        field.send_keys(&qr).await.unwrap();
        browser
            .find(Locator::Css("#claim-form button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        message(browser, "Claimed the request of tpp-1").await;
        let card = card(browser, &qr_id).await;
        let message_text = card.find(Locator::Css(".binding-message")).await.unwrap();
        assert_eq!(message_text.text().await.unwrap(), "QR 7");

        browser
            .find(Locator::Css("#issue-hint"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let hint = browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#hint:not([hidden]) #hint-id"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            hint.len() == 20 && hint.bytes().all(|b| b.is_ascii_digit()),
            "{hint:?}"
        );
        screenshot(browser, "5-claimed-and-hint").await;

        let violations = browser
            .execute("return window.violations || [];", vec![])
            .await
            .unwrap();
        assert_eq!(violations, json!([]), "Content-Security-Policy violations");
    });
}
