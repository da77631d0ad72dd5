//! Building a project with cargo and running what it built, with `.env` and `RAYAI_*` variables.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use super::CliResult;

/// A project directory with a `Cargo.toml`.
pub(crate) struct Project {
    dir: PathBuf,
    manifest: PathBuf,
}

impl Project {
    /// The project at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let dir = path
            .canonicalize()
            .map_err(|e| format!("cannot open the project {}: {e}", path.display()))?;
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err(format!(
                "{} is not a project: it has no Cargo.toml (create one with `rayai init NAME`)",
                dir.display()
            ));
        }
        Ok(Project { dir, manifest })
    }

    /// Builds the project's binary with cargo (its progress and errors shown as cargo prints
    /// them), with `features` on (`rayai/kubernetes`), and returns the executable's path.
    pub(crate) fn build(&self, release: bool, features: &[&str]) -> Result<PathBuf, String> {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.arg("build")
            .arg("--manifest-path")
            .arg(&self.manifest)
            .arg("--message-format=json-render-diagnostics")
            .current_dir(&self.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if release {
            cmd.arg("--release");
        }
        if !features.is_empty() {
            cmd.arg("--features").arg(features.join(","));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run cargo (is it installed and on PATH?): {e}"))?;
        let mut exe = None;
        if let Some(stdout) = child.stdout.take() {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(path) = self.executable_in(&line) {
                    exe = Some(path);
                }
            }
        }
        let status = child.wait().map_err(|e| format!("cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building {} failed (cargo's messages are above)",
                self.dir.display()
            ));
        }
        exe.ok_or_else(|| format!("{} has no binary to run", self.manifest.display()))
    }

    /// The executable a cargo JSON message announces, when it is this project's binary.
    fn executable_in(&self, line: &str) -> Option<PathBuf> {
        let msg: serde_json::Value = serde_json::from_str(line).ok()?;
        if msg["reason"] != "compiler-artifact" {
            return None;
        }
        let kinds = msg["target"]["kind"].as_array()?;
        if !kinds.iter().any(|k| k == "bin") {
            return None;
        }
        let manifest = Path::new(msg["manifest_path"].as_str()?);
        if manifest.canonicalize().ok()? != self.manifest {
            return None;
        }
        msg["executable"].as_str().map(PathBuf::from)
    }

    fn command(&self, exe: &Path, env: Vec<(String, String)>) -> Command {
        let mut cmd = Command::new(exe);
        cmd.current_dir(&self.dir);
        for (key, value) in load_dotenv(&self.dir.join(".env")) {
            if std::env::var_os(&key).is_none() {
                cmd.env(key, value);
            }
        }
        // Errors in the config file then name it by its full path.
        let config = self.dir.join("rayai.toml");
        if std::env::var_os("RAYAI_CONFIG").is_none() && config.is_file() {
            cmd.env("RAYAI_CONFIG", config);
        }
        // Which project this is, for the server to report (`rayai status` compares it).
        cmd.env("RAYAI_PROJECT", &self.dir);
        cmd.envs(env);
        cmd
    }

    /// Replaces this process with the project's server (on Unix), so Ctrl-C and SIGTERM reach
    /// it directly and its exit code is ours; elsewhere, runs it and waits.
    pub(crate) fn exec(&self, exe: &Path, env: Vec<(String, String)>) -> CliResult {
        let mut cmd = self.command(exe, env);
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            let err = cmd.exec();
            Err(format!("cannot run {}: {err}", exe.display()))
        }
        #[cfg(not(unix))]
        {
            wait(&mut cmd, exe)
        }
    }

    /// Runs the project's binary and waits for it.
    pub(crate) fn run(&self, exe: &Path, env: Vec<(String, String)>) -> CliResult {
        wait(&mut self.command(exe, env), exe)
    }
}

fn wait(cmd: &mut Command, exe: &Path) -> CliResult {
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// The variables of a `.env` file (none when there is no file): `KEY=value` lines, `#` comments,
/// an optional `export `, values optionally in single or double quotes.
pub(crate) fn load_dotenv(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .map(|text| parse_dotenv(&text))
        .unwrap_or_default()
}

fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) if value.len() >= 2 && value.ends_with(q) => {
                value[1..value.len() - 1].to_owned()
            }
            // An unquoted value ends at a ` #` comment.
            _ => value.split(" #").next().unwrap_or("").trim_end().to_owned(),
        };
        vars.push((key.to_owned(), value));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_keys_values_quotes_and_comments() {
        let vars = parse_dotenv(
            "# comment\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='x'\nE=v # note\nnot a pair\n",
        );
        let want = [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted # not a comment"),
            ("D", "x"),
            ("E", "v"),
        ];
        let got: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }
}
