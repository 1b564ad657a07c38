//! The kprobes the running kernel already has, and who registered them when that is known.
//!
//! `/sys/kernel/debug/kprobes/list` (debugfs) lists every registered kprobe, one line each:
//! `<address>  <k|r>  <symbol>+0x<offset>  <module> <flags>`, where flags are `[GONE]`,
//! `[DISABLED]`, `[OPTIMIZED]` and `[FTRACE]`. It does not say who owns a probe; the tracefs
//! `kprobe_events` file names the probes created through tracefs (`p:group/event
//! [module:]symbol+<decimal offset>`). A probe in the list but not in `kprobe_events` belongs to
//! a BPF link (perf kprobe), a kernel module or another tool.

use std::ops::Range;

use serde::Serialize;

use crate::host::{HostError, HostView};

/// The kernel's list of registered kprobes (debugfs).
pub const KPROBES_LIST: &str = "/sys/kernel/debug/kprobes/list";

/// Where tracefs lists its kprobe events (its own mount point, then the debugfs one).
pub const KPROBE_EVENTS: [&str; 2] = [
    "/sys/kernel/tracing/kprobe_events",
    "/sys/kernel/debug/tracing/kprobe_events",
];

/// Why the registered kprobes could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KprobesError {
    /// A file could not be read.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A line of the list is not in the kernel's format.
    #[error("{KPROBES_LIST} line {line}: unexpected `{text}`")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// One registered kprobe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegisteredKprobe {
    /// The probed address (0 when the kernel hides addresses from this process).
    pub address: u64,
    /// A return probe (`r`) rather than a kprobe (`k`).
    pub is_return: bool,
    /// Where, as the kernel prints it (`alloc_pipe_info+0x81`).
    pub place: String,
    /// The module, when the address is in one.
    pub module: Option<String>,
    /// The flags (`[OPTIMIZED]`, `[FTRACE]`, ...), as printed.
    pub flags: String,
    /// The tracefs event that owns it (`group/event`), when one does.
    pub event: Option<String>,
}

impl RegisteredKprobe {
    /// Who holds the probe, for people.
    pub fn holder(&self) -> String {
        let what = if self.is_return {
            "kretprobe"
        } else {
            "kprobe"
        };
        let flags = if self.flags.is_empty() {
            String::new()
        } else {
            format!(" {}", self.flags)
        };
        match &self.event {
            Some(event) => format!("the tracefs {what} event {event} ({}{flags})", self.place),
            None => format!(
                "a {what} at {}{flags} that is not a tracefs event (a BPF program's kprobe \
                 link, a kernel module or another tool; `bpftool link` lists BPF ones)",
                self.place
            ),
        }
    }
}

/// The kernel's registered kprobes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Kprobes {
    probes: Vec<RegisteredKprobe>,
}

impl Kprobes {
    /// Reads the host's kprobe list and names tracefs owners; `None` when debugfs does not
    /// show the list (not mounted, or the kernel has no kprobes).
    pub fn read(host: &HostView) -> Result<Option<Kprobes>, KprobesError> {
        if !host.exists(KPROBES_LIST) {
            return Ok(None);
        }
        let mut kprobes = Kprobes::parse_list(&host.read_to_string(KPROBES_LIST)?)?;
        if let Some(events) = KPROBE_EVENTS.iter().find(|path| host.exists(path)) {
            kprobes.name_events(&host.read_to_string(events)?);
        }
        Ok(Some(kprobes))
    }

