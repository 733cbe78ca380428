//! The OCI distribution API, on reqwest, with a limit on everything read into memory:
//! authentication (a Basic challenge answered with the credentials, or a Bearer token fetched
//! from the challenge's realm), manifests by tag or digest and blobs as streams for pull, and
//! for push: blob checks, monolithic blob uploads streamed from the store, manifests. A
//! registry is untrusted input: a manifest, a token or an error body that does not end must
//! not make strata hold more than a few MiB (oci-client, which pushed before, read whole
//! answers).

use super::auth::Credentials;
use super::manifest::media;
use super::reference::ImageRef;
use super::registry::RegistryError;
use crate::digest::Digest;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::time::Duration;

/// The largest manifest or index read (the distribution spec asks registries to take 4 MiB).
pub const MAX_MANIFEST: usize = 4 << 20;
/// The largest token response read.
const MAX_TOKEN: usize = 1 << 20;
/// How much of an error body is read (for its message).
const MAX_ERROR_BODY: usize = 16 << 10;

/// What a session may do to its repository (the scope a Bearer token is asked for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Pull,
    Push,
}

/// One registry, authenticated for one repository.
pub struct Session {
    http: reqwest::Client,
    /// `scheme://host`.
    base: String,
    repository: String,
    /// The registry as the user named it, for messages.
    pub registry: String,
    user: Option<String>,
    access: Access,
    authorization: Option<HeaderValue>,
}

