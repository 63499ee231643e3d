//! Service-account tokens: signed JWTs (ES256, RFC 7519) as Kubernetes issues
//! them for a TokenRequest (`POST .../serviceaccounts/NAME/token`, what
//! `kubectl create token` sends). The signing key is `DIR/pki/sa.key`
//! (PKCS#8), made on first start. A token names the account's uid, so a
//! token outlives neither the account nor its re-creation under the same
//! name: the authenticator reads the account on every request.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bosun_api::resource::{self, Resource};
use bosun_api::time::format_time;
use bosun_api::{Cause, Status};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

use crate::ServerError;
use crate::auth::User;
use crate::objects::{ApiResult, decode, key, store_error};
use crate::route::Target;

/// The issuer Kubernetes clusters commonly use; also the default audience.
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Kubernetes' default lifetime of a requested token, and its minimum.
const DEFAULT_SECONDS: i64 = 3600;
const MIN_SECONDS: i64 = 600;
/// Longer requests are cut to this (as kube-apiserver's
/// `--service-account-max-token-expiration` would).
const MAX_SECONDS: i64 = 366 * 24 * 3600;

/// Signs and verifies service-account tokens.
pub(crate) struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    /// Names the key in the header (the hash of its public half).
    kid: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn pki_error(e: impl std::fmt::Display) -> ServerError {
    ServerError::Pki {
        what: "service-account signing key",
        reason: e.to_string(),
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

impl Signer {
    /// Loads `dir/pki/sa.key`, making it on first start.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Signer, ServerError> {
        let path = dir.join("pki").join("sa.key");
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| pki_error("cannot generate a key"))?;
                crate::pki::write_private(&path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
            Err(source) => return Err(ServerError::Io { path, source }),
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| pki_error(format!("{}: {e}", path.display())))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = B64.encode(&digest.as_ref()[..16]);
        Ok(Signer { key, rng, kid })
    }

    /// A token for the account `claims` names, for `audiences`, valid from
    /// `now` until `exp`.
    pub(crate) fn issue(
        &self,
        claims: &Claims,
        audiences: &[String],
        now: i64,
        exp: i64,
    ) -> Result<String, Status> {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let payload = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "exp": exp,
            "kubernetes.io": {
                "namespace": claims.namespace,
                "serviceaccount": {"name": claims.name, "uid": claims.uid},
            },
        });
        let signed = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(payload.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signed.as_bytes())
            .map_err(|_| Status::internal("signing the token failed"))?;
        Ok(format!("{signed}.{}", B64.encode(sig.as_ref())))
    }

    /// The account a token names, if this key signed it, it is valid at
    /// `now` and meant for this server. Says nothing about why not: a 401
    /// never does.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Option<Claims> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64.decode(h).ok()?).ok()?;
        if header["alg"] != "ES256" {
            return None;
        }
        let sig = B64.decode(s).ok()?;
        let signed = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &sig)
            .ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(p).ok()?).ok()?;
        let exp = claims["exp"].as_i64()?;
        let nbf = claims["nbf"].as_i64().unwrap_or(i64::MIN);
        if claims["iss"] != ISSUER || now >= exp || now < nbf {
            return None;
        }
        let for_us = match &claims["aud"] {
            Value::String(a) => a == ISSUER,
            Value::Array(a) => a.iter().any(|a| a == ISSUER),
            _ => false,
        };
        if !for_us {
            return None;
        }
        let k = &claims["kubernetes.io"];
        let got = Claims {
            namespace: k["namespace"].as_str()?.to_owned(),
            name: k["serviceaccount"]["name"].as_str()?.to_owned(),
            uid: k["serviceaccount"]["uid"].as_str()?.to_owned(),
        };
        let sub = format!("system:serviceaccount:{}:{}", got.namespace, got.name);
        (claims["sub"] == sub.as_str()).then_some(got)
    }
}

/// TokenRequest as a resource, for parsing bodies and the messages of errors
/// (it is served only as the subresource, so it is not in the table).
pub(crate) static TOKEN_REQUEST: Resource = Resource {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenRequest",
    plural: "tokenrequests",
    singular: "tokenrequest",
    short_names: &[],
    namespaced: true,
    categories: &[],
    subresources: &[],
    verbs: &["create"],
    fields: &[],
};

