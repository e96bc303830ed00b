//! The shim's command line, as containerd writes it: Go `flag` syntax (`-name value`,
//! `-name=value`, `--name value`), flags first, then the action (`start`, `delete`, or none to
//! serve).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagsError {
    #[error("flag -{0} needs a value")]
    MissingValue(String),
    #[error("unknown flag -{0}")]
    Unknown(String),
    #[error("unknown action {0:?}: expected start, delete or none")]
    UnknownAction(String),
    #[error("flag -namespace is required")]
    NoNamespace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Serve,
    Start,
    Delete,
    Info,
    Version,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    /// containerd's gRPC address (`-address`); part of the socket hash.
    pub address: String,
    pub publish_binary: String,
    pub bundle: Option<PathBuf>,
    pub socket: Option<String>,
    pub debug: bool,
    pub action: Action,
}

impl Flags {
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Flags, FlagsError> {
        let mut flags = Flags {
            namespace: String::new(),
            id: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            bundle: None,
            socket: None,
            debug: false,
            action: Action::Serve,
        };
        let mut info = false;
        let mut version = false;
        let mut it = args.into_iter();
        let mut positional = Vec::new();
        while let Some(arg) = it.next() {
            if arg == "--" {
                positional.extend(it.by_ref());
                break;
            }
            let Some(stripped) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                positional.push(arg);
                // Go's flag package stops at the first non-flag argument.
                positional.extend(it.by_ref());
                break;
            };
            let (name, inline) = match stripped.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (stripped.to_owned(), None),
            };
            match name.as_str() {
                "debug" | "info" | "v" => {
                    let on = !matches!(inline.as_deref(), Some("false" | "0"));
                    match name.as_str() {
                        "debug" => flags.debug = on,
                        "info" => info = on,
                        _ => version = on,
                    }
                }
                "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket"
                | "debug-socket" => {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| FlagsError::MissingValue(name.clone()))?,
                    };
                    match name.as_str() {
                        "namespace" => flags.namespace = value,
                        "id" => flags.id = value,
                        "address" => flags.address = value,
                        "publish-binary" => flags.publish_binary = value,
                        "bundle" => flags.bundle = Some(PathBuf::from(value)),
                        "socket" => flags.socket = Some(value),
                        _ => {} // debug-socket: no debug server here
                    }
                }
                _ => return Err(FlagsError::Unknown(name)),
            }
        }
        flags.action = if version {
            Action::Version
        } else if info {
            Action::Info
        } else {
            match positional.first().map(String::as_str) {
                None => Action::Serve,
                Some("start") => Action::Start,
                Some("delete") => Action::Delete,
                Some(other) => return Err(FlagsError::UnknownAction(other.to_owned())),
            }
        };
        if flags.namespace.is_empty() && !matches!(flags.action, Action::Info | Action::Version) {
            return Err(FlagsError::NoNamespace);
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Flags, FlagsError> {
        Flags::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn containerd_start_line() {
        let f = parse(&[
            "-namespace",
            "default",
            "-address",
            "/run/containerd/containerd.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ])
        .unwrap();
        assert_eq!(f.namespace, "default");
        assert_eq!(f.id, "c1");
        assert_eq!(f.address, "/run/containerd/containerd.sock");
        assert!(f.debug);
        assert_eq!(f.action, Action::Start);
    }

    #[test]
    fn delete_with_bundle_and_equals_syntax() {
        let f = parse(&["--namespace=k8s.io", "-id=c2", "-bundle", "/b", "delete"]).unwrap();
        assert_eq!(f.bundle, Some(PathBuf::from("/b")));
        assert_eq!(f.action, Action::Delete);
    }

    #[test]
    fn serve_and_info() {
        assert_eq!(
            parse(&["-namespace", "n", "-id", "x"]).unwrap().action,
            Action::Serve
        );
        assert_eq!(parse(&["-info"]).unwrap().action, Action::Info);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&["-id", "x"]), Err(FlagsError::NoNamespace));
        assert_eq!(
            parse(&["-namespace"]),
            Err(FlagsError::MissingValue("namespace".into()))
        );
        assert_eq!(parse(&["-bogus"]), Err(FlagsError::Unknown("bogus".into())));
        assert_eq!(
            parse(&["-namespace", "n", "frob"]),
            Err(FlagsError::UnknownAction("frob".into()))
        );
    }
}
