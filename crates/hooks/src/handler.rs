//! Kubernetes `LifecycleHandler` (core/v1) JSON, as found in a hook annotation.
//!
//! Parsing is in two steps: [`parse`] checks the JSON and every field that can be checked on its
//! own (it is applied to every hook annotation, whichever container it names), then
//! [`ParsedHandler::resolve`] turns a named port into a number with the container's
//! `io.kubernetes.container.ports` (applied only to the handlers this container will run).
//!
//! Unknown fields are rejected, unlike Kubernetes, which drops them: an annotation is typed by
//! hand, and a typo such as `"comand"` would otherwise silently become "no command".

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use crate::output::sanitize_line;

/// What to run for a hook, validated and with ports resolved to numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// argv run inside the container, as its main process would run.
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGet),
    TcpSocket(TcpSocket),
    /// Waited in the shim.
    Sleep {
        duration: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    /// Request target, always starting with `/` (an empty path becomes `/`).
    pub path: String,
    pub port: u16,
    /// `None`: the container's default address (chosen by the shim in the container's netns).
    pub host: Option<String>,
    pub scheme: Scheme,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    pub port: u16,
    pub host: Option<String>,
}

impl Handler {
    /// Short description used in messages and records: `exec [/bin/sh -c exit 3]`,
    /// `httpGet http://<default>:8080/stop`, `tcpSocket db:5432`, `sleep 5s`.
    pub fn summary(&self) -> String {
        match self {
            Handler::Exec { command } => {
                // argv may hold a whole script: keep messages one line and short.
                let mut s = sanitize_line(command.join(" ").as_bytes());
                truncate_chars(&mut s, 200);
                format!("exec [{s}]")
            }
            Handler::HttpGet(h) => {
                let scheme = match h.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                };
                let host = h.host.as_deref().unwrap_or("<container address>");
                let mut path = h.path.clone();
                truncate_chars(&mut path, 200);
                format!("httpGet {scheme}://{}{path}", host_port(host, h.port))
            }
            Handler::TcpSocket(t) => {
                let host = t.host.as_deref().unwrap_or("<container address>");
                format!("tcpSocket {}", host_port(host, t.port))
            }
            Handler::Sleep { duration } => format!("sleep {}s", duration.as_secs()),
        }
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn truncate_chars(s: &mut String, max: usize) {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push_str("...");
    }
}

/// A port as written: a number or a port name (Kubernetes `IntOrString`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PortSpec {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Number(n) => write!(f, "{n}"),
            PortSpec::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// A handler that passed every check that needs no knowledge of the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedHandler {
    key: String,
    kind: ParsedKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ParsedKind {
    Exec(Vec<String>),
    HttpGet {
        path: String,
        port: PortSpec,
        host: Option<String>,
        scheme: Scheme,
        headers: Vec<(String, String)>,
    },
    TcpSocket {
        port: PortSpec,
        host: Option<String>,
    },
    Sleep(Duration),
}

