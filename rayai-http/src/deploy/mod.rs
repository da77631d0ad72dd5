//! Declarative deploys, as Ray Serve's `serve deploy`: a config in Ray's schema
//! ([`DeployConfig`]) names applications compiled into the binary by import path, with
//! overrides of their deployments' options, and the server makes the set of declarative
//! applications what the config lists.
//!
//! On the dashboard port: `PUT /api/serve/applications/` applies a config (JSON),
//! `DELETE /api/serve/applications/` deletes every declarative application and
//! `DELETE /api/serve/applications/{name}` one application. In code: [`crate::Server::apply_config`].
//!
//! | module | job |
//! |---|---|
//! | `schema` | Ray's config as serde types, parsed with the path of a bad field |
//! | `catalog` | import path -> application builder |
//! | `overrides` | a config's options on top of an application's own |
//! | `error` | [`DeployError`] and its status codes |

mod catalog;
mod error;
mod overrides;
mod schema;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};

use rayai_core::{App, Controller, Placement};
use serde::Serialize;
use serde_json::{Value, json};

pub(crate) use catalog::Catalog;
pub use error::DeployError;
pub use schema::{
    ActorOptions, ApplicationConfig, AutoscalingOverride, DeployConfig, DeploymentOverride,
    HttpOptionsConfig, LoggingConfig, NumReplicas, ProxyLocation, SchemaError,
};

use crate::HttpOptions;
use crate::body::Body;
use crate::error as http_error;

/// The collection path of the API (also answered with a trailing slash).
const APPLICATIONS: &str = "/api/serve/applications";

/// What a config applied: the applications deployed or updated, and those deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ApplyReport {
    /// The config's applications, in its order.
    pub applied: Vec<String>,
    /// The applications the server stopped serving: declarative ones the config no longer
    /// lists, and ones an application's new version no longer publishes.
    pub deleted: Vec<String>,
}

/// A declarative application as applied: its config and the applications it publishes (an
/// application of agents publishes one per agent, `<agent>-service`).
struct Applied {
    published: Vec<String>,
}

/// The server's declarative side: the catalog of import paths and what the last configs applied.
pub(crate) struct Declarative {
    controller: Controller,
    catalog: Catalog,
    options: HttpOptions,
    local_addr: SocketAddr,
    placement: Placement,
    /// Declarative applications by name; the lock also makes applies and deletes one at a time.
    applied: tokio::sync::Mutex<BTreeMap<String, Applied>>,
}

/// The one place a declarative application is deployed: updated in place when only lightweight
/// options changed (replicas, limits, `user_config` through `reconfigure`), else a new version
/// starts beside the old one, which drains after. The application is recorded as declarative
/// with `config`, its entry of the config as given (the status API's `deployed_app_config`).
async fn deploy_declared(
    controller: &Controller,
    app: App,
    route_prefix: &str,
    placement: Placement,
    config: &Value,
) -> Result<(), rayai_core::Error> {
    controller
        .apply_app_declared(app, route_prefix, placement, config.clone())
        .await
}

