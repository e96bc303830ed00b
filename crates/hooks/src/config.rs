//! The annotation contract: OCI annotations to a validated [`HookConfig`].
//!
//! Every annotation under the `lifecycle.shim/` domain is checked, whichever container it names,
//! so a bad value fails Create (and, on the sandbox, RunPodSandbox) at once. Then, for this
//! container, the per-container form `<setting>.lifecycle.shim/<container-name>` wins over the
//! plain `lifecycle.shim/<setting>`.

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::{
    handler::{self, Handler, HandlerError, NamedPorts, ParsedHandler},
    signal::Signal,
};

const DOMAIN: &str = "lifecycle.shim/";
const PER_CONTAINER_INFIX: &str = ".lifecycle.shim/";
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
const POD_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";
const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setting {
    PostStart,
    PreStop,
    TerminationGracePeriodSeconds,
    PostStartTimeoutSeconds,
    PostStartOrder,
    StopSignal,
    HookOutput,
}

/// The settings of the contract, by the name used in both key forms.
const SETTINGS: &[(&str, Setting)] = &[
    ("post-start", Setting::PostStart),
    ("pre-stop", Setting::PreStop),
    (
        "termination-grace-period-seconds",
        Setting::TerminationGracePeriodSeconds,
    ),
    (
        "post-start-timeout-seconds",
        Setting::PostStartTimeoutSeconds,
    ),
    ("post-start-order", Setting::PostStartOrder),
    ("stop-signal", Setting::StopSignal),
    ("hook-output", Setting::HookOutput),
];

/// When the entrypoint is released relative to postStart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostStartOrder {
    /// Entrypoint released first, hook runs beside it (kubelet's behaviour).
    #[default]
    Concurrent,
    /// Entrypoint held until the hook succeeded.
    BeforeEntrypoint,
}

/// Where hook output goes besides the shim log and the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HookOutput {
    #[default]
    Log,
    /// Also copied, prefixed, into the container's own stdout/stderr.
    Container,
}

/// `io.kubernetes.cri.container-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// A CRI pod sandbox: validated, never gets hooks.
    Sandbox,
    /// A CRI app container: the stop request is the first non-SIGKILL Kill with all=false.
    CriContainer,
    /// Not from CRI (ctr, a spec file): the stop request is a Kill with the stop signal.
    Plain,
}

