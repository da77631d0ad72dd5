//! A config applied to a running application under load: every request is answered, and the
//! status API shows the new target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use composition::apps;
use http::StatusCode;
use rayai::prelude::*;

use crate::common::{self, eventually};
use crate::{dashboard, post, put, server};

/// Requests each client sends at most; it stops earlier once the config is applied and it has
/// sent `AFTER` more.
const MAX_PER_CLIENT: u32 = 2_000;
const AFTER: u32 = 20;
const CLIENTS: usize = 4;

#[tokio::test]
async fn a_config_changes_replicas_and_user_config_with_every_request_answered() {
    let server = server().await;
    // The example as its binary deploys it, in code; a config finds it by its name.
    server
        .deploy(apps::app(), "/")
        .await
        .expect("the composition app deploys");
    let applied = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU32::new(0));
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (applied, sent) = (applied.clone(), sent.clone());
            tokio::spawn(async move {
                let mut failures = Vec::new();
                let mut after = 0;
                for n in 0..MAX_PER_CLIENT {
                    let body = format!(r#"{{"text": "client {i} request {n}"}}"#);
                    let reply = common::post(addr, "/pipeline", &body).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    if reply.status != StatusCode::OK {
                        failures.push(format!("{} {}", reply.status, reply.body));
                    }
                    if applied.load(Ordering::SeqCst) {
                        after += 1;
                        if after >= AFTER {
                            break;
                        }
                    }
                }
                failures
            })
        })
        .collect();
    eventually(Duration::from_secs(10), "the load to start", || {
        let sent = sent.clone();
        async move { sent.load(Ordering::SeqCst) >= 8 }
    })
    .await;

    let before = server.deployment("word_count").expect("word_count runs");
    let config = json!({"applications": [{
        "name": "composition", "route_prefix": "/", "import_path": "composition",
        "deployments": [
            {"name": "word_count", "num_replicas": 3, "user_config": {"greeting": "hi"}},
            {"name": "tokens-deployment", "max_ongoing_requests": 3},
        ]
    }]});
    let reply = put(&server, &config).await;
    applied.store(true, Ordering::SeqCst);
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["applied"], json!(["composition"]));

    for client in clients {
        let failures = client.await.expect("the client task");
        assert!(failures.is_empty(), "failed requests: {failures:?}");
    }

    // The running deployment has the config's options: updated in place, not restarted (only
    // lightweight options changed, as Ray's rule).
    let words = server.deployment("word_count").expect("word_count runs");
    assert_eq!(words, before, "the same running deployment");
    assert_eq!(words.config().num_replicas(), 3);
    assert_eq!(
        words.config().user_config(),
        Some(&json!({"greeting": "hi"}))
    );
    let tokens = server.deployment("tokens").expect("tokens runs");
    assert_eq!(tokens.config().max_ongoing_requests(), 3);

    // The status API (on the dashboard) shows the new target, and the app as declarative with
    // the config it was given.
    let status = common::get(dashboard(&server), "/api/serve/applications").await;
    assert_eq!(status.status, StatusCode::OK, "{status:?}");
    let body = status.json();
    let app = &body["applications"]["composition"];
    let d = &app["deployments"]["word_count"];
    assert_eq!(d["target_num_replicas"], json!(3), "{body}");
    assert_eq!(
        d["deployment_config"]["user_config"],
        json!({"greeting": "hi"}),
        "{body}"
    );
    assert_eq!(app["source"], "declarative", "{body}");
    assert_eq!(
        app["deployed_app_config"]["import_path"], "composition",
        "{body}"
    );

    // And it keeps answering.
    let reply = post(&server, "/pipeline", r#"{"text": "Two Words"}"#).await;
    assert_eq!(reply.json()["result"], "2 words: two words", "{reply:?}");
    server.shutdown().await;
}
