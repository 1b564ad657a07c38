//! One pass over the sources a kernel build can read: where an identifier is mentioned, and
//! who includes whom.
//!
//! The pass starts from the build's translation units (the compile units of the debug
//! vmlinux, see [`BuiltUnits`]) and kbuild's forced includes (`-include
//! include/linux/kconfig.h` and friends), reads each file once, and follows its `#include`s
//! to the files they name, level by level, on `jobs` threads. Files no built unit can reach
//! (the 490 MB of amdgpu register headers, other architectures, unbuilt drivers) are never
//! read: on the 6.12 lab tree that is about 6 000 files (80 MB) instead of 56 000 (1.3 GB).
//!
//! Resolution follows gcc with kbuild's `LINUXINCLUDE`: `"name"` is first looked up next to the
//! including file, then (like `<name>`) in `arch/<arch>/include`, its `generated`,
//! `include`, and the uapi directories, in that order. A name found in none of them is matched
//! against every file whose path ends with it (directories add `-I` flags of their own), which
//! over-approximates; the preprocessor has the last word later. Includes whose name is computed
//! by a macro (`#include TRACE_INCLUDE(..)`, 74 of them in 6.12) are not followed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read as _;
use std::num::NonZeroUsize;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use memchr::memmem;

use crate::{BuiltUnits, KbuildError};

/// Top-level directories that hold host programs or prose: no unit there is a kernel unit
/// when every unit counts ([`BuiltUnits::Unrestricted`]).
const HOST_TOP_DIRS: [&str; 4] = ["tools", "scripts", "Documentation", "LICENSES"];

/// Headers kbuild's `c_flags` force into every unit (`-include`), so every unit reads them.
pub(crate) const FORCED_INCLUDES: [&str; 3] = [
    "include/linux/compiler-version.h",
    "include/linux/kconfig.h",
    "include/linux/compiler_types.h",
];

/// How an `#include` names its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncludeKind {
    /// `#include "name"`: looked up next to the including file first.
    Quote,
    /// `#include <name>`: looked up in the search path only.
    Angle,
    /// `#include_next`: continues the search after the including file's directory.
    Next,
}

/// One `#include` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// How it names the file.
    pub kind: IncludeKind,
    /// The name as written between the quotes or brackets.
    pub name: String,
    /// 1-based line.
    pub line: u32,
}

/// How an include was resolved to a file of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// A `"name"` found next to the including file.
    OwnDirectory,
    /// Found in kbuild's standard include directories.
    SearchPath,
    /// Not found there; the file's path ends with the name (a directory-specific `-I`).
    NameSuffix,
}

#[derive(Debug, Default)]
struct FileScan {
    bytes: u64,
    includes: Vec<Include>,
    mentions: Vec<u32>,
}

/// The result of [`TreeIndex::scan`].
#[derive(Debug)]
pub struct TreeIndex {
    root: PathBuf,
    arch: String,
    roots: Vec<String>,
    /// Every regular file of the tree, relative, `/`-separated, sorted.
    paths: Vec<String>,
    by_path: HashMap<String, usize>,
    /// Files by the last component of their path.
    by_file_name: HashMap<String, Vec<usize>>,
    /// Whether the file was read (reachable from a starting unit).
    scanned: Vec<bool>,
    /// The starting units and forced includes.
    start: Vec<usize>,
    forced: Vec<usize>,
    includes: Vec<Vec<Include>>,
    mentions: HashMap<usize, Vec<u32>>,
    /// Include directives of read files by the last component of their name: (file, index in
    /// its includes).
    by_include_name: HashMap<String, Vec<(usize, usize)>>,
    identifier: Option<String>,
    bytes: u64,
}

