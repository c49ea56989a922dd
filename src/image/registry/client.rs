//! Talking to one repository of one registry: every request narrated, the authentication
//! dance (401 → challenge → token or basic → retry), redirects followed by hand (so each hop is
//! shown), and retries with backoff on 5xx, 429 and dropped connections.

use super::auth::{self, Challenge, Credentials};
use super::Say;
use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Response, StatusCode, Url};
use std::cell::RefCell;
use std::time::{Duration, Instant};

/// How many times one request is sent before giving up on 5xx/429/connection errors.
pub const MAX_ATTEMPTS: u32 = 5;
/// The longest we wait between two attempts (and the most of a Retry-After we honour).
const MAX_BACKOFF: Duration = Duration::from_secs(8);
const MAX_REDIRECTS: u32 = 5;

pub struct Client<'a> {
    http: reqwest::Client,
    /// `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub base: Url,
    /// The repository path: `library/alpine`.
    pub repo: String,
    creds: Option<Credentials>,
    /// The `Authorization` header the registry accepted (or we believe it will).
    auth: RefCell<Option<HeaderValue>>,
    pub say: &'a Say<'a>,
}

/// `200 OK`, `401 Unauthorized`.
pub fn status_line(s: StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

/// An error and its causes on one line, without reqwest's wrappers that only repeat the URL
/// (`error sending request for url (...)`, `client error (Connect)`).
pub fn short_error(e: &reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    let kept: Vec<&String> = parts
        .iter()
        .filter(|p| !p.starts_with("error sending request") && !p.starts_with("client error ("))
        .collect();
    if kept.is_empty() {
        parts.join(": ")
    } else {
        kept.iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(": ")
    }
}

/// Backoff before attempt `n` (1-based): 250 ms, 500 ms, 1 s, 2 s, ...
pub fn backoff(n: u32) -> Duration {
    (Duration::from_millis(250) * 2u32.saturating_pow(n.saturating_sub(1))).min(MAX_BACKOFF)
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_BACKOFF))
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl<'a> Client<'a> {
    pub fn new(
        say: &'a Say<'a>,
        scheme: &str,
        host: &str,
        repo: &str,
        creds: Option<Credentials>,
    ) -> Result<Client<'a>> {
        let base = Url::parse(&format!("{scheme}://{host}"))
            .with_context(|| format!("registry address {scheme}://{host}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("stepctr/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            // Proxies from the environment would make the narration lie about where requests go.
            .no_proxy()
            .build()
            .map_err(|e| anyhow!("set up the HTTP client: {}", short_error(&e)))?;
        Ok(Client {
            http,
            base,
            repo: repo.to_string(),
            creds,
            auth: RefCell::new(None),
            say,
        })
    }

    pub fn url(&self, kind: &str, reference: &str) -> Result<Url> {
        self.base
            .join(&format!("/v2/{}/{kind}/{reference}", self.repo))
            .with_context(|| format!("build the URL of {kind}/{reference}"))
    }

    /// GET `url` from the registry, authenticating when challenged. The response may have any
    /// status but 401 (that is turned into an error) and 5xx/429/3xx (retried or followed).
    pub async fn get(&self, url: Url, headers: HeaderMap, why: &str) -> Result<Response> {
        let mut challenged = 0;
        loop {
            let auth = self.auth.borrow().clone();
            let resp = self.send(url.clone(), &headers, auth, why).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            challenged += 1;
            let header = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            let Some(header) = header else {
                bail!("{url} answered 401 Unauthorized without saying how to authenticate (no WWW-Authenticate header)");
            };
            if challenged > 1 {
                let who = match &self.creds {
                    Some(c) => format!("as {} (from {})", c.username, c.from),
                    None => "anonymously".to_string(),
                };
                bail!(
                    "access to {} denied {who}: the registry still answers 401 ({header}); check \
                     the name and your credentials (--username/--password or docker login)",
                    self.repo
                );
            }
            let challenge = auth::parse_challenge(&header)?;
            self.authenticate(&challenge).await?;
        }
    }

    /// Answer a challenge: fetch a token, or use basic credentials.
    async fn authenticate(&self, challenge: &Challenge) -> Result<()> {
        match challenge {
            Challenge::Basic { realm } => {
                let Some(c) = &self.creds else {
                    bail!(
                        "{} asks for a user name and password (Basic auth{}): pass --username \
                         and --password (or --password-stdin), or log in with docker login",
                        self.base,
                        realm
                            .as_deref()
                            .map(|r| format!(", realm {r:?}"))
                            .unwrap_or_default()
                    );
                };
                self.say.note(&format!(
                    "the registry wants Basic auth: sending {}'s user name and password (from {})",
                    c.username, c.from
                ));
                let v = HeaderValue::from_str(&c.basic_header())
                    .map_err(|_| anyhow!("the credentials hold characters HTTP cannot carry"))?;
                *self.auth.borrow_mut() = Some(v);
                Ok(())
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope = scope
                    .clone()
                    .unwrap_or_else(|| format!("repository:{}:pull", self.repo));
                let mut url = Url::parse(realm)
                    .with_context(|| format!("the token server's address {realm:?}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    bail!("the token server's address {realm:?} is not http(s)");
                }
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", &scope);
                }
                let who = match &self.creds {
                    Some(c) => format!("as {} (from {})", c.username, c.from),
                    None => "anonymously".to_string(),
                };
                self.say.note(&format!(
                    "the registry wants a Bearer token for {scope}: asking its token server {who}"
                ));
                let basic = match &self.creds {
                    Some(c) => Some(HeaderValue::from_str(&c.basic_header()).map_err(|_| {
                        anyhow!("the credentials hold characters HTTP cannot carry")
                    })?),
                    None => None,
                };
                let resp = self
                    .send(url.clone(), &HeaderMap::new(), basic, "get a pull token")
                    .await?;
                let status = resp.status();
                if !status.is_success() {
                    let body = read_limited(resp, 4096).await.unwrap_or_default();
                    bail!(
                        "the token server {} refused a token {who} ({}{}): check --username/\
                         --password or docker login",
                        realm,
                        status_line(status),
                        registry_message(&body)
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    );
                }
                let body = read_limited(resp, 1 << 20).await?;
                let v: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
                    anyhow!("the token server {realm} answered something that is not JSON")
                })?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| anyhow!("the token server {realm} sent no token"))?;
                let hv = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                    anyhow!("the token server {realm} sent a token HTTP cannot carry")
                })?;
                *self.auth.borrow_mut() = Some(hv);
                Ok(())
            }
        }
    }

    /// One logical request: narrated attempts, redirects followed (the registry's own
    /// Authorization never leaves for another host), retries with backoff on connection errors,
    /// 5xx and 429.
    async fn send(
        &self,
        mut url: Url,
        headers: &HeaderMap,
        auth: Option<HeaderValue>,
        why: &str,
    ) -> Result<Response> {
        let origin = url.clone();
        let mut attempt = 0;
        let mut redirects = 0;
        let mut why = why.to_string();
        loop {
            attempt += 1;
            let mut req = self.http.get(url.clone()).headers(headers.clone());
            if let Some(a) = auth.as_ref().filter(|_| same_origin(&url, &origin)) {
                req = req.header(AUTHORIZATION, a.clone());
            }
            let start = Instant::now();
            let res = req.send().await;
            let took = start.elapsed();
            let shown = display_url(&url);
            let resp = match res {
                Err(e) => {
                    let msg = short_error(&e);
                    self.say.http("GET", &shown, Err(&msg), took, &why);
                    if attempt < MAX_ATTEMPTS {
                        let wait = backoff(attempt);
                        self.say.note(&format!(
                            "no answer (attempt {attempt} of {MAX_ATTEMPTS}): trying again in {:.2} s",
                            wait.as_secs_f64()
                        ));
                        tokio::time::sleep(wait).await;
                        why = "try again".to_string();
                        continue;
                    }
                    bail!("GET {shown}: {msg} (gave up after {attempt} attempts)");
                }
                Ok(r) => r,
            };
            let status = resp.status();
            self.say
                .http("GET", &shown, Ok(&status_line(status)), took, &why);
            if status.is_redirection() {
                if let Some(loc) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok()) {
                    redirects += 1;
                    if redirects > MAX_REDIRECTS {
                        bail!("GET {shown}: more than {MAX_REDIRECTS} redirects");
                    }
                    url = url
                        .join(loc)
                        .with_context(|| format!("GET {shown}: bad redirect {loc:?}"))?;
                    why = format!("follow the redirect ({})", status_line(status));
                    continue;
                }
            }
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            if transient && attempt < MAX_ATTEMPTS {
                let wait = retry_after(&resp).unwrap_or_else(|| backoff(attempt));
                self.say.note(&format!(
                    "{} (attempt {attempt} of {MAX_ATTEMPTS}): trying again in {:.2} s",
                    status_line(status),
                    wait.as_secs_f64()
                ));
                drop(resp);
                tokio::time::sleep(wait).await;
                why = "try again".to_string();
                continue;
            }
            if transient {
                bail!(
                    "GET {shown}: {} (gave up after {attempt} attempts)",
                    status_line(status)
                );
            }
            return Ok(resp);
        }
    }
}

