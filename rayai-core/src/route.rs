//! The route-prefix table: which application serves a path.
//!
//! Prefixes start with `/`, have no trailing `/` (except `/` itself) and no `{` or `}`. A path
//! goes to the longest prefix that matches it by whole segments: `/api` serves `/api` and
//! `/api/x`, never `/apix`.

use crate::error::Error;

/// One entry: a prefix, the application's name, and what serves it.
#[derive(Debug, Clone)]
pub struct Route<T> {
    prefix: String,
    app: String,
    target: T,
}

impl<T> Route<T> {
    /// The route prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The application's name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// What serves the route.
    pub fn target(&self) -> &T {
        &self.target
    }
}

/// Routes by longest whole-segment prefix.
///
/// # Examples
///
/// ```
/// use rayai_core::route::RouteTable;
///
/// let mut table = RouteTable::new();
/// table.insert("/", "root", 1).unwrap();
/// table.insert("/api", "api", 2).unwrap();
/// let (route, rest) = table.lookup("/api/items").unwrap();
/// assert_eq!((*route.target(), rest), (2, "/items"));
/// assert_eq!(*table.lookup("/apix").unwrap().0.target(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    /// Longest prefix first.
    routes: Vec<Route<T>>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

/// Checks a route prefix against the rules.
///
/// # Errors
///
/// [`Error::InvalidRoutePrefix`] naming the rule broken.
pub fn validate_prefix(prefix: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidRoutePrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if !prefix.starts_with('/') {
        return bad("a route prefix must start with '/'");
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return bad("a route prefix must not end with '/' (except \"/\" itself)");
    }
    if prefix.contains(['{', '}']) {
        return bad("a route prefix must not contain '{' or '}'");
    }
    if prefix.contains("//") {
        return bad("a route prefix must not contain an empty segment (\"//\")");
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return bad("a route prefix must not contain '.' or '..' segments");
    }
    if prefix
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#' || b == b'%')
    {
        return bad("a route prefix must not contain spaces, control characters, '?', '#' or '%'");
    }
    Ok(())
}

/// Joins a route prefix and a path below it: `join_prefix("/", "/agents/echo")` is `/agents/echo`,
/// `join_prefix("/api", "/agents/echo")` is `/api/agents/echo`.
pub fn join_prefix(prefix: &str, path: &str) -> String {
    if prefix == "/" {
        path.to_owned()
    } else {
        format!("{prefix}{path}")
    }
}

impl<T> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// Adds `app` at `prefix`. The same application at the same prefix is replaced.
    ///
    /// # Errors
    ///
    /// An invalid prefix, or [`Error::RouteConflict`] when another application holds it.
    pub fn insert(&mut self, prefix: &str, app: &str, target: T) -> Result<(), Error> {
        validate_prefix(prefix)?;
        if let Some(existing) = self.routes.iter_mut().find(|r| r.prefix == prefix) {
            if existing.app != app {
                return Err(Error::RouteConflict {
                    prefix: prefix.to_owned(),
                    existing: existing.app.clone(),
                    new: app.to_owned(),
                });
            }
            existing.target = target;
            return Ok(());
        }
        let at = self
            .routes
            .partition_point(|r| r.prefix.len() >= prefix.len());
        self.routes.insert(
            at,
            Route {
                prefix: prefix.to_owned(),
                app: app.to_owned(),
                target,
            },
        );
        Ok(())
    }

    /// Whether `prefix` is free for `app` (unused, or used by `app` itself).
    ///
    /// # Errors
    ///
    /// As [`RouteTable::insert`].
    pub fn check(&self, prefix: &str, app: &str) -> Result<(), Error> {
        validate_prefix(prefix)?;
        match self.routes.iter().find(|r| r.prefix == prefix) {
            Some(r) if r.app != app => Err(Error::RouteConflict {
                prefix: prefix.to_owned(),
                existing: r.app.clone(),
                new: app.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Removes every route of `app`.
    pub fn remove_app(&mut self, app: &str) {
        self.routes.retain(|r| r.app != app);
    }

    /// The route for `path` and the rest of the path below its prefix (`""` or starting with `/`).
    pub fn lookup<'a>(&'a self, path: &'a str) -> Option<(&'a Route<T>, &'a str)> {
        self.routes.iter().find_map(|r| {
            if r.prefix == "/" {
                return path.starts_with('/').then_some((r, path));
            }
            let rest = path.strip_prefix(r.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((r, rest))
        })
    }

    /// Every route, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &Route<T>> {
        self.routes.iter()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(prefixes: &[&str]) -> RouteTable<usize> {
        let mut t = RouteTable::new();
        for (i, p) in prefixes.iter().enumerate() {
            t.insert(p, &format!("app{i}"), i).unwrap();
        }
        t
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = table(&["/", "/api", "/api/v1", "/agents/echo"]);
        let cases = [
            ("/", Some((0, "/"))),
            ("/x", Some((0, "/x"))),
            ("/api", Some((1, ""))),
            ("/api/", Some((1, "/"))),
            ("/apix", Some((0, "/apix"))),
            ("/api/v1/items/3", Some((2, "/items/3"))),
            ("/api/v12", Some((1, "/v12"))),
            ("/agents/echo/chat", Some((3, "/chat"))),
            ("/agents/echoX/chat", Some((0, "/agents/echoX/chat"))),
        ];
        for (path, want) in cases {
            let got = t.lookup(path).map(|(r, rest)| (*r.target(), rest));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn without_root_unmatched_paths_find_nothing() {
        let t = table(&["/agents/echo"]);
        assert!(t.lookup("/agents/echoX/chat").is_none());
        assert!(t.lookup("/").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn prefix_rules_are_enforced() {
        for bad in ["", "api", "/api/", "/a{b}", "/a//b", "/a/../b", "/a b"] {
            assert!(validate_prefix(bad).is_err(), "{bad:?}");
        }
        for good in ["/", "/api", "/api/v1", "/agents/echo-2.x"] {
            validate_prefix(good).unwrap();
        }
    }

    #[test]
    fn two_apps_on_one_prefix_is_an_error_naming_both() {
        let mut t = table(&["/api"]);
        let err = t.insert("/api", "other", 9).unwrap_err().to_string();
        assert!(err.contains("app0") && err.contains("other"), "{err}");
        t.insert("/api", "app0", 5).unwrap();
        assert_eq!(*t.lookup("/api").unwrap().0.target(), 5);
    }

    proptest! {
        #[test]
        fn longest_prefix_wins_and_never_panics(
            segs in proptest::collection::vec(proptest::collection::vec("[a-c]{1,2}", 0..4), 1..6),
            path in "(/[a-c]{0,3}){0,5}",
        ) {
            let mut t = RouteTable::new();
            for (i, s) in segs.iter().enumerate() {
                let prefix = if s.is_empty() { "/".to_owned() } else { format!("/{}", s.join("/")) };
                let _ = t.insert(&prefix, &format!("app{i}"), prefix.clone());
            }
            let got = t.lookup(&path);
            // The oracle: every matching prefix, by whole segments; the longest must win.
            let matches = |p: &str| p == "/" && path.starts_with('/')
                || path == p
                || path.starts_with(p) && path.as_bytes().get(p.len()) == Some(&b'/');
            let best = t.iter().map(|r| r.target().clone()).filter(|p| matches(p)).max_by_key(|p| p.len());
            prop_assert_eq!(got.map(|(r, _)| r.target().clone()), best);
        }
    }
}
