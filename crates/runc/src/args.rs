//! Command-line parsing with the rules of runc's urfave/cli (Go's `flag` package): a flag is
//! `-name` or `--name`, its value `--name value` or `--name=value`, a boolean takes no value
//! (or `--name=true|false`); `--` ends the flags. Commands runc marks `SkipArgReorder` (exec,
//! ps) stop at the first positional argument, so the container's command keeps its own flags;
//! the others accept flags after positional arguments too, as runc's reordering does.

use std::collections::HashMap;

/// One flag a command accepts: its names (without dashes) and whether it takes a value.
pub struct Flag {
    pub names: &'static [&'static str],
    pub value: bool,
}

pub const fn flag(names: &'static [&'static str]) -> Flag {
    Flag {
        names,
        value: false,
    }
}

pub const fn opt(names: &'static [&'static str]) -> Flag {
    Flag { names, value: true }
}

/// What was parsed: flag values by the flag's first name, and the positional arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<&'static str, Vec<String>>,
    pub args: Vec<String>,
}

impl Parsed {
    /// The last value given for a value flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value given for a repeatable value flag (`--env A=1 --env B=2`).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    /// A boolean flag: set, and not `=false`.
    pub fn is(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "false")
    }
}

/// Parses `argv` (without the command name) against `flags`.
pub fn parse(argv: &[String], flags: &[Flag], intersperse: bool) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        if a == "--" {
            out.args.extend(argv[i..].iter().cloned());
            break;
        }
        let body = match a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
            Some(b) if !b.is_empty() && a != "-" => b,
            _ => {
                out.args.push(a.clone());
                if !intersperse {
                    out.args.extend(argv[i..].iter().cloned());
                    break;
                }
                continue;
            }
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (body, None),
        };
        let Some(f) = flags.iter().find(|f| f.names.contains(&name)) else {
            return Err(format!("flag provided but not defined: -{name}"));
        };
        let value = if f.value {
            match inline {
                Some(v) => v,
                None => {
                    let v = argv
                        .get(i)
                        .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                    i += 1;
                    v.clone()
                }
            }
        } else {
            match inline.as_deref() {
                None | Some("true") | Some("1") => "true".to_owned(),
                Some("false") | Some("0") => "false".to_owned(),
                Some(v) => {
                    return Err(format!(
                        "invalid boolean value {v:?} for -{name}: parse error"
                    ))
                }
            }
        };
        out.values.entry(f.names[0]).or_default().push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    const FLAGS: &[Flag] = &[
        opt(&["bundle", "b"]),
        flag(&["detach", "d"]),
        opt(&["env", "e"]),
    ];

    #[test]
    fn go_flag_rules() {
        let p = parse(&v(&["-bundle", "/b", "--detach", "id"]), FLAGS, true).unwrap();
        assert_eq!(p.get("bundle"), Some("/b"));
        assert!(p.is("detach"));
        assert_eq!(p.args, v(&["id"]));

        let p = parse(&v(&["id", "--bundle=/x", "-d=false"]), FLAGS, true).unwrap();
        assert_eq!(p.get("bundle"), Some("/x"));
        assert!(!p.is("detach"));
        assert_eq!(p.args, v(&["id"]));

        let p = parse(
            &v(&["-e", "A=1", "--env", "B=2", "id", "sh", "-c", "x"]),
            FLAGS,
            false,
        )
        .unwrap();
        assert_eq!(p.all("env"), v(&["A=1", "B=2"]));
        assert_eq!(p.args, v(&["id", "sh", "-c", "x"]));

        let p = parse(&v(&["--", "-d"]), FLAGS, true).unwrap();
        assert_eq!(p.args, v(&["-d"]));

        assert!(parse(&v(&["--nope"]), FLAGS, true)
            .unwrap_err()
            .contains("flag provided but not defined: -nope"));
        assert!(parse(&v(&["--bundle"]), FLAGS, true).is_err());
        assert!(parse(&v(&["-d=maybe"]), FLAGS, true).is_err());
    }
}
