//! One repository on one registry: its base URL, and the authorization the
//! registry asked for, obtained on the first 401 and reused afterwards.

use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use tokio::sync::Mutex;

use super::ClientError;
use super::auth::{Challenge, Credentials};

#[derive(Debug)]
pub(crate) struct Session {
    http: reqwest::Client,
    base: Url,
    /// `registry/repository`, for messages.
    target: String,
    repo: String,
    creds: Option<Credentials>,
    /// Token scopes to ask for: this repository's, and other repositories'
    /// `pull` when blobs may be mounted from them.
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
}

impl Session {
    pub(crate) fn new(
        http: reqwest::Client,
        base: Url,
        target: String,
        repo: &str,
        creds: Option<Credentials>,
        actions: &str,
    ) -> Self {
        Self {
            http,
            base,
            target,
            repo: repo.to_owned(),
            creds,
            scopes: vec![format!("repository:{repo}:{actions}")],
            authorization: Mutex::new(None),
        }
    }

    /// Also asks for `pull` on `repo` (a mount source) when a token is needed.
    pub(crate) fn add_pull_scope(&mut self, repo: &str) {
        self.scopes.push(format!("repository:{repo}:pull"));
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// `/v2/<repo>/<rest>` on this registry.
    pub(crate) fn url(&self, rest: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("/v2/{}/{rest}", self.repo));
        url
    }

    /// A `Location` header (absolute or relative) against this registry.
    pub(crate) fn resolve(&self, location: &str, what: &str) -> Result<Url, ClientError> {
        self.base
            .join(location)
            .map_err(|e| self.protocol(what, format!("bad Location {location:?}: {e}")))
    }

    /// Sends the request `make` builds, with the current authorization; on a
    /// 401, answers the challenge and sends a fresh request once more
    /// (`make` is called again, so a streamed body is made anew).
    pub(crate) async fn send(
        &self,
        what: &str,
        make: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let mut answered = false;
        loop {
            let mut request = make(&self.http);
            if let Some(value) = self.authorization.lock().await.clone() {
                request = request.header(AUTHORIZATION, value);
            }
            let response = request.send().await.map_err(|e| self.http_error(what, e))?;
            if response.status() != StatusCode::UNAUTHORIZED || answered {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            self.answer(challenge.as_deref(), what).await?;
            answered = true;
        }
    }

    async fn answer(&self, challenge: Option<&str>, what: &str) -> Result<(), ClientError> {
        let unauthorized = |hint: &str| ClientError::Unauthorized {
            target: self.target.clone(),
            what: what.to_owned(),
            hint: hint.to_owned(),
        };
        let value = match challenge.and_then(Challenge::parse) {
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic_header(),
                None => {
                    return Err(unauthorized(
                        "the registry wants a user name and password (--creds USER:PASSWORD, \
                         or an auths entry in ~/.docker/config.json)",
                    ));
                }
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let token = self
                    .fetch_token(&realm, service.as_deref(), scope, what)
                    .await?;
                format!("Bearer {token}")
            }
            None => {
                return Err(unauthorized(&format!(
                    "the registry's challenge is not one bosun answers: {:?}",
                    challenge.unwrap_or("none")
                )));
            }
        };
        *self.authorization.lock().await = Some(value);
        Ok(())
    }

    /// A bearer token from the realm, with basic credentials when we have
    /// them (anonymous otherwise, which registries grant for public pulls).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        challenge_scope: Option<String>,
        what: &str,
    ) -> Result<String, ClientError> {
        let mut url = Url::parse(realm)
            .map_err(|e| self.protocol(what, format!("bad token realm {realm:?}: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(service) = service {
                q.append_pair("service", service);
            }
            for scope in &self.scopes {
                q.append_pair("scope", scope);
            }
            if let Some(s) = challenge_scope.filter(|s| !self.scopes.contains(s)) {
                q.append_pair("scope", &s);
            }
        }
        let what_token = format!("{what}: token from {realm}");
        let mut request = self.http.get(url);
        if let Some(c) = &self.creds {
            request = request.header(AUTHORIZATION, c.basic_header());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.http_error(&what_token, e))?;
        if response.status() == StatusCode::UNAUTHORIZED
            || response.status() == StatusCode::FORBIDDEN
        {
            return Err(ClientError::Unauthorized {
                target: self.target.clone(),
                what: what_token,
                hint: if self.creds.is_some() {
                    "the token service refused the credentials".to_owned()
                } else {
                    "the token service wants credentials (--creds USER:PASSWORD)".to_owned()
                },
            });
        }
        let response = self.check(response, &what_token, &[StatusCode::OK]).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| self.http_error(&what_token, e))?;
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| self.protocol(&what_token, format!("token response is not JSON: {e}")))?;
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .ok_or_else(|| self.protocol(&what_token, "token response has no token".to_owned()))
    }

    /// Passes a response with one of the `expected` statuses; otherwise
    /// turns the registry's error body into a [`ClientError::Registry`].
    pub(crate) async fn check(
        &self,
        response: Response,
        what: &str,
        expected: &[StatusCode],
    ) -> Result<Response, ClientError> {
        let status = response.status();
        if expected.contains(&status) {
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        let errors = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let field = |k: &str| e.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                (field("code"), field("message"))
            })
            .collect();
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized {
                target: self.target.clone(),
                what: what.to_owned(),
                hint: "the registry refused the credentials".to_owned(),
            });
        }
        Err(ClientError::Registry {
            target: self.target.clone(),
            what: what.to_owned(),
            status: status.as_u16(),
            errors,
        })
    }

    pub(crate) fn http_error(&self, what: &str, source: reqwest::Error) -> ClientError {
        ClientError::Http {
            target: self.target.clone(),
            what: what.to_owned(),
            // The URL is already in our message; reqwest's would repeat it.
            source: source.without_url(),
        }
    }

    pub(crate) fn protocol(&self, what: &str, reason: String) -> ClientError {
        ClientError::Protocol {
            target: self.target.clone(),
            what: what.to_owned(),
            reason,
        }
    }
}
