//! `lifecycle-runc`: runc's command line over the lifecycle runtime library, so OCI
//! conformance suites, containerd-shim-runc-v2 (`BinaryName`, `ctr run --runc-binary`) and
//! operators can drive the runtime as they drive runc. See docs/runc.md.

mod args;
mod cmd;
mod log;
mod store;
mod tty;

use args::{flag, opt, Flag};
use store::Root;

/// A failed command: the message runc-style tools read from stderr or the JSON log, and the
/// exit code (1, or 255 for a failed exec, as runc).
#[derive(Debug)]
pub struct Fail {
    msg: String,
    code: i32,
}

impl Fail {
    pub fn new(msg: impl Into<String>) -> Fail {
        Fail {
            msg: msg.into(),
            code: 1,
        }
    }

    pub fn not_exist() -> Fail {
        Fail::new("container does not exist")
    }

    pub fn code(mut self, code: i32) -> Fail {
        self.code = code;
        self
    }

    /// Prefixes the message (`exec failed: ...`).
    pub fn context(mut self, what: &str) -> Fail {
        self.msg = format!("{what}: {}", self.msg);
        self
    }
}

impl From<lifecycle_runtime::Error> for Fail {
    fn from(e: lifecycle_runtime::Error) -> Fail {
        use lifecycle_runtime::Error as E;
        let mut msg = e.to_string();
        // Setup errors already carry the errno text in their message.
        if !matches!(e, E::Setup { .. }) {
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
        }
        Fail::new(msg)
    }
}

pub type Res = Result<(), Fail>;

/// What every command gets: the global flags.
pub struct Global {
    pub root: Root,
}

const GLOBAL_FLAGS: &[Flag] = &[
    opt(&["root"]),
    opt(&["log"]),
    opt(&["log-format"]),
    flag(&["debug"]),
    flag(&["systemd-cgroup"]),
    opt(&["criu"]),
    opt(&["rootless"]),
    flag(&["help", "h"]),
    flag(&["version", "v"]),
];

const DEFAULT_ROOT: &str = "/run/lifecycle-runc";

const USAGE: &str = "\
lifecycle-runc - an OCI runtime with runc's command line, over the lifecycle runtime library

USAGE:
   lifecycle-runc [global options] command [command options] [arguments...]

COMMANDS:
   create      create a container (held before its entrypoint until start)
   start       executes the user defined process in a created container
   run         create and run a container (foreground, or --detach)
   state       output the state of a container
   kill        send a signal (default: SIGTERM) to the container's init, or --all processes
   delete      delete a container (--force kills a running one first)
   exec        execute new process inside the container
   ps          processes running inside a container (--format table|json)
   list        containers under --root (--format table|json, -q)
   pause       suspend all processes inside the container
   resume      resume all processes that have been previously paused
   update      update container resource constraints (--resources FILE|-, or flags)
   features    show the enabled features (OCI runtime features document)
   spec        create a new specification file (config.json)
   events, checkpoint, restore: not supported

GLOBAL OPTIONS:
   --root value        root directory for storage of container state (default: \"/run/lifecycle-runc\")
   --log value         log file (default: stderr)
   --log-format value  'text' (default) or 'json'
   --debug             enable debug logging
   --systemd-cgroup    not supported (fails): use cgroupfs paths
   --criu value        ignored
   --rootless value    'auto' or 'false' accepted; 'true' is not supported
   --help, -h          show help
   --version, -v       print the version
";

fn main() {
    lifecycle_runtime::run_helper_if_requested();
    // This process is short-lived: its container processes must reach the parent that waits
    // for them (containerd-shim-runc-v2 is their subreaper) unreaped.
    lifecycle_runtime::reaper::set_manual();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let code = match run(&argv) {
        Ok(()) => 0,
        Err(f) => {
            log::error(&f.msg);
            f.code
        }
    };
    std::process::exit(code);
}

fn run(argv: &[String]) -> Res {
    let g = args::parse(argv, GLOBAL_FLAGS, false).map_err(Fail::new)?;
    log::init(
        g.get("log"),
        g.get("log-format").unwrap_or("text"),
        g.is("debug"),
    )
    .map_err(Fail::new)?;
    if g.is("version") {
        println!(
            "lifecycle-runc version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            cmd::info::OCI_VERSION_MAX
        );
        return Ok(());
    }
    let Some((command, rest)) = g.args.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    if g.is("help") || command == "help" || command == "h" {
        print!("{USAGE}");
        return Ok(());
    }
    if g.is("systemd-cgroup") {
        return Err(Fail::new(
            "--systemd-cgroup is not supported: lifecycle-runc manages cgroupfs paths only (set SystemdCgroup = false)",
        ));
    }
    if g.get("rootless").is_some_and(|v| v == "true") {
        return Err(Fail::new("--rootless=true is not supported"));
    }
    log::debug(&format!("lifecycle-runc {argv:?}"));
    let global = Global {
        root: Root(
            g.get("root")
                .filter(|r| !r.is_empty())
                .unwrap_or(DEFAULT_ROOT)
                .into(),
        ),
    };
    let rest = rest.to_vec();
    match command.as_str() {
        // runc's wording: "runc create failed: container with given ID already exists".
        "create" => cmd::lifecycle::create(&global, &rest)
            .map_err(|f| f.context("lifecycle-runc create failed")),
        "run" => {
            cmd::lifecycle::run(&global, &rest).map_err(|f| f.context("lifecycle-runc run failed"))
        }
        "start" => cmd::lifecycle::start(&global, &rest),
        "delete" => cmd::lifecycle::delete(&global, &rest),
        "kill" => cmd::lifecycle::kill(&global, &rest),
        "pause" => cmd::lifecycle::pause(&global, &rest, true),
        "resume" => cmd::lifecycle::pause(&global, &rest, false),
        "exec" => cmd::exec::exec(&global, &rest),
        "state" => cmd::info::state(&global, &rest),
        "list" => cmd::info::list(&global, &rest),
        "ps" => cmd::info::ps(&global, &rest),
        "features" => cmd::info::features(&rest),
        "spec" => cmd::info::spec(&rest),
        "update" => cmd::update::update(&global, &rest),
        "events" | "checkpoint" | "restore" => Err(Fail::new(format!(
            "{command} is not supported by lifecycle-runc"
        ))),
        other => Err(Fail::new(format!(
            "No help topic for '{other}' (unknown command)"
        ))),
    }
}

/// The one positional argument a command takes (runc: `requires exactly 1 argument(s)`).
pub fn one_id<'a>(command: &str, args: &'a [String]) -> Result<&'a str, Fail> {
    match args {
        [id] => Ok(id),
        _ => Err(Fail::new(format!(
            "lifecycle-runc: {command:?} requires exactly 1 argument(s)"
        ))),
    }
}
