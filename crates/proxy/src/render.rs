//! Renders the whole `table ip <table>` as one nftables script.
//!
//! Owns the rule layout (modelled on kube-proxy's nftables mode). Pure: the
//! same model always gives the same text, so the sync loop can skip a write
//! when nothing changed and tests can assert on the text. Applying the text
//! is [`crate::nft`]'s job.
//!
//! Layout:
//! - `services` (jumped from nat `prerouting` and `output`): a verdict map
//!   on `daddr . l4proto . dport` for ClusterIPs / external IPs, and one on
//!   `l4proto . dport` for NodePorts when `fib daddr type local` (every local
//!   address, 127.0.0.1 included).
//! - `svc-<ns>/<name>/<proto>/<port>`: marks the connection for masquerade,
//!   then `numgen random mod N vmap` to one `ep-…` chain per ready backend,
//!   which DNATs.
//! - `postrouting`: masquerades marked (service) traffic — so hairpin
//!   pod→ClusterIP→same bridge works and replies always come back through
//!   the node — and pod traffic that leaves the pod CIDR for the outside.
//! - filter chains at priority -110 reject new connections to service ports
//!   without ready endpoints (TCP reset, ICMP port unreachable otherwise),
//!   and drop packets from outside addressed to 127.0.0.0/8 (needed because
//!   NodePorts on 127.0.0.1 require `route_localnet=1`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use thiserror::Error;

use crate::model::ServicePort;

/// Packet mark bit meaning "masquerade this connection" (kube-proxy's bit).
pub const MASQ_MARK: u32 = 0x4000;

/// Settings that shape the script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub table: String,
    /// Pod network, e.g. 10.244.0.0/16.
    pub pod_cidr: (Ipv4Addr, u8),
    /// Bridge the pods hang off (pod egress through it is not masqueraded).
    pub bridge: String,
    /// Table comment (carries the sysctl values to restore on teardown).
    pub comment: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParamsError {
    #[error("invalid nftables table name {0:?}: use letters, digits, '_' or '-', starting with a letter")]
    Table(String),
    #[error("invalid pod CIDR {0:?}: expected an IPv4 prefix such as 10.244.0.0/16")]
    PodCidr(String),
    #[error("invalid bridge name {0:?}: expected a Linux interface name (1-15 of [A-Za-z0-9_.-])")]
    Bridge(String),
}

impl Params {
    /// Validates user-supplied strings before they are pasted into a script.
    pub fn new(
        table: &str,
        pod_cidr: &str,
        bridge: &str,
        comment: &str,
    ) -> Result<Self, ParamsError> {
        let table_ok = table.len() <= 64
            && table
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic())
            && table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !table_ok {
            return Err(ParamsError::Table(table.into()));
        }
        let pod_cidr = parse_cidr(pod_cidr).ok_or_else(|| ParamsError::PodCidr(pod_cidr.into()))?;
        let bridge_ok = !bridge.is_empty()
            && bridge.len() <= 15
            && bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !bridge_ok {
            return Err(ParamsError::Bridge(bridge.into()));
        }
        Ok(Params {
            table: table.into(),
            pod_cidr,
            bridge: bridge.into(),
            comment: comment.replace(['"', '\\', '\n'], " "),
        })
    }
}

/// Parses `a.b.c.d/len` and masks host bits off.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((Ipv4Addr::from(u32::from(ip) & mask), len))
}

fn svc_chain(p: &ServicePort) -> String {
    format!(
        "svc-{}/{}/{}/{}",
        p.namespace,
        p.name,
        p.protocol.nft(),
        p.port
    )
}

