//! The cluster's PKI: a CA, the API server's serving certificate and the admin
//! client certificate (`O=system:masters`), made with rcgen at the first
//! `start` and kept in the profile's `certs/` directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
}

impl CertPaths {
    pub fn in_dir(dir: &Path) -> CertPaths {
        CertPaths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
        }
    }
}

fn ca_params() -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "minikCA");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2045, 1, 1);
    Ok(p)
}

/// Makes whatever is missing: the CA (once per profile), the serving
/// certificate (again whenever `ips` adds an address it lacks), the admin
/// client certificate.
pub fn ensure(dir: &Path, ips: &[&str]) -> Result<CertPaths> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let paths = CertPaths::in_dir(dir);
    if !paths.ca_cert.exists() || !paths.ca_key.exists() {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        fs::write(&paths.ca_key, key.serialize_pem())?;
        fs::write(&paths.ca_cert, cert.pem())?;
        let _ = fs::remove_file(&paths.server_cert);
        let _ = fs::remove_file(&paths.admin_cert);
    }
    let ca_key = KeyPair::from_pem(&fs::read_to_string(&paths.ca_key)?)
        .context("the profile's CA key is damaged; run `minik delete` and start again")?;
    let issuer = Issuer::new(ca_params()?, ca_key);

    let wanted: Vec<String> = server_sans(ips);
    let marker = dir.join("apiserver.sans");
    let have = fs::read_to_string(&marker).unwrap_or_default();
    if !paths.server_cert.exists() || have != wanted.join(",") {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "minik");
        p.distinguished_name = dn;
        p.subject_alt_names = wanted
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
            })
            .collect::<Result<Vec<_>, rcgen::Error>>()?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        fs::write(&paths.server_key, key.serialize_pem())?;
        fs::write(&paths.server_cert, cert.pem())?;
        fs::write(&marker, wanted.join(","))?;
    }
    if !paths.admin_cert.exists() || !paths.admin_key.exists() {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "minik-user");
        dn.push(DnType::OrganizationName, "system:masters");
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        fs::write(&paths.admin_key, key.serialize_pem())?;
        fs::write(&paths.admin_cert, cert.pem())?;
    }
    Ok(paths)
}

/// The names and addresses the API server is reached by, from the host, from
/// pods (`kubernetes.default`, 10.96.0.1) and inside the VM.
fn server_sans(ips: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "127.0.0.1",
        "10.96.0.1",
        "10.0.2.15",
        "localhost",
        "minik",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for ip in ips {
        if !v.iter().any(|x| x == ip) {
            v.push(ip.to_string());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_and_keeps_certs() {
        let dir = std::env::temp_dir().join(format!("minik-certs-{}", std::process::id()));
        let p = ensure(&dir, &["192.168.1.5"]).unwrap();
        let ca = fs::read_to_string(&p.ca_cert).unwrap();
        let server = fs::read_to_string(&p.server_cert).unwrap();
        // Same inputs: nothing regenerated.
        ensure(&dir, &["192.168.1.5"]).unwrap();
        assert_eq!(fs::read_to_string(&p.server_cert).unwrap(), server);
        // A new address: new serving cert, same CA.
        ensure(&dir, &["192.168.1.6"]).unwrap();
        assert_ne!(fs::read_to_string(&p.server_cert).unwrap(), server);
        assert_eq!(fs::read_to_string(&p.ca_cert).unwrap(), ca);
        fs::remove_dir_all(&dir).unwrap();
    }
}
