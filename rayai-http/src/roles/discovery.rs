//! Where the replica processes of each deployment are ([`Discovery`]), from the value of
//! `RAYAI_DISCOVERY`:
//!
//! - `static:<file>` ([`StaticFile`]): a TOML file, read again when it changes, with one array of
//!   `host:port` addresses per deployment:
//!
//!   ```toml
//!   [deployments]
//!   echo = ["127.0.0.1:9001", "127.0.0.1:9002"]
//!   plain = ["127.0.0.1:9003"]
//!   ```
//!
//! - `dns` ([`Dns`]): the A/AAAA records of `<deployment>.<suffix>`, each with the replicas'
//!   serving port (a Kubernetes headless service, say).

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use rayai_core::remote::Discovery;
use serde::Deserialize;

/// How often a static file is looked at again.
const STATIC_PERIOD: Duration = Duration::from_secs(1);

/// How often DNS is asked again when `RAYAI_DISCOVERY=dns`.
const DNS_PERIOD: Duration = Duration::from_secs(5);

/// The shortest time a DNS lookup is given before it counts as failed.
const MIN_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// The addresses of each deployment, as a static file lists them (validated, without
/// duplicates, in the file's order).
type Sets = HashMap<String, Vec<String>>;

/// A static discovery file as TOML sees it. Other top-level keys are ignored.
#[derive(Deserialize)]
struct FileContents {
    /// The addresses of each deployment's replica processes.
    #[serde(default)]
    deployments: HashMap<String, Vec<String>>,
}

/// What identifies one version of a file without reading it: when a file is rewritten, at
/// least one of these changes (its length, when the clock is too coarse to tell the times apart).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    /// The modification time, where the file system has one.
    modified: Option<SystemTime>,
    /// The length in bytes.
    len: u64,
    /// The inode (a file replaced by a rename is a new inode).
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    /// The stamp of the file whose metadata is `meta`.
    fn of(meta: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt as _;
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: meta.ino(),
        }
    }
}

/// The last version of a static file read: its stamp, and what it held (or why it was not
/// usable).
struct Cached {
    /// The stamp the file had when it was read.
    stamp: Stamp,
    /// The sets it lists, or the message saying why it is not usable.
    sets: Result<Arc<Sets>, String>,
}

/// `RAYAI_DISCOVERY=static:<file>`: the addresses of each deployment's replicas listed in a TOML
/// file (`[deployments]`, one array of `host:port` strings per deployment). The file is read at
/// start, and again whenever its modification time or length change.
pub(crate) struct StaticFile {
    /// The file.
    path: PathBuf,
    /// The version of the file last read.
    cached: Mutex<Cached>,
}

impl std::fmt::Debug for StaticFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StaticFile {
    /// Reads the file at `path`. An unreadable or malformed file (not TOML, not the expected
    /// shape, an address that is not `host:port`) is an error naming the path and the problem.
    pub(crate) fn new(path: PathBuf) -> Result<StaticFile, String> {
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read discovery file {}: {e}", path.display()))?;
        let stamp = Stamp::of(&meta);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read discovery file {}: {e}", path.display()))?;
        let sets = parse(&path, &text)?;
        Ok(StaticFile {
            path,
            cached: Mutex::new(Cached {
                stamp,
                sets: Ok(Arc::new(sets)),
            }),
        })
    }

    /// The sets the file holds now: the cached ones when its stamp has not changed, else the
    /// file read and parsed again (and cached, including a parse error). The file system is
    /// used on a blocking thread (as `tokio::fs` would).
    async fn current(&self) -> Result<Arc<Sets>, String> {
        let known = self
            .cached
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stamp
            .clone();
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || read_if_changed(&path, &known))
            .await
            .map_err(|e| format!("cannot read discovery file {}: {e}", self.path.display()))?;
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        match read? {
            None => cached.sets.clone(),
            Some((stamp, text)) => {
                let sets = parse(&self.path, &text).map(Arc::new);
                *cached = Cached {
                    stamp,
                    sets: sets.clone(),
                };
                sets
            }
        }
    }
}

