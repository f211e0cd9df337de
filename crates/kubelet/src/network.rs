//! Pod network: owns the node bridge (`minik0` = first address of the pod
//! CIDR), one network namespace per pod (`/var/run/netns/<name>`), the veth
//! pair joining it to the bridge, and pod IP allocation.
//!
//! Plumbing shells out to iproute2's `ip` (present on the host and in the VM
//! ISO): a handful of ~2 ms calls per pod, easy to read and to debug by hand.
//! IP allocation is persisted as one file per address under
//! `<root>/pods/.ipam/<ip>` (content: the pod UID), created with O_EXCL, so a
//! kubelet restart never hands out an address a live pod still uses; a
//! `.last` file makes allocation round-robin so a freed address is not reused
//! at once. Nothing here touches nftables (the proxy's) or routes other than
//! the pod's own default route.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid pod CIDR {0:?}; expected e.g. 10.244.0.0/16")]
    BadCidr(String),
    #[error("pod CIDR {0} has no free addresses; delete some pods")]
    Exhausted(String),
    #[error("`ip {args}` failed: {stderr}")]
    Ip { args: String, stderr: String },
    #[error("cannot run `ip` (iproute2): {0}; install iproute2")]
    NoIp(std::io::Error),
    #[error("IP allocation state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: u32,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::BadCidr(s.to_string());
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            network: u32::from(addr) & mask,
            prefix,
        })
    }
    /// The bridge / gateway address (network + 1).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }
    fn last_host(&self) -> u32 {
        self.network + (1u32 << (32 - self.prefix)) - 2
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.network
    }
}

/// Picks the next free address after `last` (round robin), skipping network,
/// gateway and broadcast. Pure.
pub fn next_free(cidr: &Cidr, last: Option<u32>, used: &HashSet<u32>) -> Option<u32> {
    let first = cidr.network + 2;
    let end = cidr.last_host();
    if end < first {
        return None;
    }
    let n = end - first + 1;
    let start = match last {
        Some(l) if l >= first && l < end => l + 1,
        _ => first,
    };
    (0..n)
        .map(|i| first + (start - first + i) % n)
        .find(|ip| !used.contains(ip))
}

/// Persistent allocator over `<dir>` (one file per allocated address).
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Cidr,
}