/// Everything the shim needs to know about hooks for one container, decided at Create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    pub kind: ContainerKind,
    /// `io.kubernetes.cri.container-name`, if any (for logs and records).
    pub container_name: Option<String>,
    pub post_start: Option<Handler>,
    pub pre_stop: Option<Handler>,
    pub post_start_timeout: Option<Duration>,
    pub post_start_order: PostStartOrder,
    /// The shim's grace key, else `io.kubernetes.pod.terminationGracePeriod`, else 30 s.
    pub grace_period: Duration,
    /// Whether a stop request starts the termination sequence (pre-stop or the shim's own grace
    /// key set). When false, Kill is plain signal delivery.
    pub grace_timer: bool,
    pub stop_signal: Signal,
    pub hook_output: HookOutput,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "unknown setting {key:?} (known settings: post-start, pre-stop, termination-grace-period-seconds, \
         post-start-timeout-seconds, post-start-order, stop-signal, hook-output)"
    )]
    UnknownSetting { key: String },
    #[error("{key}: container name {name:?} is not a valid Kubernetes container name (1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)")]
    ContainerName { key: String, name: String },
    #[error(transparent)]
    Handler(#[from] HandlerError),
    #[error("{key}: {value:?} is not an integer >= {min}")]
    Integer { key: String, value: String, min: u8 },
    #[error("{key}: unknown signal {value:?} (expected a name such as SIGTERM or TERM, or a number 1-64)")]
    UnknownSignal { key: String, value: String },
    #[error("{key}: SIGKILL cannot be the stop signal (a Kill with SIGKILL always kills at once, with no preStop)")]
    KillStopSignal { key: String },
    #[error("{key}: {value:?} is not one of {expected}")]
    Choice {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("{key}: invalid container ports JSON: {source}")]
    Ports {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A validated value, before the choice between plain and per-container keys.
#[derive(Debug, Clone)]
enum Value {
    Handler(Option<ParsedHandler>),
    Seconds(u64),
    Order(PostStartOrder),
    Signal(Signal),
    Output(HookOutput),
}

enum KeyClass<'a> {
    NotOurs,
    Plain(Setting),
    PerContainer(Setting, &'a str),
}

fn lookup_setting(name: &str) -> Option<Setting> {
    SETTINGS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

fn classify(key: &str) -> Result<KeyClass<'_>, ConfigError> {
    let unknown = || ConfigError::UnknownSetting {
        key: key.to_string(),
    };
    if let Some(name) = key.strip_prefix(DOMAIN) {
        return lookup_setting(name)
            .map(KeyClass::Plain)
            .ok_or_else(unknown);
    }
    if let Some((setting, container)) = key.split_once(PER_CONTAINER_INFIX) {
        let setting = lookup_setting(setting).ok_or_else(unknown)?;
        if !is_dns_label(container) {
            return Err(ConfigError::ContainerName {
                key: key.to_string(),
                name: container.to_string(),
            });
        }
        return Ok(KeyClass::PerContainer(setting, container));
    }
    Ok(KeyClass::NotOurs)
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn parse_seconds(key: &str, value: &str, min: u8) -> Result<u64, ConfigError> {
    let v = value.trim();
    match v.parse::<u64>() {
        Ok(n) if n >= u64::from(min) && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ConfigError::Integer {
            key: key.to_string(),
            value: value.to_string(),
            min,
        }),
    }
}

fn parse_value(setting: Setting, key: &str, value: &str) -> Result<Value, ConfigError> {
    let choice = |expected: &'static str| ConfigError::Choice {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    };
    Ok(match setting {
        Setting::PostStart | Setting::PreStop => {
            if value.trim() == "none" {
                Value::Handler(None)
            } else {
                Value::Handler(Some(handler::parse(key, value)?))
            }
        }
        Setting::TerminationGracePeriodSeconds => Value::Seconds(parse_seconds(key, value, 0)?),
        Setting::PostStartTimeoutSeconds => Value::Seconds(parse_seconds(key, value, 1)?),
        Setting::PostStartOrder => Value::Order(match value.trim() {
            "concurrent" => PostStartOrder::Concurrent,
            "before-entrypoint" => PostStartOrder::BeforeEntrypoint,
            _ => return Err(choice("concurrent, before-entrypoint")),
        }),
        Setting::StopSignal => {
            let sig = Signal::parse(value).ok_or_else(|| ConfigError::UnknownSignal {
                key: key.to_string(),
                value: value.to_string(),
            })?;
            if sig == Signal::KILL {
                return Err(ConfigError::KillStopSignal {
                    key: key.to_string(),
                });
            }
            Value::Signal(sig)
        }
        Setting::HookOutput => Value::Output(match value.trim() {
            "log" => HookOutput::Log,
            "container" => HookOutput::Container,
            _ => return Err(choice("log, container")),
        }),
    })
}

/// One entry of kubelet's `io.kubernetes.container.ports` (a JSON list of core/v1 ContainerPort).
/// Unknown fields are allowed: this is kubelet's format, not the user's.
#[derive(Deserialize)]
struct ContainerPort {
    #[serde(default)]
    name: String,
    #[serde(rename = "containerPort")]
    container_port: u16,
    #[serde(default)]
    protocol: String,
}

fn parse_ports(value: &str) -> Result<NamedPorts, ConfigError> {
    let list: Vec<ContainerPort> =
        serde_json::from_str(value).map_err(|source| ConfigError::Ports {
            key: CONTAINER_PORTS.to_string(),
            source,
        })?;
    Ok(list
        .into_iter()
        .filter(|p| !p.name.is_empty() && (p.protocol.is_empty() || p.protocol == "TCP"))
        .map(|p| (p.name, p.container_port))
        .collect())
}

impl HookConfig {
    /// Validates every hook annotation and returns this container's settings.
    ///
    /// Works on any map of annotations (`&HashMap<String, String>`, `&BTreeMap<..>`, ...).
    /// The first error in key order is returned, so the message is stable.
    /// `io.kubernetes.container.preStopHandler` (kubelet's own) is deliberately ignored.
    pub fn from_annotations<'a, I>(annotations: I) -> Result<HookConfig, ConfigError>
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let sorted: BTreeMap<&str, &str> = annotations
            .into_iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();

        let kind = match sorted.get(CRI_CONTAINER_TYPE).copied() {
            Some("sandbox") => ContainerKind::Sandbox,
            Some("container") => ContainerKind::CriContainer,
            _ => ContainerKind::Plain,
        };
        let container_name = sorted.get(CRI_CONTAINER_NAME).map(|s| s.to_string());

        // (setting) -> (key, value) for this container: per-container beats plain.
        let mut plain: BTreeMap<Setting, (&str, Value)> = BTreeMap::new();
        let mut mine: BTreeMap<Setting, (&str, Value)> = BTreeMap::new();
        for (&key, &value) in &sorted {
            match classify(key)? {
                KeyClass::NotOurs => {}
                KeyClass::Plain(s) => {
                    plain.insert(s, (key, parse_value(s, key, value)?));
                }
                KeyClass::PerContainer(s, name) => {
                    let v = parse_value(s, key, value)?;
                    if container_name.as_deref() == Some(name) {
                        mine.insert(s, (key, v));
                    }
                }
            }
        }
        let pod_grace = match sorted.get(POD_GRACE) {
            Some(v) => Some(parse_seconds(POD_GRACE, v, 0)?),
            None => None,
        };
        let ports = match sorted.get(CONTAINER_PORTS) {
            Some(v) => parse_ports(v)?,
            None => NamedPorts::new(),
        };

        let get = |s: Setting| {
            mine.get(&s)
                .or_else(|| plain.get(&s))
                .map(|(_, v)| v.clone())
        };
        let handler = |s: Setting| -> Result<Option<Handler>, ConfigError> {
            match get(s) {
                Some(Value::Handler(Some(h))) if kind != ContainerKind::Sandbox => {
                    Ok(Some(h.resolve(&ports)?))
                }
                _ => Ok(None),
            }
        };
        let seconds = |s: Setting| match get(s) {
            Some(Value::Seconds(n)) => Some(Duration::from_secs(n)),
            _ => None,
        };

        let post_start = handler(Setting::PostStart)?;
        let pre_stop = handler(Setting::PreStop)?;
        let own_grace = seconds(Setting::TerminationGracePeriodSeconds);
        let grace_period = own_grace
            .or(pod_grace.map(Duration::from_secs))
            .unwrap_or(DEFAULT_GRACE);
        let grace_timer =
            kind != ContainerKind::Sandbox && (pre_stop.is_some() || own_grace.is_some());
        Ok(HookConfig {
            kind,
            container_name,
            post_start,
            pre_stop,
            post_start_timeout: seconds(Setting::PostStartTimeoutSeconds),
            post_start_order: match get(Setting::PostStartOrder) {
                Some(Value::Order(o)) => o,
                _ => PostStartOrder::default(),
            },
            grace_period,
            grace_timer,
            stop_signal: match get(Setting::StopSignal) {
                Some(Value::Signal(s)) => s,
                _ => Signal::TERM,
            },
            hook_output: match get(Setting::HookOutput) {
                Some(Value::Output(o)) => o,
                _ => HookOutput::default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::handler::{HttpGet, Scheme, TcpSocket};

    fn cfg(pairs: &[(&str, &str)]) -> Result<HookConfig, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HookConfig::from_annotations(&m)
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        cfg(pairs).unwrap_err().to_string()
    }

    const EXEC: &str = r#"{"exec":{"command":["/bin/true"]}}"#;
    const SLEEP: &str = r#"{"sleep":{"seconds":3}}"#;

    #[test]
    fn defaults_without_annotations() {
        let c = cfg(&[("unrelated", "x")]).unwrap();
        assert_eq!(c.kind, ContainerKind::Plain);
        assert_eq!(c.post_start, None);
        assert_eq!(c.pre_stop, None);
        assert_eq!(c.post_start_timeout, None);
        assert_eq!(c.post_start_order, PostStartOrder::Concurrent);
        assert_eq!(c.grace_period, Duration::from_secs(30));
        assert!(!c.grace_timer);
        assert_eq!(c.stop_signal, Signal::TERM);
        assert_eq!(c.hook_output, HookOutput::Log);
    }

    #[test]
    fn every_plain_setting() {
        let c = cfg(&[
            ("lifecycle.shim/post-start", EXEC),
            ("lifecycle.shim/pre-stop", SLEEP),
            ("lifecycle.shim/termination-grace-period-seconds", "7"),
            ("lifecycle.shim/post-start-timeout-seconds", "9"),
            ("lifecycle.shim/post-start-order", "before-entrypoint"),
            ("lifecycle.shim/stop-signal", "sigquit"),
            ("lifecycle.shim/hook-output", "container"),
        ])
        .unwrap();
        assert_eq!(
            c.post_start,
            Some(Handler::Exec {
                command: vec!["/bin/true".into()]
            })
        );
        assert_eq!(
            c.pre_stop,
            Some(Handler::Sleep {
                duration: Duration::from_secs(3)
            })
        );
        assert_eq!(c.grace_period, Duration::from_secs(7));
        assert!(c.grace_timer);
        assert_eq!(c.post_start_timeout, Some(Duration::from_secs(9)));
        assert_eq!(c.post_start_order, PostStartOrder::BeforeEntrypoint);
        assert_eq!(c.stop_signal.as_raw(), libc::SIGQUIT);
        assert_eq!(c.hook_output, HookOutput::Container);
        assert_eq!(
            cfg(&[("lifecycle.shim/stop-signal", "3")])
                .unwrap()
                .stop_signal
                .as_raw(),
            3
        );
    }

    #[test]
    fn grace_timer_rules() {
        // The pod's grace alone: a value, but no timer.
        let c = cfg(&[("io.kubernetes.pod.terminationGracePeriod", "45")]).unwrap();
        assert_eq!(c.grace_period, Duration::from_secs(45));
        assert!(!c.grace_timer);
        // pre-stop: timer, with the pod's grace.
        let c = cfg(&[
            ("io.kubernetes.pod.terminationGracePeriod", "45"),
            ("lifecycle.shim/pre-stop", SLEEP),
        ])
        .unwrap();
        assert!(c.grace_timer);
        assert_eq!(c.grace_period, Duration::from_secs(45));
        // Our grace key: timer, and it wins over the pod's.
        let c = cfg(&[
            ("io.kubernetes.pod.terminationGracePeriod", "45"),
            ("lifecycle.shim/termination-grace-period-seconds", "0"),
        ])
        .unwrap();
        assert!(c.grace_timer);
        assert_eq!(c.grace_period, Duration::ZERO);
        // pre-stop opted out: no timer.
        let c = cfg(&[("lifecycle.shim/pre-stop", "none")]).unwrap();
        assert!(!c.grace_timer);
        assert_eq!(
            err(&[("io.kubernetes.pod.terminationGracePeriod", "-1")]),
            r#"io.kubernetes.pod.terminationGracePeriod: "-1" is not an integer >= 0"#
        );
    }

    #[test]
    fn per_container_wins_and_none_opts_out() {
        let base = [
            ("io.kubernetes.cri.container-type", "container"),
            ("lifecycle.shim/post-start", EXEC),
            ("lifecycle.shim/pre-stop", SLEEP),
            ("post-start.lifecycle.shim/sidecar", "none"),
            (
                "pre-stop.lifecycle.shim/web",
                r#"{"tcpSocket":{"port":5432}}"#,
            ),
            ("stop-signal.lifecycle.shim/web", "SIGUSR1"),
        ];
        let with = |name: &str| {
            let mut v = base.to_vec();
            v.push(("io.kubernetes.cri.container-name", name));
            cfg(&v).unwrap()
        };
        let web = with("web");
        assert_eq!(web.kind, ContainerKind::CriContainer);
        assert_eq!(web.container_name.as_deref(), Some("web"));
        assert!(web.post_start.is_some());
        assert_eq!(
            web.pre_stop,
            Some(Handler::TcpSocket(TcpSocket {
                port: 5432,
                host: None
            }))
        );
        assert_eq!(web.stop_signal.as_raw(), libc::SIGUSR1);
        let sidecar = with("sidecar");
        assert_eq!(sidecar.post_start, None);
        assert_eq!(
            sidecar.pre_stop,
            Some(Handler::Sleep {
                duration: Duration::from_secs(3)
            })
        );
        assert_eq!(sidecar.stop_signal, Signal::TERM);
        let other = with("other");
        assert!(other.post_start.is_some());
    }

    #[test]
    fn per_container_keys_of_other_containers_are_validated() {
        assert_eq!(
            err(&[
                ("io.kubernetes.cri.container-name", "web"),
                ("pre-stop.lifecycle.shim/db", r#"{"exec":{"command":[]}}"#)
            ]),
            "pre-stop.lifecycle.shim/db: exec.command is empty"
        );
        assert_eq!(
            err(&[("stop-signal.lifecycle.shim/db", "SIGFOO")]),
            r#"stop-signal.lifecycle.shim/db: unknown signal "SIGFOO" (expected a name such as SIGTERM or TERM, or a number 1-64)"#
        );
        // A named port of another container is not resolved against this one's ports.
        assert!(cfg(&[(
            "pre-stop.lifecycle.shim/db",
            r#"{"tcpSocket":{"port":"pg"}}"#
        )])
        .is_ok());
        assert!(err(&[("post-start.lifecycle.shim/Web", "none")])
            .contains("container name \"Web\" is not a valid"));
        assert!(err(&[("post-start.lifecycle.shim/", "none")]).contains("container name \"\""));
    }

    #[test]
    fn sandbox_is_validated_but_gets_no_hooks() {
        let c = cfg(&[
            ("io.kubernetes.cri.container-type", "sandbox"),
            ("lifecycle.shim/post-start", EXEC),
            ("lifecycle.shim/pre-stop", r#"{"httpGet":{"port":"http"}}"#),
            ("lifecycle.shim/termination-grace-period-seconds", "5"),
        ])
        .unwrap();
        assert_eq!(c.kind, ContainerKind::Sandbox);
        assert_eq!(
            (c.post_start, c.pre_stop, c.grace_timer),
            (None, None, false)
        );
        assert_eq!(
            err(&[
                ("io.kubernetes.cri.container-type", "sandbox"),
                ("post-start.lifecycle.shim/web", r#"{"exec":{"command":["a"]},"sleep":{"seconds":1}}"#),
            ]),
            "post-start.lifecycle.shim/web: exactly one of exec, httpGet, tcpSocket, sleep must be set, found 2 (exec, sleep)"
        );
    }

    #[test]
    fn unknown_settings() {
        assert!(err(&[("lifecycle.shim/post-strat", EXEC)])
            .starts_with(r#"unknown setting "lifecycle.shim/post-strat""#));
        assert!(err(&[("foo.lifecycle.shim/x", "1")])
            .starts_with(r#"unknown setting "foo.lifecycle.shim/x""#));
        assert!(err(&[("lifecycle.shim/", "1")]).starts_with("unknown setting"));
        // Not our domain: ignored, and kubelet's own preStop is never used.
        let c = cfg(&[
            ("example.com/lifecycle.shim", "x"),
            (
                "io.kubernetes.container.preStopHandler",
                r#"{"exec":{"command":["x"]}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(c.pre_stop, None);
        assert!(!c.grace_timer);
    }

    #[test]
    fn value_errors() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "lifecycle.shim/termination-grace-period-seconds",
                "-1",
                r#"lifecycle.shim/termination-grace-period-seconds: "-1" is not an integer >= 0"#,
            ),
            (
                "lifecycle.shim/termination-grace-period-seconds",
                "none",
                r#"lifecycle.shim/termination-grace-period-seconds: "none" is not an integer >= 0"#,
            ),
            (
                "lifecycle.shim/post-start-timeout-seconds",
                "0",
                r#"lifecycle.shim/post-start-timeout-seconds: "0" is not an integer >= 1"#,
            ),
            (
                "lifecycle.shim/post-start-timeout-seconds",
                "1.5",
                r#"lifecycle.shim/post-start-timeout-seconds: "1.5" is not an integer >= 1"#,
            ),
            (
                "lifecycle.shim/post-start-order",
                "after",
                r#"lifecycle.shim/post-start-order: "after" is not one of concurrent, before-entrypoint"#,
            ),
            (
                "lifecycle.shim/hook-output",
                "stdout",
                r#"lifecycle.shim/hook-output: "stdout" is not one of log, container"#,
            ),
            (
                "lifecycle.shim/stop-signal",
                "SIGFOO",
                r#"lifecycle.shim/stop-signal: unknown signal "SIGFOO""#,
            ),
            (
                "lifecycle.shim/stop-signal",
                "65",
                r#"lifecycle.shim/stop-signal: unknown signal "65""#,
            ),
            (
                "lifecycle.shim/stop-signal",
                "0",
                r#"lifecycle.shim/stop-signal: unknown signal "0""#,
            ),
            (
                "lifecycle.shim/stop-signal",
                "KILL",
                "lifecycle.shim/stop-signal: SIGKILL cannot be the stop signal",
            ),
            (
                "lifecycle.shim/post-start",
                "{",
                "lifecycle.shim/post-start: invalid JSON: ",
            ),
            (
                "lifecycle.shim/pre-stop",
                r#"{"httpGet":{"port":70000}}"#,
                "lifecycle.shim/pre-stop: httpGet.port 70000 is out of range 1-65535",
            ),
            (
                "lifecycle.shim/pre-stop",
                r#"{"sleep":{"seconds":-1}}"#,
                "lifecycle.shim/pre-stop: sleep.seconds -1 is negative",
            ),
        ];
        for (k, v, want) in cases {
            let e = err(&[(k, v)]);
            assert!(e.starts_with(want), "{k}={v}: {e}");
        }
    }

    #[test]
    fn named_ports() {
        let ports = r#"[{"name":"http","containerPort":8080,"protocol":"TCP","hostPort":80},{"name":"dns","containerPort":53,"protocol":"UDP"},{"containerPort":9}]"#;
        let c = cfg(&[
            ("io.kubernetes.container.ports", ports),
            (
                "lifecycle.shim/post-start",
                r#"{"httpGet":{"port":"http","path":"/up"}}"#,
            ),
        ])
        .unwrap();
        assert_eq!(
            c.post_start,
            Some(Handler::HttpGet(HttpGet {
                path: "/up".into(),
                port: 8080,
                host: None,
                scheme: Scheme::Http,
                headers: vec![]
            }))
        );
        assert_eq!(
            err(&[
                ("io.kubernetes.container.ports", ports),
                ("lifecycle.shim/pre-stop", r#"{"tcpSocket":{"port":"dns"}}"#)
            ]),
            r#"lifecycle.shim/pre-stop: tcpSocket.port "dns" is not a port name in io.kubernetes.container.ports (known: http)"#
        );
        assert!(err(&[("io.kubernetes.container.ports", "{")])
            .starts_with("io.kubernetes.container.ports: invalid container ports JSON"));
        // A plain key overridden for this container is not resolved.
        assert!(cfg(&[
            ("io.kubernetes.cri.container-name", "web"),
            (
                "lifecycle.shim/pre-stop",
                r#"{"tcpSocket":{"port":"nope"}}"#
            ),
            ("pre-stop.lifecycle.shim/web", "none"),
        ])
        .is_ok());
    }

    #[test]
    fn btreemap_input_works_too() {
        let m: BTreeMap<String, String> =
            [("lifecycle.shim/pre-stop".to_string(), SLEEP.to_string())].into();
        assert!(HookConfig::from_annotations(&m).unwrap().grace_timer);
    }
}
