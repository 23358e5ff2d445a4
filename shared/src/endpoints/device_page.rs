//! The sandbox device page (`GET /device/`, with `app.js` and `app.css`): a stand-in for the
//! bank's authentication app, so that a team trying the bundle in a sandbox, or a TPP testing
//! against it, can approve and deny requests in a browser. Off unless `device_page` is `on`;
//! when off, its paths answer as any unknown device API call does.
//!
//! The page holds no power of its own: its script calls the same device API with the device
//! token the user types (kept in the tab's `sessionStorage`), through the same checks. It is
//! safe to leave on in a sandbox because every response here carries a strict
//! Content-Security-Policy (no inline script or style, nothing from another origin, no
//! framing, no form posts), `nosniff` and `no-referrer`; and the script inserts what the API
//! returns (binding messages are client-controlled) as text only, never as markup.

use crate::config::{ConfigError, Variables, var};
use crate::http::{Method, Request, Response};

/// The page's policy: its own script and style files only, `fetch` to its own origin only,
/// no framing (clickjacking on an approve button), no `<base>`, no form submissions.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

const INDEX_HTML: &str = include_str!("device_page/index.html");
const APP_JS: &str = include_str!("device_page/app.js");
const APP_CSS: &str = include_str!("device_page/app.css");

/// Whether the bundle serves the page (`device_page`: `on`; empty or unset: off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePage {
    /// Not served: `/device/`, `/device/app.js` and `/device/app.css` are unknown calls.
    Off,
    /// Served, for sandboxes.
    On,
}

impl DevicePage {
    /// Reads `device_page`: `on` turns the page on; empty, unset or `off` leaves it off;
    /// anything else is a configuration error (a typo must not leave it silently off).
    pub fn load(vars: &dyn Variables) -> Result<Self, ConfigError> {
        match vars
            .get(var::DEVICE_PAGE)?
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "off" => Ok(Self::Off),
            "on" => Ok(Self::On),
            _ => Err(ConfigError::new(
                var::DEVICE_PAGE,
                "must be `on` or empty (off)",
            )),
        }
    }

    /// The page or one of its assets for a `GET` of its path (`spin-path-info` below
    /// `/device`), when the page is on; `None` for anything else, which the device API
    /// then answers (and without the device token, refuses).
    pub fn serve(self, request: &Request) -> Option<Response> {
        if self == Self::Off || request.method != Method::Get {
            return None;
        }
        let (content_type, body) = match request.path_info.as_str() {
            // `/device` typed by hand: to `/device/`, so that `app.js` resolves beside it.
            "" => return Some(to_the_page()),
            "/" => ("text/html; charset=utf-8", INDEX_HTML),
            "/app.js" => ("text/javascript; charset=utf-8", APP_JS),
            "/app.css" => ("text/css; charset=utf-8", APP_CSS),
            _ => return None,
        };
        Some(asset(content_type, body))
    }
}

/// `308` to the page, relative (`device/` from `/device`) so that it holds under any base.
fn to_the_page() -> Response {
    Response {
        status: 308,
        headers: vec![
            ("location", "device/".to_string()),
            ("cache-control", "no-cache".to_string()),
        ],
        body: Vec::new(),
        error: None,
        client: None,
        detail: None,
    }
}

