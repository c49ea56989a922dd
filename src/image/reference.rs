//! Image references as docker writes them, normalised the way docker/distribution does.
//!
//! ```text
//! alpine                      -> docker.io/library/alpine:latest
//! alpine:3.19                 -> docker.io/library/alpine:3.19
//! ghcr.io/o/r:t               -> ghcr.io/o/r:t
//! localhost:5000/x            -> localhost:5000/x:latest
//! name@sha256:<64 hex>        -> docker.io/library/name@sha256:<64 hex>
//! ```
//!
//! The grammar is distribution's `reference` package: the first path component is a registry
//! host when it contains a `.` or a `:`, is `localhost`, or has an upper-case letter (which a
//! repository path may not); otherwise the image lives on Docker Hub, where one-component names
//! are official images under `library/`.

use std::fmt;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's registry API host (docker.io itself serves the website).
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Longest repository name (domain and path) distribution accepts.
const NAME_MAX: usize = 255;
/// Longest tag.
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `docker.io`, `ghcr.io`, `localhost:5000`, `[::1]:5000`.
    pub domain: String,
    /// The repository path: `library/alpine`, `o/r`.
    pub path: String,
    /// The tag, if one was given.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`, if one was given; it wins over the tag when pulling.
    pub digest: Option<String>,
}

/// Why a reference was refused: the message names the reference and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {why}")]
pub struct RefError {
    pub input: String,
    pub why: String,
}

impl ImageRef {
    /// Parse a reference as `docker pull` takes it.
    pub fn parse(input: &str) -> Result<ImageRef, RefError> {
        let fail = |why: String| RefError {
            input: input.to_string(),
            why,
        };
        if input.is_empty() {
            return Err(fail("it is empty".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(fail(format!("it contains {c:?}")));
        }
        if input.len() == 64 && input.bytes().all(is_lower_hex) {
            return Err(fail(
                "a 64-character hex string is an image ID, not a name: write NAME@sha256:ID".into(),
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d).map_err(fail)?)),
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            check_tag(t).map_err(fail)?;
        }
        let (domain, path) = split_domain(name);
        check_domain(&domain).map_err(fail)?;
        check_path(&path).map_err(fail)?;
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(fail(format!(
                "the repository name is longer than {NAME_MAX} characters"
            )));
        }
        Ok(ImageRef {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// `docker.io/library/alpine`: where the image lives, without tag or digest.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// What to ask the registry's manifest endpoint for: the digest if given, else the tag.
    pub fn manifest_key(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The host (and port) to send registry API requests to.
    pub fn api_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.domain
        }
    }

    /// Loopback registries are spoken to over plain HTTP (as docker does for 127.0.0.0/8);
    /// every other registry over HTTPS.
    pub fn is_loopback(&self) -> bool {
        let host = match self.domain.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => self.domain.split(':').next().unwrap_or(&self.domain),
        };
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// The canonical form, also the store's key: `domain/path[:tag][@digest]`, `:latest` when
/// neither a tag nor a digest was given.
impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        match (&self.tag, &self.digest) {
            (Some(t), _) => write!(f, ":{t}")?,
            (None, None) => write!(f, ":latest")?,
            (None, Some(_)) => {}
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `sha256:<64 lower-case hex>`: the only digest algorithm registries use for content.
fn parse_digest(d: &str) -> Result<String, String> {
    let Some((algo, hex)) = d.split_once(':') else {
        return Err(format!(
            "digest {d:?} has no algorithm: write it as sha256:<64 hex digits>"
        ));
    };
    if algo != "sha256" {
        return Err(format!(
            "digest algorithm {algo:?} is not supported: only sha256 is"
        ));
    }
    if hex.len() != 64 || !hex.bytes().all(is_lower_hex) {
        return Err(format!(
            "digest {d:?} is malformed: sha256 takes 64 lower-case hex digits"
        ));
    }
    Ok(d.to_string())
}

/// distribution's `splitDockerDomain`.
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        domain
    };
    let path = if domain == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (domain, path)
}

/// `host[:port]`: dot-separated components of letters, digits and inner hyphens, or an IPv6
/// address in brackets.
fn check_domain(domain: &str) -> Result<(), String> {
    let bad = || format!("registry host {domain:?} is not a valid host[:port]");
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(bad)?;
        addr.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => ("", None),
            p => ("", Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if !host.is_empty() || !domain.starts_with('[') {
        let ok = !host.is_empty()
            && host.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !c.starts_with('-')
                    && !c.ends_with('-')
            });
        if !ok {
            return Err(bad());
        }
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry port {p:?} in {domain:?} is not a number"));
        }
    }
    Ok(())
}

