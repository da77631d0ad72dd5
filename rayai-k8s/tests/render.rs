//! The manifests rendered from deployments' attributes: resource values, the objects each
//! deployment gets, errors, determinism, and the real schemas (`kubernetes-validate --strict`).

#[path = "support/kubernetes_validate.rs"]
mod kubernetes_validate;

use rayai_k8s::{AppSpec, Autoscaler, DeploymentSpec, RenderError, Scaling, Settings, render};
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

fn deployment(name: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: name.to_owned(),
        num_replicas: 1,
        autoscaling: None,
        num_cpus: 1.0,
        num_gpus: 0.0,
        memory_bytes: 2 * GIB,
        graceful_shutdown_s: 20.0,
        health_check_period_s: 10.0,
        health_check_timeout_s: 30.0,
    }
}

/// An application with every shape of deployment: fractional CPUs, several replicas, a GPU,
/// autoscaling, an odd name.
fn shop() -> AppSpec {
    AppSpec {
        name: "shop".to_owned(),
        route_prefix: "/".to_owned(),
        deployments: vec![
            DeploymentSpec {
                num_cpus: 0.25,
                memory_bytes: 512 << 20,
                num_replicas: 4,
                ..deployment("chat")
            },
            DeploymentSpec {
                num_gpus: 1.0,
                num_cpus: 4.0,
                memory_bytes: 16 * GIB,
                graceful_shutdown_s: 60.0,
                ..deployment("Vision_Model")
            },
            DeploymentSpec {
                autoscaling: Some(Scaling {
                    min_replicas: 1,
                    max_replicas: 8,
                    initial_replicas: 2,
                    target_ongoing_requests: 1.5,
                    downscale_delay_s: 600,
                }),
                ..deployment("search")
            },
        ],
    }
}

fn settings() -> Settings {
    Settings {
        namespace: Some("agents".to_owned()),
        ..Settings::new("example.org/shop:1", "shop")
    }
}

