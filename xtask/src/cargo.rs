//! Finding the binaries cargo builds, from its JSON messages rather than guessed paths.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::process;

/// One executable cargo built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// The target's name: the binary's, or the integration test file's stem.
    pub name: String,
    /// Whether it is a test harness (integration or unit tests).
    pub is_test: bool,
    pub path: PathBuf,
}

#[derive(Deserialize)]
struct Message {
    reason: String,
    target: Option<Target>,
    profile: Option<Profile>,
    executable: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
}

#[derive(Deserialize)]
struct Profile {
    test: bool,
}

/// Runs `cargo <args> --message-format=json` and returns the executables it produced.
pub fn build(args: &[&str]) -> Result<Vec<Executable>> {
    let json = process::output(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(args)
            .arg("--message-format=json"),
    )
    .context("building with cargo")?;
    parse_messages(&json)
}

/// Builds the `kernelx` binary (release or debug) and returns its path.
pub fn kernelx(release: bool) -> Result<PathBuf> {
    let mut args = vec!["build", "--package", "kernelx", "--bin", "kernelx"];
    if release {
        args.push("--release");
    }
    Ok(build(&args)?
        .into_iter()
        .find(|e| e.name == "kernelx" && !e.is_test)
        .context("cargo did not report the kernelx binary")?
        .path)
}

fn parse_messages(json: &str) -> Result<Vec<Executable>> {
    let mut found = Vec::new();
    for line in json.lines().filter(|l| l.starts_with('{')) {
        let message: Message =
            serde_json::from_str(line).with_context(|| format!("cargo message {line}"))?;
        if message.reason != "compiler-artifact" {
            continue;
        }
        if let (Some(target), Some(profile), Some(path)) =
            (message.target, message.profile, message.executable)
        {
            found.push(Executable {
                name: target.name,
                is_test: profile.test,
                path,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_executables_from_cargo_messages() {
        let json = r#"{"reason":"compiler-artifact","target":{"name":"vm_lab","kind":["test"]},"profile":{"test":true},"executable":"/t/vm_lab-123"}
{"reason":"compiler-artifact","target":{"name":"kernelx_spec","kind":["lib"]},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"name":"kernelx","kind":["bin"]},"profile":{"test":false},"executable":"/t/kernelx"}
{"reason":"build-finished","success":true}"#;
        let found = parse_messages(json).unwrap();
        assert_eq!(
            found,
            [
                Executable {
                    name: "vm_lab".into(),
                    is_test: true,
                    path: "/t/vm_lab-123".into()
                },
                Executable {
                    name: "kernelx".into(),
                    is_test: false,
                    path: "/t/kernelx".into()
                },
            ]
        );
    }
}