/// Path components: lower-case letters and digits, joined by `.`, `_`, `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name {path:?} must be lower-case"));
    }
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err(format!("repository name {path:?} has an empty component"));
        }
        if !component_ok(comp) {
            return Err(format!(
                "repository name component {comp:?} may only hold a-z, 0-9 and single \
                 '.', '_' or '__' or runs of '-' between them"
            ));
        }
    }
    Ok(())
}

fn component_ok(comp: &str) -> bool {
    let b = comp.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &comp[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = !tag.is_empty()
        && tag.len() <= TAG_MAX
        && word(tag.as_bytes()[0])
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is invalid: up to {TAG_MAX} of A-Z a-z 0-9 _ . -, not starting with . or -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_normalise_as_docker_does() {
        let dg = format!("alpine@{D}");
        let tdg = format!("alpine:3.19@{D}");
        let want_dg = format!("docker.io/library/alpine@{D}");
        let want_tdg = format!("docker.io/library/alpine:3.19@{D}");
        let cases: &[(&str, &str)] = &[
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.19", "docker.io/library/alpine:3.19"),
            ("library/alpine", "docker.io/library/alpine:latest"),
            (
                "docker.io/library/alpine:latest",
                "docker.io/library/alpine:latest",
            ),
            ("docker.io/alpine", "docker.io/library/alpine:latest"),
            ("index.docker.io/alpine:1", "docker.io/library/alpine:1"),
            ("user/app", "docker.io/user/app:latest"),
            ("ghcr.io/o/r:t", "ghcr.io/o/r:t"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost", "docker.io/library/localhost:latest"),
            (
                "127.0.0.1:5000/a/b/c:v1.2-rc_3",
                "127.0.0.1:5000/a/b/c:v1.2-rc_3",
            ),
            ("[::1]:5000/x:y", "[::1]:5000/x:y"),
            ("Registry/x", "Registry/x:latest"),
            ("a__b/c--d/e.f_g", "docker.io/a__b/c--d/e.f_g:latest"),
            (
                "localhost/stepctr-busybox:latest",
                "localhost/stepctr-busybox:latest",
            ),
            (&dg, &want_dg),
            (&tdg, &want_tdg),
        ];
        for (input, want) in cases {
            let r = ImageRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *want, "{input}");
            // The canonical form is a fixed point.
            assert_eq!(ImageRef::parse(want).unwrap().to_string(), *want);
        }
    }

    #[test]
    fn parts_and_api_hosts() {
        let r = ImageRef::parse("alpine:3.19").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("docker.io", "library/alpine", Some("3.19"))
        );
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.manifest_key(), "3.19");
        assert!(!r.is_loopback());
        let r = ImageRef::parse(&format!("localhost:5000/x:t@{D}")).unwrap();
        assert_eq!(r.api_host(), "localhost:5000");
        assert_eq!(r.manifest_key(), D);
        assert_eq!(r.repository(), "localhost:5000/x");
        for l in [
            "localhost:1/x",
            "127.0.0.1:5000/x",
            "127.1.2.3/x",
            "[::1]:80/x",
        ] {
            assert!(ImageRef::parse(l).unwrap().is_loopback(), "{l}");
        }
        for l in ["ghcr.io/x", "10.0.0.1:5000/x", "localhost.example.com/x"] {
            assert!(!ImageRef::parse(l).unwrap().is_loopback(), "{l}");
        }
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("Alpine", "lower-case"),
            ("docker.io/Library/alpine", "lower-case"),
            ("alpine:", "tag"),
            ("alpine:-x", "tag"),
            ("alpine:a/b", "not a number"),
            ("alpine:t@x", "algorithm"),
            ("alpine@sha256:abc", "malformed"),
            (
                "alpine@md5:0123456789abcdef0123456789abcdef",
                "not supported",
            ),
            (
                "alpine@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                "malformed",
            ),
            ("a..b", "component"),
            ("a___b", "component"),
            ("-a", "component"),
            ("a-", "component"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("ghcr.io/", "empty component"),
            ("exa_mple.com/x", "host"),
            ("host:port/x", "not a number"),
            ("localhost:99999/x", "not a number"),
            ("[::g]:5000/x", "host"),
            ("al pine", "contains"),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "image ID",
            ),
        ];
        for (input, why) in cases {
            let e = ImageRef::parse(input).expect_err(input).to_string();
            assert!(e.contains(why), "{input:?}: {e}");
            assert!(!e.contains('\n'), "{input:?}: one line: {e}");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
        let long_name = "a".repeat(300);
        assert!(ImageRef::parse(&long_name).is_err());
    }
}