/// The first container of the Deployment `name`.
fn container<'a>(m: &'a rayai_k8s::Manifests, name: &str) -> &'a Value {
    &m.get("Deployment", name).unwrap()["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn attributes_become_requests_limits_and_replicas() {
    let m = render(&settings(), &[shop()]).unwrap();
    let chat = container(&m, "shop-chat");
    assert_eq!(
        chat["resources"],
        json!({"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m", "memory": "512Mi"}})
    );
    assert_eq!(
        m.get("Deployment", "shop-chat").unwrap()["spec"]["replicas"],
        4
    );
    // A GPU: whole devices in limits only, a toleration, no surge (no spare GPU to surge to).
    let vision = m.get("Deployment", "shop-vision-model-a892905f").unwrap();
    let resources = &vision["spec"]["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(
        resources,
        &json!({"limits": {"memory": "16Gi", "nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "16Gi"}})
    );
    assert_eq!(
        vision["spec"]["template"]["spec"]["tolerations"][0]["key"],
        "nvidia.com/gpu"
    );
    assert_eq!(vision["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 0);
    // The exact name is kept where the object name could not keep it.
    assert_eq!(
        vision["metadata"]["labels"]["rayai.io/deployment"],
        "Vision_Model"
    );
    assert_eq!(
        vision["metadata"]["annotations"]["rayai.io/deployment-name"],
        "Vision_Model"
    );
    // The drain delay (the preStop pause, 5 s) + graceful_shutdown_timeout_s (60).
    let pod = &vision["spec"]["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 65);
    assert_eq!(
        pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
        5
    );
    // Autoscaling: its initial replicas, and an HPA on the ongoing-requests gauge.
    assert_eq!(
        m.get("Deployment", "shop-search").unwrap()["spec"]["replicas"],
        2
    );
    let hpa = m.get("HorizontalPodAutoscaler", "shop-search").unwrap();
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(hpa["spec"]["maxReplicas"], 8);
    assert_eq!(
        hpa["spec"]["metrics"][0]["pods"],
        json!({"metric": {"name": "ray_serve_replica_processing_queries"},
               "target": {"type": "AverageValue", "averageValue": "1500m"}})
    );
    let doc = m
        .documents
        .iter()
        .find(|d| d.kind() == "HorizontalPodAutoscaler")
        .unwrap();
    assert!(doc.comment.as_deref().unwrap().contains("metrics adapter"));
    assert!(m.to_yaml().contains("# Scales search on the pods metric"));
    // Budgets for what may run 2 pods or more.
    assert!(m.get("PodDisruptionBudget", "shop-chat").is_some());
    assert!(m.get("PodDisruptionBudget", "shop-search").is_some());
    assert!(
        m.get("PodDisruptionBudget", "shop-vision-model-a892905f")
            .is_none()
    );
    kubernetes_validate::validate(&m.to_yaml(), &[]);
}

#[test]
fn keda_scales_on_prometheus_instead() {
    let settings = Settings {
        autoscaler: Autoscaler::Keda,
        ..settings()
    };
    let m = render(&settings, &[shop()]).unwrap();
    assert!(m.get("HorizontalPodAutoscaler", "shop-search").is_none());
    let scaled = m.get("ScaledObject", "shop-search").unwrap();
    assert_eq!(scaled["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(scaled["metadata"]["namespace"], "agents");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "shop-search");
    assert_eq!(scaled["spec"]["minReplicaCount"], 1);
    assert_eq!(scaled["spec"]["maxReplicaCount"], 8);
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    assert_eq!(
        trigger["metadata"]["query"],
        "sum(ray_serve_replica_processing_queries{application=\"shop\",deployment=\"search\"})"
    );
    assert_eq!(trigger["metadata"]["threshold"], "1500m");
    // KEDA's schema is not among Kubernetes' own: every other document still passes.
    kubernetes_validate::validate(&m.to_yaml(), &["ScaledObject"]);
}

#[test]
fn a_fractional_gpu_is_refused_naming_the_deployment_and_the_ways_to_share() {
    let mut app = shop();
    app.deployments[1].num_gpus = 0.5;
    let err = render(&settings(), &[app]).unwrap_err();
    assert_eq!(
        err,
        RenderError::FractionalGpu {
            deployment: "Vision_Model".to_owned(),
            num_gpus: 0.5
        }
    );
    let message = err.to_string();
    for needle in ["`Vision_Model`", "num_gpus = 0.5", "time-slicing", "MIG"] {
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

#[test]
fn one_name_in_two_applications_is_refused() {
    let other = AppSpec {
        name: "other".to_owned(),
        route_prefix: "/other".to_owned(),
        deployments: vec![deployment("chat")],
    };
    let err = render(&settings(), &[shop(), other]).unwrap_err();
    assert!(
        err.to_string()
            .contains("deployment `chat` is in applications `shop` and `other`"),
        "{err}"
    );
    assert_eq!(
        render(&settings(), &[]).unwrap_err(),
        RenderError::NoApplications
    );
}

#[test]
fn output_is_the_same_whatever_the_order_of_deployments() {
    let mut reversed = shop();
    reversed.deployments.reverse();
    let a = render(&settings(), &[shop()]).unwrap().to_yaml();
    let b = render(&settings(), &[reversed]).unwrap().to_yaml();
    assert_eq!(a, b);
}

#[test]
fn bad_settings_are_refused() {
    for (settings, needle) in [
        (
            Settings {
                image: "a b".to_owned(),
                ..settings()
            },
            "is not an image reference",
        ),
        (
            Settings {
                namespace: Some("Agents".to_owned()),
                ..settings()
            },
            "not a DNS label",
        ),
        (
            Settings {
                proxy_replicas: 0,
                ..settings()
            },
            "at least 1 pod",
        ),
        (
            Settings {
                metrics_port: 8000,
                ..settings()
            },
            "both 8000",
        ),
    ] {
        let err = render(&settings, &[shop()]).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let mut gpu = settings();
    gpu.gpu_node_selector
        .insert("bad key".to_owned(), "x".to_owned());
    assert!(
        render(&gpu, &[shop()])
            .unwrap_err()
            .to_string()
            .contains("not a label")
    );
}

#[test]
fn gpu_node_selector_applies_to_gpu_pods_only() {
    let mut s = settings();
    s.gpu_node_selector
        .insert("nvidia.com/gpu.present".to_owned(), "true".to_owned());
    let m = render(&s, &[shop()]).unwrap();
    let pod = |name: &str| m.get("Deployment", name).unwrap()["spec"]["template"]["spec"].clone();
    assert_eq!(
        pod("shop-vision-model-a892905f")["nodeSelector"],
        json!({"nvidia.com/gpu.present": "true"})
    );
    assert!(pod("shop-chat").get("nodeSelector").is_none());
    assert!(pod("shop-chat").get("tolerations").is_none());
}