/// The text of the file at `path` and its stamp, unless its stamp is `known` (`None`: not
/// changed).
fn read_if_changed(path: &Path, known: &Stamp) -> Result<Option<(Stamp, String)>, String> {
    let cannot = |e: std::io::Error| format!("cannot read discovery file {}: {e}", path.display());
    // Taken before reading: a change made while the file is read gives a new stamp, so it is
    // read again next time.
    let stamp = Stamp::of(&std::fs::metadata(path).map_err(cannot)?);
    if stamp == *known {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(cannot)?;
    Ok(Some((stamp, text)))
}

impl Discovery for StaticFile {
    fn describe(&self) -> String {
        format!("static:{}", self.path.display())
    }

    fn resolve<'a>(&'a self, deployment: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let sets = self.current().await?;
            Ok(sets.get(deployment).cloned().unwrap_or_default())
        })
    }

    fn period(&self) -> Duration {
        STATIC_PERIOD
    }
}

/// The sets listed by the text of the discovery file at `path`, every address checked (the
/// first bad one is the error), duplicates dropped.
fn parse(path: &Path, text: &str) -> Result<Sets, String> {
    let contents: FileContents = toml::from_str(text).map_err(|e| {
        format!(
            "discovery file {} is not valid: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let mut sets = Sets::with_capacity(contents.deployments.len());
    for (deployment, addresses) in contents.deployments {
        let mut set: Vec<String> = Vec::with_capacity(addresses.len());
        for address in addresses {
            if let Err(why) = check_address(&address) {
                return Err(format!(
                    "discovery file {}: deployment {deployment:?} has address {address:?}, \
                     which is not host:port ({why})",
                    path.display()
                ));
            }
            if !set.contains(&address) {
                set.push(address);
            }
        }
        sets.insert(deployment, set);
    }
    Ok(sets)
}

/// Whether `address` is `host:port`: a host name or IPv4 address, or an IPv6 address in
/// brackets, and a port from 1 to 65535. The error says what is wrong.
fn check_address(address: &str) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("no port");
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port is not a number");
    }
    match port.parse::<u16>() {
        Ok(0) => return Err("the port is 0"),
        Ok(_) => {}
        Err(_) => return Err("the port is above 65535"),
    }
    if host.is_empty() {
        return Err("no host");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let Some(ip) = inner.strip_suffix(']') else {
            return Err("an unclosed bracket");
        };
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err("not an IPv6 address in the brackets");
        }
        return Ok(());
    }
    if host.contains(':') {
        return Err("an IPv6 address goes in brackets");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("the host has characters a host name cannot have");
    }
    Ok(())
}

/// `RAYAI_DISCOVERY=dns`: the replicas of a deployment are the A/AAAA records of
/// `<deployment>.<suffix>` (the deployment name in lower case, `_` as `-`), each with the same
/// port.
#[derive(Debug, Clone)]
pub(crate) struct Dns {
    /// What follows the deployment's name (no leading dot); empty: the name alone.
    suffix: String,
    /// The port of every address found.
    port: u16,
    /// How often the names are looked up again.
    period: Duration,
}

impl Dns {
    /// Looks up `<deployment>.<suffix>` (or the deployment name alone when `suffix` is empty)
    /// every `period`; every address found gets `port`.
    pub(crate) fn new(suffix: String, port: u16, period: Duration) -> Dns {
        let suffix = match suffix.strip_prefix('.') {
            Some(rest) => rest.trim_start_matches('.').to_owned(),
            None => suffix,
        };
        Dns {
            suffix,
            port,
            period,
        }
    }

