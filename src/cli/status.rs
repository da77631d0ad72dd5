//! `rayai status`: a running server's applications, deployments and replicas, from Ray's status
//! API (`GET /api/serve/applications/` on the dashboard port), printed as Ray's `serve status`
//! prints them (or the whole `ServeInstanceDetails` with `--json`), after the server it is (its
//! `controller_info`), refused when that server serves another project than the one `status`
//! runs for.

mod yaml;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hyper::Method;
use serde_json::Value;

use super::CliResult;
use super::build::load_dotenv;
use super::manifest;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The project whose server to show [default: the current directory, when it is a rayai
    /// project]. A server that serves another project is refused.
    project_path: Option<PathBuf>,
    /// The server's dashboard address [default: http://127.0.0.1:PORT, PORT being the project's
    /// dashboard port (RAYAI_DASHBOARD_PORT, its .env, its rayai.toml) or 8265].
    #[arg(long, value_name = "URL")]
    address: Option<String>,
    /// The server's dashboard port on this machine, as given to `rayai serve --dashboard-port`.
    #[arg(long, value_name = "PORT", conflicts_with = "address")]
    dashboard_port: Option<u16>,
    /// The dashboard's bearer token, if it asks for one [default: $RAYAI_DASHBOARD_TOKEN,
    /// $RAYAI_AUTH_TOKEN or $RAY_AUTH_TOKEN, from the environment or the project's .env].
    #[arg(long)]
    token: Option<String>,
    /// Show the server whatever it serves, without comparing its project with this directory.
    #[arg(long, conflicts_with = "project_path")]
    any_project: bool,
    /// Show only this application.
    #[arg(long, short = 'n', value_name = "APPLICATION")]
    name: Option<String>,
    /// Print the status API's answer (Ray's ServeInstanceDetails; with --name, the
    /// application's details) as JSON.
    #[arg(long)]
    json: bool,
}

/// The variables the server reads its dashboard token from, first set first.
const TOKEN_VARIABLES: [&str; 3] = [
    "RAYAI_DASHBOARD_TOKEN",
    "RAYAI_AUTH_TOKEN",
    "RAY_AUTH_TOKEN",
];
/// The status API's path.
const STATUS_PATH: &str = "/api/serve/applications/";

/// How long to wait for the whole answer once connected.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The dashboard's port when nothing says otherwise (as the server's own default).
const DEFAULT_DASHBOARD_PORT: u16 = 8265;

pub(crate) fn status(args: &StatusArgs) -> CliResult {
    let project = this_project(args)?;
    let address = match (&args.address, args.dashboard_port) {
        (Some(address), _) => address.trim_end_matches('/').to_owned(),
        (None, Some(port)) => format!("http://127.0.0.1:{port}"),
        (None, None) => default_address(project.as_deref())?,
    };
    let token = args
        .token
        .clone()
        .or_else(|| {
            TOKEN_VARIABLES
                .iter()
                .find_map(|key| setting(project.as_deref(), key))
        })
        .filter(|t| !t.is_empty());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start tokio: {e}"))?;
    let json = runtime.block_on(applications(&address, token.as_deref()))?;
    let shown = Shown {
        name: args.name.as_deref(),
        json: args.json,
    };
    let report = report(&json, project.as_deref(), &address, shown)?;
    if let Some(warning) = &report.warning {
        eprintln!("warning: {warning}");
    }
    print!("{}", report.text);
    Ok(ExitCode::SUCCESS)
}

/// The project `status` runs for, absolute: the one named, or the current directory when it is a
/// rayai project; none with `--any-project`.
fn this_project(args: &StatusArgs) -> Result<Option<PathBuf>, String> {
    if let Some(path) = &args.project_path {
        let dir = path
            .canonicalize()
            .map_err(|e| format!("cannot open the project {}: {e}", path.display()))?;
        if !manifest::is_rayai_project(&dir) {
            return Err(format!(
                "{} is not a rayai project (a Cargo.toml that depends on rayai, and agents/); \
                 leave the path out to show whichever server answers",
                dir.display()
            ));
        }
        return Ok(Some(dir));
    }
    if args.any_project {
        return Ok(None);
    }
    Ok(std::env::current_dir()
        .ok()
        .and_then(|dir| dir.canonicalize().ok())
        .filter(|dir| manifest::is_rayai_project(dir)))
}

