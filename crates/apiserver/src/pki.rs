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
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime,
};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::{
    DigitallySignedStruct, DistinguishedName as TlsName, RootCertStore, ServerConfig,
    SignatureScheme,
};

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
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), ServerError> {
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
    /// Verifies client certificates against the CA: [`ClientCerts`].
    pub(crate) fn client_certs(&self) -> Result<ClientCerts, ServerError> {
        let ca = CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map_err(|e| pki_error("ca.crt", e))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| pki_error("ca.crt", e))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| pki_error("client certificate verifier", e))?;
        Ok(ClientCerts(verifier))
    }

    /// Issues a client certificate: CN = `user`, O = `groups` (what Kubernetes
    /// reads them as), valid for a year.
    pub(crate) fn client_certificate(
        &self,
        user: &str,
        groups: &[String],
        now: i64,
    ) -> Result<ClientCertificate, ServerError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, g.as_str());
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, 1);
        let key = KeyPair::generate().map_err(|e| pki_error("client key", e))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| pki_error("client certificate", e))?;
        Ok(ClientCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

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
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| pki_error("TLS", e))?
            .with_client_cert_verifier(Arc::new(RequestClientCert(self.client_certs()?.0)))
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
        let config = kubeconfig(
            &server_url(addr),
            &self.ca_pem,
            "admin",
            &UserAuth::Token(&self.token),
        );
        let path = dir.join("admin.kubeconfig");
        write_private(&path, config.as_bytes())?;
        Ok(path)
    }
}

/// Issues a client certificate from the CA in `data_dir` and writes
/// `out/client.crt`, `out/client.key` and `out/kubeconfig` (for the server
/// `data_dir/admin.kubeconfig` names). Returns the kubeconfig's path.
pub(crate) fn write_client_credentials(
    data_dir: &Path,
    user: &str,
    groups: &[String],
    out: &Path,
    now: i64,
) -> Result<PathBuf, ServerError> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(pki_error(
            "client certificate",
            format!("user name {user:?} is not valid"),
        ));
    }
    if let Some(g) = groups
        .iter()
        .find(|g| g.is_empty() || g.chars().any(char::is_control))
    {
        return Err(pki_error(
            "client certificate",
            format!("group {g:?} is not valid"),
        ));
    }
    let admin = data_dir.join("admin.kubeconfig");
    let text = fs::read_to_string(&admin).map_err(|e| io_error(&admin, e))?;
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .ok_or_else(|| pki_error("admin.kubeconfig", "no server address"))?
        .to_owned();
    let creds = load_or_create(data_dir, now)?;
    let cert = creds.client_certificate(user, groups, now)?;
    fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    write_private(&out.join("client.key"), cert.key_pem.as_bytes())?;
    write_private(&out.join("client.crt"), cert.cert_pem.as_bytes())?;
    let path = out.join("kubeconfig");
    let config = kubeconfig(&server, &creds.ca_pem, user, &UserAuth::Certificate(&cert));
    write_private(&path, config.as_bytes())?;
    Ok(path)
}

/// `https://host:port` for a bound address (loopback for "any").
pub(crate) fn server_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]).to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("https://{host}:{}", addr.port())
}

/// How a kubeconfig's user authenticates.
#[derive(Debug)]
pub(crate) enum UserAuth<'a> {
    Token(&'a str),
    Certificate(&'a ClientCertificate),
}

/// A kubeconfig with one cluster, one user and one context.
pub(crate) fn kubeconfig(server: &str, ca_pem: &str, user: &str, auth: &UserAuth<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let auth = match auth {
        UserAuth::Token(t) => format!("    token: {t}\n"),
        UserAuth::Certificate(c) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&c.cert_pem),
            b64(&c.key_pem)
        ),
    };
    // The user name is quoted as a JSON string (valid YAML); every other value is
    // base64, hex or a URL: nothing else needs quoting.
    let user = serde_json::Value::from(user).to_string();
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: bosun\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\n\
         users:\n\
         - name: {user}\n  user:\n{auth}\
         contexts:\n\
         - name: bosun\n  context:\n    cluster: bosun\n    user: {user}\n    namespace: default\n\
         current-context: bosun\n",
        ca = b64(ca_pem),
    )
}

/// A client certificate and its key, PEM.
#[derive(Clone)]
pub(crate) struct ClientCertificate {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCertificate").finish_non_exhaustive()
    }
}

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Checks a client's certificate chain against the CA, once per connection.
#[derive(Debug, Clone)]
pub(crate) struct ClientCerts(Arc<dyn ClientCertVerifier>);

impl ClientCerts {
    /// The leaf of `chain` if it chains to the CA and is valid now.
    pub(crate) fn verified<'c>(
        &self,
        chain: &'c [CertificateDer<'static>],
    ) -> Option<&'c CertificateDer<'static>> {
        let (leaf, intermediates) = chain.split_first()?;
        self.0
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .ok()
            .map(|_| leaf)
    }
}

/// Asks every client for a certificate but accepts any during the handshake
/// (which still proves the client holds the certificate's key); whether the CA
/// signed it is decided per connection by [`ClientCerts`], so an untrusted
/// certificate is a 401 with a Status body, as in Kubernetes, not a failed
/// handshake. No CA names are hinted, so clients send what they have.
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[TlsName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, tokio_rustls::rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
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