    /// The DNS name of `deployment`'s replicas, or why there is none.
    fn name(&self, deployment: &str) -> Result<String, String> {
        let label: String = deployment
            .chars()
            .map(|c| {
                if c == '_' {
                    '-'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        if label.is_empty() {
            return Err("an empty deployment name has no DNS name".to_owned());
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
        {
            return Err(format!(
                "deployment {deployment:?} has no DNS name: {label:?} has characters a DNS \
                 name cannot have"
            ));
        }
        Ok(if self.suffix.is_empty() {
            label
        } else {
            format!("{label}.{}", self.suffix)
        })
    }
}

impl Discovery for Dns {
    fn describe(&self) -> String {
        if self.suffix.is_empty() {
            "dns:<deployment>".to_owned()
        } else {
            format!("dns:<deployment>.{}", self.suffix)
        }
    }

    fn resolve<'a>(&'a self, deployment: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(async move {
            let name = self.name(deployment)?;
            let timeout = self.period.max(MIN_LOOKUP_TIMEOUT);
            let found = match tokio::time::timeout(
                timeout,
                tokio::net::lookup_host((name.as_str(), self.port)),
            )
            .await
            {
                Ok(Ok(found)) => found,
                Ok(Err(e)) => return Err(format!("cannot resolve {name}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "cannot resolve {name}: no answer within {timeout:?}"
                    ));
                }
            };
            let mut addresses: Vec<SocketAddr> = found.collect();
            addresses.sort_unstable();
            addresses.dedup();
            Ok(addresses.iter().map(SocketAddr::to_string).collect())
        })
    }

    fn period(&self) -> Duration {
        self.period
    }
}

/// The discovery `RAYAI_DISCOVERY=<value>` names: `static:<file>` (the file is read now, so a
/// missing or malformed one is an error) or `dns` (`<deployment>.<dns_suffix>`, every address
/// with `dns_port`, looked up every 5 s).
pub(crate) fn from_env_value(
    value: &str,
    dns_suffix: Option<String>,
    dns_port: u16,
) -> Result<Arc<dyn Discovery>, String> {
    if let Some(path) = value.strip_prefix("static:") {
        if path.is_empty() {
            return Err(format!("RAYAI_DISCOVERY={value} names no file"));
        }
        return Ok(Arc::new(StaticFile::new(PathBuf::from(path))?));
    }
    if value == "dns" {
        return Ok(Arc::new(Dns::new(
            dns_suffix.unwrap_or_default(),
            dns_port,
            DNS_PERIOD,
        )));
    }
    Err(format!(
        "RAYAI_DISCOVERY={value} is not static:<file> or dns"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A file in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        /// A new file holding `text`, with a name no other test uses.
        fn new(text: &str) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "rayai-discovery-test-{}-{n}.toml",
                std::process::id()
            ));
            std::fs::write(&path, text).unwrap();
            TempFile(path)
        }

        /// Replaces what the file holds.
        fn write(&self, text: &str) {
            std::fs::write(&self.0, text).unwrap();
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    const TWO: &str = r#"
title = "ignored"

[deployments]
echo = ["127.0.0.1:9001", "127.0.0.1:9002"]
plain = ["127.0.0.1:9003"]

[other]
also = "ignored"
"#;

    #[tokio::test]
    async fn static_file_lists_each_deployment() {
        let file = TempFile::new(TWO);
        let d = StaticFile::new(file.0.clone()).unwrap();
        assert_eq!(d.describe(), format!("static:{}", file.0.display()));
        assert_eq!(d.period(), Duration::from_secs(1));
        assert_eq!(
            d.resolve("echo").await.unwrap(),
            ["127.0.0.1:9001", "127.0.0.1:9002"]
        );
        assert_eq!(d.resolve("plain").await.unwrap(), ["127.0.0.1:9003"]);
    }

    #[tokio::test]
    async fn absent_deployment_is_empty() {
        let file = TempFile::new(TWO);
        let d = StaticFile::new(file.0.clone()).unwrap();
        assert!(d.resolve("nobody").await.unwrap().is_empty());
        let empty = TempFile::new("");
        let d = StaticFile::new(empty.0.clone()).unwrap();
        assert!(d.resolve("echo").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn static_file_is_read_again_when_rewritten() {
        let file = TempFile::new(TWO);
        let d = StaticFile::new(file.0.clone()).unwrap();
        assert_eq!(d.resolve("plain").await.unwrap(), ["127.0.0.1:9003"]);
        file.write(
            "[deployments]\nplain = [\"127.0.0.1:9004\", \"localhost:9005\", \"[::1]:9006\"]\n",
        );
        assert_eq!(
            d.resolve("plain").await.unwrap(),
            ["127.0.0.1:9004", "localhost:9005", "[::1]:9006"]
        );
        assert!(d.resolve("echo").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn malformed_file_at_start_is_an_error() {
        let file = TempFile::new("[deployments\necho = [");
        let err = StaticFile::new(file.0.clone()).unwrap_err();
        assert!(err.contains(&file.0.display().to_string()), "{err}");

        let file = TempFile::new("[deployments]\necho = \"127.0.0.1:9001\"\n");
        let err = StaticFile::new(file.0.clone()).unwrap_err();
        assert!(err.contains(&file.0.display().to_string()), "{err}");

        let missing = std::env::temp_dir().join(format!(
            "rayai-discovery-test-{}-missing.toml",
            std::process::id()
        ));
        let err = StaticFile::new(missing.clone()).unwrap_err();
        assert!(err.contains(&missing.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn malformed_file_later_keeps_failing() {
        let file = TempFile::new(TWO);
        let d = StaticFile::new(file.0.clone()).unwrap();
        assert_eq!(d.resolve("plain").await.unwrap(), ["127.0.0.1:9003"]);
        file.write("[deployments]\nplain = [\"127.0.0.1:9003\"\n");
        assert!(d.resolve("plain").await.is_err());
        assert!(d.resolve("plain").await.is_err());
        assert!(d.resolve("echo").await.is_err());
        // Fixed again: the new content is read.
        file.write("[deployments]\nplain = [\"127.0.0.1:9007\", \"127.0.0.1:9007\"]\n");
        assert_eq!(d.resolve("plain").await.unwrap(), ["127.0.0.1:9007"]);
        // Gone: an error too.
        std::fs::remove_file(&file.0).unwrap();
        let err = d.resolve("plain").await.unwrap_err();
        assert!(err.contains(&file.0.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn bad_addresses_are_rejected() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":9001",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:+80",
            "127.0.0.1:90a",
            "::1:9001",
            "[::1:9001",
            "[not-v6]:9001",
            "host name:9001",
            "http://host:9001",
            "",
        ] {
            let file = TempFile::new(&format!("[deployments]\necho = [{bad:?}]\n"));
            let err = StaticFile::new(file.0.clone()).unwrap_err();
            assert!(err.contains("\"echo\""), "{bad}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        // Rejected when the file is read again too.
        let file = TempFile::new(TWO);
        let d = StaticFile::new(file.0.clone()).unwrap();
        file.write("[deployments]\nplain = [\"127.0.0.1:99999\"]\n");
        let err = d.resolve("plain").await.unwrap_err();
        assert!(err.contains("127.0.0.1:99999"), "{err}");
    }

    #[test]
    fn good_addresses_are_accepted() {
        for good in [
            "127.0.0.1:1",
            "localhost:65535",
            "replica-0.echo.svc.cluster.local:8000",
            "[::1]:9001",
            "[fe80::1]:80",
        ] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
    }

    #[tokio::test]
    async fn dns_resolves_localhost() {
        let d = Dns::new(String::new(), 9001, Duration::from_secs(5));
        assert_eq!(d.describe(), "dns:<deployment>");
        assert_eq!(d.period(), Duration::from_secs(5));
        let found = d.resolve("localhost").await.unwrap();
        assert!(!found.is_empty());
        assert!(
            found
                .iter()
                .all(|a| a == "127.0.0.1:9001" || a == "[::1]:9001"),
            "{found:?}"
        );
        // Upper case and `_` are mapped.
        assert_eq!(d.resolve("LocalHost").await.unwrap(), found);
    }

    #[tokio::test]
    async fn dns_names() {
        let d = Dns::new(".svc.local".to_owned(), 8000, Duration::from_secs(5));
        assert_eq!(d.describe(), "dns:<deployment>.svc.local");
        assert_eq!(d.name("My_Agent").unwrap(), "my-agent.svc.local");
        assert!(d.name("").is_err());
        assert!(d.name("a b").is_err());
        assert!(d.resolve("a/b").await.is_err());
    }

    #[tokio::test]
    async fn dns_unknown_name_is_an_error() {
        let d = Dns::new("invalid".to_owned(), 9001, Duration::from_secs(5));
        let err = d.resolve("no-such-host-rayai-test").await.unwrap_err();
        assert!(err.contains("no-such-host-rayai-test.invalid"), "{err}");
    }

    #[tokio::test]
    async fn env_values() {
        let file = TempFile::new(TWO);
        let d = from_env_value(&format!("static:{}", file.0.display()), None, 1).unwrap();
        assert_eq!(d.describe(), format!("static:{}", file.0.display()));
        assert_eq!(d.resolve("plain").await.unwrap(), ["127.0.0.1:9003"]);

        let d = from_env_value("dns", Some("svc".to_owned()), 8000).unwrap();
        assert_eq!(d.describe(), "dns:<deployment>.svc");
        assert_eq!(d.period(), Duration::from_secs(5));
        let d = from_env_value("dns", None, 8000).unwrap();
        assert_eq!(d.describe(), "dns:<deployment>");

        let Err(err) = from_env_value("consul", None, 8000) else {
            panic!("consul accepted");
        };
        assert_eq!(err, "RAYAI_DISCOVERY=consul is not static:<file> or dns");
        assert!(from_env_value("static:", None, 8000).is_err());
        assert!(from_env_value("static:/no/such/rayai/file.toml", None, 8000).is_err());
    }
}