/// Named container ports (`io.kubernetes.container.ports`), TCP only: hooks only speak TCP.
pub(crate) type NamedPorts = BTreeMap<String, u16>;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("{key}: invalid JSON: {source}")]
    InvalidJson {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{key}: expected a JSON object with one of exec, httpGet, tcpSocket, sleep, found {found}"
    )]
    NotAnObject { key: String, found: &'static str },
    /// Well-formed JSON that is not a LifecycleHandler: unknown field, wrong type.
    #[error("{key}: not a LifecycleHandler: {source}")]
    Shape {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key}: exactly one of exec, httpGet, tcpSocket, sleep must be set, found {count}{}",
        if names.is_empty() { String::new() } else { format!(" ({names})") })]
    HandlerCount {
        key: String,
        count: usize,
        names: String,
    },
    #[error("{key}: {field} is required")]
    Missing { key: String, field: &'static str },
    #[error("{key}: exec.command is empty")]
    EmptyCommand { key: String },
    #[error("{key}: exec.command[0] is an empty string")]
    EmptyProgram { key: String },
    #[error("{key}: {field} {value} is out of range 1-65535")]
    PortOutOfRange {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: {field} {value} is not a port number or a port name")]
    PortType {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: {field} {value:?} is not a valid port name (1-15 lowercase letters, digits and '-', with a letter, no leading, trailing or double '-')")]
    PortName {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: {field} {value:?} is not a port name in io.kubernetes.container.ports{}",
        if known.is_empty() { " (the container declares no named TCP port)".to_string() } else { format!(" (known: {known})") })]
    UnknownPortName {
        key: String,
        field: &'static str,
        value: String,
        known: String,
    },
    #[error("{key}: sleep.seconds {value} is negative")]
    NegativeSeconds { key: String, value: i64 },
    #[error("{key}: sleep.seconds {value} is not an integer")]
    SecondsType { key: String, value: String },
    #[error("{key}: httpGet.scheme {value:?} is not HTTP or HTTPS")]
    Scheme { key: String, value: String },
    #[error("{key}: httpGet.path {value:?} contains whitespace or control characters")]
    Path { key: String, value: String },
    #[error("{key}: {field} {value:?} contains whitespace, control characters or '/'")]
    Host {
        key: String,
        field: &'static str,
        value: String,
    },
    #[error("{key}: httpGet.httpHeaders name {value:?} is not a valid HTTP header name")]
    HeaderName { key: String, value: String },
    #[error("{key}: httpGet.httpHeaders value of {name:?} contains control characters")]
    HeaderValue { key: String, name: String },
}

// Mirrors of the core/v1 types. `rename` keeps serde's messages in Kubernetes' vocabulary.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "LifecycleHandler")]
struct RawHandler {
    exec: Option<RawExec>,
    #[serde(rename = "httpGet")]
    http_get: Option<RawHttpGet>,
    #[serde(rename = "tcpSocket")]
    tcp_socket: Option<RawTcpSocket>,
    sleep: Option<RawSleep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "ExecAction")]
struct RawExec {
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "HTTPGetAction")]
struct RawHttpGet {
    path: Option<String>,
    // IntOrString, and the range check wants the original number: checked by hand.
    port: Option<Value>,
    host: Option<String>,
    scheme: Option<String>,
    #[serde(rename = "httpHeaders")]
    http_headers: Option<Vec<RawHeader>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "HTTPHeader")]
struct RawHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "TCPSocketAction")]
struct RawTcpSocket {
    port: Option<Value>,
    host: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "SleepAction")]
struct RawSleep {
    seconds: Option<Value>,
}

/// Parses and checks the value of hook annotation `key` (the caller handles `none`).
pub(crate) fn parse(key: &str, value: &str) -> Result<ParsedHandler, HandlerError> {
    let k = || key.to_string();
    let json: Value = serde_json::from_str(value)
        .map_err(|source| HandlerError::InvalidJson { key: k(), source })?;
    if !json.is_object() {
        let found = match json {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        };
        return Err(HandlerError::NotAnObject { key: k(), found });
    }
    let raw: RawHandler =
        serde_json::from_value(json).map_err(|source| HandlerError::Shape { key: k(), source })?;

    let present: Vec<&str> = [
        ("exec", raw.exec.is_some()),
        ("httpGet", raw.http_get.is_some()),
        ("tcpSocket", raw.tcp_socket.is_some()),
        ("sleep", raw.sleep.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(n, _)| *n)
    .collect();
    if present.len() != 1 {
        return Err(HandlerError::HandlerCount {
            key: k(),
            count: present.len(),
            names: present.join(", "),
        });
    }

    let kind = if let Some(exec) = raw.exec {
        let command = exec.command.unwrap_or_default();
        if command.is_empty() {
            return Err(HandlerError::EmptyCommand { key: k() });
        }
        if command[0].is_empty() {
            return Err(HandlerError::EmptyProgram { key: k() });
        }
        ParsedKind::Exec(command)
    } else if let Some(h) = raw.http_get {
        let port = parse_port(key, "httpGet.port", h.port)?;
        let host = parse_host(key, "httpGet.host", h.host)?;
        let scheme = match h.scheme.as_deref() {
            None | Some("") | Some("HTTP") => Scheme::Http,
            Some("HTTPS") => Scheme::Https,
            Some(other) => {
                return Err(HandlerError::Scheme {
                    key: k(),
                    value: other.to_string(),
                })
            }
        };
        let mut path = h.path.unwrap_or_default();
        if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(HandlerError::Path {
                key: k(),
                value: path,
            });
        }
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut headers = Vec::new();
        for hd in h.http_headers.unwrap_or_default() {
            if hd.name.is_empty() || !hd.name.bytes().all(is_token_byte) {
                return Err(HandlerError::HeaderName {
                    key: k(),
                    value: hd.name,
                });
            }
            if hd.value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(HandlerError::HeaderValue {
                    key: k(),
                    name: hd.name,
                });
            }
            headers.push((hd.name, hd.value));
        }
        ParsedKind::HttpGet {
            path,
            port,
            host,
            scheme,
            headers,
        }
    } else if let Some(t) = raw.tcp_socket {
        let port = parse_port(key, "tcpSocket.port", t.port)?;
        let host = parse_host(key, "tcpSocket.host", t.host)?;
        ParsedKind::TcpSocket { port, host }
    } else if let Some(s) = raw.sleep {
        let v = s.seconds.ok_or(HandlerError::Missing {
            key: k(),
            field: "sleep.seconds",
        })?;
        let secs = match v.as_i64() {
            Some(n) if n < 0 => return Err(HandlerError::NegativeSeconds { key: k(), value: n }),
            Some(n) => n as u64,
            None => match v.as_u64() {
                Some(n) => n,
                None => {
                    return Err(HandlerError::SecondsType {
                        key: k(),
                        value: v.to_string(),
                    })
                }
            },
        };
        ParsedKind::Sleep(Duration::from_secs(secs))
    } else {
        unreachable!("exactly one handler kind was checked to be present")
    };
    Ok(ParsedHandler {
        key: key.to_string(),
        kind,
    })
}

