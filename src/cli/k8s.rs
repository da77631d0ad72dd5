//! `rayai k8s render`: a project's Kubernetes manifests, printed by the project's own binary
//! (built with rayai's `kubernetes` feature) run with `RAYAI_RENDER=k8s`.

use clap::{Args, Subcommand};

use super::{BuildArgs, CliResult, build};

/// The `k8s` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum K8sCommand {
    /// Print the project's Kubernetes manifests (one multi-document YAML) on stdout: a
    /// Deployment, a Service (and a PodDisruptionBudget, an autoscaler) per agent, the proxy
    /// and its RBAC. Apply them with `kubectl apply -f`.
    Render(RenderArgs),
}

/// How to render.
#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(flatten)]
    build: BuildArgs,
    /// The container image with the project's binary (see the project's Dockerfile).
    #[arg(long)]
    image: String,
    /// The namespace of every object [default: none: `kubectl apply -n` chooses].
    #[arg(long)]
    namespace: Option<String>,
    /// The program's name in Kubernetes: the proxy's Service, the prefix of the other objects
    /// [default: the project's binary's name].
    #[arg(long)]
    name: Option<String>,
    /// What scales autoscaling agents: a HorizontalPodAutoscaler (needs a metrics adapter)
    /// or a KEDA ScaledObject.
    #[arg(long, value_parser = ["hpa", "keda"], default_value = "hpa")]
    autoscaler: String,
    /// The type of the proxy's Service.
    #[arg(long, value_parser = ["ClusterIP", "NodePort", "LoadBalancer"], default_value = "ClusterIP")]
    service_type: String,
    /// Pods of the proxy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    proxy_replicas: u32,
    /// Node labels GPU agents' pods must run on (`key=value`, repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    gpu_node_selector: Vec<String>,
    /// The Prometheus KEDA's triggers ask [default: http://prometheus-operated.monitoring.svc:9090].
    #[arg(long, value_name = "URL")]
    prometheus: Option<String>,
}

/// Builds the project with rayai's `kubernetes` feature and runs it with `RAYAI_RENDER=k8s`:
/// the manifests on stdout, the build's progress and any error on stderr.
pub(crate) fn render(args: &RenderArgs) -> CliResult {
    let project = build::Project::open(&args.build.project_path)?;
    let exe = project.build(!args.build.debug, &["rayai/kubernetes"])?;
    let mut env = vec![
        ("RAYAI_RENDER".to_owned(), "k8s".to_owned()),
        ("RAYAI_IMAGE".to_owned(), args.image.clone()),
        ("RAYAI_K8S_AUTOSCALER".to_owned(), args.autoscaler.clone()),
        (
            "RAYAI_K8S_SERVICE_TYPE".to_owned(),
            args.service_type.clone(),
        ),
        (
            "RAYAI_K8S_PROXY_REPLICAS".to_owned(),
            args.proxy_replicas.to_string(),
        ),
    ];
    for (name, value) in [
        ("RAYAI_NAMESPACE", &args.namespace),
        ("RAYAI_NAME", &args.name),
        ("RAYAI_K8S_PROMETHEUS", &args.prometheus),
    ] {
        if let Some(value) = value {
            env.push((name.to_owned(), value.clone()));
        }
    }
    if !args.gpu_node_selector.is_empty() {
        env.push((
            "RAYAI_K8S_GPU_NODE_SELECTOR".to_owned(),
            args.gpu_node_selector.join(","),
        ));
    }
    project.run(&exe, env)
}
