//! Pure translation from a Kubernetes container + image config to an OCI
//! runtime `config.json`: argv resolution (Kubernetes' command/args vs
//! entrypoint/cmd rules, `$(VAR)` expansion), environment merging, resource
//! quantities and the spec itself. No I/O here; the runtime module writes the
//! result into the bundle.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Kubernetes' rules (`kuberuntime.makeContainerCommand` / docs "Define a
/// command and arguments"): `command` replaces the entrypoint, `args` replaces
/// the cmd; when only `command` is given the image cmd is ignored.
pub fn resolve_argv(
    image_entrypoint: &[String],
    image_cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    if !command.is_empty() {
        let mut v = command.to_vec();
        v.extend_from_slice(args);
        return v;
    }
    let mut v = image_entrypoint.to_vec();
    if !args.is_empty() {
        v.extend_from_slice(args);
    } else {
        v.extend_from_slice(image_cmd);
    }
    v
}

/// Kubernetes' `$(VAR)` expansion: defined variables are substituted, `$$`
/// escapes a `$`, unknown references are left as written.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + end];
                    if let Some(v) = vars.get(name) {
                        out.push_str(v);
                        i += 2 + end + 1;
                        continue;
                    }
                    out.push_str(&input[i..i + 2 + end + 1]);
                    i += 2 + end + 1;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// Merges image env (`K=V` strings) with the container's resolved variables
/// (later wins, order of first appearance kept).
pub fn merge_env(image_env: &[String], container: &[(String, String)]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut vals: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        if !vals.contains_key(k) {
            order.push(k.to_string());
        }
        vals.insert(k.to_string(), v.to_string());
    };
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
        put(k, v);
    }
    for (k, v) in container {
        put(k, v);
    }
    order
        .into_iter()
        .map(|k| {
            let v = &vals[&k];
            format!("{k}={v}")
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a Kubernetes quantity into a floating value in base units
/// (`128Mi` → 134217728, `500m` → 0.5, `1e3` → 1000).
pub fn parse_quantity(q: &str) -> Result<f64, QuantityError> {
    let s = q.trim();
    let err = || QuantityError(q.to_string());
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: f64 = num.parse().map_err(|_| err())?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with('e') || e.starts_with('E') => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            10f64.powi(exp)
        }
        _ => return Err(err()),
    };
    Ok(n * mult)
}

/// A bind mount into the container (pod files like /etc/hosts, volumes).
#[derive(Debug, Clone, PartialEq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Everything the OCI spec needs, already resolved.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    /// `None` = host network (hostNetwork pods).
    pub netns_path: Option<PathBuf>,
    pub cgroups_path: String,
    pub binds: Vec<BindMount>,
    pub uid: u32,
    pub gid: u32,
    /// Bytes.
    pub memory_limit: Option<i64>,
    /// Millicores.
    pub cpu_limit_millis: Option<i64>,
    /// Millicores.
    pub cpu_request_millis: Option<i64>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub add_caps: Vec<String>,
    pub drop_caps: Vec<String>,
    /// Supplemental groups (pod `supplementalGroups` and `fsGroup`).
    pub additional_gids: Vec<u32>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    /// Namespaced sysctls from the pod's security context.
    pub sysctls: Vec<(String, String)>,
    /// `tty: true`: the process gets a pty (runc `--console-socket`) and
    /// `TERM=xterm` unless the container sets TERM.
    pub tty: bool,
}

