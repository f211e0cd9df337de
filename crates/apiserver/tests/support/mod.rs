//! Shared by the suites in this directory: the test PKI (`pki`, also used by
//! `kubectl.rs`), and for the client-library suites (`client_library.rs`,
//! `python_client.rs`) an API server served over real TLS on 127.0.0.1
//! with a fresh CA, on a temp store the test keeps a handle to (to compact
//! it), and a kubeconfig file with the admin client certificate; for the
//! kubectl suites (`kubectl.rs`, `extensions.rs`, `ssa_openapi.rs`) the same
//! server on its own runtime thread ([`KubectlCluster`]) and kubectl runs
//! with a deadline against it.

#![allow(dead_code)] // each suite uses a different part

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use minik_apiserver::{ApiServer, ApiServerOptions, TlsFiles};
use minik_store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Pki {
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub admin_cert: String,
    pub admin_key: String,
}

pub fn pki() -> Pki {
    // With every crate of the workspace built together, rustls has two
    // crypto providers enabled and picks none by itself: choose one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minikCA");
    ca_params.distinguished_name = dn;
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    sp.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minik");
    sp.distinguished_name = dn;
    let server_cert = sp.signed_by(&server_key, &issuer).unwrap();

    let admin_key = KeyPair::generate().unwrap();
    let mut ap = CertificateParams::new(Vec::<String>::new()).unwrap();
    ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minik-admin");
    dn.push(DnType::OrganizationName, "system:masters");
    ap.distinguished_name = dn;
    let admin_cert = ap.signed_by(&admin_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        admin_cert: admin_cert.pem(),
        admin_key: admin_key.serialize_pem(),
    }
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Writes `<dir>/kubeconfig` for https://127.0.0.1:`port` with the admin
/// client certificate of `pki` (namespace `default`); its path.
pub fn write_admin_kubeconfig(dir: &Path, port: u16, pki: &Pki) -> PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: minik\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: minik\n  context:\n    cluster: minik\n    user: admin\n    namespace: default\ncurrent-context: minik\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert),
        b64(&pki.admin_key)
    );
    std::fs::write(&kubeconfig, cfg).unwrap();
    kubeconfig
}

/// An API server over TLS on a temp store, and a kube client built from a
/// kubeconfig file holding the admin certificate.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The kubeconfig file the client was built from.
    pub kubeconfig: PathBuf,
    /// The store under the server (for `compact`).
    pub store: Store,
    /// A kube client built from `kubeconfig`: TLS + the admin certificate.
    pub client: Client,
    pub server: ApiServer,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

pub async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let opts = ApiServerOptions {
        secure_port: port,
        ..ApiServerOptions::default()
    };
    let server = ApiServer::new(store.clone(), opts).await.unwrap();
    let tls = TlsFiles {
        ca_cert_pem: pki.ca_pem.clone(),
        cert_pem: pki.server_cert.clone(),
        key_pem: pki.server_key.clone(),
    };
    let serving = {
        let server = server.clone();
        tokio::spawn(async move {
            server.serve_tls(listener, tls).await.unwrap();
        })
    };
    let kubeconfig = write_admin_kubeconfig(dir.path(), port, &pki);
    let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    // the first request proves TLS + the client certificate work
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.minor, "33");
    Cluster {
        dir,
        kubeconfig,
        store,
        client,
        server,
        serving,
    }
}

/// An API server over TLS on 127.0.0.1 (temp store, fresh CA) running on its
/// own runtime thread, for suites that drive it with blocking `kubectl` runs.
/// `dir` holds the kubeconfig, `home/` (kubectl's HOME) and the CA and admin
/// certificate as `ca.crt`, `admin.crt`, `admin.key` (for curl).
pub struct KubectlCluster {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub port: u16,
    pub server: ApiServer,
    _rt: std::thread::JoinHandle<()>,
}

/// Starts a [`KubectlCluster`]; returns once the server listens.
pub fn start_kubectl_cluster() -> KubectlCluster {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    for (name, pem) in [
        ("ca.crt", &pki.ca_pem),
        ("admin.crt", &pki.admin_cert),
        ("admin.key", &pki.admin_key),
    ] {
        std::fs::write(dir.path().join(name), pem).unwrap();
    }
    let store_dir = dir.path().join("store");
    let (tx, rx) = std::sync::mpsc::channel();
    let tls = TlsFiles {
        ca_cert_pem: pki.ca_pem.clone(),
        cert_pem: pki.server_cert.clone(),
        key_pem: pki.server_key.clone(),
    };
    let rt = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let store = Store::open(&store_dir).unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let opts = ApiServerOptions {
                secure_port: port,
                ..ApiServerOptions::default()
            };
            let server = ApiServer::new(store, opts).await.unwrap();
            tx.send((port, server.clone())).unwrap();
            server.serve_tls(listener, tls).await.unwrap();
        });
    });
    let (port, server) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("api server did not start");
    let kubeconfig = write_admin_kubeconfig(dir.path(), port, &pki);
    std::fs::create_dir_all(dir.path().join("home")).unwrap();
    KubectlCluster {
        dir,
        kubeconfig,
        port,
        server,
        _rt: rt,
    }
}

impl KubectlCluster {
    /// `bin --kubeconfig <ours> args` with HOME in the temp dir, no KUBECONFIG
    /// from the environment and stdin closed.
    pub fn cmd_with(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        c.env("HOME", self.dir.path().join("home"));
        c.env_remove("KUBECONFIG");
        c.stdin(Stdio::null());
        c
    }

    /// [`Self::cmd_with`] for the `kubectl` on PATH.
    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(Path::new("kubectl"), args)
    }

    /// Runs `bin` (a kubectl) and kills it after `timeout`, failing the test;
    /// (success, stdout, stderr).
    pub fn run_with(&self, bin: &Path, args: &[&str], timeout: Duration) -> (bool, String, String) {
        let mut child = self
            .cmd_with(bin, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} did not start: {e}", bin.display()));
        let deadline = Instant::now() + timeout;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} {args:?} did not finish in {timeout:?}", bin.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out: Output = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kubectl args` with a 60 s deadline; (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        self.run_with(Path::new("kubectl"), args, Duration::from_secs(60))
    }

    /// kubectl that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    /// kubectl that must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(!ok, "kubectl {args:?} should have failed:\nstdout: {out}");
        err
    }

    /// Writes `content` to `name` in the temp dir; the path.
    pub fn file(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }

    /// A copy of the admin kubeconfig that authenticates with the bearer
    /// `token` instead of the client certificate, written as `name` in the
    /// temp dir; its path.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> String {
        let cfg = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let with_token: String = cfg
            .lines()
            .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .replace("  user:\n", &format!("  user:\n    token: {token}\n"));
        self.file(name, &with_token)
    }

    /// `kubectl args -o json`, which must succeed, parsed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }
}

/// Runs `serve` with a listener on 127.0.0.1 (an ephemeral port) on its own
/// thread and runtime, for stand-in backends (a kubelet, an aggregated API
/// server); returns the port once it is bound.
pub fn serve_on_loopback<F, Fut>(serve: F) -> u16
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            serve(listener).await;
        });
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the loopback server did not start")
}
