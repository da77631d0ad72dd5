//! `RAYAI_RENDER=k8s`: instead of serving, the program prints its Kubernetes manifests on stdout
//! (one multi-document YAML) and exits 0.
//!
//! The server starts as usual but serves nothing (it listens on an ephemeral loopback port, no
//! dashboard); each application the program deploys (with [`crate::Server::deploy`], `run`, or a
//! declarative config) is recorded instead of started: no agent is constructed. The manifests are
//! printed when the program is ready to serve: when it waits for the server
//! ([`crate::Server::stopped`], `serve::run`) or for a signal (`serve::shutdown_signal`), or, for
//! a program that waits some other way, one second after its last deploy. Whatever else the
//! program prints on stdout goes to stderr, so that stdout is only YAML.
//!
//! | variable | meaning |
//! |---|---|
//! | `RAYAI_IMAGE` | the container image with the program (required) |
//! | `RAYAI_NAMESPACE` | the objects' namespace (default: none, `kubectl apply -n` chooses) |
//! | `RAYAI_NAME` | the program's name in Kubernetes (default: the executable's name) |
//! | `RAYAI_K8S_AUTOSCALER` | `hpa` (default) or `keda`, for autoscaling deployments |
//! | `RAYAI_K8S_SERVICE_TYPE` | the proxy Service's type: `ClusterIP` (default), `NodePort`, `LoadBalancer` |
//! | `RAYAI_K8S_PROXY_REPLICAS` | pods of the proxy (default 1) |
//! | `RAYAI_K8S_GPU_NODE_SELECTOR` | `key=value,...`: the nodes GPU deployments run on |
//! | `RAYAI_K8S_PROMETHEUS` | the Prometheus KEDA's triggers ask |
//!
//! Without rayai's `kubernetes` feature, `RAYAI_RENDER` is refused with a message saying so.

use crate::{Error, HttpOptions};

/// Whether the environment asks for manifests (`RAYAI_RENDER` set and not empty).
fn asked() -> Option<String> {
    std::env::var("RAYAI_RENDER")
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(not(feature = "kubernetes"))]
mod imp {
    use super::*;

    /// Refuses `RAYAI_RENDER`: this program cannot render.
    pub(crate) fn start(options: HttpOptions) -> Result<HttpOptions, Error> {
        match asked() {
            None => Ok(options),
            Some(value) => Err(Error::Render(format!(
                "RAYAI_RENDER={value}: this program was built without rayai's `kubernetes` \
                 feature; add it (rayai = {{ version = \"...\", features = [\"kubernetes\"] }}) \
                 to render Kubernetes manifests"
            ))),
        }
    }

    /// Never rendering.
    pub(crate) fn session() -> Option<&'static Session> {
        None
    }

    /// No render session exists without the feature.
    pub(crate) enum Session {}

    impl Session {
        pub(crate) fn record(&self, _: &rayai_core::App, _: &str) {
            match *self {}
        }

        pub(crate) fn deployed_any(&self) -> bool {
            match *self {}
        }

        pub(crate) fn finish(&self) -> ! {
            match *self {}
        }
    }
}