impl Ipam {
    pub fn new(pods_dir: &Path, cidr: Cidr) -> Self {
        Ipam {
            dir: pods_dir.join(".ipam"),
            cidr,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> NetError + '_ {
        move |source| NetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Address already held by `uid`, if any.
    pub fn lookup(&self, uid: &str) -> Option<Ipv4Addr> {
        let rd = std::fs::read_dir(&self.dir).ok()?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(ip) = name.parse::<Ipv4Addr>() {
                if std::fs::read_to_string(e.path()).ok().as_deref() == Some(uid) {
                    return Some(ip);
                }
            }
        }
        None
    }

    /// Every allocation: (ip, uid).
    pub fn list(&self) -> Vec<(Ipv4Addr, String)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| {
                let ip = e.file_name().to_string_lossy().parse::<Ipv4Addr>().ok()?;
                let uid = std::fs::read_to_string(e.path()).ok()?;
                Some((ip, uid))
            })
            .collect()
    }

    /// Returns the pod's address, allocating one if it has none. Callers
    /// serialize allocation (the pod manager holds a lock); O_EXCL guards the rest.
    pub fn allocate(&self, uid: &str) -> Result<Ipv4Addr, NetError> {
        if let Some(ip) = self.lookup(uid) {
            return Ok(ip);
        }
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let last_path = self.dir.join(".last");
        let mut last = std::fs::read_to_string(&last_path)
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from);
        let mut used: HashSet<u32> = self
            .list()
            .into_iter()
            .map(|(ip, _)| u32::from(ip))
            .collect();
        loop {
            let ip = next_free(&self.cidr, last, &used).ok_or_else(|| {
                NetError::Exhausted(format!(
                    "{}/{}",
                    Ipv4Addr::from(self.cidr.network),
                    self.cidr.prefix
                ))
            })?;
            let addr = Ipv4Addr::from(ip);
            let path = self.dir.join(addr.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(uid.as_bytes()).map_err(Self::io(&path))?;
                    let _ = std::fs::write(&last_path, addr.to_string());
                    return Ok(addr);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    used.insert(ip);
                    last = Some(ip);
                }
                Err(e) => return Err(Self::io(&path)(e)),
            }
        }
    }

    /// Frees every address held by `uid`.
    pub fn release(&self, uid: &str) {
        for (ip, owner) in self.list() {
            if owner == uid {
                let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<(), NetError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetError::NoIp)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Ip {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Creates the bridge with the CIDR's gateway address if missing, and brings it up.
pub fn ensure_bridge(bridge: &str, cidr: &Cidr) -> Result<(), NetError> {
    if !link_exists(bridge) {
        if let Err(e) = ip(&["link", "add", bridge, "type", "bridge"]) {
            if !link_exists(bridge) {
                return Err(e);
            }
        }
    }
    let addr = format!("{}/{}", cidr.gateway(), cidr.prefix);
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", bridge])
        .output()
        .map_err(NetError::NoIp)?;
    if !String::from_utf8_lossy(&out.stdout).contains(&format!(" {addr} ")) {
        ip(&["addr", "add", &addr, "dev", bridge])?;
    }
    ip(&["link", "set", bridge, "up"])
}

/// Names derived from the pod UID: netns `<bridge>-<uid8>` (so test bridges
/// never collide with `minik0`'s) and host veth `veth<uid8>` (≤ 15 chars).
pub fn names_for(bridge: &str, uid: &str) -> (String, String) {
    let short: String = uid
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect();
    let prefix = if bridge == "minik0" { "minik" } else { bridge };
    (format!("{prefix}-{short}"), format!("veth{short}"))
}

/// Makes the pod's network namespace from scratch: netns, veth pair
/// (`eth0` inside), address, lo up, default route via the bridge.
pub fn setup_pod_network(
    netns: &str,
    veth: &str,
    addr: Ipv4Addr,
    bridge: &str,
    cidr: &Cidr,
) -> Result<(), NetError> {
    teardown_pod_network(netns, veth);
    ip(&["netns", "add", netns])?;
    ip(&[
        "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ])?;
    ip(&["link", "set", veth, "master", bridge, "up"])?;
    // Hairpin: a pod reaching its own Service gets DNATed back to itself,
    // and the bridge must send the packet out of the port it came in on.
    ip(&["link", "set", veth, "type", "bridge_slave", "hairpin", "on"])?;
    let cidr_addr = format!("{addr}/{}", cidr.prefix);
    ip(&["-n", netns, "addr", "add", &cidr_addr, "dev", "eth0"])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])?;
    let gw = cidr.gateway().to_string();
    ip(&["-n", netns, "route", "add", "default", "via", &gw])
}

/// Removes the pod's netns and veth; missing pieces are fine.
pub fn teardown_pod_network(netns: &str, veth: &str) {
    if link_exists(veth) {
        let _ = ip(&["link", "del", veth]);
    }
    if netns_path(netns).exists() {
        let _ = ip(&["netns", "del", netns]);
    }
}

/// Removes the bridge if it exists.
pub fn delete_bridge(bridge: &str) -> Result<(), NetError> {
    if link_exists(bridge) {
        ip(&["link", "del", bridge])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse() {
        let c = Cidr::parse("10.244.0.0/16").unwrap();
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert!(c.contains(Ipv4Addr::new(10, 244, 3, 4)));
        assert!(!c.contains(Ipv4Addr::new(10, 245, 0, 1)));
        assert_eq!(Cidr::parse("10.244.7.9/16").unwrap().network, c.network);
        assert!(Cidr::parse("10.244.0.0").is_err());
        assert!(Cidr::parse("10.244.0.0/31").is_err());
    }

    #[test]
    fn next_free_round_robin_and_skips() {
        let c = Cidr::parse("10.0.0.0/29").unwrap(); // hosts .2 .. .6
        let base = c.network;
        let mut used = HashSet::new();
        assert_eq!(next_free(&c, None, &used), Some(base + 2));
        assert_eq!(next_free(&c, Some(base + 2), &used), Some(base + 3));
        used.insert(base + 3);
        assert_eq!(next_free(&c, Some(base + 2), &used), Some(base + 4));
        // Wraps after the last host and never returns gateway or broadcast.
        assert_eq!(next_free(&c, Some(base + 6), &used), Some(base + 2));
        for i in 2..=6 {
            used.insert(base + i);
        }
        assert_eq!(next_free(&c, None, &used), None);
    }

    #[test]
    fn ipam_persists_and_does_not_reuse_immediately() {
        let dir = std::env::temp_dir().join(format!("minik-ipam-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = Cidr::parse("10.9.0.0/16").unwrap();
        let ipam = Ipam::new(&dir, c);
        let a = ipam.allocate("uid-a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(ipam.allocate("uid-a").unwrap(), a, "idempotent per pod");
        let b = ipam.allocate("uid-b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 9, 0, 3));
        // A new allocator over the same dir (kubelet restart) sees both.
        let ipam2 = Ipam::new(&dir, c);
        assert_eq!(ipam2.lookup("uid-b"), Some(b));
        ipam2.release("uid-a");
        let c3 = ipam2.allocate("uid-c").unwrap();
        assert_eq!(
            c3,
            Ipv4Addr::new(10, 9, 0, 4),
            "freed .2 not reused at once"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names() {
        let (ns, veth) = names_for("minik0", "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809");
        assert_eq!(ns, "minik-1a2b3c4d");
        assert_eq!(veth, "veth1a2b3c4d");
        assert!(veth.len() <= 15);
        let (ns, _) = names_for("mkt123", "1a2b3c4d");
        assert_eq!(ns, "mkt123-1a2b3c4d");
    }
}
