//! The applications compiled into the binary, by import path: what a config's `import_path`
//! names. Ray imports a Python module; a Rust server can only build what it was compiled with,
//! so programs register their application builders here.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rayai_core::{App, DeploymentKind};

/// Builds an application for an import path.
pub(crate) type Builder = Arc<dyn Fn() -> App + Send + Sync>;

/// Where an import path's application comes from.
#[derive(Clone)]
enum Source {
    /// Registered by the program (`Server::register_app`).
    Builder(Builder),
    /// Deployed in code (`Server::deploy`): the application as it was deployed.
    Deployed(App),
}

/// The import paths a server knows.
#[derive(Clone, Default)]
pub(crate) struct Catalog {
    entries: Arc<RwLock<BTreeMap<String, Source>>>,
}

/// The prefix of the import paths of `#[agent]`s: `agents:<name>`, and `agents:app` for all.
const AGENTS: &str = "agents:";

impl Catalog {
    /// Registers `builder` under `import_path` (replacing what was there).
    pub(crate) fn register(&self, import_path: &str, builder: Builder) {
        self.write()
            .insert(import_path.to_owned(), Source::Builder(builder));
    }

    /// Records an application deployed in code under its name, unless the program registered a
    /// builder under that name.
    pub(crate) fn deployed(&self, app: &App) {
        let mut entries = self.write();
        if !matches!(entries.get(app.name()), Some(Source::Builder(_))) {
            entries.insert(app.name().to_owned(), Source::Deployed(app.clone()));
        }
    }

    /// The application `import_path` names, built now.
    pub(crate) fn build(&self, import_path: &str) -> Option<App> {
        let found = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(import_path)
            .cloned();
        match found {
            Some(Source::Builder(build)) => Some(build()),
            Some(Source::Deployed(app)) => Some(app),
            None => agents(import_path),
        }
    }

    /// Every import path known, sorted: the registered and deployed ones, then the agents'.
    pub(crate) fn known(&self) -> Vec<String> {
        let mut known: Vec<String> = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let discovered = App::discover();
        if !discovered.deployments().is_empty() {
            known.push(format!("{AGENTS}app"));
            known.extend(
                discovered
                    .deployments()
                    .iter()
                    .map(|d| format!("{AGENTS}{}", d.config().name())),
            );
        }
        known
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Source>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// `agents:app` (every `#[agent]` in the binary) or `agents:<name>` (one), as declared in code.
fn agents(import_path: &str) -> Option<App> {
    let name = import_path.strip_prefix(AGENTS)?;
    let all = App::discover();
    if name == "app" {
        return (!all.deployments().is_empty()).then_some(all);
    }
    let one = all.filter(|n| n == name);
    let found = one
        .deployments()
        .iter()
        .any(|d| d.kind() == DeploymentKind::Agent);
    found.then_some(one)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayai_core::{Agent, AgentError, Deployment, DeploymentConfig};
    use serde_json::Value;

    struct Nop;
    impl Agent for Nop {
        async fn run(&self, data: Value) -> Result<Value, AgentError> {
            Ok(data)
        }
    }

    fn app(name: &str) -> App {
        App::named(name).deployment(Deployment::from_fn(
            DeploymentConfig::new("nop"),
            |_| async { Ok(Nop) },
        ))
    }

    #[test]
    fn registered_builders_win_over_deployed_apps() {
        let catalog = Catalog::default();
        catalog.deployed(&app("shop"));
        assert_eq!(catalog.build("shop").unwrap().name(), "shop");
        catalog.register("shop", Arc::new(|| app("built")));
        catalog.deployed(&app("shop"));
        assert_eq!(catalog.build("shop").unwrap().name(), "built");
        assert!(catalog.build("nope:app").is_none());
        assert!(catalog.build("agents:nope").is_none());
        assert_eq!(catalog.known()[0], "shop");
    }
}
