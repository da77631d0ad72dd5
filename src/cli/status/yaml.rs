//! What `rayai status` prints: Ray's `serve status` (its `ServeStatus`, from the status API's
//! `ServeInstanceDetails`), written as YAML the way PyYAML's `safe_dump` writes it.

use serde_json::{Map, Value, json};

/// Ray's `ServeStatus` of a `ServeInstanceDetails`: `proxies` (node id -> status),
/// `applications` (name -> status, message, last_deployed_time_s, deployments: name -> status,
/// status_trigger, replica_states, message) and `target_capacity`.
pub(super) fn serve_status(details: &Value) -> Value {
    let empty = Map::new();
    let object = |v: &Value| v.as_object().unwrap_or(&empty).clone();
    let proxies: Map<String, Value> = object(&details["proxies"])
        .into_iter()
        .map(|(node, proxy)| (node, proxy["status"].clone()))
        .collect();
    let applications: Map<String, Value> = object(&details["applications"])
        .into_iter()
        .map(|(name, app)| {
            let deployments: Map<String, Value> = object(&app["deployments"])
                .into_iter()
                .map(|(name, d)| (name, deployment_status(&d)))
                .collect();
            let status = json!({
                "status": app["status"],
                "message": app["message"],
                "last_deployed_time_s": app["last_deployed_time_s"],
                "deployments": deployments,
            });
            (name, status)
        })
        .collect();
    json!({
        "proxies": proxies,
        "applications": applications,
        "target_capacity": details["target_capacity"],
    })
}

/// Ray's `DeploymentStatusOverview`: the replicas counted by state, in the order first seen.
fn deployment_status(d: &Value) -> Value {
    let mut states = Map::new();
    for replica in d["replicas"].as_array().into_iter().flatten() {
        if let Some(state) = replica["state"].as_str() {
            let n = states.get(state).and_then(Value::as_u64).unwrap_or(0);
            states.insert(state.to_owned(), json!(n + 1));
        }
    }
    json!({
        "status": d["status"],
        "status_trigger": d["status_trigger"],
        "replica_states": states,
        "message": d["message"],
    })
}

/// `value` as block-style YAML, keys in their order, as `yaml.safe_dump(value,
/// default_flow_style=False, sort_keys=False)` writes it (with Ray's multi-line strings as
/// literal blocks).
pub(super) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_list(&mut out, items, 0),
        other => {
            out += &inline(other, 0);
            out.push('\n');
        }
    }
    out
}

fn write_map(out: &mut String, map: &Map<String, Value>, indent: usize) {
    for (key, value) in map {
        out.extend(std::iter::repeat_n(' ', indent));
        out.push_str(&scalar(key, indent));
        out.push(':');
        write_value(out, value, indent + 2, indent);
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        match item {
            // `- key: value` with the other keys under the first.
            Value::Object(map) if !map.is_empty() => {
                let mut block = String::new();
                write_map(&mut block, map, indent + 2);
                out.extend(std::iter::repeat_n(' ', indent));
                out.push_str("- ");
                out.push_str(&block[indent + 2..]);
            }
            _ => {
                out.extend(std::iter::repeat_n(' ', indent));
                out.push('-');
                write_value(out, item, indent + 2, indent);
            }
        }
    }
}

/// Writes what follows `key:` or `-`: a nested block on the next lines, or ` value`.
fn write_value(out: &mut String, value: &Value, nested: usize, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, nested);
        }
        // PyYAML does not indent a list under a mapping key.
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_list(out, items, indent);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, nested));
            out.push('\n');
        }
    }
}

/// A value on one line (or a literal block for a multi-line string).
fn inline(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s, indent),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// A string as YAML: plain when it reads back as the same string, a literal block when it has
/// several lines, else single-quoted (or double-quoted for control characters).
fn scalar(s: &str, indent: usize) -> String {
    if is_plain(s) {
        return s.to_owned();
    }
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') {
        let chomp = if s.ends_with('\n') { "" } else { "-" };
        let pad: String = " ".repeat(indent.max(2));
        let mut block = format!("|{chomp}");
        for line in s.trim_end_matches('\n').split('\n') {
            block.push('\n');
            if !line.is_empty() {
                block.push_str(&pad);
                block.push_str(line);
            }
        }
        return block;
    }
    if s.chars().any(char::is_control) {
        // JSON's escapes are YAML's double-quoted ones.
        return Value::String(s.to_owned()).to_string();
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether `s` can be written plain: it would read back as this string, not as a number, a
/// boolean, null or YAML syntax.
fn is_plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let lower = s.to_ascii_lowercase();
    let reserved = matches!(
        lower.as_str(),
        "null" | "~" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    );
    let numeric = s.parse::<f64>().is_ok()
        || lower.starts_with(".inf")
        || lower.starts_with(".nan")
        || (first.is_ascii_digit() && s.chars().all(|c| c.is_ascii_digit() || "-:_.+".contains(c)));
    !reserved
        && !numeric
        && !"-?:,[]{}#&*!|>'\"%@` ".contains(first)
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.chars().any(|c| c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_serve_status_as_ray_prints_it() {
        let details = json!({
            "proxies": {"abc": {"node_id": "abc", "status": "HEALTHY"}},
            "applications": {"echo-service": {
                "name": "echo-service", "route_prefix": "/agents/echo", "status": "RUNNING",
                "message": "", "last_deployed_time_s": 1_694_041_157.221_184_7,
                "deployments": {"echo-deployment": {
                    "name": "echo-deployment", "status": "HEALTHY",
                    "status_trigger": "CONFIG_UPDATE_COMPLETED", "message": "",
                    "replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}, {"state": "STOPPING"}]
                }}
            }},
            "target_capacity": null
        });
        assert_eq!(
            to_yaml(&serve_status(&details)),
            "proxies:\n  abc: HEALTHY\napplications:\n  echo-service:\n    status: RUNNING\n    \
             message: ''\n    last_deployed_time_s: 1694041157.2211847\n    deployments:\n      \
             echo-deployment:\n        status: HEALTHY\n        status_trigger: \
             CONFIG_UPDATE_COMPLETED\n        replica_states:\n          RUNNING: 2\n          \
             STOPPING: 1\n        message: ''\ntarget_capacity: null\n"
        );
        let none = json!({"proxies": {}, "applications": {}, "target_capacity": null});
        assert_eq!(
            to_yaml(&serve_status(&none)),
            "proxies: {}\napplications: {}\ntarget_capacity: null\n"
        );
    }

    #[test]
    fn quotes_what_would_read_back_as_something_else() {
        for plain in [
            "HEALTHY",
            "echo-service",
            "http://127.0.0.1:8000 (pid 1, project /p)",
        ] {
            assert_eq!(scalar(plain, 0), plain);
        }
        assert_eq!(scalar("", 0), "''");
        assert_eq!(scalar("it's: bad", 0), "'it''s: bad'");
        for quoted in [
            "true", "No", "null", "12", "1.5", "-x", "#x", "a #b", "x:", " x",
        ] {
            assert!(scalar(quoted, 0).starts_with('\''), "{quoted}");
        }
        assert_eq!(scalar("tab\there", 0), "\"tab\\there\"");
        assert_eq!(scalar("two\nlines", 4), "|-\n    two\n    lines");
        assert_eq!(to_yaml(&json!({"m": "a\n\nb\n"})), "m: |\n  a\n\n  b\n");
        assert_eq!(
            to_yaml(&json!({"l": [1, {"a": 2, "b": {"c": 3}}]})),
            "l:\n- 1\n- a: 2\n  b:\n    c: 3\n"
        );
    }
}