impl TreeIndex {
    /// Reads the sources of the tree at `root` (of architecture `arch`, e.g. `x86`) that
    /// `built`'s units can reach, noting the whole-word occurrences of `identifier` if given.
    ///
    /// # Errors
    ///
    /// [`KbuildError::Read`] for a directory or file that cannot be read.
    pub fn scan(
        root: &Path,
        arch: &str,
        identifier: Option<&str>,
        built: &BuiltUnits,
        jobs: NonZeroUsize,
    ) -> Result<TreeIndex, KbuildError> {
        let mut paths = Vec::new();
        walk(root, "", &mut paths)?;
        paths.sort();
        let mut index = TreeIndex::new(root, arch, identifier, paths);
        let mut start: Vec<usize> = match built {
            BuiltUnits::Listed { units, .. } => units
                .iter()
                .filter_map(|u| index.by_path.get(u.to_str()?).copied())
                .collect(),
            BuiltUnits::Unrestricted => (0..index.paths.len())
                .filter(|&i| {
                    let p = &index.paths[i];
                    is_unit(Path::new(p))
                        && !HOST_TOP_DIRS
                            .iter()
                            .any(|d| p.starts_with(&format!("{d}/")))
                })
                .collect(),
        };
        start.sort_unstable();
        index.forced = FORCED_INCLUDES
            .iter()
            .filter_map(|f| index.by_path.get(*f).copied())
            .collect();
        index.start = start;

        let include_finder = memmem::Finder::new(b"include");
        let ident_finder = identifier.map(|i| memmem::Finder::new(i.as_bytes()));
        let mut queued = vec![false; index.paths.len()];
        let mut frontier: Vec<usize> = index.start.iter().chain(&index.forced).copied().collect();
        frontier.retain(|&i| !std::mem::replace(&mut queued[i], true));
        while !frontier.is_empty() {
            let level =
                index.scan_level(&frontier, &include_finder, ident_finder.as_ref(), jobs)?;
            let mut next = Vec::new();
            for (file, scan, targets) in level {
                index.record(file, scan);
                for t in targets {
                    if !std::mem::replace(&mut queued[t], true) {
                        next.push(t);
                    }
                }
            }
            frontier = next;
        }
        Ok(index)
    }