fn accounts() -> &'static Resource {
    resource::find("", "v1", "serviceaccounts").expect("in the table")
}

/// The user of a service-account token, if it verifies and its account still
/// exists with the uid it names.
pub(crate) async fn user(state: &crate::State, token: &str, now: i64) -> Option<User> {
    let claims = state.signer.verify(token, now)?;
    let res = accounts();
    let kv = state
        .store
        .get(&key(res, Some(&claims.namespace), &claims.name), None)
        .await
        .ok()??;
    let sa = decode(&kv).ok()?;
    if sa["metadata"]["uid"] != claims.uid.as_str()
        || !sa["metadata"]["deletionTimestamp"].is_null()
    {
        return None;
    }
    Some(User {
        name: format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{}", claims.namespace),
            "system:authenticated".to_owned(),
        ],
    })
}

/// `POST .../serviceaccounts/NAME/token`: a TokenRequest answered with its
/// `status.token` and `status.expirationTimestamp`.
pub(crate) async fn token_request(
    state: &crate::State,
    t: &Target,
    name: &str,
    mut request: Value,
    now: i64,
) -> ApiResult<Value> {
    let res = t.res;
    let ns = t.namespace.as_deref().unwrap_or_default();
    let kv = state
        .store
        .get(&key(res, Some(ns), name), None)
        .await
        .map_err(|e| store_error(e, res, name))?
        .ok_or_else(|| Status::not_found(res, name))?;
    let sa = decode(&kv)?;
    let uid = sa["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let spec = &request["spec"];
    let invalid = |field: &str, value: &str, why: &str| {
        Status::invalid(
            &TOKEN_REQUEST,
            name,
            vec![Cause::invalid(field, value, why)],
        )
    };
    let seconds = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_SECONDS,
        v => match v.as_i64() {
            Some(s) if s >= MIN_SECONDS => s.min(MAX_SECONDS),
            _ => {
                return Err(invalid(
                    "spec.expirationSeconds",
                    &v.to_string(),
                    "may not specify a duration less than 10 minutes",
                ));
            }
        },
    };
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| invalid("spec.audiences", "", "must be strings"))?,
        _ => vec![ISSUER.to_owned()],
    };
    if !spec["boundObjectRef"].is_null() {
        return Err(invalid(
            "spec.boundObjectRef",
            "",
            "tokens bound to objects are not supported yet",
        ));
    }
    let exp = now + seconds;
    let claims = Claims {
        namespace: ns.to_owned(),
        name: name.to_owned(),
        uid,
    };
    let token = state.signer.issue(&claims, &audiences, now, exp)?;
    request["apiVersion"] = "authentication.k8s.io/v1".into();
    request["kind"] = "TokenRequest".into();
    request["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": format_time(now)});
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = seconds.into();
    request["status"] = json!({"token": token, "expirationTimestamp": format_time(exp)});
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn tokens_verify_only_while_valid_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("pki")).unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let now = 1_795_000_000;
        let t = signer
            .issue(&claims(), &[ISSUER.to_owned()], now, now + 600)
            .unwrap();
        assert_eq!(signer.verify(&t, now + 1), Some(claims()));
        // Expired, and not yet valid.
        assert_eq!(signer.verify(&t, now + 600), None);
        assert_eq!(signer.verify(&t, now - 1), None);
        // The same key after a restart; another key refuses it.
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.verify(&t, now), Some(claims()));
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("pki")).unwrap();
        assert_eq!(
            Signer::load_or_create(other.path())
                .unwrap()
                .verify(&t, now),
            None
        );
        // A payload changed under the same signature.
        let parts: Vec<&str> = t.split('.').collect();
        let mut payload: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        payload["kubernetes.io"]["serviceaccount"]["name"] = "admin".into();
        payload["sub"] = "system:serviceaccount:ns:admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(signer.verify(&forged, now), None);
        // "alg: none" and garbage.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(signer.verify(&none, now), None);
        assert_eq!(signer.verify("a.b.c", now), None);
        assert_eq!(signer.verify("", now), None);
        // Meant for another audience.
        let t = signer
            .issue(&claims(), &["vault".to_owned()], now, now + 600)
            .unwrap();
        assert_eq!(signer.verify(&t, now), None);
    }
}
