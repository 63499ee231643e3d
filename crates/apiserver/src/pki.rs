//! The server's credentials in its data directory, made on first start: a CA,
//! the admin token, and the admin kubeconfig. The serving certificate is issued
//! by the CA at every start, for the address actually bound, so it never needs
//! renewing by hand and the kubeconfig's CA data stays valid across restarts.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bosun_api::time::format_time;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::ServerError;

const CA_NAME: &str = "bosun-ca";

/// What the server authenticates with and clients trust.
pub(crate) struct Credentials {
    pub(crate) ca_pem: String,
    pub(crate) token: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

fn pki_error(what: &'static str, e: impl std::fmt::Display) -> ServerError {
    ServerError::Pki {
        what,
        reason: e.to_string(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> ServerError {
    ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a file only its owner may read, whole or not at all (temp + rename).
fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, e))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn validity(p: &mut CertificateParams, now: i64, years: i32) {
    // `YYYY-MM-...`: the calendar fields are at fixed places.
    let t = format_time(now);
    let year: i32 = t[..4].parse().unwrap_or(2026);
    let month: u8 = t[5..7].parse().unwrap_or(1);
    // Day 1 of the month: valid in every month and year, and at or before now.
    p.not_before = rcgen::date_time_ymd(year, month, 1);
    p.not_after = rcgen::date_time_ymd(year + years, month, 1);
}

/// Loads the CA and token from `dir/pki`, making them on first start.
pub(crate) fn load_or_create(dir: &Path, now: i64) -> Result<Credentials, ServerError> {
    let pki = dir.join("pki");
    fs::create_dir_all(&pki).map_err(|e| io_error(&pki, e))?;
    let (ca_crt, ca_key, token_path) = (
        pki.join("ca.crt"),
        pki.join("ca.key"),
        dir.join("admin.token"),
    );
    let (ca_pem, key) = if ca_key.exists() && ca_crt.exists() {
        let key_pem = fs::read_to_string(&ca_key).map_err(|e| io_error(&ca_key, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| pki_error("ca.key", e))?;
        let ca_pem = fs::read_to_string(&ca_crt).map_err(|e| io_error(&ca_crt, e))?;
        (ca_pem, key)
    } else {
        let key = KeyPair::generate().map_err(|e| pki_error("CA key", e))?;
        let mut params = ca_params();
        validity(&mut params, now, 10);
        let cert = params
            .self_signed(&key)
            .map_err(|e| pki_error("CA certificate", e))?;
        // Key first: a crash between the two leaves no certificate without its key.
        write_private(&ca_key, key.serialize_pem().as_bytes())?;
        write_private(&ca_crt, cert.pem().as_bytes())?;
        (cert.pem(), key)
    };
    let token = match fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        Ok(_) => return Err(pki_error("admin.token", "the file is empty")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| pki_error("admin token", e))?;
            let token = hex(&bytes);
            write_private(&token_path, token.as_bytes())?;
            token
        }
        Err(e) => return Err(io_error(&token_path, e)),
    };
    // The issuer is rebuilt from the same parameters: its name and key are what
    // a signature needs, and the key identifier is derived from the key.
    let issuer = Issuer::new(ca_params(), key);
    Ok(Credentials {
        ca_pem,
        token,
        issuer,
    })
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Credentials {
    /// A TLS acceptor with a fresh serving certificate for `addr`, plus the
    /// names and loopback addresses clients use.
    pub(crate) fn acceptor(&self, addr: SocketAddr, now: i64) -> Result<TlsAcceptor, ServerError> {
        let mut names: Vec<String> = [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "127.0.0.1",
            "::1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if !addr.ip().is_unspecified() && !addr.ip().is_loopback() {
            names.push(addr.ip().to_string());
        }
        let mut params =
            CertificateParams::new(names).map_err(|e| pki_error("serving certificate", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, 1);
        let key = KeyPair::generate().map_err(|e| pki_error("serving key", e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_error("serving certificate", e))?;
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| pki_error("TLS", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| pki_error("TLS", e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Writes `dir/admin.kubeconfig` for a server at `addr`.
    pub(crate) fn write_kubeconfig(
        &self,
        dir: &Path,
        addr: SocketAddr,
    ) -> Result<PathBuf, ServerError> {
        let host = match addr.ip() {
            ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]).to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        // Every value is base64, hex or an address: nothing needs YAML quoting.
        let config = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: bosun\n  cluster:\n    server: https://{host}:{port}\n    certificate-authority-data: {ca}\n\
             users:\n\
             - name: admin\n  user:\n    token: {token}\n\
             contexts:\n\
             - name: bosun\n  context:\n    cluster: bosun\n    user: admin\n    namespace: default\n\
             current-context: bosun\n",
            port = addr.port(),
            token = self.token,
        );
        let path = dir.join("admin.kubeconfig");
        write_private(&path, config.as_bytes())?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_persist() {
        let dir = tempfile::tempdir().unwrap();
        let now = 1_795_000_000;
        let a = load_or_create(dir.path(), now).unwrap();
        let b = load_or_create(dir.path(), now).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.token, b.token);
        assert_eq!(a.token.len(), 64);
        b.acceptor("127.0.0.1:6443".parse().unwrap(), now).unwrap();
        let path = b
            .write_kubeconfig(dir.path(), "0.0.0.0:6443".parse().unwrap())
            .unwrap();
        let text = fs::read_to_string(path).unwrap();
        assert!(text.contains("server: https://127.0.0.1:6443\n"));
        assert!(text.contains(&format!("token: {}\n", a.token)));
    }
}