fn parse_port(key: &str, field: &'static str, v: Option<Value>) -> Result<PortSpec, HandlerError> {
    let k = || key.to_string();
    let v = v.ok_or(HandlerError::Missing { key: k(), field })?;
    match &v {
        Value::Number(n) => match n.as_i64() {
            Some(p) if (1..=65535).contains(&p) => Ok(PortSpec::Number(p as u16)),
            Some(_) => Err(HandlerError::PortOutOfRange {
                key: k(),
                field,
                value: n.to_string(),
            }),
            // u64 beyond i64 is out of range too; a float is not a port at all.
            None if n.is_u64() => Err(HandlerError::PortOutOfRange {
                key: k(),
                field,
                value: n.to_string(),
            }),
            None => Err(HandlerError::PortType {
                key: k(),
                field,
                value: n.to_string(),
            }),
        },
        Value::String(s) => {
            // kubelet accepts a decimal string where a name is expected, after name lookup fails;
            // a name can never be all digits, so deciding here is equivalent.
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return match s.parse::<u32>() {
                    Ok(p) if (1..=65535).contains(&p) => Ok(PortSpec::Number(p as u16)),
                    _ => Err(HandlerError::PortOutOfRange {
                        key: k(),
                        field,
                        value: s.clone(),
                    }),
                };
            }
            if !is_port_name(s) {
                return Err(HandlerError::PortName {
                    key: k(),
                    field,
                    value: s.clone(),
                });
            }
            Ok(PortSpec::Name(s.clone()))
        }
        other => Err(HandlerError::PortType {
            key: k(),
            field,
            value: other.to_string(),
        }),
    }
}

fn parse_host(
    key: &str,
    field: &'static str,
    h: Option<String>,
) -> Result<Option<String>, HandlerError> {
    match h {
        None => Ok(None),
        Some(h) if h.is_empty() => Ok(None),
        Some(h) => {
            if h.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
            {
                return Err(HandlerError::Host {
                    key: key.to_string(),
                    field,
                    value: h,
                });
            }
            // `[::1]` is accepted as well as `::1`.
            let h = h
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .map(str::to_string)
                .unwrap_or(h);
            Ok(Some(h))
        }
    }
}

