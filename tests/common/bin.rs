//! Running the `tfmpe` command line from a test, as a user would, with failure messages that
//! show the command, its environment and what it printed.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

/// One invocation of the command line, built with [`tfmpe`]. The binary is `TFMPE_BIN` when set
/// (scripts/gpu-check.sh points it at the staged release build on a GPU machine), else cargo's
/// build of this package. `TFMPE_BACKEND` is never inherited from the test's environment: a
/// test that wants a backend says so with [`Tfmpe::backend`], the others get the default.
pub struct Tfmpe {
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Variables removed from the inherited environment.
    unset: Vec<String>,
}

/// `tfmpe ARGS…`, not yet run.
pub fn tfmpe<S: AsRef<str>>(args: &[S]) -> Tfmpe {
    let args = args.iter().map(|a| a.as_ref().to_string()).collect();
    Tfmpe { args, env: Vec::new(), unset: Vec::new() }
}

/// What a finished invocation printed, and how it ended.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line and its environment, for messages.
    pub command: String,
}

impl Tfmpe {
    /// Sets `TFMPE_BACKEND`.
    pub fn backend(self, name: &str) -> Self {
        self.env("TFMPE_BACKEND", name)
    }

    /// More arguments after those given to [`tfmpe`].
    pub fn args(mut self, more: &[&str]) -> Self {
        self.args.extend(more.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Removes `key` from the environment the command inherits.
    pub fn without(mut self, key: &str) -> Self {
        self.unset.push(key.to_string());
        self
    }

    fn command(&self) -> (Command, String, PathBuf) {
        let bin = std::env::var_os("TFMPE_BIN")
            .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tfmpe")), PathBuf::from);
        let unset: String = self.unset.iter().map(|k| format!("-u {k} ")).collect();
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        let command = format!("env {unset}{env}tfmpe {}", self.args.join(" "));
        let mut cmd = Command::new(&bin);
        cmd.args(&self.args).env_remove("TFMPE_BACKEND");
        self.unset.iter().for_each(|k| {
            cmd.env_remove(k);
        });
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        (cmd, command, bin)
    }

    /// Starts the command without waiting for it (its output is discarded).
    pub fn spawn(&self) -> std::process::Child {
        let (mut cmd, command, bin) = self.command();
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        cmd.spawn().unwrap_or_else(|e| panic!("`{command}`: cannot start {}: {e}", bin.display()))
    }

    /// Runs the command to its end, whatever its exit status.
    pub fn run(&self) -> Ran {
        let (mut cmd, command, bin) = self.command();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("`{command}`: cannot start {}: {e}", bin.display()));
        Ran {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            command,
        }
    }

    /// Runs the command and fails the test, with its stderr, unless it succeeds.
    #[track_caller]
    pub fn succeeds(&self) -> Ran {
        let ran = self.run();
        assert!(
            ran.status.success(),
            "`{}` failed ({}); stderr:\n{}",
            ran.command,
            ran.status,
            ran.stderr
        );
        ran
    }

    /// Runs the command and expects a clean failure: exit status 1 (a tfmpe error) or 2 (clap's
    /// usage error for a malformed argument), no panic, and a message on stderr that contains
    /// every one of `needles`.
    #[track_caller]
    pub fn fails_with(&self, needles: &[&str]) -> Ran {
        let ran = self.run();
        let (command, err) = (&ran.command, &ran.stderr);
        assert!(
            matches!(ran.status.code(), Some(1 | 2)),
            "`{command}` should fail cleanly but ended with {}; stderr:\n{err}",
            ran.status
        );
        assert!(!err.contains("panicked"), "`{command}` panicked:\n{err}");
        for n in needles {
            assert!(err.contains(n), "`{command}`: expected `{n}` in:\n{err}");
        }
        ran
    }
}

impl Ran {
    /// Standard output as one JSON value.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` printed no JSON ({e}):\n{}", self.command, self.stdout)
        })
    }
}

/// An empty scratch folder for one test, named after it and this process.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tfmpe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}
