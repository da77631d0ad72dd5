//! What deploying an application publishes: its routes (each routed agent at
//! `/agents/{name}` as `<name>-service`, the ingress at the prefix) and the applications that
//! hold its deployments, added to the next [`Snapshot`].

use std::time::SystemTime;

use super::snapshot::{Application, Endpoint, OpenAiRoutes, Origin, Snapshot};
use crate::app::App;
use crate::config::DeploymentKind;
use crate::error::Error;
use crate::handle::DeploymentHandle;
use crate::route::join_prefix;

/// A route this deploy adds: its prefix, the application it belongs to, and its deployment.
pub(super) struct Planned {
    pub(super) prefix: String,
    pub(super) app: String,
    pub(super) deployment: String,
}

/// The names under which deploying `app` publishes applications; see
/// [`super::Controller::published_names`].
pub(super) fn published_names(app: &App) -> Vec<String> {
    let mut names: Vec<String> = planned_routes(app, "/")
        .into_iter()
        .map(|p| p.app)
        .collect();
    let unrouted = app.ingress().is_none()
        && app
            .deployments()
            .iter()
            .any(|d| d.kind() != DeploymentKind::Agent);
    if unrouted && !names.iter().any(|n| n == app.name()) {
        names.push(app.name().to_owned());
    }
    names
}

/// Adds `app`'s routes and applications, served by `handles`, to `next`: each routed agent an
/// application of its own (`<agent>-service`), the ingress and what it composes under the
/// app's name.
pub(super) fn publishable(
    next: &mut Snapshot,
    app: &App,
    route_prefix: &str,
    planned: Vec<Planned>,
    handles: &[DeploymentHandle],
    origin: &Origin,
) -> Result<(), Error> {
    let deployed_at = SystemTime::now();
    let ingress = app.ingress().map(|d| d.config().name());
    let routed_agents: Vec<String> = planned
        .iter()
        .filter(|r| Some(r.deployment.as_str()) != ingress)
        .map(|r| r.deployment.clone())
        .collect();
    for route in planned {
        let Some(deployment) = handles
            .iter()
            .find(|h| h.name() == route.deployment)
            .cloned()
        else {
            continue;
        };
        let (endpoint, deployments) = if deployment.kind() == DeploymentKind::Agent {
            let openai = app
                .serves_openai()
                .then(|| OpenAiRoutes::new(route_prefix, app.uses_openai_model_suffix()));
            (
                Endpoint::agent(deployment.clone(), openai),
                vec![deployment.clone()],
            )
        } else {
            // The ingress and every deployment it composes (agents too, unless routed).
            let composed = handles
                .iter()
                .filter(|h| !routed_agents.iter().any(|n| n == h.name()))
                .cloned()
                .collect();
            (
                Endpoint::ingress(deployment.clone(), app.layers()),
                composed,
            )
        };
        next.insert_route(&route.prefix, &route.app, endpoint)?;
        next.insert_app(Application::new(
            &route.app,
            &route.prefix,
            deployments,
            Some(deployment),
            deployed_at,
            origin.clone(),
        ));
    }
    // Deployments of the app that no route serves (typed callables of an app without an
    // ingress): kept under the app's name so that they keep running.
    let unrouted: Vec<DeploymentHandle> = handles
        .iter()
        .filter(|h| !next.serves_deployment(h))
        .cloned()
        .collect();
    if !unrouted.is_empty() {
        next.insert_app(Application::new(
            app.name(),
            route_prefix,
            unrouted,
            None,
            deployed_at,
            origin.clone(),
        ));
    }
    Ok(())
}

/// The routes `app` asks for at `route_prefix`: the agents it serves over HTTP first (each at
/// `/agents/{name}` as the application `<name>-service`, RayAI's names), then the ingress.
pub(super) fn planned_routes(app: &App, route_prefix: &str) -> Vec<Planned> {
    let mut planned: Vec<Planned> = app
        .deployments()
        .iter()
        .filter(|d| d.kind() == DeploymentKind::Agent && app.exposes(d.config().name()))
        .map(|d| {
            let name = d.config().name();
            Planned {
                prefix: join_prefix(route_prefix, &format!("/agents/{name}")),
                app: DeploymentKind::agent_app_name(name),
                deployment: name.to_owned(),
            }
        })
        .collect();
    if let Some(ingress) = app.ingress() {
        planned.push(Planned {
            prefix: route_prefix.to_owned(),
            app: app.name().to_owned(),
            deployment: ingress.config().name().to_owned(),
        });
    }
    planned
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::future::BoxFuture;
    use serde_json::Value;

    use super::*;
    use crate::agent::{Agent, Deploy};
    use crate::callable::Callable;
    use crate::config::DeploymentConfig;
    use crate::context::ReplicaContext;
    use crate::deployment::Deployment;
    use crate::error::AgentError;
    use crate::handler::{HttpBody, full};

    struct Echo;

    impl Agent for Echo {
        async fn run(&self, data: Value) -> Result<Value, AgentError> {
            Ok(data)
        }
    }

    struct Words;

    impl Callable for Words {
        type Request = String;
        type Response = usize;
        async fn call(&self, text: String) -> Result<usize, AgentError> {
            Ok(text.split_whitespace().count())
        }
    }

    impl Deploy for Words {
        fn config() -> DeploymentConfig {
            DeploymentConfig::new("words")
        }
        fn construct(_ctx: ReplicaContext) -> BoxFuture<'static, Result<Self, AgentError>> {
            Box::pin(async { Ok(Words) })
        }
    }

    fn agent(name: &str) -> Deployment {
        Deployment::from_fn(DeploymentConfig::new(name), |_| async { Ok(Echo) })
    }

    fn ingress(name: &str) -> Deployment {
        Deployment::ingress(DeploymentConfig::new(name), |_| {
            tower::service_fn(|_req: http::Request<HttpBody>| async {
                Ok::<_, Infallible>(http::Response::new(full("hi")))
            })
        })
    }

    #[test]
    fn published_names_are_the_agents_services_and_the_app_for_the_rest() {
        let agents = App::named("agents")
            .deployment(agent("a"))
            .deployment(agent("b"));
        assert_eq!(published_names(&agents), ["a-service", "b-service"]);
        let with_callable = agents.callable::<Words>();
        assert_eq!(
            published_names(&with_callable),
            ["a-service", "b-service", "agents"]
        );
        let shop = App::named("shop")
            .deployment(ingress("api"))
            .deployment(agent("assistant"))
            .deployment(agent("ranker"));
        assert_eq!(published_names(&shop), ["shop"]);
        assert_eq!(
            published_names(&shop.expose("assistant")),
            ["assistant-service", "shop"]
        );
    }

    #[test]
    fn the_same_code_is_the_same_types_whatever_the_config() {
        let echo = |config: DeploymentConfig| Deployment::from_fn(config, |_| async { Ok(Echo) });
        let a = echo(DeploymentConfig::new("a"));
        let b = echo(DeploymentConfig::new("a").with_num_replicas(3));
        assert!(a.same_code(&b), "one constructor, two configs");
        assert!(!a.same_code(&agent("a")), "another constructor");
        assert!(!ingress("a").same_code(&a));
    }
}