    /// Reads `files` on `jobs` threads; for each, its scan and the files its includes name.
    fn scan_level(
        &self,
        files: &[usize],
        include_finder: &memmem::Finder<'_>,
        ident_finder: Option<&memmem::Finder<'_>>,
        jobs: NonZeroUsize,
    ) -> Result<Vec<(usize, FileScan, Vec<usize>)>, KbuildError> {
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(files.len()));
        let failure: Mutex<Option<KbuildError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..jobs.get().min(files.len()) {
                scope.spawn(|| {
                    let mut buf = Vec::new();
                    let mut local = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&file) = files.get(n) else { break };
                        let path = self.root.join(&self.paths[file]);
                        buf.clear();
                        if let Err(source) =
                            std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut buf))
                        {
                            *failure.lock().expect("no panics while locked") =
                                Some(KbuildError::Read { path, source });
                            next.store(files.len(), Ordering::Relaxed);
                            break;
                        }
                        let scan = FileScan {
                            bytes: buf.len() as u64,
                            includes: scan_includes(&buf, include_finder),
                            mentions: ident_finder
                                .map(|f| scan_mentions(&buf, f))
                                .unwrap_or_default(),
                        };
                        let targets = scan
                            .includes
                            .iter()
                            .flat_map(|inc| self.resolve(file, inc))
                            .map(|(t, _)| t)
                            .collect();
                        local.push((file, scan, targets));
                    }
                    results
                        .lock()
                        .expect("no panics while locked")
                        .append(&mut local);
                });
            }
        });
        if let Some(error) = failure.into_inner().expect("threads joined") {
            return Err(error);
        }
        Ok(results.into_inner().expect("threads joined"))
    }

    fn new(root: &Path, arch: &str, identifier: Option<&str>, paths: Vec<String>) -> TreeIndex {
        let by_path = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i))
            .collect();
        let mut by_file_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let base = p.rsplit('/').next().unwrap_or(p);
            by_file_name.entry(base.to_owned()).or_default().push(i);
        }
        let roots = vec![
            format!("arch/{arch}/include"),
            format!("arch/{arch}/include/generated"),
            "include".to_owned(),
            format!("arch/{arch}/include/uapi"),
            format!("arch/{arch}/include/generated/uapi"),
            "include/uapi".to_owned(),
            "include/generated/uapi".to_owned(),
        ];
        let n = paths.len();
        TreeIndex {
            root: root.to_owned(),
            arch: arch.to_owned(),
            roots,
            paths,
            by_path,
            by_file_name,
            scanned: vec![false; n],
            start: Vec::new(),
            forced: Vec::new(),
            includes: vec![Vec::new(); n],
            mentions: HashMap::new(),
            by_include_name: HashMap::new(),
            identifier: identifier.map(str::to_owned),
            bytes: 0,
        }
    }

    fn record(&mut self, file: usize, scan: FileScan) {
        self.scanned[file] = true;
        self.bytes += scan.bytes;
        for (n, include) in scan.includes.iter().enumerate() {
            let base = include.name.rsplit('/').next().unwrap_or(&include.name);
            self.by_include_name
                .entry(base.to_owned())
                .or_default()
                .push((file, n));
        }
        self.includes[file] = scan.includes;
        if !scan.mentions.is_empty() {
            self.mentions.insert(file, scan.mentions);
        }
    }

    /// The tree's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The architecture whose include directories resolve `<name>` (kbuild's `SRCARCH`).
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// How many files were read (reachable from the starting units).
    pub fn file_count(&self) -> usize {
        self.scanned.iter().filter(|&&s| s).count()
    }

    /// How many bytes were read.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The identifier searched for, if any.
    pub fn identifier(&self) -> Option<&str> {
        self.identifier.as_deref()
    }

    /// Whether the tree has the (relative) file.
    pub fn contains(&self, path: &Path) -> bool {
        self.id(path).is_some()
    }

    /// The files mentioning the identifier, sorted, with the 1-based lines of each mention.
    pub fn mentions(&self) -> Vec<(&Path, &[u32])> {
        let mut list: Vec<_> = self
            .mentions
            .iter()
            .map(|(&i, lines)| (Path::new(&self.paths[i]), lines.as_slice()))
            .collect();
        list.sort();
        list
    }

    /// The `#include` directives of a (relative) file, if the tree has it.
    pub fn includes(&self, path: &Path) -> Option<&[Include]> {
        self.id(path).map(|i| self.includes[i].as_slice())
    }

    fn id(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path.to_str()?).copied()
    }

    /// The files that include `path` directly, with how each include resolved, sorted.
    pub fn includers(&self, path: &Path) -> Vec<(PathBuf, Include, Via)> {
        let Some(target) = self.id(path) else {
            return Vec::new();
        };
        let mut found: Vec<_> = self
            .includers_of(target)
            .into_iter()
            .map(|(file, n, via)| {
                (
                    PathBuf::from(&self.paths[file]),
                    self.includes[file][n].clone(),
                    via,
                )
            })
            .collect();
        found.sort_by(|a, b| (&a.0, a.1.line).cmp(&(&b.0, b.1.line)));
        found
    }

    fn includers_of(&self, target: usize) -> Vec<(usize, usize, Via)> {
        let name = &self.paths[target];
        let base = name.rsplit('/').next().unwrap_or(name);
        let Some(bucket) = self.by_include_name.get(base) else {
            return Vec::new();
        };
        bucket
            .iter()
            .flat_map(|&(file, n)| {
                self.resolve(file, &self.includes[file][n])
                    .into_iter()
                    .filter(move |&(to, _)| to == target)
                    .map(move |(_, via)| (file, n, via))
            })
            .collect()
    }

    /// Where `include` in file `from` leads (several files only for [`Via::NameSuffix`]).
    fn resolve(&self, from: usize, include: &Include) -> Vec<(usize, Via)> {
        let from_path = &self.paths[from];
        if include.kind == IncludeKind::Quote {
            let dir = from_path.rsplit_once('/').map_or("", |(d, _)| d);
            if let Some(i) = self.lookup(dir, &include.name) {
                return vec![(i, Via::OwnDirectory)];
            }
        }
        for root in &self.roots {
            if let Some(i) = self.lookup(root, &include.name)
                && (i != from || include.kind != IncludeKind::Next)
            {
                return vec![(i, Via::SearchPath)];
            }
        }
        let Some(suffix) = normalize(Path::new(&include.name)) else {
            return Vec::new();
        };
        let suffix = suffix.to_string_lossy();
        let base = suffix.rsplit('/').next().unwrap_or(&suffix);
        let wanted = format!("/{suffix}");
        self.by_file_name
            .get(base)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| i != from && self.paths[i].ends_with(&wanted))
            .map(|i| (i, Via::NameSuffix))
            .collect()
    }

    fn lookup(&self, dir: &str, name: &str) -> Option<usize> {
        let joined = normalize(&Path::new(dir).join(name))?;
        self.by_path.get(joined.to_str()?).copied()
    }

    /// The translation units (`.c` and `.S` files) whose preprocessing can read one of
    /// `seeds`: the seeds that are units themselves, and every unit that includes a seed,
    /// directly or through other files. Sorted.
    pub fn units_reaching(&self, seeds: &[&Path]) -> Vec<PathBuf> {
        let mut seen: HashSet<usize> = HashSet::new();
        let mut queue: VecDeque<usize> = seeds.iter().filter_map(|s| self.id(s)).collect();
        seen.extend(queue.iter().copied());
        while let Some(file) = queue.pop_front() {
            for (includer, _, _) in self.includers_of(file) {
                if seen.insert(includer) {
                    queue.push_back(includer);
                }
            }
        }
        // A forced include reaches every unit, whatever the units include themselves.
        let all = self.forced.iter().any(|f| seen.contains(f));
        let mut units: Vec<PathBuf> = seen
            .into_iter()
            .chain(if all { self.start.clone() } else { Vec::new() })
            .map(|i| &self.paths[i])
            .filter(|p| is_unit(Path::new(p)))
            .map(PathBuf::from)
            .collect();
        units.sort();
        units.dedup();
        units
    }

    /// The smallest set holding `files` and every file that includes a member of the set by a
    /// `"name"` relative to its own directory. A copy of a file placed elsewhere must bring
    /// these along, or their includes would keep reading the original. Sorted.
    pub fn own_directory_closure(&self, files: &[&Path]) -> Vec<PathBuf> {
        let mut seen: HashSet<usize> = files.iter().filter_map(|f| self.id(f)).collect();
        let mut queue: VecDeque<usize> = seen.iter().copied().collect();
        while let Some(file) = queue.pop_front() {
            for (includer, _, via) in self.includers_of(file) {
                if via == Via::OwnDirectory && seen.insert(includer) {
                    queue.push_back(includer);
                }
            }
        }
        let mut list: Vec<PathBuf> = seen
            .into_iter()
            .map(|i| PathBuf::from(&self.paths[i]))
            .collect();
        list.sort();
        list
    }
}

