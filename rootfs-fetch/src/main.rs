//! `rootfs-fetch default --out DIR [--tag TAG]`: builds stepctr's default image as an OCI
//! image layout in DIR and prints its manifest digest and source.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: rootfs-fetch default --out DIR [--tag TAG]

Builds stepctr's default image offline as an OCI image layout in DIR (absent or empty):
a static busybox if the host has one (Debian's busybox-static), else the host's own
sh, ls, cat, ... with their shared libraries.

  --out DIR   where to write the layout (oci-layout, index.json, blobs/sha256/...)
  --tag TAG   name of the image in index.json (default: latest)";

struct Args {
    out: PathBuf,
    tag: String,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("-h" | "--help" | "help") => return Ok(Parsed::Help),
        Some("default") => {}
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("missing command".to_string()),
    }
    let mut out = None;
    let mut tag = None;
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(format!("{name} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--out" | "-o" => out = Some(PathBuf::from(value("--out")?)),
            "--tag" | "-t" => tag = Some(value("--tag")?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let out = out.ok_or_else(|| "missing --out DIR".to_string())?;
    Ok(Parsed::Run(Args {
        out,
        tag: tag.unwrap_or_else(|| "latest".to_string()),
    }))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&argv) {
        Ok(Parsed::Run(a)) => a,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("rootfs-fetch: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match rootfs_fetch::build_default_image(&args.out, &args.tag) {
        Ok(img) => {
            println!("manifest: {}", img.manifest_digest);
            println!("source: {}", img.source);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rootfs-fetch: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Parsed, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses() {
        match p(&["default", "--out", "d"]) {
            Ok(Parsed::Run(a)) => {
                assert_eq!(a.out, PathBuf::from("d"));
                assert_eq!(a.tag, "latest");
            }
            _ => panic!("expected run"),
        }
        match p(&["default", "--tag=v1", "--out=x"]) {
            Ok(Parsed::Run(a)) => {
                assert_eq!(a.out, PathBuf::from("x"));
                assert_eq!(a.tag, "v1");
            }
            _ => panic!("expected run"),
        }
        assert!(p(&["default"]).is_err());
        assert!(p(&["default", "--out"]).is_err());
        assert!(p(&["pull"]).is_err());
        assert!(p(&[]).is_err());
        assert!(matches!(p(&["--help"]), Ok(Parsed::Help)));
    }
}
