//! Registry authentication as registries ask for it: a `WWW-Authenticate`
//! challenge on a 401, answered with basic credentials or with a bearer
//! token fetched from the realm it names; credentials from the command line
//! or from Docker's `config.json`.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// `USER:PASSWORD`, as `--creds` takes it (the password may contain `:`).
    pub fn parse(s: &str) -> Option<Self> {
        let (username, password) = s.split_once(':')?;
        (!username.is_empty()).then(|| Self {
            username: username.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The entry for `registry` (a host, with its port if any) in a Docker
    /// `config.json`'s `auths`, whose keys may be bare hosts or URLs; Docker
    /// Hub's is `https://index.docker.io/v1/`. `Ok(None)` when the file or
    /// the entry is missing. Credential helpers are not consulted.
    pub fn from_docker_config(path: &Path, registry: &str) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
            return Ok(None);
        };
        let hub = matches!(
            registry,
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        );
        for (key, entry) in auths {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or_default();
            let matches = host == registry
                || (hub
                    && matches!(
                        host,
                        "docker.io" | "index.docker.io" | "registry-1.docker.io"
                    ));
            if !matches {
                continue;
            }
            if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
                let decoded = STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("{}: auths.{key}.auth: {e}", path.display()))?;
                let text = String::from_utf8_lossy(&decoded);
                return Ok(Self::parse(&text));
            }
            if let (Some(u), Some(p)) = (
                entry.get("username").and_then(|v| v.as_str()),
                entry.get("password").and_then(|v| v.as_str()),
            ) {
                return Ok(Some(Self {
                    username: u.to_owned(),
                    password: p.to_owned(),
                }));
            }
        }
        Ok(None)
    }

    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }
}

/// What a `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub(crate) fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = auth_params(rest);
        if scheme.eq_ignore_ascii_case("basic") {
            Some(Challenge::Basic)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            })
        } else {
            None
        }
    }
}

/// `key="value", key=token, …` with quoted values that may hold commas
/// (`scope="repository:a:pull,push"`) and backslash escapes.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        out.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://x/token , service = s"),
            Some(Challenge::Bearer {
                realm: "http://x/token".into(),
                service: Some("s".into()),
                scope: None,
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn credentials_from_the_command_line_and_docker_config() {
        let c = Credentials::parse("me:pa:ss").unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("me", "pa:ss"));
        assert!(Credentials::parse("nopassword").is_none());
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "Debug hides the password"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let hub = STANDARD.encode("hubuser:hubpass");
        let local = STANDARD.encode("u:p");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{hub}"}},"localhost:5000":{{"auth":"{local}"}}}}}}"#
            ),
        )
        .unwrap();
        let got = Credentials::from_docker_config(&path, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(got.username, "hubuser");
        let got = Credentials::from_docker_config(&path, "localhost:5000")
            .unwrap()
            .unwrap();
        assert_eq!(got.password, "p");
        assert_eq!(
            Credentials::from_docker_config(&path, "quay.io").unwrap(),
            None
        );
        assert_eq!(
            Credentials::from_docker_config(&dir.path().join("missing"), "x").unwrap(),
            None
        );
    }
}