    /// Parses the text of `/sys/kernel/debug/kprobes/list`.
    pub fn parse_list(text: &str) -> Result<Kprobes, KprobesError> {
        let probes = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| {
                parse_list_line(line).ok_or_else(|| KprobesError::Parse {
                    line: i + 1,
                    text: line.to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Kprobes { probes })
    }

    /// Every registered probe.
    pub fn probes(&self) -> &[RegisteredKprobe] {
        &self.probes
    }

    /// The probes registered at an address in `addresses`. (Addresses are hidden, all 0, only
    /// from a process that could not read `/proc/kcore` either.)
    pub fn within(&self, addresses: Range<u64>) -> impl Iterator<Item = &RegisteredKprobe> {
        self.probes
            .iter()
            .filter(move |p| addresses.contains(&p.address))
    }

    /// Attaches tracefs event names (from the text of `kprobe_events`) to the probes they own.
    fn name_events(&mut self, kprobe_events: &str) {
        for line in kprobe_events.lines() {
            let mut fields = line.split_whitespace();
            let (Some(head), Some(place)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some((_, event)) = head.split_once(':') else {
                continue;
            };
            let (module, place) = match place.split_once(':') {
                Some((module, place)) => (Some(module), place),
                None => (None, place),
            };
            let Some(place) = list_place(place) else {
                continue;
            };
            for probe in &mut self.probes {
                let same_place = match u64::from_str_radix(place.trim_start_matches("0x"), 16) {
                    Ok(address) if place.starts_with("0x") => probe.address == address,
                    _ => probe.place == place,
                };
                if same_place && probe.module.as_deref() == module && probe.event.is_none() {
                    probe.event = Some(event.to_owned());
                }
            }
        }
    }
}

/// A tracefs place (`sym`, `sym+129`, `sym+0x81`, `0xffff...`) in the list's form
/// (`sym+0x81`).
fn list_place(place: &str) -> Option<String> {
    if place.starts_with("0x") {
        return Some(place.to_owned());
    }
    let (symbol, offset) = place.split_once('+').unwrap_or((place, "0"));
    let offset = match offset.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => offset.parse().ok()?,
    };
    Some(format!("{symbol}+{offset:#x}"))
}

fn parse_list_line(line: &str) -> Option<RegisteredKprobe> {
    let mut fields = line.split_whitespace();
    let address = u64::from_str_radix(fields.next()?, 16).ok()?;
    let is_return = match fields.next()? {
        "k" => false,
        "r" => true,
        _ => return None,
    };
    // `%pS` form (no symbol found at registration): `sym+0x81/0x220 [module]`.
    let place = fields.next()?;
    let place = place.split_once('/').map_or(place, |(p, _)| p).to_owned();
    let mut module = None;
    let mut flags = String::new();
    for field in fields {
        if field.starts_with("[GONE]")
            || field.starts_with("[DISABLED]")
            || field.starts_with("[OPTIMIZED]")
            || field.starts_with("[FTRACE]")
        {
            flags.push_str(field);
        } else if module.is_none() {
            let name = field.trim_start_matches('[').trim_end_matches(']');
            module = Some(name.to_owned());
        } else {
            return None;
        }
    }
    Some(RegisteredKprobe {
        address,
        is_return,
        place,
        module,
        flags,
        event: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    // As 6.12 prints them (the first line was read in the lab VM).
    const LIST: &str = "\
ffffffffa1654431  k  alloc_pipe_info+0x81    [OPTIMIZED]
ffffffffa1695640  k  splice_grow_spd+0x10    [DISABLED]
ffffffffc0001014  r  kx_imm_reg+0x4  kx_target [FTRACE]
";

    #[test]
    fn parses_the_list_and_names_tracefs_owners() {
        let host = FakeHost::new();
        host.write(KPROBES_LIST, LIST);
        host.write(
            KPROBE_EVENTS[0],
            "p:kx/t alloc_pipe_info+129\nr:kx/ret kx_target:kx_imm_reg+4 arg1=%di\n",
        );
        let kprobes = Kprobes::read(&host.view()).unwrap().unwrap();
        let probes = kprobes.probes();
        assert_eq!(probes.len(), 3);
        assert_eq!(probes[0].address, 0xffffffffa1654431);
        assert_eq!(probes[0].place, "alloc_pipe_info+0x81");
        assert_eq!(probes[0].flags, "[OPTIMIZED]");
        assert_eq!(probes[0].event.as_deref(), Some("kx/t"));
        assert_eq!(probes[1].event, None);
        assert!(probes[2].is_return);
        assert_eq!(probes[2].module.as_deref(), Some("kx_target"));
        assert_eq!(probes[2].event.as_deref(), Some("kx/ret"));
        assert!(probes[0].holder().contains("tracefs kprobe event kx/t"));
        assert!(probes[1].holder().contains("not a tracefs event"));
    }

    #[test]
    fn finds_probes_by_address() {
        let kprobes = Kprobes::parse_list(LIST).unwrap();
        let at = |start: u64, end: u64| -> Vec<&str> {
            kprobes
                .within(start..end)
                .map(|p| p.place.as_str())
                .collect()
        };
        assert_eq!(
            at(0xffffffffa1654431, 0xffffffffa1654432),
            ["alloc_pipe_info+0x81"]
        );
        assert_eq!(at(0xffffffffa1654432, 0xffffffffa1695640), [] as [&str; 0]);
        assert_eq!(at(0xffffffffa1654400, 0xffffffffa1695641).len(), 2);
    }

    #[test]
    fn is_absent_without_debugfs() {
        let host = FakeHost::new();
        assert_eq!(Kprobes::read(&host.view()).unwrap(), None);
    }

    #[test]
    fn refuses_a_line_it_does_not_know() {
        let err = Kprobes::parse_list("ffffffffa1654431  x  alloc_pipe_info+0x81\n").unwrap_err();
        assert!(matches!(err, KprobesError::Parse { line: 1, .. }), "{err}");
    }
}
