//! Running external programs. Every failure names the rendered command and shows the tail of
//! what it printed, so a broken step can be re-run by hand.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use kernelx_kbuild::shell_quote;

/// How many lines of a failed command's output an error shows.
const TAIL_LINES: usize = 25;

/// Renders `cmd` as a shell command line a user can paste.
pub fn render(cmd: &Command) -> String {
    let mut words = vec![shell_quote(cmd.get_program())];
    words.extend(cmd.get_args().map(shell_quote));
    let line = words.join(" ");
    match cmd.get_current_dir() {
        Some(dir) => format!("(cd {} && {line})", shell_quote(dir)),
        None => line,
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// Runs `cmd` with stdout and stderr appended to `log`; on failure the error carries the
/// command and the log's tail.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let file = File::create(log).with_context(|| format!("creating log {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .with_context(|| format!("starting `{}`", render(cmd)))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        bail!(
            "`{}` failed ({status}); full log: {}\n{}",
            render(cmd),
            log.display(),
            tail(&text)
        );
    }
    Ok(())
}

/// Runs `cmd` with inherited stdout/stderr (for steps whose output the user should see).
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting `{}`", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", render(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; on failure the error carries stderr's tail.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting `{}`", render(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({})\n{}",
            render(cmd),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{}` printed non-UTF-8", render(cmd)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_commands_pasteably() {
        let mut cmd = Command::new("make");
        cmd.args([
            "-C",
            "/src/linux",
            "CC=x86_64-linux-gnu-gcc-12",
            "it's here",
            "",
        ]);
        assert_eq!(
            render(&cmd),
            r"make -C /src/linux CC=x86_64-linux-gnu-gcc-12 'it'\''s here' ''"
        );
    }

    #[test]
    fn failure_names_command_and_output() {
        let err = output(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c 'echo boom >&2; exit 3'"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }
}