/// A `RAYAI_*` setting as the project's server sees it when `rayai serve` starts it: from the
/// environment, else from the project's `.env`.
fn setting(project: Option<&Path>, key: &str) -> Option<String> {
    std::env::var(key).ok().or_else(|| {
        load_dotenv(&project?.join(".env"))
            .into_iter()
            .rev()
            .find_map(|(k, v)| (k == key).then_some(v))
    })
}

/// The dashboard of the project's server, as it configures it (`RAYAI_DASHBOARD_HOST` and
/// `RAYAI_DASHBOARD_PORT`, then `rayai.toml`'s `[http] dashboard_port`), else the default one.
fn default_address(project: Option<&Path>) -> Result<String, String> {
    let port = setting(project, "RAYAI_DASHBOARD_PORT")
        .and_then(|p| p.trim().parse::<u16>().ok())
        .or_else(|| {
            let config = std::fs::read_to_string(project?.join("rayai.toml")).ok()?;
            let config: toml::Table = config.parse().ok()?;
            let port = config.get("http")?.get("dashboard_port")?.as_integer()?;
            u16::try_from(port).ok()
        });
    if let (Some(project), Some(0)) = (project, port) {
        return Err(format!(
            "the dashboard of {} is turned off (its dashboard port is 0); serve it with \
             `rayai serve --dashboard-port PORT` and pass the same --dashboard-port here",
            project.display()
        ));
    }
    let host = setting(project, "RAYAI_DASHBOARD_HOST")
        .filter(|h| !h.is_empty() && !matches!(h.as_str(), "0.0.0.0" | "::" | "[::]"))
        .map_or_else(
            || "127.0.0.1".to_owned(),
            |h| {
                if h.contains(':') && !h.starts_with('[') {
                    format!("[{h}]")
                } else {
                    h
                }
            },
        );
    Ok(format!(
        "http://{host}:{}",
        port.unwrap_or(DEFAULT_DASHBOARD_PORT)
    ))
}

/// Which server answered, from what the status API says of its controller.
#[derive(Debug, Clone, PartialEq)]
enum Identity {
    /// Not said: a rayai older than this command, or Ray itself.
    Unknown,
    /// The server's own account.
    Known {
        /// The project directory `rayai serve` gave it (`RAYAI_PROJECT`); none when it was not
        /// started by `rayai serve`.
        project: Option<String>,
        pid: Option<u64>,
        /// Where it serves (`host:port`).
        address: Option<String>,
    },
}

impl Identity {
    fn of(json: &Value) -> Self {
        let server = &json["controller_info"];
        if server.get("project").is_none() {
            return Identity::Unknown;
        }
        Identity::Known {
            project: server["project"].as_str().map(str::to_owned),
            pid: server["pid"].as_u64(),
            address: server["address"].as_str().map(str::to_owned),
        }
    }
}

/// What `status` shows of the status API's answer.
#[derive(Debug, Clone, Copy, Default)]
struct Shown<'a> {
    /// Only this application.
    name: Option<&'a str>,
    /// The whole answer as JSON.
    json: bool,
}

/// What `status` prints: its output and a warning for stderr.
#[derive(Debug)]
struct Report {
    text: String,
    warning: Option<String>,
}