/// A page file with the headers that make it safe to serve next to the API.
fn asset(content_type: &str, body: &str) -> Response {
    Response {
        status: 200,
        headers: vec![
            ("content-type", content_type.to_string()),
            (
                "content-security-policy",
                CONTENT_SECURITY_POLICY.to_string(),
            ),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
            ("x-frame-options", "DENY".to_string()),
            ("cross-origin-opener-policy", "same-origin".to_string()),
            ("cross-origin-resource-policy", "same-origin".to_string()),
            // The camera for QR codes, nothing else.
            (
                "permissions-policy",
                "camera=(self), microphone=(), geolocation=(), payment=()".to_string(),
            ),
            // Small and changed only by a new build: revalidate, never keep stale.
            ("cache-control", "no-cache".to_string()),
        ],
        body: body.as_bytes().to_vec(),
        error: None,
        client: None,
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::*;

    fn get(path: &str) -> Request {
        Request {
            method: Method::Get,
            path_info: path.to_string(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn page(value: Option<&str>) -> Result<DevicePage, ConfigError> {
        let mut vars: HashMap<&'static str, String> = HashMap::new();
        if let Some(v) = value {
            vars.insert(var::DEVICE_PAGE, v.to_string());
        }
        DevicePage::load(&vars)
    }

    #[test]
    fn the_page_is_off_unless_the_variable_says_on() {
        assert_eq!(page(None), Ok(DevicePage::Off));
        assert_eq!(page(Some("")), Ok(DevicePage::Off));
        assert_eq!(page(Some("off")), Ok(DevicePage::Off));
        assert_eq!(page(Some("on")), Ok(DevicePage::On));
        assert_eq!(page(Some(" ON ")), Ok(DevicePage::On));
        for typo in ["yes", "true", "1", "onn"] {
            let e = page(Some(typo)).unwrap_err();
            assert_eq!(e.variable, var::DEVICE_PAGE, "{typo}");
            assert!(!e.to_string().contains(typo), "never the value: {e}");
        }
    }

    #[test]
    fn off_serves_nothing() {
        for path in ["/", "/app.js", "/app.css"] {
            assert_eq!(DevicePage::Off.serve(&get(path)), None, "{path}");
        }
    }

    #[test]
    fn on_serves_the_three_files_with_their_types() {
        for (path, content_type, starts) in [
            ("/", "text/html; charset=utf-8", "<!doctype html>"),
            ("/app.js", "text/javascript; charset=utf-8", "//"),
            ("/app.css", "text/css; charset=utf-8", "/*"),
        ] {
            let response = DevicePage::On.serve(&get(path)).unwrap();
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(
                response.header("content-type"),
                Some(content_type),
                "{path}"
            );
            let body = std::str::from_utf8(&response.body).unwrap();
            assert!(body.starts_with(starts), "{path}");
        }
    }

    #[test]
    fn only_get_of_the_page_paths() {
        for path in [
            "/index.html",
            "/app.js/",
            "/APP.JS",
            "/requests",
            "/holders",
        ] {
            assert_eq!(DevicePage::On.serve(&get(path)), None, "{path:?}");
        }
        let mut post = get("/");
        post.method = Method::Post;
        assert_eq!(DevicePage::On.serve(&post), None);
    }

    #[test]
    fn device_without_its_slash_goes_to_the_page() {
        let response = DevicePage::On.serve(&get("")).unwrap();
        assert_eq!(response.status, 308);
        assert_eq!(response.header("location"), Some("device/"));
        assert_eq!(DevicePage::Off.serve(&get("")), None);
    }

    #[test]
    fn every_file_carries_the_strict_headers() {
        for path in ["/", "/app.js", "/app.css"] {
            let response = DevicePage::On.serve(&get(path)).unwrap();
            assert_eq!(
                response.header("content-security-policy"),
                Some(
                    "default-src 'none'; script-src 'self'; style-src 'self'; \
                     connect-src 'self'; img-src 'self'; frame-ancestors 'none'; \
                     base-uri 'none'; form-action 'none'"
                ),
                "{path}"
            );
            assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
            assert_eq!(response.header("x-frame-options"), Some("DENY"));
        }
    }

    /// The policy would block inline code anyway; keeping the files free of it means the page
    /// works under that policy, and a review can see it at a glance.
    #[test]
    fn no_inline_script_style_or_markup_insertion() {
        let html = INDEX_HTML.to_ascii_lowercase();
        assert_eq!(html.matches("<script").count(), 1);
        assert!(html.contains(r#"<script src="app.js" defer></script>"#));
        for inline in ["<style", " style=", "javascript:", "http://", "https://"] {
            assert!(!html.contains(inline), "{inline:?} in index.html");
        }
        // No event-handler attribute (` onclick=`, ` onload=`...).
        let handler = html.match_indices(" on").any(|(i, _)| {
            let rest = &html[i + 3..];
            let name = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            name.len() < rest.len() && name.starts_with('=')
        });
        assert!(!handler, "an event-handler attribute in index.html");
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            ".style",
            "setAttribute('style'",
        ] {
            assert!(!APP_JS.contains(banned), "{banned} in app.js");
        }
        for remote in ["http://", "https://", "@import", "url("] {
            assert!(!APP_CSS.contains(remote), "{remote} in app.css");
        }
    }
}