/// A URL as narrated: without the query's secrets, if any ever held one (tokens are sent in
/// headers, but redirect targets to blob storage often carry signatures).
fn display_url(u: &Url) -> String {
    match u.query() {
        Some(q) if q.len() > 120 || q.contains("Signature") || q.contains("signature") => {
            let mut v = u.clone();
            v.set_query(Some("..."));
            v.to_string()
        }
        _ => u.to_string(),
    }
}

/// Read a whole (small) body, refusing more than `max` bytes.
pub async fn read_limited(mut resp: Response, max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        anyhow!(
            "read the answer of {}: {}",
            display_url(resp.url()),
            short_error(&e)
        )
    })? {
        if out.len() + chunk.len() > max {
            bail!(
                "the answer of {} is larger than {max} bytes: refusing it",
                display_url(resp.url())
            );
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The registry's own explanation in an error body: `{"errors":[{"code":..,"message":..}]}`.
pub fn registry_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errs = v.get("errors")?.as_array()?;
    let msgs: Vec<String> = errs
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            match (code, msg) {
                ("", m) => m.to_string(),
                (c, "") => c.to_string(),
                (c, m) => format!("{c}: {m}"),
            }
        })
        .filter(|m| !m.is_empty())
        .collect();
    if msgs.is_empty() {
        None
    } else {
        Some(msgs.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }

    #[test]
    fn registry_errors_are_read() {
        let b = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(
            registry_message(b).unwrap(),
            "MANIFEST_UNKNOWN: manifest unknown"
        );
        assert!(registry_message(b"<html>").is_none());
    }

    #[test]
    fn signed_redirect_urls_are_not_narrated_in_full() {
        let u = Url::parse("https://cdn.example/blob?X-Amz-Signature=abc").unwrap();
        assert_eq!(display_url(&u), "https://cdn.example/blob?...");
        let u = Url::parse("http://127.0.0.1:5000/v2/x/manifests/t").unwrap();
        assert_eq!(display_url(&u), "http://127.0.0.1:5000/v2/x/manifests/t");
    }
}
