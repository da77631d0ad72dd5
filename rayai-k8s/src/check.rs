//! Rules of Kubernetes' that its OpenAPI schemas do not check (they say "a string" where the API
//! server wants a quantity or a DNS name), checked on rendered objects: [`check`] returns what
//! breaks them, and [`crate::render()`] refuses to print manifests that do.
//!
//! - every quantity (`resources.requests`/`limits`, a target's `averageValue`) follows the
//!   Quantity grammar ([`is_quantity`]);
//! - names are DNS-1123 subdomains, and DNS labels for Services and the pods' Deployments;
//! - labels (and selectors) are valid keys and values ([`is_label_key`], [`is_label_value`]);
//! - GPUs are asked for in `limits`, and where `requests` name them too they are equal.

use serde_json::Value;

use crate::Manifests;
use crate::names::{MAX_LABEL, is_dns_label, is_dns_subdomain};

/// What breaks a rule in `manifests` (empty when nothing does), each message naming the object
/// and the field.
pub fn check(manifests: &Manifests) -> Vec<String> {
    let mut problems = Vec::new();
    for doc in &manifests.documents {
        let at = format!("{} `{}`", doc.kind(), doc.name());
        check_object(&at, doc.kind(), &doc.object, &mut problems);
    }
    problems
}

/// Checks one object.
fn check_object(at: &str, kind: &str, object: &Value, problems: &mut Vec<String>) {
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let dns_label_kinds = ["Service", "Deployment"];
    if dns_label_kinds.contains(&kind) {
        if !is_dns_label(name) {
            problems.push(format!("{at}: the name is not a DNS-1123 label"));
        }
    } else if !is_dns_subdomain(name) {
        problems.push(format!("{at}: the name is not a DNS-1123 subdomain"));
    }
    if let Some(ns) = object["metadata"]["namespace"].as_str()
        && !is_dns_label(ns)
    {
        problems.push(format!(
            "{at}: the namespace `{ns}` is not a DNS-1123 label"
        ));
    }
    walk(at, "", object, problems);
}

/// Visits every field under `value`, checking labels, selectors, resources and targets.
fn walk(at: &str, path: &str, value: &Value, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match key.as_str() {
                    "labels" | "matchLabels" | "nodeSelector" => {
                        check_labels(at, &here, child, problems);
                    }
                    "selector" if child.get("matchLabels").is_none() => {
                        // A Service's selector is a map of labels.
                        check_labels(at, &here, child, problems);
                    }
                    "resources" => check_resources(at, &here, child, problems),
                    "averageValue" | "value" if child.is_string() && path.ends_with("target") => {
                        check_quantity(at, &here, child, problems);
                    }
                    _ => {}
                }
                walk(at, &here, child, problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                walk(at, &format!("{path}[{i}]"), child, problems);
            }
        }
        _ => {}
    }
}

/// Checks a map of labels.
fn check_labels(at: &str, path: &str, labels: &Value, problems: &mut Vec<String>) {
    let Some(map) = labels.as_object() else {
        return;
    };
    for (key, value) in map {
        if !is_label_key(key) {
            problems.push(format!("{at}: {path}: `{key}` is not a label key"));
        }
        match value.as_str() {
            Some(v) if is_label_value(v) => {}
            _ => problems.push(format!("{at}: {path}.{key}: {value} is not a label value")),
        }
    }
}

/// Checks a container's `resources`: quantities, GPUs in limits.
fn check_resources(at: &str, path: &str, resources: &Value, problems: &mut Vec<String>) {
    // A `resources` that is a list (a Role's rule) is not a container's.
    if !resources.is_object() {
        return;
    }
    for part in ["requests", "limits"] {
        if let Some(map) = resources[part].as_object() {
            for (name, q) in map {
                check_quantity(at, &format!("{path}.{part}.{name}"), q, problems);
            }
        }
    }
    let empty = serde_json::Map::new();
    let requests = resources["requests"].as_object().unwrap_or(&empty);
    let limits = resources["limits"].as_object().unwrap_or(&empty);
    for (name, q) in requests {
        if is_gpu(name) && limits.get(name) != Some(q) {
            problems.push(format!(
                "{at}: {path}: GPUs ({name}) go in limits (requests equal to them, or absent)"
            ));
        }
    }
}

