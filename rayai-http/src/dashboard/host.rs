//! Which `Host` the dashboard and the metrics export port answer.
//!
//! A DNS-rebinding page (`http://evil.example:8265/`, whose name the attacker points at
//! `127.0.0.1` once the page has loaded) reaches a loopback listener from the user's browser,
//! but the browser still names `evil.example` in `Host` (or HTTP/2's `:authority`): the name is
//! what tells it apart. So a listener answers only the names of the address it is bound to and
//! the configured allow-list (`HttpOptions::dashboard_allowed_hosts`), else a `403`.
//!
//! The port is not compared for the bound address's names: a browser sends the port of the URL it
//! opened, and behind an SSH tunnel or `kubectl port-forward` that is not the bound one. An
//! allow-list entry with a port asks for that port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{Request, header};

/// A `Host` value taken apart: the name (lowercase, without brackets or a final dot) and the
/// port, when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostName {
    name: String,
    port: Option<u16>,
}

impl HostName {
    /// `host`, `host:port`, `[v6]` or `[v6]:port` (RFC 9110's `uri-host [ ":" port ]`, without
    /// percent-encoding); `None` for anything else, user info included.
    pub(crate) fn parse(value: &str) -> Option<HostName> {
        let (name, port) = if let Some(rest) = value.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            (inside, after)
        } else {
            match value.find(':') {
                Some(colon) => value.split_at(colon),
                None => (value, ""),
            }
        };
        let port = match port {
            "" | ":" => None,
            p => Some(p.strip_prefix(':')?.parse::<u16>().ok()?),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':');
        if name.is_empty() || !name.chars().all(valid) {
            return None;
        }
        Some(HostName {
            name: name.to_ascii_lowercase(),
            port,
        })
    }

    /// The name as an IP address, when it is one.
    fn ip(&self) -> Option<IpAddr> {
        self.name.parse().ok()
    }
}

/// The host names one listener answers.
#[derive(Debug, Clone)]
pub(crate) struct AllowedHosts {
    /// The address it is bound to.
    bound: IpAddr,
    /// The host option it was bound with, when that is a name rather than an address.
    configured: Option<String>,
    /// `HttpOptions::dashboard_allowed_hosts`.
    list: Vec<HostName>,
}

impl AllowedHosts {
    /// The names of `bound` (bound with the host option `configured`) and of `list`; entries
    /// that are not `host[:port]` are left out with a warning.
    pub(crate) fn new(bound: SocketAddr, configured: &str, list: &[String]) -> AllowedHosts {
        let list = list
            .iter()
            .filter_map(|entry| {
                let parsed = HostName::parse(entry.trim());
                if parsed.is_none() {
                    tracing::warn!(entry = %entry, "dashboard_allowed_hosts: not host[:port], ignored");
                }
                parsed
            })
            .collect();
        let configured = HostName::parse(configured)
            .filter(|h| h.ip().is_none())
            .map(|h| h.name);
        AllowedHosts {
            bound: bound.ip().to_canonical(),
            configured,
            list,
        }
    }

    /// Whether the request names an allowed host: every name it carries (the URI's authority,
    /// as HTTP/2's `:authority` or an absolute-form target, and each `Host`) must be, and it
    /// must carry one.
    pub(crate) fn admits<B>(&self, req: &Request<B>) -> bool {
        let mut named = false;
        if let Some(authority) = req.uri().authority() {
            named = true;
            if !HostName::parse(authority.as_str()).is_some_and(|h| self.admits_name(&h)) {
                return false;
            }
        }
        for value in req.headers().get_all(header::HOST) {
            named = true;
            let host = value.to_str().ok().and_then(HostName::parse);
            if !host.is_some_and(|h| self.admits_name(&h)) {
                return false;
            }
        }
        named
    }

    /// Whether `host` is allowed.
    fn admits_name(&self, host: &HostName) -> bool {
        let listed = self.list.iter().any(|entry| {
            entry.name == host.name && entry.port.is_none_or(|p| host.port == Some(p))
        });
        listed || self.names_the_bound_address(host)
    }