/// Whether a (relative) path names a translation unit kbuild compiles: `.c` or `.S`.
pub(crate) fn is_unit(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "S"))
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs above its start or is
/// absolute.
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

pub(crate) fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<(), KbuildError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| KbuildError::Read {
        path: dir.clone(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| KbuildError::Read {
            path: dir.clone(),
            source,
        })?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        // kbuild's own files (.foo.o.cmd, .tmp_*) and VCS data are never included.
        if name.starts_with('.') {
            continue;
        }
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            walk(root, &child, out)?;
        } else if file_type.is_file()
            // A symlink to a file can be included (dt-bindings); one to a directory is not
            // followed, which also rules out cycles.
            || (file_type.is_symlink() && entry.path().is_file())
        {
            out.push(child);
        }
    }
    Ok(())
}

/// The `#include`/`#include_next` directives of a file's text. Directives inside comments
/// are found too, which only adds candidates.
fn scan_includes(text: &[u8], finder: &memmem::Finder<'_>) -> Vec<Include> {
    let mut includes = Vec::new();
    let mut line = 1u32;
    let mut counted_to = 0usize;
    for pos in finder.find_iter(text) {
        // The directive must be `^[ \t]*#[ \t]*include`.
        let mut start = pos;
        while start > 0 && matches!(text[start - 1], b' ' | b'\t') {
            start -= 1;
        }
        if start == 0 || text[start - 1] != b'#' {
            continue;
        }
        start -= 1;
        while start > 0 && matches!(text[start - 1], b' ' | b'\t') {
            start -= 1;
        }
        if start > 0 && text[start - 1] != b'\n' {
            continue;
        }
        let mut i = pos + b"include".len();
        let mut kind = IncludeKind::Angle;
        let next = text[i..].starts_with(b"_next");
        if next {
            i += b"_next".len();
        }
        while i < text.len() && matches!(text[i], b' ' | b'\t') {
            i += 1;
        }
        let close = match text.get(i) {
            Some(b'"') => {
                kind = IncludeKind::Quote;
                b'"'
            }
            Some(b'<') => b'>',
            _ => continue,
        };
        if next {
            kind = IncludeKind::Next;
        }
        let name_start = i + 1;
        let Some(len) = text[name_start..]
            .iter()
            .position(|&c| c == close || c == b'\n')
        else {
            continue;
        };
        if text[name_start + len] != close || len == 0 {
            continue;
        }
        let Ok(name) = std::str::from_utf8(&text[name_start..name_start + len]) else {
            continue;
        };
        line += memchr::memchr_iter(b'\n', &text[counted_to..pos]).count() as u32;
        counted_to = pos;
        includes.push(Include {
            kind,
            name: name.to_owned(),
            line,
        });
    }
    includes
}