/// Whether a resource name is a GPU (or a MIG partition of one).
fn is_gpu(name: &str) -> bool {
    name.ends_with("/gpu") || name.starts_with("nvidia.com/mig-") || name.starts_with("amd.com/")
}

/// Checks one quantity.
fn check_quantity(at: &str, path: &str, q: &Value, problems: &mut Vec<String>) {
    match q.as_str() {
        Some(text) if is_quantity(text) => {}
        _ => problems.push(format!("{at}: {path}: {q} is not a Kubernetes quantity")),
    }
}

/// Whether `text` follows Kubernetes' Quantity grammar: a signed decimal number then a suffix,
/// binary (`Ki Mi Gi Ti Pi Ei`), decimal (`n u m k M G T P E` or none) or an exponent (`e3`,
/// `E-2`).
///
/// ```
/// use rayai_k8s::check::is_quantity;
/// for ok in ["250m", "2Gi", "1", "1.5", "+3", "1e3", "0.5E-2", "512Mi"] {
///     assert!(is_quantity(ok), "{ok}");
/// }
/// for bad in ["", "2GB", "1.", ".5", "Gi", "1 Gi", "1e", "0x10", "2g"] {
///     assert!(!is_quantity(bad), "{bad}");
/// }
/// ```
pub fn is_quantity(text: &str) -> bool {
    let rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let mut rest = &rest[digits..];
    if let Some(after) = rest.strip_prefix('.') {
        let fraction = after.bytes().take_while(u8::is_ascii_digit).count();
        if fraction == 0 {
            return false;
        }
        rest = &after[fraction..];
    }
    match rest {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        _ => match rest.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        },
    }
}

/// Whether `key` is a label key: an optional DNS-subdomain prefix and `/`, then a name of at
/// most 63 characters of `A-Z a-z 0-9 - _ .` starting and ending with a letter or digit.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// Whether `value` is a label value: empty, or at most 63 characters of `A-Z a-z 0-9 - _ .`
/// starting and ending with a letter or digit.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= MAX_LABEL
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Document;

    fn manifests(object: Value) -> Manifests {
        Manifests {
            documents: vec![Document {
                comment: None,
                object,
            }],
        }
    }

    #[test]
    fn labels_and_keys() {
        assert!(is_label_key("app.kubernetes.io/name"));
        assert!(is_label_key("tier"));
        assert!(!is_label_key("bad key"));
        assert!(!is_label_key("Bad.Prefix/x"));
        assert!(!is_label_key("a/"));
        assert!(is_label_value(""));
        assert!(!is_label_value("-x"));
        assert!(!is_label_value(&"x".repeat(64)));
    }

    #[test]
    fn a_gpu_in_requests_that_differs_from_limits_is_refused() {
        let pod = serde_json::json!({
            "kind": "Deployment",
            "metadata": {"name": "a"},
            "spec": {"containers": [{"resources": {
                "requests": {"nvidia.com/gpu": "1", "cpu": "250m"},
                "limits": {"nvidia.com/gpu": "2"}
            }}]}
        });
        let problems = check(&manifests(pod));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("GPUs (nvidia.com/gpu) go in limits"),
            "{problems:?}"
        );
    }

    #[test]
    fn bad_quantities_names_and_labels_are_named() {
        let object = serde_json::json!({
            "kind": "Service",
            "metadata": {"name": "Not_A_Label", "labels": {"a": "-b"}},
            "spec": {"containers": [{"resources": {"requests": {"memory": "2GB"}}}]}
        });
        let problems = check(&manifests(object));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("\"2GB\" is not a Kubernetes quantity"))
        );
        assert!(problems.iter().any(|p| p.contains("not a DNS-1123 label")));
        assert!(problems.iter().any(|p| p.contains("is not a label value")));
    }
}