/// Kubernetes IANA_SVC_NAME: at most 15 of [a-z0-9-], at least one letter, no `-` at either end,
/// no `--`.
fn is_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// RFC 9110 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl ParsedHandler {
    /// Replaces a port name by its number from the container's named TCP ports.
    pub(crate) fn resolve(self, ports: &NamedPorts) -> Result<Handler, HandlerError> {
        let resolve = |port: PortSpec, field: &'static str| -> Result<u16, HandlerError> {
            match port {
                PortSpec::Number(n) => Ok(n),
                PortSpec::Name(name) => {
                    ports
                        .get(&name)
                        .copied()
                        .ok_or_else(|| HandlerError::UnknownPortName {
                            key: self.key.clone(),
                            field,
                            value: name,
                            known: ports.keys().cloned().collect::<Vec<_>>().join(", "),
                        })
                }
            }
        };
        Ok(match self.kind.clone() {
            ParsedKind::Exec(command) => Handler::Exec { command },
            ParsedKind::HttpGet {
                path,
                port,
                host,
                scheme,
                headers,
            } => Handler::HttpGet(HttpGet {
                path,
                port: resolve(port, "httpGet.port")?,
                host,
                scheme,
                headers,
            }),
            ParsedKind::TcpSocket { port, host } => Handler::TcpSocket(TcpSocket {
                port: resolve(port, "tcpSocket.port")?,
                host,
            }),
            ParsedKind::Sleep(duration) => Handler::Sleep { duration },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "lifecycle.shim/pre-stop";

    fn err(v: &str) -> String {
        parse(KEY, v).unwrap_err().to_string()
    }

    fn ok(v: &str) -> Handler {
        parse(KEY, v)
            .unwrap()
            .resolve(&NamedPorts::from([("http".to_string(), 8080)]))
            .unwrap()
    }

    #[test]
    fn exec() {
        assert_eq!(
            ok(r#"{"exec":{"command":["/bin/sh","-c","exit 3"]}}"#),
            Handler::Exec {
                command: vec!["/bin/sh".into(), "-c".into(), "exit 3".into()]
            }
        );
        assert_eq!(
            err(r#"{"exec":{"command":[]}}"#),
            "lifecycle.shim/pre-stop: exec.command is empty"
        );
        assert_eq!(
            err(r#"{"exec":{}}"#),
            "lifecycle.shim/pre-stop: exec.command is empty"
        );
        assert_eq!(
            err(r#"{"exec":{"command":[""]}}"#),
            "lifecycle.shim/pre-stop: exec.command[0] is an empty string"
        );
    }

    #[test]
    fn typo_is_rejected() {
        let e = err(r#"{"exec":{"comand":["true"]}}"#);
        assert!(
            e.starts_with(
                "lifecycle.shim/pre-stop: not a LifecycleHandler: unknown field `comand`"
            ),
            "{e}"
        );
        let e = err(r#"{"exe":{"command":["true"]}}"#);
        assert!(
            e.contains(
                "unknown field `exe`, expected one of `exec`, `httpGet`, `tcpSocket`, `sleep`"
            ),
            "{e}"
        );
        let e = err(r#"{"exec":{"command":"true"}}"#);
        assert!(
            e.contains("invalid type: string \"true\", expected a sequence"),
            "{e}"
        );
    }

    #[test]
    fn json_and_count() {
        let e = err(r#"{"exec":"#);
        assert!(
            e.starts_with("lifecycle.shim/pre-stop: invalid JSON: "),
            "{e}"
        );
        assert_eq!(
            err(r#"{"exec":{"command":["a"]},"sleep":{"seconds":1}}"#),
            "lifecycle.shim/pre-stop: exactly one of exec, httpGet, tcpSocket, sleep must be set, found 2 (exec, sleep)"
        );
        assert_eq!(err("{}"), "lifecycle.shim/pre-stop: exactly one of exec, httpGet, tcpSocket, sleep must be set, found 0");
        assert_eq!(
            err("[1]"),
            "lifecycle.shim/pre-stop: expected a JSON object with one of exec, httpGet, tcpSocket, sleep, found an array"
        );
        // An explicit null is "not set", as in Kubernetes.
        assert!(matches!(
            ok(r#"{"exec":null,"sleep":{"seconds":0}}"#),
            Handler::Sleep { .. }
        ));
    }

    #[test]
    fn http_get() {
        let h = ok(
            r#"{"httpGet":{"path":"stop","port":"http","host":"","scheme":"HTTP","httpHeaders":[{"name":"X","value":"y"}]}}"#,
        );
        assert_eq!(
            h,
            Handler::HttpGet(HttpGet {
                path: "/stop".into(),
                port: 8080,
                host: None,
                scheme: Scheme::Http,
                headers: vec![("X".into(), "y".into())]
            })
        );
        assert_eq!(h.summary(), "httpGet http://<container address>:8080/stop");
        let h = ok(r#"{"httpGet":{"port":"8081","host":"[::1]","scheme":"HTTPS"}}"#);
        assert_eq!(h.summary(), "httpGet https://[::1]:8081/");
        assert_eq!(
            err(r#"{"httpGet":{"port":70000}}"#),
            "lifecycle.shim/pre-stop: httpGet.port 70000 is out of range 1-65535"
        );
        assert_eq!(
            err(r#"{"httpGet":{"port":0}}"#),
            "lifecycle.shim/pre-stop: httpGet.port 0 is out of range 1-65535"
        );
        assert_eq!(
            err(r#"{"httpGet":{"port":-5}}"#),
            "lifecycle.shim/pre-stop: httpGet.port -5 is out of range 1-65535"
        );
        assert_eq!(
            err(r#"{"httpGet":{"port":"99999"}}"#),
            "lifecycle.shim/pre-stop: httpGet.port 99999 is out of range 1-65535"
        );
        assert_eq!(
            err(r#"{"httpGet":{"port":80.5}}"#),
            "lifecycle.shim/pre-stop: httpGet.port 80.5 is not a port number or a port name"
        );
        assert!(err(r#"{"httpGet":{"port":"Web"}}"#)
            .contains(r#"httpGet.port "Web" is not a valid port name"#));
        assert_eq!(
            err(r#"{"httpGet":{}}"#),
            "lifecycle.shim/pre-stop: httpGet.port is required"
        );
        assert_eq!(
            err(r#"{"httpGet":{"port":80,"scheme":"ftp"}}"#),
            r#"lifecycle.shim/pre-stop: httpGet.scheme "ftp" is not HTTP or HTTPS"#
        );
        assert!(err(r#"{"httpGet":{"port":80,"path":"/a b"}}"#).contains("httpGet.path"));
        assert!(
            err(r#"{"httpGet":{"port":80,"httpHeaders":[{"name":"a b","value":"y"}]}}"#)
                .contains("header name")
        );
        assert!(
            err(r#"{"httpGet":{"port":80,"httpHeaders":[{"name":"a","value":"y\r\nX: z"}]}}"#)
                .contains("control")
        );
        assert!(err(r#"{"httpGet":{"port":80,"host":"a/b"}}"#).contains("httpGet.host"));
    }

    #[test]
    fn named_port_resolution() {
        let p = parse(KEY, r#"{"tcpSocket":{"port":"db"}}"#).unwrap();
        assert_eq!(
            p.clone()
                .resolve(&NamedPorts::new())
                .unwrap_err()
                .to_string(),
            r#"lifecycle.shim/pre-stop: tcpSocket.port "db" is not a port name in io.kubernetes.container.ports (the container declares no named TCP port)"#
        );
        let h = p
            .resolve(&NamedPorts::from([("db".to_string(), 5432)]))
            .unwrap();
        assert_eq!(
            h,
            Handler::TcpSocket(TcpSocket {
                port: 5432,
                host: None
            })
        );
        assert_eq!(h.summary(), "tcpSocket <container address>:5432");
    }

    #[test]
    fn sleep() {
        assert_eq!(
            ok(r#"{"sleep":{"seconds":5}}"#),
            Handler::Sleep {
                duration: Duration::from_secs(5)
            }
        );
        assert_eq!(ok(r#"{"sleep":{"seconds":0}}"#).summary(), "sleep 0s");
        assert_eq!(
            err(r#"{"sleep":{"seconds":-1}}"#),
            "lifecycle.shim/pre-stop: sleep.seconds -1 is negative"
        );
        assert_eq!(
            err(r#"{"sleep":{"seconds":"5"}}"#),
            r#"lifecycle.shim/pre-stop: sleep.seconds "5" is not an integer"#
        );
        assert_eq!(
            err(r#"{"sleep":{}}"#),
            "lifecycle.shim/pre-stop: sleep.seconds is required"
        );
    }

    #[test]
    fn exec_summary_is_one_short_line() {
        let h = ok(r#"{"exec":{"command":["/bin/sh","-c","echo a\necho b"]}}"#);
        assert_eq!(h.summary(), "exec [/bin/sh -c echo a echo b]");
        let long = "x".repeat(500);
        let h = ok(&format!(r#"{{"exec":{{"command":["{long}"]}}}}"#));
        assert_eq!(h.summary().len(), "exec [".len() + 200 + "...]".len());
    }
}
