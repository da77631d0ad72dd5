//! The names and labels of the Kubernetes objects of a rayai program, shared by what renders
//! them and what watches them: the proxy finds a deployment's replicas through the Service the
//! manifests named with [`object_name`].

/// The label every object of a program carries: the program's name.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label that tells one deployment's pods (or the proxy's) from the others: its object name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// The label that says what a pod runs: `replica` or `proxy`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// The label that says who made the object: `rayai`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The label with the application's name.
pub const APP_LABEL: &str = "rayai.io/app";
/// The label with the deployment's name.
pub const DEPLOYMENT_LABEL: &str = "rayai.io/deployment";
/// The annotation with the deployment's exact name, when the label had to change it.
pub const DEPLOYMENT_ANNOTATION: &str = "rayai.io/deployment-name";
/// The label Kubernetes puts on an EndpointSlice: the name of its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The component of replica pods.
pub const REPLICA: &str = "replica";
/// The component of proxy pods.
pub const PROXY: &str = "proxy";

/// The longest DNS-1123 label (a Service's name, a label's value).
pub const MAX_LABEL: usize = 63;

/// The name of the objects (Deployment, Service, ...) of `deployment` in the program `program`:
/// `<program>-<deployment>`, lowercased, with every character other than `a-z`, `0-9` and `-`
/// made a `-`. When that changed the deployment's name (`Chat_v2`) or the name is longer than
/// 63 characters, a hash of the exact name ends it, so that two deployments never share a name.
///
/// ```
/// use rayai_k8s::names::object_name;
/// assert_eq!(object_name("shop", "echo"), "shop-echo");
/// assert_eq!(object_name("shop", "Chat_v2"), "shop-chat-v2-99ff1de4");
/// ```
pub fn object_name(program: &str, deployment: &str) -> String {
    let clean = dns_label(deployment);
    let exact = clean == deployment;
    let base = format!("{}-{}", program_name(program), clean);
    if exact && base.len() <= MAX_LABEL {
        return base;
    }
    let hash = format!("{:08x}", fnv1a(deployment.as_bytes()));
    let keep = MAX_LABEL - hash.len() - 1;
    let mut head: String = base.chars().take(keep).collect();
    while head.ends_with('-') {
        head.pop();
    }
    format!("{head}-{hash}")
}

/// The program's name as Kubernetes takes it (a DNS-1035 label: it starts with a letter): the
/// proxy's objects are named so, the deployments' objects start with it.
///
/// ```
/// use rayai_k8s::names::program_name;
/// assert_eq!(program_name("my_agents"), "my-agents");
/// assert_eq!(program_name("2048"), "rayai-2048");
/// ```
pub fn program_name(program: &str) -> String {
    let clean = dns_label(program);
    let named = match clean.chars().next() {
        Some(c) if c.is_ascii_lowercase() => clean,
        Some(_) => format!("rayai-{clean}"),
        None => "rayai".to_owned(),
    };
    // Room for `-<deployment>` after it.
    let mut short: String = named.chars().take(40).collect();
    while short.ends_with('-') {
        short.pop();
    }
    short
}

/// A label value for `value` (at most 63 characters of `A-Z a-z 0-9 - _ .`, starting and
/// ending with a letter or digit): the value itself when it is one.
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LABEL)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `value` lowercased with runs of other characters than `a-z 0-9` made one `-`, no `-` at
/// either end.
fn dns_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// FNV-1a, 32 bits: a short hash that is the same on every machine and every release.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Whether `name` is a DNS-1123 label: 1 to 63 characters of `a-z`, `0-9` and `-`, starting and
/// ending with a letter or digit (what a Service, a Deployment's pods and most names must be).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LABEL
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` is a DNS-1123 subdomain: at most 253 characters, dot-separated DNS labels
/// (what a ConfigMap's or a Role's name must be).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(object_name("conformance", "echo"), "conformance-echo");
        assert_eq!(object_name("conformance", "a-b"), "conformance-a-b");
        assert_eq!(program_name("conformance"), "conformance");
    }

    #[test]
    fn changed_or_long_names_end_with_a_hash_of_the_exact_name() {
        let a = object_name("p", "Chat_v2");
        let b = object_name("p", "chat-v2");
        assert_ne!(a, b);
        assert!(a.starts_with("p-chat-v2-"), "{a}");
        assert!(is_dns_label(&a), "{a}");
        let long = object_name("p", &"x".repeat(100));
        assert_eq!(long.len(), MAX_LABEL);
        assert!(is_dns_label(&long), "{long}");
        assert_ne!(long, object_name("p", &"x".repeat(101)));
        for odd in ["...", "_x_", "-", "A.B"] {
            let name = object_name("p", odd);
            assert!(is_dns_label(&name), "{odd} -> {name}");
        }
    }

    #[test]
    fn program_names_start_with_a_letter() {
        assert_eq!(program_name("9lives"), "rayai-9lives");
        assert_eq!(program_name("__"), "rayai");
        assert_eq!(program_name("My_Agents"), "my-agents");
        assert!(program_name(&"a".repeat(80)).len() <= 40);
    }

    #[test]
    fn label_values_keep_what_labels_allow() {
        assert_eq!(label_value("Chat_v2.1"), "Chat_v2.1");
        assert_eq!(label_value("..x.."), "x");
        assert_eq!(label_value(&"y".repeat(70)).len(), MAX_LABEL);
        assert_eq!(label_value("a b"), "a-b");
    }

    #[test]
    fn dns_rules() {
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("A"));
        assert!(!is_dns_label(""));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
