//! Pull from and push to any OCI registry, into and out of the local image
//! store ([`ImageStore`]).
//!
//! HTTPS unless the registry is on loopback or the caller says `insecure`;
//! Docker Hub's name (`docker.io`) maps to its API host. Blobs move three at
//! a time, straight between the network and the content store (verified by
//! digest, never held whole in memory); a transfer that breaks is retried
//! with back-off, a download resuming with `Range` where the registry allows.
//!
//! [`ImageStore`]: bosun_image::ImageStore

mod auth;
mod error;
mod pull;
mod push;
mod session;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bosun_oci::Digest;
use reqwest::Url;

pub use auth::Credentials;
pub use error::ClientError;

use session::Session;

/// Transfers at once per image.
const PARALLEL: usize = 3;
/// Tries per blob transfer, with back-off in between.
const ATTEMPTS: u32 = 4;

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Plain HTTP for every registry (loopback registries get it anyway).
    pub insecure: bool,
    /// Credentials for every registry this client talks to.
    pub credentials: Option<Credentials>,
    /// Back-off before the first retry (doubled each time); one second when
    /// `None`. Tests shorten it.
    pub retry_delay: Option<Duration>,
}

/// A client for pulls and pushes; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    options: ClientOptions,
}

/// The platform to pick from a multi-platform image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

impl Default for Platform {
    fn default() -> Self {
        Self {
            os: bosun_image::manifest::HOST_OS.to_owned(),
            arch: bosun_image::manifest::HOST_ARCH.to_owned(),
        }
    }
}

impl FromStr for Platform {
    type Err = ClientError;

    /// `os/arch`, as `--platform` takes it.
    fn from_str(s: &str) -> Result<Self, ClientError> {
        match s.split('/').collect::<Vec<_>>().as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
            }),
            _ => Err(ClientError::Invalid(format!(
                "platform {s:?}: want OS/ARCH, such as linux/amd64"
            ))),
        }
    }
}

/// How a blob got to where it had to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its bytes went over the network.
    Transferred,
    /// The other side had it already.
    Present,
    /// The registry linked it from another repository (`from`).
    Mounted(String),
}

/// What a pull or push reports as it goes, per blob. Called from several
/// tasks at once.
pub trait Progress: Send + Sync {
    fn start(&self, digest: &Digest, size: u64);
    fn advance(&self, digest: &Digest, bytes: u64);
    fn finish(&self, digest: &Digest, outcome: &Outcome);
    fn retry(&self, digest: &Digest, attempt: u32, error: &ClientError);
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &Digest, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn finish(&self, _: &Digest, _: &Outcome) {}
    fn retry(&self, _: &Digest, _: u32, _: &ClientError) {}
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("bosun/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Between reads, not for a whole transfer: layers can take long.
            .read_timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Invalid(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, options })
    }

    fn session(&self, registry: &str, repo: &str, actions: &str) -> Result<Session, ClientError> {
        let base = endpoint(registry, self.options.insecure)?;
        let host = base.host_str().unwrap_or(registry);
        let target = match base.port() {
            Some(port) => format!("{host}:{port}/{repo}"),
            None => format!("{host}/{repo}"),
        };
        Ok(Session::new(
            self.http.clone(),
            base,
            target,
            repo,
            self.options.credentials.clone(),
            actions,
        ))
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let first = self.options.retry_delay.unwrap_or(Duration::from_secs(1));
        first * 2u32.pow(attempt.saturating_sub(1).min(5))
    }
}

/// The API base URL of a registry named in a reference.
fn endpoint(registry: &str, insecure: bool) -> Result<Url, ClientError> {
    let host = match registry {
        // Docker Hub's references say docker.io; its API lives elsewhere.
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    };
    let scheme = if insecure || is_loopback(host) {
        "http"
    } else {
        "https"
    };
    Url::parse(&format!("{scheme}://{host}/"))
        .map_err(|e| ClientError::Invalid(format!("registry {registry:?}: {e}")))
}

/// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Runs `work` for each item, at most [`PARALLEL`] at once; the first error
/// cancels the rest.
async fn for_each_parallel<T, F, Fut>(items: Vec<T>, work: F) -> Result<(), ClientError>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let limit = limit.clone();
        let fut = work(item);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            fut.await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(ClientError::Invalid(format!("transfer task failed: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_docker_rules() {
        assert_eq!(
            endpoint("docker.io", false).unwrap().as_str(),
            "https://registry-1.docker.io/"
        );
        assert_eq!(
            endpoint("localhost:5000", false).unwrap().as_str(),
            "http://localhost:5000/"
        );
        assert_eq!(
            endpoint("127.0.0.1:5000", false).unwrap().as_str(),
            "http://127.0.0.1:5000/"
        );
        assert_eq!(
            endpoint("[::1]:5000", false).unwrap().as_str(),
            "http://[::1]:5000/"
        );
        assert_eq!(
            endpoint("quay.io", false).unwrap().as_str(),
            "https://quay.io/"
        );
        assert_eq!(
            endpoint("registry.lan:5000", true).unwrap().as_str(),
            "http://registry.lan:5000/"
        );
    }

    #[test]
    fn platforms() {
        assert_eq!(
            "linux/arm64".parse::<Platform>().unwrap(),
            Platform {
                os: "linux".into(),
                arch: "arm64".into()
            }
        );
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/".parse::<Platform>().is_err());
    }
}
