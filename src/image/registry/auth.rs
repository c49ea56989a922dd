//! Who we are to a registry: credentials (flags or `~/.docker/config.json`) and the
//! `WWW-Authenticate` challenges a registry answers 401 with.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use std::path::PathBuf;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// Where they came from, for the narration: `--username`, `~/.docker/config.json`.
    pub from: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in a debug dump.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({} from {})", self.username, self.from)
    }
}

impl Credentials {
    /// `Basic base64(user:pass)`, the value of an `Authorization` header.
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The keys under which `docker login` may have stored `domain`'s credentials.
fn config_keys(domain: &str) -> Vec<String> {
    let mut hosts = vec![domain.to_string()];
    if domain == super::super::reference::DOCKER_HUB {
        hosts = vec![
            "https://index.docker.io/v1/".to_string(),
            "index.docker.io".to_string(),
            "docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ];
    }
    let mut keys = Vec::new();
    for h in hosts {
        keys.push(h.clone());
        for scheme in ["https://", "http://"] {
            keys.push(format!("{scheme}{h}"));
            keys.push(format!("{scheme}{h}/v1/"));
            keys.push(format!("{scheme}{h}/v2/"));
        }
    }
    keys
}

/// What `docker login` stored for `domain`, if anything. A config file that exists but cannot
/// be read or parsed is an error (silently pulling anonymously would be confusing).
pub fn from_docker_config(domain: &str) -> Result<Option<Credentials>> {
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    lookup(&text, domain, &path.display().to_string())
}

/// Find `domain` in the text of a docker config.json.
pub fn lookup(config: &str, domain: &str, from: &str) -> Result<Option<Credentials>> {
    let v: serde_json::Value = serde_json::from_str(config)
        .with_context(|| format!("{from} is not valid JSON: fix or remove it"))?;
    let Some(auths) = v.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    for key in config_keys(domain) {
        let Some(entry) = auths.get(&key) else {
            continue;
        };
        if let Some(auth) = entry
            .get("auth")
            .and_then(|a| a.as_str())
            .filter(|a| !a.is_empty())
        {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| anyhow!("{from}: auths.{key}.auth is not base64"))?;
            let raw = String::from_utf8(raw)
                .map_err(|_| anyhow!("{from}: auths.{key}.auth is not UTF-8"))?;
            let Some((user, pass)) = raw.split_once(':') else {
                bail!("{from}: auths.{key}.auth does not decode to user:password");
            };
            return Ok(Some(Credentials {
                username: user.to_string(),
                password: pass.to_string(),
                from: from.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(|u| u.as_str()),
            entry.get("password").and_then(|p| p.as_str()),
        ) {
            return Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
                from: from.to_string(),
            }));
        }
    }
    Ok(None)
}

/// One `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Get a token from `realm` (`?service=...&scope=...`), then send `Authorization: Bearer`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    /// Send `Authorization: Basic` with a user name and password.
    Basic { realm: Option<String> },
}

/// Parse `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="..."`
/// (quoted values may hold commas: `scope="repository:a:pull,push"`).
pub fn parse_challenge(header: &str) -> Result<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = get("realm")
            .ok_or_else(|| anyhow!("the registry's Bearer challenge has no realm: {header:?}"))?;
        Ok(Challenge::Bearer {
            realm,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Ok(Challenge::Basic {
            realm: get("realm"),
        })
    } else {
        bail!("the registry asks for {scheme:?} authentication, which stepctr does not speak (Bearer and Basic)")
    }
}

fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let name = s[start..i].trim().to_string();
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i += 1;
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
                value.push_str(&s[i..i + ch_len]);
                i += ch_len;
            }
            i += 1;
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value = s[start..i].trim().to_string();
        }
        if !name.is_empty() {
            out.push((name, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="basic-realm""#).unwrap(),
            Challenge::Basic {
                realm: Some("basic-realm".into())
            }
        );
        assert_eq!(
            parse_challenge("basic").unwrap(),
            Challenge::Basic { realm: None }
        );
        assert!(parse_challenge("Bearer service=x").is_err());
        assert!(parse_challenge("Negotiate abc").is_err());
    }

    #[test]
    fn docker_config_credentials_are_found_by_host() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let cfg = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64.encode("hub:pw1")},
            "localhost:5000": {"auth": b64.encode("me:p:w")},
            "ghcr.io": {"username": "u", "password": "p"},
            "empty.io": {},
        }})
        .to_string();
        let hub = lookup(&cfg, "docker.io", "cfg").unwrap().unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "pw1")
        );
        let local = lookup(&cfg, "localhost:5000", "cfg").unwrap().unwrap();
        assert_eq!(
            (local.username.as_str(), local.password.as_str()),
            ("me", "p:w")
        );
        assert_eq!(
            lookup(&cfg, "ghcr.io", "cfg").unwrap().unwrap().username,
            "u"
        );
        assert!(lookup(&cfg, "empty.io", "cfg").unwrap().is_none());
        assert!(lookup(&cfg, "quay.io", "cfg").unwrap().is_none());
        assert!(lookup("{", "quay.io", "cfg").is_err());
        assert!(lookup(r#"{"auths":{"q.io":{"auth":"!!"}}}"#, "q.io", "cfg").is_err());
        assert_eq!(
            local.basic_header(),
            format!("Basic {}", b64.encode("me:p:w"))
        );
        assert!(!format!("{local:?}").contains("p:w"));
    }
}
