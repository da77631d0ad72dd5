//! rayai on Kubernetes: the same `#[agent]` attributes that drive the local scheduler, rendered
//! as manifests ([`render()`]), and the proxy's discovery of replica pods through the Kubernetes
//! API (`discovery`). rayai's `kubernetes` feature brings it in: `RAYAI_RENDER=k8s` makes any
//! rayai program print its manifests, `RAYAI_DISCOVERY=kubernetes` makes a proxy watch them.
//!
//! | rayai | Kubernetes |
//! |---|---|
//! | a deployment | a `Deployment` (`RAYAI_ROLE=replica`, one replica per pod) and a headless `Service`, labelled `rayai.io/app`, `rayai.io/deployment` |
//! | `num_replicas` | `spec.replicas` |
//! | autoscaling | `spec.replicas` = its initial replicas, and an HPA (autoscaling/v2) or a KEDA `ScaledObject` between `min_replicas` and `max_replicas` on ongoing requests per pod, `target_ongoing_requests` |
//! | `num_cpus = 0.25` | `requests.cpu: 250m` |
//! | `memory = "2GB"` (binary units, as RayAI) | `requests.memory` = `limits.memory` = `2Gi` |
//! | `num_gpus = 1` | `limits["nvidia.com/gpu"]: 1` (whole GPUs only), a toleration of `nvidia.com/gpu` taints, an optional node selector |
//! | `graceful_shutdown_timeout_s` | `terminationGracePeriodSeconds` = the drain delay (the `preStop` pause) + it |
//! | `health_check_period_s`, `health_check_timeout_s` | the liveness probe of `/-/healthz` |
//! | 2 replicas or more | a `PodDisruptionBudget` (`maxUnavailable: 1`) |
//! | the proxy | a `Deployment` (`RAYAI_ROLE=proxy`, `RAYAI_DISCOVERY=kubernetes`), its `Service`, a `ServiceAccount` with a `Role` allowing get/list/watch on `endpointslices` and `pods` |
//! | the server options | a `ConfigMap` every pod reads as environment |

pub mod check;
pub mod discovery;
pub mod names;
pub mod render;

pub use render::{
    AppSpec, Autoscaler, DeploymentSpec, Document, Manifests, RenderError, Scaling, ServiceType,
    Settings, render,
};