/// The `server: ...` line, then Ray's `serve status` (or the JSON); or the refusal when the
/// server at `dashboard` serves another project than `this` (the project `status` runs for,
/// absolute, if any).
fn report(
    json: &Value,
    this: Option<&Path>,
    dashboard: &str,
    shown: Shown<'_>,
) -> Result<Report, String> {
    let identity = Identity::of(json);
    let mut text = String::new();
    let mut warning = None;
    match &identity {
        Identity::Unknown => {
            warning = Some(format!(
                "the server at {dashboard} does not say which project it serves (Ray, or a \
                 rayai older than this command){}",
                this.map_or_else(String::new, |p| format!("; it may not be {}", p.display()))
            ));
        }
        Identity::Known {
            project,
            pid,
            address,
        } => {
            if let Some(this) = this
                && !same_project(project.as_deref(), this)
            {
                let what = match project {
                    Some(other) => format!("project {other}"),
                    None => {
                        "a program not started by `rayai serve` (it names no project)".to_owned()
                    }
                };
                return Err(format!(
                    "the server at {dashboard} serves {what}, not {}: point at this project's \
                     server with --dashboard-port PORT or --address URL (if it is not running, \
                     start it on free ports: `rayai serve --port 8001 --dashboard-port 8266`), \
                     or pass --any-project to show that server anyway",
                    this.display()
                ));
            }
            let unknown = || "-".to_owned();
            let server = format!(
                "http://{} (pid {}, {})",
                address.clone().unwrap_or_else(unknown),
                pid.map_or_else(unknown, |p| p.to_string()),
                match project {
                    Some(p) => format!("project {p}"),
                    None => "no project, not started by `rayai serve`".to_owned(),
                }
            );
            if !shown.json {
                text += &yaml::to_yaml(&serde_json::json!({ "server": server }));
            }
        }
    }
    text += &render(json, shown)?;
    Ok(Report { text, warning })
}

/// Whether the server's project is `this` (absolute): the same path, or one that resolves to it.
fn same_project(server: Option<&str>, this: &Path) -> bool {
    let Some(server) = server else {
        return false;
    };
    let server = Path::new(server);
    server == this || server.canonicalize().is_ok_and(|s| s == this)
}