/// The script that replaces the table atomically: `add` makes the `delete`
/// valid on the first run, and `nft -f` applies the file as one transaction.
pub fn render(params: &Params, ports: &[ServicePort]) -> String {
    let t = &params.table;
    let (net, len) = params.pod_cidr;
    let cidr = format!("{net}/{len}");
    let mut s = String::new();
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut no_ep_ips = Vec::new();
    let mut no_ep_node_ports = Vec::new();
    let mut chains = String::new();
    // A key may appear once across the maps, or nft refuses the whole
    // transaction; the API should never allow duplicates, but one bad
    // object must not take every Service down. First (sorted) wins.
    let mut seen_chains = HashSet::new();
    let mut seen_ips = HashSet::new();
    let mut seen_node_ports = HashSet::new();

    for p in ports {
        let proto = p.protocol.nft();
        if !seen_chains.insert(svc_chain(p)) {
            continue;
        }
        let ips: Vec<Ipv4Addr> = p
            .ips
            .iter()
            .copied()
            .filter(|ip| seen_ips.insert((*ip, p.protocol, p.port)))
            .collect();
        let node_port = p
            .node_port
            .filter(|np| seen_node_ports.insert((p.protocol, *np)));
        if p.backends.is_empty() {
            for ip in &ips {
                no_ep_ips.push(format!(
                    "{ip} . {proto} . {} : goto reject-endpointless",
                    p.port
                ));
            }
            if let Some(np) = node_port {
                no_ep_node_ports.push(format!("{proto} . {np} : goto reject-endpointless"));
            }
            continue;
        }
        let chain = svc_chain(p);
        for ip in &ips {
            service_ips.push(format!("{ip} . {proto} . {} : goto {chain}", p.port));
        }
        if let Some(np) = node_port {
            node_ports.push(format!("{proto} . {np} : goto {chain}"));
        }
        let mut arms = Vec::new();
        for (i, b) in p.backends.iter().enumerate() {
            let ep = format!(
                "ep-{}/{}/{proto}/{}/{}/{}",
                p.namespace, p.name, p.port, b.ip, b.port
            );
            arms.push(format!("{i} : goto {ep}"));
            let _ = write!(
                chains,
                "\tchain {ep} {{\n\t\tmeta l4proto {proto} dnat to {}:{}\n\t}}\n",
                b.ip, b.port
            );
        }
        let _ = write!(
            chains,
            "\tchain {chain} {{\n\t\tjump mark-for-masquerade\n\t\tnumgen random mod {} vmap {{ {} }}\n\t}}\n",
            p.backends.len(),
            arms.join(", ")
        );
    }

    let _ = writeln!(s, "add table ip {t}");
    let _ = writeln!(s, "delete table ip {t}");
    let _ = writeln!(s, "table ip {t} {{");
    let _ = writeln!(s, "\tcomment \"{}\"", params.comment);
    map(
        &mut s,
        "service-ips",
        "ipv4_addr . inet_proto . inet_service",
        &service_ips,
    );
    map(
        &mut s,
        "service-nodeports",
        "inet_proto . inet_service",
        &node_ports,
    );
    map(
        &mut s,
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service",
        &no_ep_ips,
    );
    map(
        &mut s,
        "no-endpoint-nodeports",
        "inet_proto . inet_service",
        &no_ep_node_ports,
    );
    let m = MASQ_MARK;
    let bridge = &params.bridge;
    let _ = write!(
        s,
        "\
\tchain prerouting {{
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tjump masquerading
\t\tip saddr {cidr} ip daddr != {cidr} oifname != \"{bridge}\" masquerade
\t}}
\tchain services {{
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local meta l4proto . th dport vmap @service-nodeports
\t}}
\tchain mark-for-masquerade {{
\t\tmeta mark set meta mark | {m:#x}
\t}}
\tchain masquerading {{
\t\tmeta mark & {m:#x} == 0 return
\t\tmeta mark set meta mark ^ {m:#x}
\t\toifname \"lo\" return
\t\tmasquerade fully-random
\t}}
\tchain filter-prerouting {{
\t\ttype filter hook prerouting priority -110; policy accept;
\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 drop
\t}}
\tchain filter-input {{
\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump nodeport-endpoints-check
\t\tct state new jump service-endpoints-check
\t}}
\tchain filter-forward {{
\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump service-endpoints-check
\t}}
\tchain filter-output {{
\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump service-endpoints-check
\t}}
\tchain service-endpoints-check {{
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t}}
\tchain nodeport-endpoints-check {{
\t\tfib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports
\t}}
\tchain reject-endpointless {{
\t\tmeta l4proto tcp reject with tcp reset
\t\treject
\t}}
"
    );
    s.push_str(&chains);
    s.push_str("}\n");
    s
}

fn map(s: &mut String, name: &str, key: &str, elements: &[String]) {
    let _ = writeln!(s, "\tmap {name} {{");
    let _ = writeln!(s, "\t\ttype {key} : verdict");
    if !elements.is_empty() {
        let _ = writeln!(
            s,
            "\t\telements = {{\n\t\t\t{}\n\t\t}}",
            elements.join(",\n\t\t\t")
        );
    }
    let _ = writeln!(s, "\t}}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backend, Protocol};

    fn params() -> Params {
        Params::new("minik", "10.244.0.0/16", "minik0", "minik-proxy").unwrap()
    }

    fn web(backends: Vec<(&str, u16)>) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: "web".into(),
            port_name: "http".into(),
            protocol: Protocol::Tcp,
            ips: vec!["10.96.0.20".parse().unwrap()],
            port: 80,
            node_port: Some(30080),
            backends: backends
                .into_iter()
                .map(|(ip, port)| Backend {
                    ip: ip.parse().unwrap(),
                    port,
                })
                .collect(),
        }
    }

    #[test]
    fn script_replaces_the_table_in_one_file() {
        let s = render(&params(), &[]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "add table ip minik");
        assert_eq!(lines[1], "delete table ip minik");
        assert_eq!(lines[2], "table ip minik {");
        assert!(s.contains("comment \"minik-proxy\""));
        // empty maps carry no `elements` line (nft rejects `elements = { }`)
        assert!(!s.contains("elements"));
        assert!(s.contains(
            "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 oifname != \"minik0\" masquerade"
        ));
    }

    #[test]
    fn ready_backends_are_load_balanced_with_numgen() {
        let s = render(
            &params(),
            &[web(vec![("10.244.0.5", 8080), ("10.244.0.6", 8080)])],
        );
        assert!(s.contains("10.96.0.20 . tcp . 80 : goto svc-default/web/tcp/80"));
        assert!(s.contains("tcp . 30080 : goto svc-default/web/tcp/80"));
        assert!(s.contains(
            "numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/80/10.244.0.5/8080, 1 : goto ep-default/web/tcp/80/10.244.0.6/8080 }"
        ));
        assert!(s.contains("meta l4proto tcp dnat to 10.244.0.6:8080"));
        assert!(s.contains("jump mark-for-masquerade"));
        assert!(!s.contains("goto reject-endpointless\n"));
    }

    #[test]
    fn services_without_endpoints_are_rejected_not_dnated() {
        let s = render(&params(), &[web(vec![])]);
        assert!(s.contains("10.96.0.20 . tcp . 80 : goto reject-endpointless"));
        assert!(s.contains("tcp . 30080 : goto reject-endpointless"));
        assert!(!s.contains("chain svc-default/web"));
        assert!(s.contains("meta l4proto tcp reject with tcp reset"));
    }

    #[test]
    fn udp_ports_dnat_udp() {
        let mut p = web(vec![("10.244.0.1", 53)]);
        p.protocol = Protocol::Udp;
        p.port = 53;
        p.node_port = None;
        let s = render(&params(), &[p]);
        assert!(s.contains("10.96.0.20 . udp . 53 : goto svc-default/web/udp/53"));
        assert!(s.contains("meta l4proto udp dnat to 10.244.0.1:53"));
    }

    #[test]
    fn duplicate_keys_are_written_once() {
        let a = web(vec![("10.244.0.5", 8080)]);
        let mut b = web(vec![]);
        b.name = "web2".into(); // same ClusterIP:port and NodePort, no endpoints
        let s = render(&params(), &[a, b]);
        assert_eq!(s.matches("10.96.0.20 . tcp . 80 :").count(), 1);
        assert_eq!(s.matches("tcp . 30080 :").count(), 1);
        assert!(!s.contains("goto reject-endpointless,"));
    }

    #[test]
    fn rendering_is_deterministic() {
        let ports = [web(vec![("10.244.0.5", 8080)])];
        assert_eq!(render(&params(), &ports), render(&params(), &ports));
    }

    #[test]
    fn params_reject_script_injection() {
        assert!(Params::new("minik; flush ruleset", "10.244.0.0/16", "minik0", "").is_err());
        assert!(Params::new("minik", "10.244.0.0/16 accept", "minik0", "").is_err());
        assert!(Params::new("minik", "10.244.0.0/16", "br\" accept", "").is_err());
        let p = Params::new("minik", "10.244.7.9/16", "minik0", "a\"b").unwrap();
        assert_eq!(p.pod_cidr, ("10.244.0.0".parse().unwrap(), 16));
        assert_eq!(p.comment, "a b");
    }
}
