//! Reads a kubeconfig file (what kubectl reads) into a [`Config`]: the
//! current context's cluster (server, CA) and user (token or client
//! certificate), inline as `*-data` or as paths relative to the file.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::{Auth, Config, Error};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    users: Vec<Named<User>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    current_context: String,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "user", alias = "context")]
    value: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    certificate_authority_data: Option<String>,
    certificate_authority: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct User {
    token: Option<String>,
    token_file: Option<PathBuf>,
    client_certificate_data: Option<String>,
    client_certificate: Option<PathBuf>,
    client_key_data: Option<String>,
    client_key: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    user: String,
}

impl Config {
    /// The current context of the kubeconfig at `path`. Errors name the
    /// file and what in it is missing or unreadable.
    pub fn from_kubeconfig(path: &Path) -> Result<Config, Error> {
        let bad = |what: String| Error::Config(format!("kubeconfig {}: {what}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: File = serde_saphyr::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let read = |p: &Path| {
            std::fs::read_to_string(dir.join(p)).map_err(|e| bad(format!("{}: {e}", p.display())))
        };
        let decode = |field: &str, data: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| bad(format!("{field} is not base64 of text")))
        };
        let context = match file
            .contexts
            .iter()
            .find(|c| c.name == file.current_context)
        {
            Some(c) => &c.value,
            None if file.current_context.is_empty() => {
                return Err(bad("no current-context".into()));
            }
            None => return Err(bad(format!("no context {:?}", file.current_context))),
        };
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .map(|c| &c.value)
            .ok_or_else(|| bad(format!("no cluster {:?}", context.cluster)))?;
        let default_user = User::default();
        let user = match file.users.iter().find(|u| u.name == context.user) {
            Some(u) => &u.value,
            None if context.user.is_empty() => &default_user,
            None => return Err(bad(format!("no user {:?}", context.user))),
        };
        let ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => decode("certificate-authority-data", data)?,
            (None, Some(p)) => read(p)?,
            (None, None) => return Err(bad("the cluster has no certificate authority".into())),
        };
        let cert = match (&user.client_certificate_data, &user.client_certificate) {
            (Some(data), _) => Some(decode("client-certificate-data", data)?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let key = match (&user.client_key_data, &user.client_key) {
            (Some(data), _) => Some(decode("client-key-data", data)?),
            (None, Some(p)) => Some(read(p)?),
            (None, None) => None,
        };
        let auth = match (&user.token, &user.token_file, cert, key) {
            (Some(t), _, _, _) => Auth::Token(t.clone()),
            (None, Some(p), _, _) => Auth::Token(read(p)?.trim().to_owned()),
            (None, None, Some(cert_pem), Some(key_pem)) => Auth::Certificate { cert_pem, key_pem },
            (None, None, Some(_), None) => {
                return Err(bad("a client certificate without its key".into()));
            }
            _ => return Err(bad(format!("user {:?} has no credentials", context.user))),
        };
        Ok(Config {
            server: cluster.server.clone(),
            ca_pem,
            auth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("bosun-kubeconfig-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_the_current_context_with_inline_data_and_files() {
        let dir = tempdir("ok");
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        write(&dir, "ca.pem", "CA-FROM-FILE");
        let p = write(
            &dir,
            "config",
            &format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: two\nclusters:\n\
                 - name: c1\n  cluster:\n    server: https://a:1\n    certificate-authority-data: {}\n\
                 - name: c2\n  cluster:\n    server: https://b:2\n    certificate-authority: ca.pem\n\
                 users:\n- name: u1\n  user:\n    token: t1\n\
                 - name: u2\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n\
                 contexts:\n- name: one\n  context: {{cluster: c1, user: u1}}\n\
                 - name: two\n  context:\n    cluster: c2\n    user: u2\n",
                b64("CA"),
                b64("CERT"),
                b64("KEY"),
            ),
        );
        let c = Config::from_kubeconfig(&p).unwrap();
        assert_eq!(c.server, "https://b:2");
        assert_eq!(c.ca_pem, "CA-FROM-FILE");
        match c.auth {
            Auth::Certificate { cert_pem, key_pem } => {
                assert_eq!((cert_pem.as_str(), key_pem.as_str()), ("CERT", "KEY"));
            }
            Auth::Token(_) => panic!("expected a certificate"),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn names_what_is_missing() {
        let dir = tempdir("bad");
        let p = write(
            &dir,
            "config",
            "current-context: x\ncontexts:\n- name: x\n  context: {cluster: nope, user: u}\n",
        );
        let e = Config::from_kubeconfig(&p).unwrap_err().to_string();
        assert!(e.contains("no cluster \"nope\""), "{e}");
        let p = write(&dir, "config2", "clusters: [");
        let e = Config::from_kubeconfig(&p).unwrap_err().to_string();
        assert!(e.contains("config2"), "{e}");
        let e = Config::from_kubeconfig(&dir.join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