/// The capabilities containerd/Docker grant by default (what Kubernetes pods get).
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn cap_name(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

const CPU_PERIOD: u64 = 100_000;

/// Builds the OCI runtime spec (`config.json`) for one container. `rootfs` is
/// relative to the bundle (`rootfs`).
pub fn oci_spec(input: &SpecInput) -> Value {
    let mut caps: Vec<String> = if input.privileged {
        ALL_CAPS.iter().map(|s| s.to_string()).collect()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    let drop: Vec<String> = input.drop_caps.iter().map(|c| cap_name(c)).collect();
    if drop.iter().any(|d| d == "CAP_ALL") {
        caps.clear();
    }
    caps.retain(|c| !drop.contains(c));
    for a in &input.add_caps {
        let a = cap_name(a);
        if a == "CAP_ALL" {
            caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
        } else if !caps.contains(&a) {
            caps.push(a);
        }
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if let Some(ns) = &input.netns_path {
        namespaces.push(json!({"type": "network", "path": ns}));
    }
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for b in &input.binds {
        let mut opts = vec!["rbind", "rprivate"];
        if b.readonly {
            opts.push("ro");
        }
        mounts.push(json!({"destination": b.destination, "type": "bind",
                           "source": b.source, "options": opts}));
    }
    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if let Some(m) = input.memory_limit {
        resources["memory"] = json!({"limit": m});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(c) = input.cpu_limit_millis {
        let quota = (c as u64 * CPU_PERIOD / 1000).max(1000);
        cpu.insert("quota".into(), json!(quota));
        cpu.insert("period".into(), json!(CPU_PERIOD));
    }
    if let Some(r) = input.cpu_request_millis {
        // Kubernetes' milliCPUToShares.
        cpu.insert("shares".into(), json!(((r as u64) * 1024 / 1000).max(2)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": input.cgroups_path,
        "resources": resources,
    });
    if !input.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi"
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]);
    }
    if !input.sysctls.is_empty() {
        let m: serde_json::Map<String, Value> = input
            .sysctls
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        linux["sysctl"] = Value::Object(m);
    }
    let mut user = json!({"uid": input.uid, "gid": input.gid});
    if !input.additional_gids.is_empty() {
        user["additionalGids"] = json!(input.additional_gids);
    }
    let cwd = if input.cwd.is_empty() {
        "/"
    } else {
        &input.cwd
    };
    let mut env = input.env.clone();
    if input.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": input.tty,
            "user": user,
            "args": input.args,
            "env": env,
            "cwd": cwd,
            // No rlimits: the container inherits the node agent's (raising them may be refused).
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps
            },
            "noNewPrivileges": input.no_new_privileges,
        },
        "root": {"path": "rootfs", "readonly": input.readonly_rootfs},
        "hostname": input.hostname,
        "mounts": mounts,
        "linux": linux,
    })
}

const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
];

/// `/etc/resolv.conf` for a ClusterFirst pod.
pub fn resolv_conf(nameserver: &str, namespace: &str, domain: &str) -> String {
    format!(
        "search {namespace}.svc.{domain} svc.{domain} {domain}\nnameserver {nameserver}\noptions ndots:5\n"
    )
}

