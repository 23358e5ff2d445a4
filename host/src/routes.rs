//! Route matching as Spin does it: exact routes beat wildcard routes (`/x/...`), and among
//! wildcards the longest prefix wins.

use crate::manifest::HttpTrigger;

/// One route of the manifest.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route as written (`/device/...`).
    pub raw: String,
    /// The route without a trailing `/...`.
    pub base: String,
    /// Whether it is a wildcard route.
    pub wildcard: bool,
    /// The component id.
    pub component: String,
}

/// A matched route and the path below it (`spin-path-info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match<'a> {
    /// The route as written.
    pub raw: &'a str,
    /// The route without `/...`.
    pub base: &'a str,
    /// The component id.
    pub component: &'a str,
    /// The path below the route.
    pub path_info: &'a str,
}

/// Every route of the application.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    /// Builds the router; with two identical routes the later wins, as in Spin.
    pub fn new(triggers: &[HttpTrigger]) -> Self {
        let mut routes: Vec<Route> = Vec::new();
        for t in triggers {
            let (base, wildcard) = match t.route.strip_suffix("/...") {
                Some(base) => (base.to_string(), true),
                None => (t.route.trim_end_matches('/').to_string(), false),
            };
            routes.retain(|r| !(r.base == base && r.wildcard == wildcard));
            routes.push(Route {
                raw: t.route.clone(),
                base,
                wildcard,
                component: t.component.clone(),
            });
        }
        Self { routes }
    }

    /// The route for `path`, if any.
    pub fn find<'a>(&'a self, path: &'a str) -> Option<Match<'a>> {
        let trimmed = path.trim_end_matches('/');
        if let Some(r) = self
            .routes
            .iter()
            .find(|r| !r.wildcard && r.base == trimmed)
        {
            return Some(Match {
                raw: &r.raw,
                base: &r.base,
                component: &r.component,
                path_info: "",
            });
        }
        self.routes
            .iter()
            .filter(|r| r.wildcard && (path == r.base || path.starts_with(&format!("{}/", r.base))))
            .max_by_key(|r| r.base.len())
            .map(|r| Match {
                raw: &r.raw,
                base: &r.base,
                component: &r.component,
                path_info: &path[r.base.len()..],
            })
    }

    /// Every route.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(route: &str, component: &str) -> HttpTrigger {
        HttpTrigger {
            route: route.into(),
            component: component.into(),
        }
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = Router::new(&[
            t("/...", "any"),
            t("/device/...", "device"),
            t("/jwks", "jwks"),
            t("/device/x", "x"),
        ]);
        assert_eq!(r.find("/jwks").unwrap().component, "jwks");
        assert_eq!(r.find("/device/x").unwrap().component, "x");
        let m = r.find("/device/requests/abc").unwrap();
        assert_eq!((m.component, m.path_info), ("device", "/requests/abc"));
        assert_eq!(r.find("/device").unwrap().path_info, "");
        assert_eq!(r.find("/devices").unwrap().component, "any");
        assert!(Router::new(&[t("/jwks", "jwks")]).find("/other").is_none());
    }
}
