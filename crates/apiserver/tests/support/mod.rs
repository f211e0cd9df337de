//! Shared by the suites in this directory: the test PKI (`pki`, also used by
//! `kubectl.rs`), and for the client-library suites (`client_library.rs`,
//! `python_client.rs`) an API server served over real TLS on 127.0.0.1
//! with a fresh CA, on a temp store the test keeps a handle to (to compact
//! it), and a kubeconfig file with the admin client certificate.

#![allow(dead_code)] // each suite uses a different part

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use minik_apiserver::{ApiServer, ApiServerOptions, TlsFiles};
use minik_store::Store;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::PathBuf;

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

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
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
    let kubeconfig = dir.path().join("kubeconfig");
    let cfg = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: minik\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: minik\n  context:\n    cluster: minik\n    user: admin\n    namespace: default\ncurrent-context: minik\n",
        b64(&pki.ca_pem),
        b64(&pki.admin_cert),
        b64(&pki.admin_key)
    );
    std::fs::write(&kubeconfig, cfg).unwrap();
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