impl Session {
    /// Connect to `reference`'s registry over `scheme` (`http` or `https`, verifying
    /// certificates unless `accept_invalid`) and authenticate as the registry asks.
    pub async fn connect(
        reference: &ImageRef,
        credentials: Option<&Credentials>,
        scheme: &str,
        accept_invalid: bool,
        access: Access,
    ) -> Result<Session, RegistryError> {
        let registry = reference.registry().to_string();
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(accept_invalid)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| request_error(&registry, &e))?;
        let mut session = Session {
            http,
            base: format!("{scheme}://{}", reference.registry_host()),
            repository: reference.repository().to_string(),
            registry,
            user: credentials.map(|c| c.username.clone()),
            access,
            authorization: None,
        };
        let ping = session.send(session.request(Method::GET, &format!("{}/v2/", session.base))).await?;
        if ping.status() == StatusCode::UNAUTHORIZED {
            let challenge =
                ping.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
            session.authorization = Some(session.answer(&challenge, credentials).await?);
        }
        Ok(session)
    }

    /// The Authorization header that answers a `WWW-Authenticate` challenge.
    async fn answer(&self, challenge: &str, credentials: Option<&Credentials>) -> Result<HeaderValue, RegistryError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.is_empty() {
            // A 401 with no challenge: nothing to answer it with.
            return Err(self.auth_error());
        }
        let params = challenge_params(params);
        if scheme.eq_ignore_ascii_case("basic") {
            let c = credentials.ok_or_else(|| self.auth_error())?;
            return Ok(basic(c));
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(self.protocol(format!(
                "unsupported authentication scheme {:?}",
                crate::image::registry::from_server(scheme)
            )));
        }
        let realm = params.iter().find(|(k, _)| k == "realm").map(|(_, v)| v.clone());
        let realm = realm.ok_or_else(|| self.protocol("Bearer challenge without a realm".into()))?;
        let actions = match self.access {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        };
        let mut query = vec![("scope".to_string(), format!("repository:{}:{actions}", self.repository))];
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(("service".to_string(), service.clone()));
        }
        let mut request = self.http.get(&realm).query(&query);
        if let Some(c) = credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let res = request.send().await.map_err(|e| request_error(&self.registry, &e))?;
        match res.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(self.auth_error()),
            s => return Err(self.protocol(format!("token server answered {s}"))),
        }
        let body = read_capped(res, MAX_TOKEN).await.map_err(|e| self.too_large_or(e, "token response"))?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token =
            serde_json::from_slice(&body).map_err(|e| self.protocol(format!("token response is invalid: {e}")))?;
        let token =
            token.token.or(token.access_token).ok_or_else(|| self.protocol("token response has no token".into()))?;
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| self.protocol("token is not a header value".into()))
    }

    /// A request to `url` carrying the session's authorization.
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.authorization {
            Some(auth) => request.header(AUTHORIZATION, auth.clone()),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, RegistryError> {
        request.send().await.map_err(|e| request_error(&self.registry, &e))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v2/{}/{path}", self.base, self.repository)
    }

    /// The manifest or index `reference` names, verified against its digest when it has one.
    pub async fn manifest(&self, reference: &ImageRef) -> Result<(Vec<u8>, Digest), RegistryError> {
        let tag_or_digest = match reference.digest() {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or("latest").to_string(),
        };
        let request = self
            .request(Method::GET, &self.url(&format!("manifests/{tag_or_digest}")))
            .header(ACCEPT, media::ACCEPTED_MANIFESTS.join(", "));
        let res = self.send(request).await?;
        if !res.status().is_success() {
            return Err(self.status_error(res, &reference.to_string()).await);
        }
        let bytes = read_capped(res, MAX_MANIFEST).await.map_err(|e| self.too_large_or(e, "manifest"))?;
        let actual = Digest::of_bytes(&bytes);
        if let Some(expected) = reference.digest() {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    expected: expected.to_string(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok((bytes, actual))
    }

    /// A blob's response, to be read as a stream (its size and digest are the caller's to check).
    pub async fn blob(&self, digest: &Digest, reference: &ImageRef) -> Result<Response, RegistryError> {
        let res = self.send(self.request(Method::GET, &self.url(&format!("blobs/{digest}")))).await?;
        if !res.status().is_success() {
            return Err(self.status_error(res, &reference.to_string()).await);
        }
        Ok(res)
    }

    /// Whether the repository already holds blob `digest` (HEAD: no body to read).
    pub async fn has_blob(&self, digest: &Digest, reference: &ImageRef) -> Result<bool, RegistryError> {
        let res = self.send(self.request(Method::HEAD, &self.url(&format!("blobs/{digest}")))).await?;
        match res.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(res, &reference.to_string()).await),
        }
    }

    /// Upload blob `digest` of `size` bytes, streamed from `file`, in one PUT (the spec's
    /// monolithic upload: POST for an upload URL, then PUT the content to it with the digest).
    pub async fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        file: tokio::fs::File,
        reference: &ImageRef,
    ) -> Result<(), RegistryError> {
        let res = self.send(self.request(Method::POST, &self.url("blobs/uploads/"))).await?;
        if res.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(res, &reference.to_string()).await);
        }
        let location = res.headers().get(LOCATION).and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
        drop(res);
        // Relative (`/v2/...`) or absolute; it may carry the registry's own query already.
        let base = reqwest::Url::parse(&format!("{}/", self.base)).map_err(|_| self.protocol("bad base URL".into()))?;
        let mut url = match base.join(&location) {
            Ok(url) if !location.is_empty() => url,
            _ => {
                return Err(self
                    .protocol(format!("upload location {:?} is not a URL", super::registry::from_server(&location))))
            }
        };
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        // Our credentials go to the registry only, not to wherever it sends the upload.
        let same_origin = url.origin() == base.origin();
        let chunks = futures_util::stream::unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; 1 << 20];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), file))
                }
                Err(e) => Some((Err(e), file)),
            }
        });
        let body = reqwest::Body::wrap_stream(chunks);
        let request = if same_origin { self.request(Method::PUT, url.as_str()) } else { self.http.put(url) };
        let request = request.header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(body);
        let res = self.send(request).await?;
        if !res.status().is_success() {
            return Err(self.status_error(res, &reference.to_string()).await);
        }
        Ok(())
    }

    /// Put `bytes` (of `media_type`) as the manifest `tag_or_digest` names; returns the digest
    /// the registry says it stored them under (`Docker-Content-Digest`), when it says.
    pub async fn push_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Vec<u8>,
        reference: &ImageRef,
    ) -> Result<Option<String>, RegistryError> {
        let request = self
            .request(Method::PUT, &self.url(&format!("manifests/{tag_or_digest}")))
            .header(CONTENT_TYPE, media_type)
            .body(bytes);
        let res = self.send(request).await?;
        if !res.status().is_success() {
            return Err(self.status_error(res, &reference.to_string()).await);
        }
        Ok(res.headers().get("docker-content-digest").and_then(|h| h.to_str().ok()).map(str::to_string))
    }

    fn auth_error(&self) -> RegistryError {
        match &self.user {
            Some(user) => RegistryError::BadCredentials { registry: self.registry.clone(), user: user.clone() },
            None => RegistryError::AuthRequired { registry: self.registry.clone() },
        }
    }

    fn protocol(&self, detail: String) -> RegistryError {
        RegistryError::Protocol { registry: self.registry.clone(), detail }
    }

    fn too_large_or(&self, e: ReadError, what: &str) -> RegistryError {
        match e {
            ReadError::TooLarge(limit) => self.protocol(format!("the {what} is larger than {limit} bytes")),
            ReadError::Request(e) => request_error(&self.registry, &e),
        }
    }

    /// What a failed request means, from its status and the (first bytes of the) error body
    /// the distribution spec describes.
    async fn status_error(&self, res: Response, reference: &str) -> RegistryError {
        let status = res.status();
        let body = read_prefix(res, MAX_ERROR_BODY).await;
        let codes: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["errors"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e["code"].as_str().map(str::to_string))
            .collect();
        let has = |c: &str| codes.iter().any(|code| code == c);
        let (registry, reference) = (self.registry.clone(), reference.to_string());
        if status == StatusCode::UNAUTHORIZED || has("UNAUTHORIZED") {
            self.auth_error()
        } else if status == StatusCode::FORBIDDEN || has("DENIED") {
            RegistryError::Denied { registry, reference }
        } else if status == StatusCode::NOT_FOUND || has("MANIFEST_UNKNOWN") || has("NAME_UNKNOWN") {
            RegistryError::NotFound { registry, reference }
        } else {
            let text = String::from_utf8_lossy(&body);
            self.protocol(format!("HTTP {}: {}", status.as_u16(), crate::image::registry::from_server(&text)))
        }
    }
}

