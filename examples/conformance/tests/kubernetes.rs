//! `RAYAI_RENDER=k8s`: the conformance binary prints its Kubernetes manifests instead of serving:
//! what each agent's attributes became, the proxy and its rights, the same bytes every time (a
//! snapshot), valid against Kubernetes' schemas (`kubernetes-validate --strict`).

use example_support::kubernetes_validate;

use std::process::Command;

use serde_json::Value;

/// The image every test renders with.
const IMAGE: &str = "example.org/conformance:1";

/// The committed manifests; `RAYAI_UPDATE_SNAPSHOTS=1` rewrites them.
const SNAPSHOT: &str = "tests/snapshots/kubernetes.yaml";

/// Runs the binary with `RAYAI_RENDER=k8s` and `env`; its exit code, stdout and stderr.
fn render(env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conformance"));
    cmd.env("RAYAI_RENDER", "k8s")
        .env("RAYAI_IMAGE", IMAGE)
        // Ports of the test machine's environment must not reach the manifests.
        .env_remove("RAYAI_PORT")
        .env_remove("RAYAI_METRICS_EXPORT_PORT")
        .env_remove("RAYAI_NAMESPACE")
        .env_remove("RAYAI_NAME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("the conformance binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("UTF-8 YAML"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The documents of a multi-document YAML, as JSON.
fn documents(yaml: &str) -> Vec<Value> {
    yaml.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The document of `kind` named `name`.
fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The value of the environment variable `name` in a pod template's first container.
fn env_of<'a>(deployment: &'a Value, name: &str) -> Option<&'a Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| &e["value"])
}

#[test]
fn manifests_are_printed_instead_of_serving_and_match_the_snapshot() {
    let (code, yaml, stderr) = render(&[]);
    assert_eq!(code, 0, "{stderr}");
    // What the program prints itself goes to stderr: stdout is only YAML.
    assert!(stderr.contains("conformance server on"), "{stderr}");
    assert!(yaml.starts_with("---\n"), "{yaml}");
    let (_, again, _) = render(&[]);
    assert_eq!(yaml, again, "the same program renders the same bytes");
    if std::env::var_os("RAYAI_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &yaml).unwrap();
    }
    let snapshot = std::fs::read_to_string(SNAPSHOT)
        .expect("the snapshot (RAYAI_UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        yaml, snapshot,
        "the manifests changed: review, then RAYAI_UPDATE_SNAPSHOTS=1 cargo test -p conformance --test kubernetes"
    );
    kubernetes_validate::validate(&yaml, &[]);
}

#[test]
fn every_agent_gets_its_resources_probes_and_role() {
    let (code, yaml, stderr) = render(&[]);
    assert_eq!(code, 0, "{stderr}");
    let docs = documents(&yaml);
    for agent in [
        "echo", "plain", "counter", "slow", "panicky", "blocking", "greeter",
    ] {
        let name = format!("conformance-{agent}");
        let d = find(&docs, "Deployment", &name);
        let service = find(&docs, "Service", &name);
        assert_eq!(d["metadata"]["labels"]["rayai.io/deployment"], agent);
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/name"],
            "conformance"
        );
        assert_eq!(
            service["spec"]["selector"],
            d["spec"]["selector"]["matchLabels"]
        );
        assert_eq!(env_of(d, "RAYAI_ROLE").unwrap(), "replica");
        assert_eq!(env_of(d, "RAYAI_DEPLOYMENT").unwrap(), agent);
        assert_eq!(env_of(d, "RAYAI_NUM_REPLICAS").unwrap(), "1");
        let pod = &d["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["image"], IMAGE);
        for probe in ["readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["httpGet"]["path"], "/-/healthz", "{probe}");
        }
        // The drain delay (5 s) is the preStop pause, while the endpoints update; then the
        // process gets graceful_shutdown_timeout_s (20).
        assert_eq!(container["lifecycle"]["preStop"]["sleep"]["seconds"], 5);
        assert_eq!(pod["terminationGracePeriodSeconds"], 25);
        let resources = &container["resources"];
        assert_eq!(
            resources["requests"]["memory"],
            resources["limits"]["memory"]
        );
        assert!(resources["limits"].get("nvidia.com/gpu").is_none());
        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "9090");
    }
    // #[agent(num_cpus = 0.25, memory = "64MB")]: binary units, as RayAI counts them.
    let echo = &find(&docs, "Deployment", "conformance-echo")["spec"];
    let resources = &echo["template"]["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "250m");
    assert_eq!(resources["requests"]["memory"], "64Mi");
    assert_eq!(echo["replicas"], 1);
    // num_cpus = 0.1 is 100m; num_replicas = 2 is two pods and a disruption budget.
    let counter = &find(&docs, "Deployment", "conformance-counter")["spec"];
    assert_eq!(counter["replicas"], 2);
    let plain = &find(&docs, "Deployment", "conformance-plain")["spec"];
    assert_eq!(
        plain["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );
    let pdbs: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "PodDisruptionBudget")
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(pdbs, ["conformance-counter"]);
    assert!(!docs.iter().any(|d| d["kind"] == "HorizontalPodAutoscaler"));
}

#[test]
fn the_proxy_watches_endpointslices_with_read_only_rights() {
    let (code, yaml, stderr) = render(&[
        ("RAYAI_NAMESPACE", "agents"),
        ("RAYAI_K8S_SERVICE_TYPE", "LoadBalancer"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let docs = documents(&yaml);
    for d in &docs {
        assert_eq!(d["metadata"]["namespace"], "agents", "{d}");
    }
    let proxy = find(&docs, "Deployment", "conformance");
    assert_eq!(env_of(proxy, "RAYAI_ROLE").unwrap(), "proxy");
    assert_eq!(env_of(proxy, "RAYAI_DISCOVERY").unwrap(), "kubernetes");
    assert_eq!(env_of(proxy, "RAYAI_NAME").unwrap(), "conformance");
    let config = find(&docs, "ConfigMap", "conformance-config");
    assert_eq!(config["data"]["RAYAI_HOST"], "0.0.0.0");
    let from = &proxy["spec"]["template"]["spec"]["containers"][0]["envFrom"][0];
    assert_eq!(from["configMapRef"]["name"], "conformance-config");
    assert_eq!(
        find(&docs, "Service", "conformance")["spec"]["type"],
        "LoadBalancer"
    );
    let role = find(&docs, "Role", "conformance");
    let rules = role["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{role}");
    for rule in rules {
        assert_eq!(rule["verbs"], serde_json::json!(["get", "list", "watch"]));
    }
    assert_eq!(
        rules[0]["apiGroups"],
        serde_json::json!(["discovery.k8s.io"])
    );
    assert_eq!(rules[0]["resources"], serde_json::json!(["endpointslices"]));
    assert_eq!(rules[1]["resources"], serde_json::json!(["pods"]));
    let binding = find(&docs, "RoleBinding", "conformance");
    assert_eq!(binding["subjects"][0]["name"], "conformance");
    assert_eq!(binding["subjects"][0]["namespace"], "agents");
    assert_eq!(
        proxy["spec"]["template"]["spec"]["serviceAccountName"],
        "conformance"
    );
    kubernetes_validate::validate(&yaml, &[]);
}

#[test]
fn bad_render_settings_are_refused_with_the_variable() {
    let (code, yaml, stderr) = render(&[("RAYAI_IMAGE", "")]);
    assert_eq!(code, 1);
    assert!(yaml.is_empty(), "{yaml}");
    assert!(
        stderr.contains("RAYAI_RENDER=k8s needs RAYAI_IMAGE"),
        "{stderr}"
    );
    let (code, _, stderr) = render(&[("RAYAI_RENDER", "helm")]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("RAYAI_RENDER=\"helm\" is not k8s"),
        "{stderr}"
    );
    let (code, _, stderr) = render(&[("RAYAI_K8S_AUTOSCALER", "vpa")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown autoscaler `vpa`"), "{stderr}");
    let (code, _, stderr) = render(&[("RAYAI_NAMESPACE", "Not_A_Namespace")]);
    assert_eq!(code, 1);
    assert!(stderr.contains("is not a DNS label"), "{stderr}");
}