/// `GET {address}/api/serve/applications/`, as JSON.
async fn applications(address: &str, token: Option<&str>) -> Result<Value, String> {
    let (status, body) = get(address, STATUS_PATH, token, RESPONSE_TIMEOUT).await?;
    if status == 404 {
        return Err(format!(
            "{address} answers, but has no status API ({STATUS_PATH} is a 404): is it a rayai dashboard?"
        ));
    }
    if status == 401 {
        return Err(match token {
            None => format!(
                "{address} asks for a dashboard token: pass --token or set RAYAI_DASHBOARD_TOKEN \
                 (or RAYAI_AUTH_TOKEN, RAY_AUTH_TOKEN)"
            ),
            Some(_) => format!("{address} does not accept this dashboard token (401)"),
        });
    }
    if status != 200 {
        return Err(format!(
            "{address}{STATUS_PATH} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{address}{STATUS_PATH} is not JSON: {e}"))
}

/// Ray's `serve status` of the answer as YAML, or the answer as JSON; of one application when
/// `shown` names one.
fn render(json: &Value, shown: Shown<'_>) -> Result<String, String> {
    let status = if shown.json {
        json.clone()
    } else {
        yaml::serve_status(json)
    };
    let shown_value = match shown.name {
        None => &status,
        Some(name) => status["applications"]
            .get(name)
            .ok_or_else(|| format!("Application \"{name}\" does not exist."))?,
    };
    if shown.json {
        let mut text = serde_json::to_string_pretty(shown_value).map_err(|e| e.to_string())?;
        text.push('\n');
        Ok(text)
    } else {
        Ok(yaml::to_yaml(shown_value))
    }
}

/// `GET {address}{path}`: the status code and the whole body.
async fn get(
    address: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    super::http::send(Method::GET, address, path, token, Vec::new(), timeout).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::Full;
    use hyper::body::{Bytes, Incoming};
    use hyper::header;
    use hyper::service::service_fn;
    use hyper::{Request, Response, server};
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;

    /// A status API answer: one application `seed` whose deployment runs two of four replicas.
    fn details() -> Value {
        serde_json::json!({"controller_info": {"node_id": "n1", "project": null, "pid": 7,
            "address": "127.0.0.1:8000"}, "proxies": {"n1": {"node_id": "n1", "status": "HEALTHY"}},
            "applications": {"seed-service": {"name": "seed-service", "route_prefix": "/agents/seed",
            "docs_path": null, "status": "DEPLOYING", "message": "", "last_deployed_time_s": 1.5,
            "source": "imperative", "deployed_app_config": null, "deployments": {"seed-deployment": {
            "name": "seed-deployment", "status": "UPDATING", "status_trigger": "CONFIG_UPDATE_STARTED",
            "message": "2 of 4 replicas pending: needs 1 CPU but 0 of 2 are free",
            "target_num_replicas": 4, "replicas": [{"replica_id": "seed#0", "state": "RUNNING"},
            {"replica_id": "seed#1", "state": "RUNNING"}]}}}}, "target_capacity": null})
    }

    #[test]
    fn renders_rays_serve_status() {
        let out = render(&details(), Shown::default()).unwrap();
        assert_eq!(
            out,
            "proxies:\n  n1: HEALTHY\napplications:\n  seed-service:\n    status: DEPLOYING\n    \
             message: ''\n    last_deployed_time_s: 1.5\n    deployments:\n      seed-deployment:\n        \
             status: UPDATING\n        status_trigger: CONFIG_UPDATE_STARTED\n        replica_states:\n          \
             RUNNING: 2\n        message: '2 of 4 replicas pending: needs 1 CPU but 0 of 2 are free'\n\
             target_capacity: null\n"
        );
        let one = Shown {
            name: Some("seed-service"),
            json: false,
        };
        let out = render(&details(), one).unwrap();
        assert!(out.starts_with("status: DEPLOYING\nmessage: ''\n"), "{out}");
        let missing = Shown {
            name: Some("nope"),
            json: false,
        };
        assert_eq!(
            render(&details(), missing).unwrap_err(),
            "Application \"nope\" does not exist."
        );
        let json = Shown {
            name: None,
            json: true,
        };
        let out = render(&details(), json).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), details());
        let one = Shown {
            name: Some("seed-service"),
            json: true,
        };
        let out = render(&details(), one).unwrap();
        let app = serde_json::from_str::<Value>(&out).unwrap();
        assert_eq!(app, details()["applications"]["seed-service"]);
    }

    /// Serves one connection on 127.0.0.1:0 with hyper, answering `status` and `body` (JSON);
    /// hands back the address and, once asked, the request's path and `Authorization` header.
    async fn serve_once(
        status: u16,
        body: &'static str,
    ) -> (String, oneshot::Receiver<(String, Option<String>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let service = service_fn(move |req: Request<Incoming>| {
                let auth = req.headers().get(header::AUTHORIZATION);
                let seen = (
                    req.uri().to_string(),
                    auth.map(|v| v.to_str().unwrap().to_owned()),
                );
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(seen);
                }
                async move {
                    Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                }
            });
            let _ = server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        (address, rx)
    }

    /// Serves one connection on 127.0.0.1:0 by writing `raw` once the request's head is in, then
    /// closing it, or holding it open a while if not `close`.
    async fn serve_raw(raw: &'static [u8], close: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(raw).await;
            if !close {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn gets_json_with_the_token_from_a_hyper_server() {
        let (address, seen) = serve_once(200, r#"{"applications": {}}"#).await;
        let json = applications(&format!("{address}/base"), Some("s3cret"))
            .await
            .unwrap();
        assert_eq!(json, serde_json::json!({"applications": {}}));
        let (path, auth) = seen.await.unwrap();
        assert_eq!(path, "/base/api/serve/applications/");
        assert_eq!(auth.as_deref(), Some("Bearer s3cret"));

        let (address, seen) = serve_once(200, "{}").await;
        applications(&address, None).await.unwrap();
        assert_eq!(seen.await.unwrap().1, None);
    }

    #[tokio::test]
    async fn reads_a_chunked_answer() {
        let address = serve_raw(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            true,
        )
        .await;
        let answer = get(&address, "/x", None, RESPONSE_TIMEOUT).await;
        assert_eq!(answer, Ok((200, b"{\"a\":1}".to_vec())));
    }

    #[tokio::test]
    async fn explains_what_is_not_a_status_api() {
        let (address, _) = serve_once(404, "").await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(err.contains("has no status API"), "{err}");

        let (address, _) = serve_once(401, r#"{"detail": "A dashboard token is required."}"#).await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(
            err.contains("pass --token or set RAYAI_DASHBOARD_TOKEN (or RAYAI_AUTH_TOKEN"),
            "{err}"
        );
        let (address, _) = serve_once(401, "").await;
        let err = applications(&address, Some("wrong")).await.unwrap_err();
        assert!(
            err.contains("does not accept this dashboard token"),
            "{err}"
        );

        let (address, _) = serve_once(500, r#"{"detail": "boom"}"#).await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(
            err.ends_with(r#"answered 500: {"detail": "boom"}"#),
            "{err}"
        );

        let (address, _) = serve_once(200, "<html>").await;
        let err = applications(&address, None).await.unwrap_err();
        assert!(err.contains("is not JSON"), "{err}");

        let address = serve_raw(b"SSH-2.0-OpenSSH_9.6\r\n", true).await;
        let err = applications(&address, None).await.unwrap_err();
        assert_eq!(err, format!("{address} did not answer with HTTP"));

        let err = applications("https://127.0.0.1:8265", None)
            .await
            .unwrap_err();
        assert!(err.contains("is not an http:// address"), "{err}");
    }

    #[tokio::test]
    async fn gives_up_on_a_server_that_does_not_answer() {
        // The head promises 10 bytes, 2 come, and the connection stays open.
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{}";
        let address = serve_raw(raw, false).await;
        let err = get(&address, "/x", None, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            format!("talking to {address}: no whole answer within 0.2 s")
        );
        // Or closes: hyper tells.
        let address = serve_raw(raw, true).await;
        let err = get(&address, "/x", None, RESPONSE_TIMEOUT)
            .await
            .unwrap_err();
        assert!(err.starts_with(&format!("talking to {address}: ")), "{err}");
    }

    #[test]
    fn refused_connection_says_nothing_is_running() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let args = StatusArgs {
            project_path: None,
            address: Some(format!("http://127.0.0.1:{port}/")),
            dashboard_port: None,
            token: None,
            any_project: true,
            name: None,
            json: false,
        };
        let err = status(&args).unwrap_err();
        assert!(err.contains("nothing is running"), "{err}");
    }

    fn with_server(project: Value) -> Value {
        serde_json::json!({"controller_info": {"node_id": "n1", "project": project, "pid": 4242,
            "address": "127.0.0.1:8000", "started_at_s": 1700000000.5}, "proxies": {},
            "applications": {}, "target_capacity": null})
    }

    /// What `status` prints of a server with no applications, after its `server:` line.
    const NOTHING: &str = "proxies: {}\napplications: {}\ntarget_capacity: null\n";

    #[test]
    fn names_the_server_first() {
        let this = Path::new(env!("CARGO_MANIFEST_DIR"))
            .canonicalize()
            .unwrap();
        let shown = this.display().to_string();
        let json = with_server(Value::String(shown.clone()));
        for project in [None, Some(this.as_path())] {
            let got = report(&json, project, "http://127.0.0.1:8265", Shown::default()).unwrap();
            assert_eq!(
                got.text,
                format!("server: http://127.0.0.1:8000 (pid 4242, project {shown})\n{NOTHING}")
            );
            assert_eq!(got.warning, None);
        }
        // Not run for a project: any server is shown, and says what it is.
        let got = report(
            &with_server(Value::Null),
            None,
            "http://x",
            Shown::default(),
        )
        .unwrap();
        assert!(
            got.text.starts_with(
                "server: http://127.0.0.1:8000 (pid 4242, no project, not started by `rayai serve`)\n"
            ),
            "{}",
            got.text
        );
        let bare = serde_json::json!({"controller_info": {"project": null}});
        let got = report(&bare, None, "http://x", Shown::default()).unwrap();
        assert!(
            got.text.starts_with("server: http://- (pid -, no project"),
            "{}",
            got.text
        );
    }

    #[test]
    fn refuses_another_projects_server() {
        let this = Path::new(env!("CARGO_MANIFEST_DIR"))
            .canonicalize()
            .unwrap();
        let json = with_server(Value::String("/elsewhere/other".into()));
        let err = report(
            &json,
            Some(&this),
            "http://127.0.0.1:8265",
            Shown::default(),
        )
        .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "the server at http://127.0.0.1:8265 serves project /elsewhere/other, not {}: ",
                this.display()
            )),
            "{err}"
        );
        assert!(
            err.contains("--dashboard-port PORT or --address URL") && err.contains("--any-project"),
            "{err}"
        );
        let err = report(
            &with_server(Value::Null),
            Some(&this),
            "http://127.0.0.1:8265",
            Shown::default(),
        )
        .unwrap_err();
        assert!(
            err.starts_with(&format!(
                "the server at http://127.0.0.1:8265 serves a program not started by `rayai serve` \
                 (it names no project), not {}: ",
                this.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn compares_projects_by_where_they_resolve() {
        let this = Path::new(env!("CARGO_MANIFEST_DIR"))
            .canonicalize()
            .unwrap();
        let via_dotdot = format!("{}/src/..", this.display());
        assert!(same_project(Some(&via_dotdot), &this));
        assert!(same_project(Some(&this.display().to_string()), &this));
        assert!(!same_project(
            Some(&format!("{}/src", this.display())),
            &this
        ));
        assert!(!same_project(Some("/no/such/project"), &this));
        assert!(!same_project(None, &this));
    }

    #[test]
    fn an_older_server_is_shown_with_a_warning() {
        // Ray's own dashboard says nothing of a project.
        let json = serde_json::json!({"controller_info": {"node_id": "n1"}, "proxies": {},
            "applications": {}, "target_capacity": null});
        let got = report(&json, None, "http://127.0.0.1:8265", Shown::default()).unwrap();
        assert_eq!(got.text, NOTHING);
        let warning = got.warning.unwrap();
        assert!(
            warning.starts_with("the server at http://127.0.0.1:8265 does not say which project"),
            "{warning}"
        );
        let this = Path::new("/my/project");
        let warning = report(&json, Some(this), "http://d", Shown::default())
            .unwrap()
            .warning;
        assert!(
            warning
                .as_deref()
                .is_some_and(|w| w.ends_with("; it may not be /my/project")),
            "{warning:?}"
        );
    }

    /// A rayai project of two files in a fresh temporary directory: a Cargo.toml that depends on
    /// rayai, and `agents/`, plus `files`.
    fn project_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rayai-status-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("agents")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"p\"\n[dependencies]\nrayai = \"0.1\"\n",
        )
        .unwrap();
        for (path, text) in files {
            std::fs::write(dir.join(path), text).unwrap();
        }
        dir.canonicalize().unwrap()
    }

    #[test]
    fn reads_the_projects_dashboard_port() {
        if std::env::var_os("RAYAI_DASHBOARD_PORT").is_some()
            || std::env::var_os("RAYAI_DASHBOARD_HOST").is_some()
        {
            return;
        }
        assert_eq!(default_address(None).unwrap(), "http://127.0.0.1:8265");
        let dir = project_dir("toml", &[("rayai.toml", "[http]\ndashboard_port = 9001\n")]);
        assert_eq!(
            default_address(Some(&dir)).unwrap(),
            "http://127.0.0.1:9001"
        );
        let dir = project_dir(
            "dotenv",
            &[
                ("rayai.toml", "[http]\ndashboard_port = 9001\n"),
                (
                    ".env",
                    "RAYAI_DASHBOARD_PORT=9002\nRAYAI_DASHBOARD_HOST=0.0.0.0\n",
                ),
            ],
        );
        assert_eq!(
            default_address(Some(&dir)).unwrap(),
            "http://127.0.0.1:9002"
        );
        let dir = project_dir("off", &[(".env", "RAYAI_DASHBOARD_PORT=0\n")]);
        let err = default_address(Some(&dir)).unwrap_err();
        assert!(err.contains("is turned off"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn status_refuses_a_server_of_another_project_over_http() {
        let dir = project_dir("http", &[]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (address, _) = runtime.block_on(serve_once(
            200,
            r#"{"controller_info": {"project": "/elsewhere", "pid": 1, "address": "127.0.0.1:8000",
                "started_at_s": 0}, "proxies": {}, "applications": {}}"#,
        ));
        let args = StatusArgs {
            project_path: Some(dir.clone()),
            address: Some(address.clone()),
            dashboard_port: None,
            token: None,
            any_project: false,
            name: None,
            json: false,
        };
        let err = status(&args).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "the server at {address} serves project /elsewhere, not {}",
                dir.display()
            )),
            "{err}"
        );
        let err = status(&StatusArgs {
            project_path: Some(dir.join("agents")),
            ..args
        })
        .unwrap_err();
        assert!(err.contains("is not a rayai project"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