/// `/etc/hosts` for a pod, with `hostAliases` appended.
pub fn hosts_file(pod_ip: &str, hostname: &str, aliases: &[(String, Vec<String>)]) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file (minik).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    s.push_str(&format!("{pod_ip}\t{hostname}\n"));
    if !aliases.is_empty() {
        s.push_str("\n# Entries added by HostAliases.\n");
        for (ip, names) in aliases {
            s.push_str(&format!("{ip}\t{}\n", names.join("\t")));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let ep = v(&["/entry"]);
        let cmd = v(&["--default"]);
        assert_eq!(
            resolve_argv(&ep, &cmd, &[], &[]),
            v(&["/entry", "--default"])
        );
        assert_eq!(
            resolve_argv(&ep, &cmd, &[], &v(&["x"])),
            v(&["/entry", "x"])
        );
        assert_eq!(resolve_argv(&ep, &cmd, &v(&["sh"]), &[]), v(&["sh"]));
        assert_eq!(
            resolve_argv(&ep, &cmd, &v(&["sh", "-c"]), &v(&["echo hi"])),
            v(&["sh", "-c", "echo hi"])
        );
        assert_eq!(resolve_argv(&[], &v(&["sh"]), &[], &[]), v(&["sh"]));
    }

    #[test]
    fn expansion() {
        let mut vars = BTreeMap::new();
        vars.insert("NAME".to_string(), "pod-a".to_string());
        assert_eq!(expand("hi $(NAME)!", &vars), "hi pod-a!");
        assert_eq!(expand("$(MISSING) x", &vars), "$(MISSING) x");
        assert_eq!(expand("$$(NAME)", &vars), "$(NAME)");
        assert_eq!(expand("cost $5 $(", &vars), "cost $5 $(");
        assert_eq!(expand("ünï $(NAME)", &vars), "ünï pod-a");
    }

    #[test]
    fn env_merge_container_wins() {
        let img = v(&["PATH=/bin", "A=1"]);
        let c = vec![
            ("A".to_string(), "2".to_string()),
            ("B".to_string(), "3".to_string()),
        ];
        assert_eq!(merge_env(&img, &c), v(&["PATH=/bin", "A=2", "B=3"]));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("128Mi").unwrap(), 134217728.0);
        assert_eq!(parse_quantity("1G").unwrap(), 1e9);
        assert_eq!(parse_quantity("500m").unwrap(), 0.5);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(
            parse_quantity("1.5Gi").unwrap(),
            1.5 * 1024.0 * 1024.0 * 1024.0
        );
        assert!(parse_quantity("12q").is_err());
        assert!(parse_quantity("Mi").is_err());
    }

    #[test]
    fn spec_has_pod_netns_limits_and_mounts() {
        let input = SpecInput {
            args: v(&["/usr/bin/minik-hello"]),
            env: v(&["PATH=/bin"]),
            cwd: String::new(),
            hostname: "hello-abc".into(),
            netns_path: Some(PathBuf::from("/var/run/netns/minik-1234")),
            cgroups_path: "/minik/x".into(),
            binds: vec![BindMount {
                source: PathBuf::from("/r/pods/u/etc/hosts"),
                destination: "/etc/hosts".into(),
                readonly: false,
            }],
            memory_limit: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            ..Default::default()
        };
        let s = oci_spec(&input);
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["process"]["cwd"], "/");
        assert_eq!(s["hostname"], "hello-abc");
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/var/run/netns/minik-1234"));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 256);
        assert!(s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/etc/hosts" && m["type"] == "bind"));
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.iter().any(|c| c == "CAP_NET_BIND_SERVICE"));
        assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
    }

    #[test]
    fn host_network_and_caps() {
        let s = oci_spec(&SpecInput {
            add_caps: v(&["NET_ADMIN"]),
            drop_caps: v(&["KILL"]),
            ..Default::default()
        });
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.iter().any(|c| c == "CAP_NET_ADMIN"));
        assert!(!caps.iter().any(|c| c == "CAP_KILL"));
    }

    #[test]
    fn users_groups_sysctls() {
        let s = oci_spec(&SpecInput {
            uid: 1001,
            gid: 2002,
            additional_gids: vec![3003],
            no_new_privileges: true,
            sysctls: vec![("kernel.shm_rmid_forced".into(), "1".into())],
            ..Default::default()
        });
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1001, "gid": 2002, "additionalGids": [3003]})
        );
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["linux"]["sysctl"]["kernel.shm_rmid_forced"], "1");
        let plain = oci_spec(&SpecInput::default());
        assert!(!plain["process"]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "TERM=xterm"));
        let tty = oci_spec(&SpecInput {
            tty: true,
            env: v(&["PATH=/bin"]),
            ..Default::default()
        });
        assert_eq!(tty["process"]["terminal"], true);
        assert_eq!(tty["process"]["env"], json!(["PATH=/bin", "TERM=xterm"]));
        let own = oci_spec(&SpecInput {
            tty: true,
            env: v(&["TERM=vt100"]),
            ..Default::default()
        });
        assert_eq!(own["process"]["env"], json!(["TERM=vt100"]));
        assert!(plain["linux"].get("sysctl").is_none());
        assert!(plain["process"]["user"].get("additionalGids").is_none());
    }

    #[test]
    fn dns_files() {
        assert_eq!(
            resolv_conf("10.96.0.10", "default", "cluster.local"),
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let h = hosts_file(
            "10.244.0.5",
            "web-1",
            &[("1.2.3.4".into(), v(&["foo", "bar"]))],
        );
        assert!(h.contains("10.244.0.5\tweb-1\n"));
        assert!(h.contains("1.2.3.4\tfoo\tbar\n"));
    }
}