    /// Whether `host` names the bound address: its IP address; for a loopback address also
    /// `localhost`, `127.0.0.1` and `[::1]`; for a wildcard address (`0.0.0.0`, `::`) any of
    /// the machine's own addresses and `localhost`; and the host option it was bound with, when
    /// that was a name.
    fn names_the_bound_address(&self, host: &HostName) -> bool {
        if self.configured.as_deref() == Some(host.name.as_str()) {
            return true;
        }
        let ip = host.ip().map(|ip| ip.to_canonical());
        if self.bound.is_unspecified() {
            return host.name == "localhost" || ip.is_some_and(is_own_address);
        }
        if self.bound.is_loopback() {
            return host.name == "localhost"
                || ip.is_some_and(|ip| {
                    ip == self.bound || ip == LOCALHOST_V4 || ip == LOCALHOST_V6
                });
        }
        ip == Some(self.bound)
    }
}

const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Whether `ip` is one of this machine's addresses: the system lets a socket bind only those.
/// (An IP address in `Host` cannot come from DNS rebinding in any case: a browser connects to
/// the address it names.)
fn is_own_address(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> Option<(String, Option<u16>)> {
        HostName::parse(value).map(|h| (h.name, h.port))
    }

    #[test]
    fn host_values_are_taken_apart() {
        let some = |name: &str, port| Some((name.to_owned(), port));
        assert_eq!(host("127.0.0.1:8265"), some("127.0.0.1", Some(8265)));
        assert_eq!(host("LocalHost."), some("localhost", None));
        assert_eq!(host("[::1]:8265"), some("::1", Some(8265)));
        assert_eq!(host("[::1]"), some("::1", None));
        assert_eq!(host("dash.example.com:"), some("dash.example.com", None));
        for bad in [
            "",
            ":80",
            "a b",
            "user@host",
            "::1",
            "[::1",
            "[nope]",
            "host:port",
            "h:99999",
            "h:80:80",
            "[::1]x",
            "évil",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }

    fn request(hosts: &[&str]) -> Request<()> {
        let mut req = Request::get("/");
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(()).unwrap()
    }

    fn loopback(list: &[&str]) -> AllowedHosts {
        let list: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new("127.0.0.1:8265".parse().unwrap(), "127.0.0.1", &list)
    }

    #[test]
    fn a_loopback_listener_answers_its_names_only() {
        let hosts = loopback(&[]);
        for ok in [
            "127.0.0.1:8265",
            "localhost:8265",
            "[::1]:8265",
            "localhost",
            "127.0.0.1:9000",
        ] {
            assert!(hosts.admits(&request(&[ok])), "{ok}");
        }
        for bad in [
            "evil.example:8265",
            "evil.example",
            "10.0.0.5:8265",
            "127.0.0.1.evil.example",
        ] {
            assert!(!hosts.admits(&request(&[bad])), "{bad}");
        }
        assert!(!hosts.admits(&request(&[])), "no Host at all");
        assert!(!hosts.admits(&request(&["localhost", "evil.example"])));
        let absolute = Request::get("http://evil.example:8265/").body(()).unwrap();
        assert!(!hosts.admits(&absolute), ":authority is checked too");
        let h2 = Request::get("http://localhost:8265/").body(()).unwrap();
        assert!(hosts.admits(&h2));
    }

    #[test]
    fn the_allow_list_admits_names_on_any_port_or_the_given_one() {
        let hosts = loopback(&["dash.example.com", "Other.Example:8443", "not a host"]);
        assert!(hosts.admits(&request(&["dash.example.com"])));
        assert!(hosts.admits(&request(&["DASH.example.com:8265"])));
        assert!(hosts.admits(&request(&["other.example:8443"])));
        assert!(!hosts.admits(&request(&["other.example:8265"])));
        assert!(!hosts.admits(&request(&["other.example"])));
    }

    #[test]
    fn a_wildcard_listener_answers_the_machines_addresses_not_any_name() {
        let hosts = AllowedHosts::new("0.0.0.0:8265".parse().unwrap(), "0.0.0.0", &[]);
        assert!(hosts.admits(&request(&["127.0.0.1:8265"])));
        assert!(hosts.admits(&request(&["localhost:8265"])));
        assert!(!hosts.admits(&request(&["evil.example:8265"])));
        assert!(!hosts.admits(&request(&["0.0.0.0:8265"])));
        // TEST-NET-3: documentation addresses, never a machine's own.
        assert!(!hosts.admits(&request(&["203.0.113.7:8265"])));
        let named = AllowedHosts::new("10.1.2.3:8265".parse().unwrap(), "dash.lan", &[]);
        assert!(named.admits(&request(&["dash.lan:8265"])));
        assert!(named.admits(&request(&["10.1.2.3"])));
        assert!(!named.admits(&request(&["localhost"])));
    }
}