fn is_ident_byte(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphanumeric()
}

/// 1-based lines where the finder's needle occurs as a whole C identifier.
fn scan_mentions(text: &[u8], finder: &memmem::Finder<'_>) -> Vec<u32> {
    let len = finder.needle().len();
    let mut lines = Vec::new();
    let mut line = 1u32;
    let mut counted_to = 0usize;
    for pos in finder.find_iter(text) {
        let before = pos.checked_sub(1).map(|i| text[i]);
        let after = text.get(pos + len).copied();
        if before.is_some_and(is_ident_byte) || after.is_some_and(is_ident_byte) {
            continue;
        }
        line += memchr::memchr_iter(b'\n', &text[counted_to..pos]).count() as u32;
        counted_to = pos;
        if lines.last() != Some(&line) {
            lines.push(line);
        }
    }
    lines
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `files` (relative path, contents) under `dir`.
    #[track_caller]
    pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    fn fake_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_files(
            dir.path(),
            &[
                ("include/linux/pipe_fs_i.h", "#define PIPE_DEF_BUFFERS 16\n"),
                (
                    "include/linux/splice.h",
                    "#ifndef S\n# include <linux/pipe_fs_i.h>\n#endif\n",
                ),
                ("include/linux/fs.h", "#include <linux/types.h>\n"),
                ("include/linux/types.h", "typedef int s32;\n"),
                (
                    "fs/pipe.c",
                    "#include <linux/splice.h>\n#include \"internal.h\"\nint n = PIPE_DEF_BUFFERS;\n",
                ),
                ("fs/internal.h", "#include \"mount.h\"\n"),
                ("fs/mount.h", "/* PIPE_DEF_BUFFERSX is another name */\n"),
                (
                    "fs/open.c",
                    "#include \"internal.h\"\n#include <linux/fs.h>\n",
                ),
                ("fs/splice.c", "  #  include <linux/splice.h>\n"),
                (
                    "drivers/foo/core.c",
                    "#include <foo_regs.h>\n#include \"../../fs/internal.h\"\n",
                ),
                (
                    "drivers/foo/include/foo_regs.h",
                    "#include <linux/pipe_fs_i.h>\n",
                ),
                ("kernel/trace/trace.c", "#include \"trace.h\"\n"),
                (
                    "kernel/trace/trace.h",
                    "x = PIPE_DEF_BUFFERS; // PIPE_DEF_BUFFERS\n",
                ),
                ("tools/perf/pipe.c", "#include <linux/pipe_fs_i.h>\n"),
                (
                    "arch/x86/entry/entry_64.S",
                    "#include <linux/pipe_fs_i.h>\n",
                ),
                ("Documentation/x.c", "PIPE_DEF_BUFFERS\n"),
                ("fs/notes.txt", "#include <linux/pipe_fs_i.h>\n"),
            ],
        );
        dir
    }

    fn scan(dir: &Path) -> TreeIndex {
        TreeIndex::scan(
            dir,
            "x86",
            Some("PIPE_DEF_BUFFERS"),
            &BuiltUnits::Unrestricted,
            NonZeroUsize::new(2).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn finds_whole_word_mentions_outside_host_directories() {
        let dir = fake_tree();
        let index = scan(dir.path());
        assert_eq!(index.file_count(), 14);
        let mentions = index.mentions();
        let found: Vec<(&str, &[u32])> = mentions
            .iter()
            .map(|(p, l)| (p.to_str().unwrap(), *l))
            .collect();
        assert_eq!(
            found,
            [
                ("fs/pipe.c", &[3][..]),
                ("include/linux/pipe_fs_i.h", &[1][..]),
                ("kernel/trace/trace.h", &[1][..]),
            ]
        );
    }

    #[test]
    fn parses_include_directives() {
        let text = b"#include <a.h>\n  # include \"b/c.h\"\n#include_next <d.h>\n/* include */\nint include;\n#include MACRO(x)\n#include <unterminated\n";
        let includes = scan_includes(text, &memmem::Finder::new(b"include"));
        let got: Vec<(IncludeKind, &str, u32)> = includes
            .iter()
            .map(|i| (i.kind, i.name.as_str(), i.line))
            .collect();
        assert_eq!(
            got,
            [
                (IncludeKind::Angle, "a.h", 1),
                (IncludeKind::Quote, "b/c.h", 2),
                (IncludeKind::Next, "d.h", 3),
            ]
        );
    }

    #[test]
    fn reverse_includes_reach_units_through_headers() {
        let dir = fake_tree();
        let index = scan(dir.path());
        let units = index.units_reaching(&[Path::new("include/linux/pipe_fs_i.h")]);
        let units: Vec<&str> = units.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            units,
            [
                "arch/x86/entry/entry_64.S",
                "drivers/foo/core.c",
                "fs/pipe.c",
                "fs/splice.c"
            ]
        );

        let units = index.units_reaching(&[Path::new("fs/mount.h")]);
        let units: Vec<&str> = units.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(units, ["drivers/foo/core.c", "fs/open.c", "fs/pipe.c"]);
    }

    #[test]
    fn includers_say_how_they_resolved() {
        let dir = fake_tree();
        let index = scan(dir.path());
        let got: Vec<(String, u32, Via)> = index
            .includers(Path::new("include/linux/pipe_fs_i.h"))
            .into_iter()
            .map(|(p, inc, via)| (p.to_string_lossy().into_owned(), inc.line, via))
            .collect();
        assert_eq!(
            got,
            [
                ("arch/x86/entry/entry_64.S".to_owned(), 1, Via::SearchPath),
                (
                    "drivers/foo/include/foo_regs.h".to_owned(),
                    1,
                    Via::SearchPath
                ),
                ("include/linux/splice.h".to_owned(), 2, Via::SearchPath),
            ]
        );
        let got: Vec<(String, Via)> = index
            .includers(Path::new("drivers/foo/include/foo_regs.h"))
            .into_iter()
            .map(|(p, _, via)| (p.to_string_lossy().into_owned(), via))
            .collect();
        assert_eq!(got, [("drivers/foo/core.c".to_owned(), Via::NameSuffix)]);
    }

    #[test]
    fn own_directory_closure_follows_relative_quote_includes() {
        let dir = fake_tree();
        let index = scan(dir.path());
        let closure = index.own_directory_closure(&[Path::new("fs/mount.h")]);
        let closure: Vec<&str> = closure.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(
            closure,
            [
                "drivers/foo/core.c",
                "fs/internal.h",
                "fs/mount.h",
                "fs/open.c",
                "fs/pipe.c"
            ]
        );
        // Angle includes through the search path need no copies.
        let closure = index.own_directory_closure(&[Path::new("include/linux/pipe_fs_i.h")]);
        assert_eq!(closure, [PathBuf::from("include/linux/pipe_fs_i.h")]);
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("fs/../include/./linux/x.h")),
            Some(PathBuf::from("include/linux/x.h"))
        );
        assert_eq!(normalize(Path::new("../x.h")), None);
        assert_eq!(normalize(Path::new("/abs")), None);
    }
}
