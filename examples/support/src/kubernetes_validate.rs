//! Rendered manifests against Kubernetes' real schemas: `kubernetes-validate --strict` (the PyPI
//! package, with the schemas inside), which `.ci/run` installs into
//! `target/kubernetes-validate` (a virtual environment). `RAYAI_KUBERNETES_VALIDATE` names
//! another executable. Without it the check fails when `CI` is set and is skipped (with a
//! message) otherwise.
//!
//! (`rayai-k8s/tests/support/kubernetes_validate.rs` is the same check for that crate's own
//! tests: a published crate's tests cannot use this unpublished one.)

use std::path::PathBuf;
use std::process::Command;

/// The `kubernetes-validate` executable, if there is one.
fn tool() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RAYAI_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    // The workspace's target directory: where `.ci/run` makes the virtual environment.
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    loop {
        let candidate = dir.join("target/kubernetes-validate/bin/kubernetes-validate");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// Checks `yaml` (several documents) with `kubernetes-validate --strict` for Kubernetes
/// `version`: every document of a kind Kubernetes defines passes, and the others (a KEDA
/// `ScaledObject`, whose schema the package does not have) are only the kinds in `unknown`.
pub fn validate(yaml: &str, unknown: &[&str]) {
    let Some(tool) = tool() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "kubernetes-validate is missing: .ci/run installs it into target/kubernetes-validate \
             (python3 -m venv target/kubernetes-validate && \
             target/kubernetes-validate/bin/pip install kubernetes-validate)"
        );
        eprintln!("skipping the schema check: kubernetes-validate is not installed");
        return;
    };
    let file = std::env::temp_dir().join(format!(
        "rayai-manifests-{}-{}.yaml",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(&tool)
        .args(["--strict", "--kubernetes-version", "1.37.0"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let _ = std::fs::remove_file(&file);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}\n{yaml}"
    );
    let documents = yaml.lines().filter(|l| *l == "---").count();
    let passed = report.lines().filter(|l| l.contains(" passed ")).count();
    let skipped: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("Couldn't find schema"))
        .collect();
    for line in &skipped {
        assert!(
            unknown
                .iter()
                .any(|kind| line.contains(&format!("kind {kind} "))),
            "a document kubernetes-validate has no schema for: {line}"
        );
    }
    assert_eq!(
        passed + skipped.len(),
        documents,
        "every document is checked:\n{report}"
    );
    assert!(
        !report.contains("ERROR") && !report.contains("failed"),
        "{report}"
    );
}
