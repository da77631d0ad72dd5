//! `promtool check metrics` on the classic text format: nothing but the notes that Ray's own
//! names draw, which the dashboards query and so cannot change. promtool 2.42 has three of
//! them: abbreviated units (`_ms`, `_s`), a type in a counter's name
//! (`..._request_counter_total`) and `_total` on a gauge (`ray_node_mem_total`).

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::*;

/// `path` when it exists; else prints a loud `SKIPPED` and returns `None`, or fails under `CI`.
pub(crate) fn tool(path: &'static str) -> Option<&'static str> {
    if std::path::Path::new(path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{path} is missing: CI installs Debian's prometheus package (.ci/run)"
    );
    eprintln!(
        "\n**********\nSKIPPED: {path} not found; install prometheus \
         (apt-get install prometheus) to run this test\n**********\n"
    );
    None
}

#[tokio::test]
async fn promtool_reports_nothing_but_rays_own_names() {
    let Some(promtool) = tool("/usr/bin/promtool") else {
        return;
    };
    let server = start().await;
    ordinary_traffic(server.local_addr()).await;
    let text = scrape(&server).await;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("a stdin");
    stdin.write_all(text.as_bytes()).await.expect("write");
    drop(stdin);
    let out = within(EXCHANGE_TIMEOUT, "promtool", child.wait_with_output())
        .await
        .expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| !l.trim().is_empty() && !is_rays_own_name(l))
        .collect();
    assert!(problems.is_empty(), "promtool: {report}\non\n{text}");
    assert!(
        report.contains(
            "ray_serve_http_request_latency_ms metric names should not contain abbreviated units"
        ),
        "{report}"
    );
    server.shutdown().await;
}

/// Whether a line of promtool's report is one of the notes Ray's own names draw.
fn is_rays_own_name(line: &str) -> bool {
    const NOTES: &[(&str, &[&str])] = &[
        (
            "metric names should not contain abbreviated units",
            &[
                "ray_serve_http_request_latency_ms",
                "ray_serve_deployment_processing_latency_ms",
                "ray_serve_controller_control_loop_duration_s",
            ],
        ),
        (
            "metric name should not include type 'counter'",
            &[
                "ray_serve_deployment_request_counter_total",
                "ray_serve_deployment_error_counter_total",
                "ray_serve_handle_request_counter_total",
            ],
        ),
        (
            "non-counter metrics should not have \"_total\" suffix",
            &["ray_node_mem_total"],
        ),
    ];
    let Some((name, note)) = line.trim().split_once(' ') else {
        return false;
    };
    NOTES
        .iter()
        .any(|(text, names)| note == *text && names.contains(&name))
}