impl Declarative {
    pub(crate) fn new(
        controller: Controller,
        options: HttpOptions,
        local_addr: SocketAddr,
    ) -> Self {
        let placement = if options.strict_placement {
            Placement::Strict
        } else {
            Placement::StartWhatFits
        };
        Declarative {
            controller,
            catalog: Catalog::default(),
            options,
            local_addr,
            placement,
            applied: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Applies `config`: checks all of it, deletes the declarative applications it no longer
    /// lists, then deploys or updates each application it lists, in order.
    pub(crate) async fn apply(&self, config: &DeployConfig) -> Result<ApplyReport, DeployError> {
        let mut applied = self.applied.lock().await;
        self.check_server_options(config)?;
        let mut apps = Vec::new();
        for (i, app_config) in config.applications.iter().enumerate() {
            apps.push(self.resolve(config, app_config, i)?);
        }
        let mut report = ApplyReport::default();
        if let Some(render) = crate::render::session() {
            // Rendering manifests: the applications are recorded, not started.
            for ((app, prefix), app_config) in apps.iter().zip(&config.applications) {
                render.record(app, prefix);
                report.applied.push(app_config.name.clone());
            }
            return Ok(report);
        }
        let listed: BTreeSet<&str> = config
            .applications
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        let gone: Vec<String> = applied
            .keys()
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            if let Some(old) = applied.remove(&name) {
                report
                    .deleted
                    .extend(self.delete_published(&old.published).await);
            }
        }
        for ((app, prefix), app_config) in apps.into_iter().zip(&config.applications) {
            let names: Vec<String> = app
                .deployments()
                .iter()
                .map(|d| d.config().name().to_owned())
                .collect();
            let as_given = serde_json::to_value(app_config).unwrap_or(Value::Null);
            deploy_declared(&self.controller, app, &prefix, self.placement, &as_given)
                .await
                .map_err(|source| DeployError::Deploy {
                    app: app_config.name.clone(),
                    source,
                })?;
            let published = self.published_by(&names);
            if let Some(old) = applied.get(&app_config.name) {
                let stale: Vec<String> = old
                    .published
                    .iter()
                    .filter(|p| !published.contains(p))
                    .cloned()
                    .collect();
                report.deleted.extend(self.delete_published(&stale).await);
            }
            applied.insert(app_config.name.clone(), Applied { published });
            report.applied.push(app_config.name.clone());
        }
        Ok(report)
    }

    /// The application `app_config` builds, with its overrides, and where it is served.
    fn resolve(
        &self,
        config: &DeployConfig,
        app_config: &ApplicationConfig,
        i: usize,
    ) -> Result<(App, String), DeployError> {
        let at = |field: &str| format!("applications[{i}].{field}");
        let invalid = |field: &str, message: String| DeployError::invalid(at(field), message);
        if app_config.name.is_empty() {
            return Err(invalid(
                "name",
                "Application names must be nonempty.".to_owned(),
            ));
        }
        if let Some(j) = config.applications[..i]
            .iter()
            .position(|a| a.name == app_config.name)
        {
            return Err(invalid(
                "name",
                format!(
                    "applications[{j}] is also named {:?}; names must be unique",
                    app_config.name
                ),
            ));
        }
        let Some(prefix) = app_config.route_prefix.clone() else {
            return Err(invalid(
                "route_prefix",
                "null (no HTTP route) is not supported: every application is served at a prefix"
                    .to_owned(),
            ));
        };
        if let Some(j) = config.applications[..i]
            .iter()
            .position(|a| a.route_prefix.as_deref() == Some(prefix.as_str()))
        {
            return Err(invalid(
                "route_prefix",
                format!("applications[{j}] is also served at {prefix:?}; prefixes must be unique"),
            ));
        }
        rayai_core::route::validate_prefix(&prefix)
            .map_err(|e| invalid("route_prefix", e.to_string()))?;
        for (field, value) in [("host", &app_config.host), ("port", &app_config.port)] {
            if value.is_some() {
                return Err(invalid(
                    field,
                    format!("set {field} in the top level http_options only"),
                ));
            }
        }
        overrides::not_set(&app_config.runtime_env, &at("runtime_env"))?;
        overrides::not_set(&app_config.args, &at("args"))?;
        overrides::not_set(&app_config.autoscaling_policy, &at("autoscaling_policy"))?;
        if app_config.external_scaler_enabled == Some(true) {
            return Err(invalid(
                "external_scaler_enabled",
                "rayai scales replicas itself; an external scaler is not supported".to_owned(),
            ));
        }
        let Some(app) = self.catalog.build(&app_config.import_path) else {
            return Err(DeployError::UnknownImportPath {
                path: at("import_path"),
                import_path: app_config.import_path.clone(),
                known: self.catalog.known(),
            });
        };
        Ok((overrides::apply(app, app_config, i)?, prefix))
    }

    /// Refuses HTTP options that differ from the running server's, and a target capacity.
    fn check_server_options(&self, config: &DeployConfig) -> Result<(), DeployError> {
        if let Some(capacity) = config.target_capacity
            && capacity != 100.0
        {
            return Err(DeployError::invalid(
                "target_capacity".to_owned(),
                "only null or 100 is supported".to_owned(),
            ));
        }
        let Some(h) = &config.http_options else {
            return Ok(());
        };
        let o = &self.options;
        let changed = |field, requested: String, running: String| {
            Err(DeployError::HttpOptionsChanged {
                field,
                requested,
                running,
            })
        };
        if let Some(host) = &h.host
            && host != &o.host
        {
            return changed("host", format!("{host:?}"), format!("{:?}", o.host));
        }
        if let Some(port) = h.port
            && port != self.local_addr.port()
        {
            return changed("port", port.to_string(), self.local_addr.port().to_string());
        }
        if let Some(root) = &h.root_path
            && root.trim_end_matches('/') != o.root_path.trim_end_matches('/')
        {
            return changed(
                "root_path",
                format!("{root:?}"),
                format!("{:?}", o.root_path),
            );
        }
        let secs = |v: Option<f64>| v.map_or_else(|| "null".to_owned(), |v| v.to_string());
        if let Some(timeout) = h.request_timeout_s
            && Some(timeout) != o.request_timeout_s
        {
            return changed(
                "request_timeout_s",
                secs(Some(timeout)),
                secs(o.request_timeout_s),
            );
        }
        if let Some(keep_alive) = h.keep_alive_timeout_s
            && keep_alive != o.keep_alive_timeout_s
        {
            return changed(
                "keep_alive_timeout_s",
                keep_alive.to_string(),
                o.keep_alive_timeout_s.to_string(),
            );
        }
        let tls = |v: &Option<std::path::PathBuf>| {
            v.as_ref().map_or_else(
                || "null".to_owned(),
                |p| format!("{:?}", p.display().to_string()),
            )
        };
        if let Some(key) = &h.ssl_keyfile
            && o.tls_key_path.as_deref() != Some(std::path::Path::new(key))
        {
            return changed("ssl_keyfile", format!("{key:?}"), tls(&o.tls_key_path));
        }
        if let Some(cert) = &h.ssl_certfile
            && o.tls_cert_path.as_deref() != Some(std::path::Path::new(cert))
        {
            return changed("ssl_certfile", format!("{cert:?}"), tls(&o.tls_cert_path));
        }
        Ok(())
    }

    /// The applications served now that hold a deployment of these names.
    fn published_by(&self, deployments: &[String]) -> Vec<String> {
        let snapshot = self.controller.snapshot();
        snapshot
            .applications()
            .filter(|a| {
                a.deployments()
                    .iter()
                    .any(|d| deployments.iter().any(|n| n == d.name()))
            })
            .map(|a| a.name().to_owned())
            .collect()
    }

    /// Deletes these published applications; returns those that existed.
    async fn delete_published(&self, names: &[String]) -> Vec<String> {
        let mut deleted = Vec::new();
        for name in names {
            if self.controller.delete_app(name).await {
                deleted.push(name.clone());
            }
        }
        deleted
    }

    /// Deletes every declarative application; returns the applications deleted.
    pub(crate) async fn delete_all(&self) -> Vec<String> {
        let mut applied = self.applied.lock().await;
        let mut deleted = Vec::new();
        for (_, old) in std::mem::take(&mut *applied) {
            deleted.extend(self.delete_published(&old.published).await);
        }
        deleted
    }

    /// Deletes the declarative application `name`, or the served application of that name.
    pub(crate) async fn delete(&self, name: &str) -> Result<Vec<String>, DeployError> {
        let mut applied = self.applied.lock().await;
        if let Some(old) = applied.remove(name) {
            return Ok(self.delete_published(&old.published).await);
        }
        if self.controller.delete_app(name).await {
            for record in applied.values_mut() {
                record.published.retain(|p| p != name);
            }
            applied.retain(|_, r| !r.published.is_empty());
            return Ok(vec![name.to_owned()]);
        }
        Err(DeployError::NotFound(name.to_owned()))
    }

    /// Answers `PUT`/`DELETE` on the API's paths (the caller checked the token).
    pub(crate) async fn serve(
        self: Arc<Self>,
        req: Request<hyper::body::Incoming>,
    ) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let rest = path
            .strip_prefix(APPLICATIONS)
            .map(|r| r.trim_start_matches('/').trim_end_matches('/'));
        match (req.method().clone(), rest) {
            (Method::PUT, Some("")) => {
                let body = match self.read_body(req).await {
                    Ok(body) => body,
                    Err(resp) => return resp,
                };
                let config = match DeployConfig::from_json(&body) {
                    Ok(config) => config,
                    Err(e) => return failure(&DeployError::Schema(e)),
                };
                match self.apply(&config).await {
                    Ok(report) => http_error::json_response(
                        StatusCode::OK,
                        &serde_json::to_value(report).unwrap_or(Value::Null),
                    ),
                    Err(e) => failure(&e),
                }
            }
            (Method::DELETE, Some("")) => {
                let deleted = self.delete_all().await;
                http_error::json_response(StatusCode::OK, &json!({ "deleted": deleted }))
            }
            (Method::DELETE, Some(name)) if !name.contains('/') => {
                let name = percent_decoded(name);
                match self.delete(&name).await {
                    Ok(deleted) => {
                        http_error::json_response(StatusCode::OK, &json!({ "deleted": deleted }))
                    }
                    Err(e) => failure(&e),
                }
            }
            (_, Some("")) => http_error::method_not_allowed("GET, PUT, DELETE"),
            (_, Some(name)) if !name.contains('/') => http_error::method_not_allowed("DELETE"),
            _ => http_error::not_found(),
        }
    }

    async fn read_body(
        &self,
        req: Request<hyper::body::Incoming>,
    ) -> Result<bytes::Bytes, Response<Body>> {
        crate::intake::read_whole(req, &self.options)
            .await
            .map(|(body, _held)| body)
    }
}

/// Whether `path` is one of the API's (the collection, or one application under it).
pub(crate) fn is_api_path(path: &str) -> bool {
    path == APPLICATIONS || path.starts_with("/api/serve/applications/")
}

/// `{"detail": ...}` with the error's status, its causes appended.
fn failure(e: &DeployError) -> Response<Body> {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        message += &format!(": {cause}");
        source = cause.source();
    }
    http_error::detail(e.status(), &message)
}

/// A path segment with its `%XX` escapes decoded (names are ASCII; anything else is kept).
fn percent_decoded(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_with_and_without_the_slash() {
        assert!(is_api_path("/api/serve/applications"));
        assert!(is_api_path("/api/serve/applications/"));
        assert!(is_api_path("/api/serve/applications/shop"));
        assert!(!is_api_path("/api/serve/applicationsx"));
        assert_eq!(percent_decoded("a%2Db%zz%4"), "a-b%zz%4");
    }
}