#[cfg(feature = "kubernetes")]
mod imp {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock, PoisonError};
    use std::time::Duration;

    use rayai_k8s::{AppSpec, Settings};

    use super::*;

    /// How long after its last deploy a program that waits in its own way is rendered.
    const QUIET: Duration = Duration::from_secs(1);

    /// The process's render session.
    static SESSION: OnceLock<Session> = OnceLock::new();

    /// What is being rendered: the settings, the applications deployed so far, and where the
    /// YAML goes.
    pub(crate) struct Session {
        settings: Settings,
        apps: Mutex<Vec<AppSpec>>,
        /// Deploys so far (the quiet timer renders when no other came).
        deploys: AtomicU64,
        /// The process's real stdout (fd 1 now goes to stderr).
        out: Mutex<Option<Box<dyn std::io::Write + Send>>>,
    }

    /// Starts a render session when the environment asks for one: the settings from the
    /// environment, stdout kept for the YAML, and the options the server starts with (nothing
    /// served: a loopback ephemeral port, no dashboard, no metrics listener).
    pub(crate) fn start(options: HttpOptions) -> Result<HttpOptions, Error> {
        let Some(value) = asked() else {
            return Ok(options);
        };
        if !matches!(value.to_ascii_lowercase().as_str(), "k8s" | "kubernetes") {
            return Err(Error::Env {
                variable: "RAYAI_RENDER",
                value,
                expected: "k8s (Kubernetes manifests)",
            });
        }
        let settings = settings(&options)?;
        let session = Session {
            settings,
            apps: Mutex::new(Vec::new()),
            deploys: AtomicU64::new(0),
            out: Mutex::new(Some(keep_stdout())),
        };
        if SESSION.set(session).is_err() {
            return Err(Error::Render(
                "RAYAI_RENDER: a second server in one process; render one at a time".to_owned(),
            ));
        }
        Ok(HttpOptions {
            host: "127.0.0.1".to_owned(),
            port: 0,
            dashboard_port: None,
            metrics_export_port: None,
            grpc_port: None,
            tls_cert_path: None,
            tls_key_path: None,
            ..options
        })
    }

    /// The session, when the process renders.
    pub(crate) fn session() -> Option<&'static Session> {
        SESSION.get()
    }

    /// The render settings from the environment and the program's options.
    fn settings(options: &HttpOptions) -> Result<Settings, Error> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(image) = var("RAYAI_IMAGE") else {
            return Err(Error::Render(
                "RAYAI_RENDER=k8s needs RAYAI_IMAGE: the container image with this program \
                 (registry.example.org/name:tag)"
                    .to_owned(),
            ));
        };
        let program = var("RAYAI_NAME").unwrap_or_else(crate::roles::program_name);
        let mut s = Settings::new(image, program);
        s.namespace = var("RAYAI_NAMESPACE");
        if let Some(v) = var("RAYAI_K8S_AUTOSCALER") {
            s.autoscaler = v.parse().map_err(Error::Render)?;
        }
        if let Some(v) = var("RAYAI_K8S_SERVICE_TYPE") {
            s.service_type = v.parse().map_err(Error::Render)?;
        }
        if let Some(v) = var("RAYAI_K8S_PROXY_REPLICAS") {
            s.proxy_replicas = v.parse().ok().filter(|n| *n >= 1).ok_or(Error::Env {
                variable: "RAYAI_K8S_PROXY_REPLICAS",
                value: v,
                expected: "a number of pods, 1 or more",
            })?;
        }
        if let Some(v) = var("RAYAI_K8S_GPU_NODE_SELECTOR") {
            for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(Error::Env {
                        variable: "RAYAI_K8S_GPU_NODE_SELECTOR",
                        value: v.clone(),
                        expected: "comma-separated key=value node labels",
                    });
                };
                s.gpu_node_selector
                    .insert(key.trim().to_owned(), value.trim().to_owned());
            }
        }
        if let Some(v) = var("RAYAI_K8S_PROMETHEUS") {
            s.prometheus_address = v;
        }
        if options.port != 0 {
            s.http_port = options.port;
        }
        if let Some(port) = options.metrics_export_port {
            s.metrics_port = port;
        }
        s.drain_delay_s = options.drain_delay_s;
        s.proxy_graceful_shutdown_s = options.graceful_shutdown_timeout_s;
        Ok(s)
    }

    /// The process's stdout for the YAML, with fd 1 pointed at stderr so that what the program
    /// prints does not mix with it (Linux; elsewhere stdout is shared).
    fn keep_stdout() -> Box<dyn std::io::Write + Send> {
        let _ = std::io::stdout().flush();
        #[cfg(target_os = "linux")]
        if let Ok(fd) = rustix::io::dup(std::io::stdout())
            && rustix::stdio::dup2_stdout(std::io::stderr()).is_ok()
        {
            return Box::new(std::fs::File::from(fd));
        }
        Box::new(std::io::stdout())
    }

    impl Session {
        /// Records an application the program deploys, and renders one second later unless
        /// another comes. A deployment that cannot be rendered (a fractional GPU) ends the
        /// program now, with the message.
        pub(crate) fn record(&'static self, app: &rayai_core::App, route_prefix: &str) {
            let spec = AppSpec::from_app(app, route_prefix);
            let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            apps.retain(|a| a.name != spec.name);
            apps.push(spec);
            if let Err(e) = rayai_k8s::render(&self.settings, &apps) {
                drop(apps);
                fail(&e.to_string());
            }
            drop(apps);
            let n = self.deploys.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                tokio::time::sleep(QUIET).await;
                if self.deploys.load(Ordering::SeqCst) == n {
                    self.finish();
                }
            });
        }

        /// Whether the program deployed an application yet.
        pub(crate) fn deployed_any(&self) -> bool {
            self.deploys.load(Ordering::SeqCst) > 0
        }

        /// Prints the manifests of what was deployed and ends the process (0; 1 with the
        /// message when they cannot be rendered).
        pub(crate) fn finish(&self) -> ! {
            let apps = self
                .apps
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let yaml = match rayai_k8s::render(&self.settings, &apps) {
                Ok(manifests) => manifests.to_yaml(),
                Err(e) => fail(&e.to_string()),
            };
            let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(w) = out.as_mut()
                && let Err(e) = w.write_all(yaml.as_bytes()).and_then(|()| w.flush())
            {
                fail(&format!("cannot write the manifests: {e}"));
            }
            std::process::exit(0)
        }
    }

    /// Ends the process with `message` on stderr.
    fn fail(message: &str) -> ! {
        eprintln!("error: cannot render Kubernetes manifests: {message}");
        std::process::exit(1)
    }
}

pub(crate) use imp::{session, start};