fn basic(c: &Credentials) -> HeaderValue {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password));
    HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|_| HeaderValue::from_static("Basic"))
}

/// `key="value", key=value` pairs of a challenge (values may hold commas inside quotes).
pub(crate) fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        out.push((key, value.to_string()));
        rest = remaining.trim_start().trim_start_matches(',');
    }
    out
}

enum ReadError {
    TooLarge(usize),
    Request(reqwest::Error),
}

/// A response's body, read to its end unless it goes past `limit` bytes.
async fn read_capped(mut res: Response, limit: usize) -> Result<Vec<u8>, ReadError> {
    if res.content_length().is_some_and(|len| len > limit as u64) {
        return Err(ReadError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(ReadError::Request)? {
        if body.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The first `limit` bytes of a response's body (all of it when shorter), for a message.
async fn read_prefix(mut res: Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())]);
        if body.len() == limit {
            break;
        }
    }
    body
}

/// A request that did not get an answer: the registry is unreachable (connect, timeout, TLS),
/// or the exchange broke; named by its root cause.
pub fn request_error(registry: &str, e: &reqwest::Error) -> RegistryError {
    let (registry, detail) = (registry.to_string(), root_cause(e));
    if e.is_connect() || e.is_timeout() {
        RegistryError::Unreachable { registry, detail }
    } else {
        RegistryError::Protocol { registry, detail }
    }
}

/// The innermost cause of an error (what went wrong on the wire, not the layers above it).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_as_registries_send_them() {
        let p = challenge_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p,
            [
                ("realm".to_string(), "https://auth.example/token".to_string()),
                ("service".to_string(), "registry.example".to_string()),
                ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ]
        );
        let p = challenge_params(r#"Realm=unquoted, service="s""#);
        assert_eq!(p, [("realm".to_string(), "unquoted".to_string()), ("service".to_string(), "s".to_string())]);
        assert!(challenge_params("").is_empty());
    }
}
