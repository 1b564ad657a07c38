//! The plan file: everything `kernelx build` derived for one kernel build, as one JSON document.
//!
//! # Format
//!
//! [`Plan::write`] writes a JSON object, pretty-printed with two-space indents, keys in the order
//! listed here, and a final newline; [`Plan::read`] reads it back. Numbers are JSON integers
//! (64-bit: `i64` for values of the constant, `u64` for bit patterns). Byte strings
//! ([`HexBytes`]) are lower-case hex without separators. An offset is a byte offset from the
//! start of the named function, the function as the kernel has it in its text (the V1 build's
//! code, which matches the running kernel). Optional fields marked "omitted when ..." are left
//! out in that case; every other field is always present.
//!
//! ## Versioning
//!
//! `format_version` is checked before anything else: a reader rejects any version but
//! [`FORMAT_VERSION`] with [`PlanError::UnsupportedVersion`], which names both. Every change to
//! the format, including a new field or a new enum variant, bumps the version, because a runtime
//! must never apply a plan it understands only in part. Within a version, readers ignore
//! fields they do not know; since every change bumps the version, a plan that was written by
//! KernelX has none.
//!
//! ## Plan (the top level)
//!
//! * `format_version`: the format's version, [`FORMAT_VERSION`] (2; version 1 had no
//!   `excluded_unit` kind nor `kernel.module`).
//! * `kernel`: the kernel build this plan is for (below). A plan is only valid for that build:
//!   its sites are offsets and bytes of that build's code.
//! * `tunables`: the tunables built, each a [`TunablePlan`]; names are distinct.
//!
//! ## `kernel` ([`KernelIdentity`])
//!
//! * `release`: the kernel release, as `uname -r` prints it (`6.12.117+deb12-cloud-amd64`).
//! * `build_id`: the GNU build-id of that kernel's vmlinux (its `NT_GNU_BUILD_ID` note, also
//!   in `/sys/kernel/notes` of the running kernel), or `null` when the build did not know it.
//!   Two kernels with the same release can differ; the build-id tells them apart.
//! * `module`: present when the plan is for a loadable module rather than vmlinux
//!   ([`ModuleIdentity`]); omitted for vmlinux. Every site's `function` is then a function of
//!   that module (in kallsyms, a symbol tagged `[<name>]`), and `unit` is relative to the
//!   module's source directory. A reader that ignored this field would look the functions up
//!   in vmlinux; that is why it came with version 2.
//!   * `name`: the module's name as `lsmod` and `/sys/module/<name>` show it (kbuild's
//!     `KBUILD_MODNAME`, e.g. `kx_target`).
//!   * `build_id`: the GNU build-id of the built `.ko` (also in
//!     `/sys/module/<name>/notes/.note.gnu.build-id` of the loaded module), or `null` when the
//!     build did not know the `.ko`.
//!
//!   `release` stays the kernel's release (the module's `vermagic` names it).
//!
//! ## `tunables[]` ([`TunablePlan`])
//!
//! * `name`: the tunable's name from the spec (letters, digits, `_`, `-`, `.`).
//! * `description`: free text from the spec, possibly empty.
//! * `source`: where the constant is in the kernel source ([`TunableSource`]), tagged by
//!   `form`:
//!   * `"form": "macro"`: `macro_name` (the C macro), `file` (where it is defined, relative to
//!     the kernel tree), `values` (`[V1, V2, V3]`: V1 is the value in the source, V2 and V3
//!     the probe values the variant builds used).
//!   * `"form": "pattern"`: `file` (relative to the kernel tree), `original` (the text that
//!     gives V1), `modified` (the two replacements that give V2 and V3), `values` (as above),
//!     `lines` (the 1-based line ranges `{first, last}` the replacement was limited to; omitted
//!     when it applied everywhere in `file`).
//! * `default`: V1, the value the running kernel was built with and the value the tunable
//!   returns to on unload. Always equal to `source.values[0]`.
//! * `range`: the values V' accepts, the intersection of every site's `recipe.range`
//!   ([`TunableRange`]):
//!   * `min`, `max`: the smallest and largest valid V' (inclusive).
//!   * `min_reason`, `max_reason`: why: `site` (the id of the site whose range sets this bound;
//!     omitted when no site bounds this side) and the fields of a [`BoundReason`]
//!     (`reason` and its details, as in a recipe's range).
//!   * `restrictions`: further conditions inside `[min, max]`, one per site that has one:
//!     `site` and the fields of a [`Restriction`] (`only`: `power_of_two`,
//!     `unsigned_magic` with `width` and `form`: V' must compile to that magic division
//!     sequence, which for `form` `signed_imul_add` is a signed division). Omitted when there
//!     are none.
//! * `sites`: every critical span the constant reaches machine code in ([`Site`], below), in
//!   unit, function and offset order. A tunable loads all of them or none.
//! * `safe_spans`: the safe spans of the sites ([`SafeSpan`], below).
//! * `uncovered`: every effect of the constant that SIE cannot apply at run time
//!   ([`UncoveredEffect`], below). The plan reports them; nothing applies them.
//! * `warnings`: anything else the build wants a user to read, one sentence each.
//!
//! ## `sites[]` ([`Site`])
//!
//! * `id`: names the site within its tunable; by convention `<unit>:<function>+0x<offset>`.
//! * `unit`: the translation unit whose object holds the function, relative to the kernel tree
//!   (`fs/pipe.c`).
//! * `function`: the function's symbol name, as in `kallsyms` (`alloc_pipe_info`, or a clone
//!   such as `foo.isra.0`).
//! * `section`: the function's section in the object (`.text`, `.text.unlikely`, ...).
//! * `offset`: offset of the seed instruction, the instruction whose constant depends on V.
//! * `len`: its length in bytes.
//! * `bytes`: the seed's bytes as the V1 object has them (relocated fields are zero).
//! * `mask`: per byte of `bytes`, `ff` where the kernel's code must hold exactly that byte,
//!   `00` where it may differ (fields patched by relocations). A loader compares
//!   `code & mask == bytes & mask` before attaching anything.
//! * `asm`: the seed in AT&T syntax, for people (`cmp $0xffff,%ebp`).
//! * `recipe`: the update a probe applies: kind, critical span (`span`, offsets in the same
//!   function as `offset`), IV = f(V), the update, the flags read after it and the site's valid
//!   range. Its format is in [`crate::recipe`].
//! * `probes`: where the probes go ([`ProbePlacement`]):
//!   * `pre`: offset of the pre-probe, or `null` when there is none: `recipe.span.start`, or an
//!     earlier offset with the same effect (no instruction in between writes what it saves,
//!     and every path to the seed passes it). It runs before the seed: it captures
//!     `recipe.save`, if any, and marks the task as having entered the span. When `pre` is
//!     set, the post-probe applies the update only in a task the pre-probe marked, so a
//!     post-probe at a join point leaves the paths that never ran the seed alone. It is set
//!     whenever `recipe.save` is, and whenever `post` can be reached without passing through
//!     the critical span.
//!   * `post`: offset of the post-probe, which applies the update: `recipe.span.end`, or a
//!     later offset where the update has the same effect (no instruction in between reads or
//!     writes what the update touches).
//!   * `alternatives`: the other offsets where `post` could go, best first; empty when there
//!     are none.
//!   * `jump_optimizable`: whether the kernel can turn the post-probe into a jump (optprobe:
//!     its 5-byte window holds whole instructions the kernel can copy, no jump lands inside
//!     it, and it is not in a blacklisted or `noinstr` region).
//!   * `reason`: why it can or cannot be, for people.
//! * `safe_span`: the `id` of the site's safe span in `safe_spans`.
//!
//! ## `safe_spans[]` ([`SafeSpan`])
//!
//! * `id`: names the span within its tunable; by convention `<unit>:<function>/<n>`.
//! * `function`: the function the span lies in (symbol name, as for sites).
//! * `ranges`: the span's code, as half-open offset ranges `{start, end}`, sorted and
//!   disjoint. A task is inside the span when its instruction pointer, or any return address
//!   on its stack, falls in one of them.
//! * `exits`: every exit of the function that lies in the span ([`SpanExit`]): `offset` (of
//!   the instruction), `kind` (`return`, `tail_call`, `cold` for a jump into the function's
//!   `.cold` part, `indirect_jump`, `trap`, `falls_off_end` after a `noreturn` call), and
//!   `target` (the symbol a tail call or cold jump goes to; omitted otherwise). A task leaves
//!   the span at these, or by running on at an offset outside `ranges`.
//! * `origin`: `derived` (the forward data- and control-dependence slice of the critical span,
//!   computed from the binary) or
//!   `spec` (given in the tunable's `[[safe_spans]]`, which overrides the derived one).
//! * `conservative`: where the span was extended beyond the exact slice and why (a derived
//!   value stored to non-stack memory, passed to a call, ...), one sentence each; empty when
//!   the slice is exact.
//!
//! ## `uncovered[]` ([`UncoveredEffect`])
//!
//! * `kind`: what the constant changes that SIE cannot ([`UncoveredKind`]):
//!   `instructions_changed`, `branch_target`, `reference_target`, `frame_layout`,
//!   `data_value`, `data_size`, `data_reference`, `section_data`, `unattributed_code`, or
//!   `excluded_unit` (the user excluded the whole unit from the tunable: it keeps the
//!   compiled value, and `detail` says which sites and code effects the constant has there).
//! * `unit`: the translation unit, as for sites.
//! * `symbol`: the V1 function or variable (for `section_data`, the section; empty for
//!   `excluded_unit`, which is about the whole unit).
//! * `section`: its section in the V1 object (empty for `excluded_unit`).
//! * `offset`: offset in `symbol` where the effect starts, or `null` when it has no place.
//! * `builds`: which builds differ from V1 here, as indices into `source.values` (1, 2).
//! * `detail`: what differs and what a user can do, for people.
//! * `values`: per build, the value of a changed scalar variable or the sizes of a resized
//!   one; omitted otherwise.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::hex::HexBytes;
use crate::range::{BoundReason, Restriction};
use crate::recipe::Recipe;

/// The plan format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// A plan: the tunables built for one kernel build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`FORMAT_VERSION`] when written by this crate.
    pub format_version: u32,
    /// The kernel build the plan is for.
    pub kernel: KernelIdentity,
    /// The tunables, names distinct.
    pub tunables: Vec<TunablePlan>,
}

/// The kernel build a plan applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KernelIdentity {
    /// `uname -r`.
    pub release: String,
    /// The GNU build-id of the kernel's vmlinux, when known.
    pub build_id: Option<HexBytes>,
    /// The module the plan is for; `None` for vmlinux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<ModuleIdentity>,
}

/// The loadable module a plan applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModuleIdentity {
    /// The module's name (`KBUILD_MODNAME`), as in `/sys/module/<name>`.
    pub name: String,
    /// The GNU build-id of the built `.ko`, when known.
    pub build_id: Option<HexBytes>,
}

/// One tunable: where the constant is, every site it reaches, and what SIE cannot cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunablePlan {
    /// The name from the spec.
    pub name: String,
    /// Free text from the spec.
    pub description: String,
    /// Where the constant is in the source.
    pub source: TunableSource,
    /// V1: the value the running kernel was built with.
    pub default: i64,
    /// The valid V', the intersection of the sites' ranges.
    pub range: TunableRange,
    /// Every critical span.
    pub sites: Vec<Site>,
    /// The sites' safe spans.
    pub safe_spans: Vec<SafeSpan>,
    /// Effects SIE cannot apply.
    pub uncovered: Vec<UncoveredEffect>,
    /// Notes for the user.
    pub warnings: Vec<String>,
}

/// Where the constant is in the kernel source, and the values the variant builds used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum TunableSource {
    /// A macro, found by name.
    Macro {
        /// The C macro.
        macro_name: String,
        /// The file that defines it, relative to the kernel tree.
        file: String,
        /// `[V1, V2, V3]`.
        values: [i64; 3],
    },
    /// The prototype's form: a text replaced in a file.
    Pattern {
        /// The file, relative to the kernel tree.
        file: String,
        /// The text as it is (V1).
        original: String,
        /// The replacements for V2 and V3.
        modified: [String; 2],
        /// `[V1, V2, V3]`.
        values: [i64; 3],
        /// The lines the replacement was limited to (`None`: everywhere).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<Vec<LineRange>>,
    },
}

impl TunableSource {
    /// `[V1, V2, V3]`.
    pub fn values(&self) -> [i64; 3] {
        match self {
            TunableSource::Macro { values, .. } | TunableSource::Pattern { values, .. } => *values,
        }
    }

    /// The source file, relative to the kernel tree.
    pub fn file(&self) -> &str {
        match self {
            TunableSource::Macro { file, .. } | TunableSource::Pattern { file, .. } => file,
        }
    }
}

/// Source lines `first..=last`, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LineRange {
    /// First line.
    pub first: u32,
    /// Last line (inclusive).
    pub last: u32,
}

/// The valid values of a tunable: the intersection of its sites' [`ValueRange`]s, each bound
/// naming the site that sets it.
///
/// [`ValueRange`]: crate::ValueRange
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunableRange {
    /// Smallest valid V'.
    pub min: i64,
    /// Largest valid V'.
    pub max: i64,
    /// Why not smaller.
    pub min_reason: SiteBound,
    /// Why not larger.
    pub max_reason: SiteBound,
    /// Conditions inside `[min, max]`, per site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<SiteRestriction>,
}

/// A bound of a [`TunableRange`] and the site that sets it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteBound {
    /// The site's id (`None`: no site bounds this side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The reason, as the site's recipe gives it.
    #[serde(flatten)]
    pub reason: BoundReason,
}

/// A site's condition on V' besides its bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRestriction {
    /// The site's id.
    pub site: String,
    /// The condition.
    #[serde(flatten)]
    pub restriction: Restriction,
}

impl TunableRange {
    /// Every 64-bit value (a tunable without sites).
    pub fn unbounded() -> TunableRange {
        let none = SiteBound {
            site: None,
            reason: BoundReason::Unbounded,
        };
        TunableRange {
            min: i64::MIN,
            max: i64::MAX,
            min_reason: none.clone(),
            max_reason: none,
            restrictions: Vec::new(),
        }
    }

    /// The intersection of the sites' recipe ranges; a tie keeps the first site.
    pub fn of_sites(sites: &[Site]) -> TunableRange {
        let mut range = TunableRange::unbounded();
        for site in sites {
            let r = &site.recipe.range;
            if r.min > range.min {
                range.min = r.min;
                range.min_reason = SiteBound {
                    site: Some(site.id.clone()),
                    reason: r.min_reason,
                };
            }
            if r.max < range.max {
                range.max = r.max;
                range.max_reason = SiteBound {
                    site: Some(site.id.clone()),
                    reason: r.max_reason,
                };
            }
            if let Some(restriction) = r.restriction {
                range.restrictions.push(SiteRestriction {
                    site: site.id.clone(),
                    restriction,
                });
            }
        }
        range
    }

    /// Whether no value is valid.
    pub fn is_empty(&self) -> bool {
        self.min > self.max
    }

    /// Whether `v` is valid.
    pub fn contains(&self, v: i64) -> bool {
        self.check(v).is_ok()
    }

    /// Accepts `v` or names the bound (and the site) that rejects it.
    pub fn check(&self, v: i64) -> Result<(), TunableOutOfRange> {
        let out = |bound: &SiteBound| TunableOutOfRange {
            value: v,
            min: self.min,
            max: self.max,
            site: bound.site.clone(),
            reason: bound.reason,
        };
        if v < self.min {
            return Err(out(&self.min_reason));
        }
        if v > self.max {
            return Err(out(&self.max_reason));
        }
        for r in &self.restrictions {
            r.restriction.check(v).map_err(|reason| {
                out(&SiteBound {
                    site: Some(r.site.clone()),
                    reason,
                })
            })?;
        }
        Ok(())
    }
}

impl fmt::Display for TunableRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}]", self.min, self.max)?;
        for r in &self.restrictions {
            match r.restriction {
                Restriction::PowerOfTwo => write!(f, "; powers of two only ({})", r.site)?,
                Restriction::UnsignedMagic { form, .. } => write!(
                    f,
                    "; only divisors compiled to the same {form} sequence ({})",
                    r.site
                )?,
            }
        }
        Ok(())
    }
}

/// A value of V' a tunable rejects, with the bound and the site that reject it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct TunableOutOfRange {
    /// The rejected value.
    pub value: i64,
    /// The tunable's smallest valid value.
    pub min: i64,
    /// The tunable's largest valid value.
    pub max: i64,
    /// The site whose range rejects it.
    pub site: Option<String>,
    /// Why.
    pub reason: BoundReason,
}

impl fmt::Display for TunableOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "V' = {} is outside the valid range [{}, {}]",
            self.value, self.min, self.max
        )?;
        if let Some(site) = &self.site {
            write!(f, " of site {site}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// A critical span: where the constant enters the machine state, and how to rewrite it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    /// The site's id within its tunable.
    pub id: String,
    /// The translation unit (`fs/pipe.c`).
    pub unit: String,
    /// The function's symbol name.
    pub function: String,
    /// The function's section.
    pub section: String,
    /// Offset of the seed instruction in the function.
    pub offset: u32,
    /// Length of the seed instruction.
    pub len: u8,
    /// The seed's expected bytes (relocated fields zero).
    pub bytes: HexBytes,
    /// Per byte: `ff` must match, `00` may differ.
    pub mask: HexBytes,
    /// The seed in AT&T syntax.
    pub asm: String,
    /// The update.
    pub recipe: Recipe,
    /// Where the probes go.
    pub probes: ProbePlacement,
    /// The id of the site's safe span.
    pub safe_span: String,
}

impl Site {
    /// Whether `code` (the kernel's bytes at the site's offset, at least `len` of them) holds
    /// the expected instruction: equal wherever the mask is set.
    pub fn matches(&self, code: &[u8]) -> bool {
        let n = usize::from(self.len);
        code.len() >= n
            && self.bytes.len() == n
            && self.mask.len() == n
            && code
                .iter()
                .zip(self.bytes.as_bytes())
                .zip(self.mask.as_bytes())
                .all(|((c, b), m)| c & m == b & m)
    }
}

/// Where a site's probes go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbePlacement {
    /// The pre-probe's offset, when the recipe saves a value or `post` can be reached without
    /// passing through the critical span (the post-probe then applies only after it).
    pub pre: Option<u32>,
    /// The post-probe's offset: the span's end, or an equivalent later offset.
    pub post: u32,
    /// Equivalent post-probe offsets, best first.
    pub alternatives: Vec<u32>,
    /// Whether the kernel can jump-optimize the post-probe.
    pub jump_optimizable: bool,
    /// Why (not), for people.
    pub reason: String,
}

/// The code in which a value derived from the constant may still be live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafeSpan {
    /// The span's id within its tunable.
    pub id: String,
    /// The function.
    pub function: String,
    /// Half-open offset ranges, sorted and disjoint.
    pub ranges: Vec<CodeRange>,
    /// The function's exits inside the span.
    pub exits: Vec<SpanExit>,
    /// Derived from the binary or given in the spec.
    pub origin: SpanOrigin,
    /// Where and why the span was extended beyond the exact slice.
    pub conservative: Vec<String>,
}

impl SafeSpan {
    /// Whether `offset` (of an instruction pointer or a return address) is inside the span.
    pub fn contains(&self, offset: u32) -> bool {
        self.ranges.iter().any(|r| r.contains(offset))
    }
}

/// Offsets `start..end` of a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CodeRange {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl CodeRange {
    /// Whether `offset` is in the range.
    pub fn contains(&self, offset: u32) -> bool {
        (self.start..self.end).contains(&offset)
    }
}

/// An exit of the function inside a safe span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanExit {
    /// Offset of the exiting instruction.
    pub offset: u32,
    /// How.
    pub kind: ExitKind,
    /// Where a tail call or cold jump goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// How control leaves the function at an exit of a safe span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// `ret`, or `jmp __x86_return_thunk`.
    Return,
    /// A direct `jmp`/`jcc` to another function.
    TailCall,
    /// A `jmp`/`jcc` into the function's `.cold` part.
    Cold,
    /// An indirect jump (targets unknown).
    IndirectJump,
    /// `ud2`/`int3`: `BUG()`, a speculation trap.
    Trap,
    /// Execution runs past the function's end (after a `noreturn` call).
    FallsOffEnd,
}

/// Where a safe span comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanOrigin {
    /// The forward data-dependence slice, computed from the binary.
    Derived,
    /// The tunable's `[[safe_spans]]`.
    Spec,
}

/// An effect of the constant that SIE cannot apply at run time (mirrors
/// `kernelx_x86::UncoveredEffect`, plus the unit it was found in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncoveredEffect {
    /// What kind of effect.
    pub kind: UncoveredKind,
    /// The translation unit.
    pub unit: String,
    /// The V1 function or variable (or, for [`UncoveredKind::SectionData`], the section).
    pub symbol: String,
    /// The V1 section.
    pub section: String,
    /// Offset in `symbol` where the effect starts, if it has a place.
    pub offset: Option<u32>,
    /// The builds (indices into the source's values, > 0) that differ from V1 here.
    pub builds: Vec<usize>,
    /// What differs, for people.
    pub detail: String,
    /// Per build, the value of a changed scalar variable or the sizes of a resized one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<u64>>,
}

/// Kinds of [`UncoveredEffect`] (`kernelx_x86` reports its diffs in these terms too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UncoveredKind {
    /// Instructions were added, removed or replaced by different ones (loop unrolling, a
    /// branch folded away, different registers or operations): SIE only rewrites state at
    /// existing instructions.
    InstructionsChanged,
    /// An aligned branch leads somewhere else: control flow differs.
    BranchTarget,
    /// An aligned instruction refers to a different symbol or place.
    ReferenceTarget,
    /// The stack frame's size or layout depends on the value.
    FrameLayout,
    /// A variable's initial value depends on the value.
    DataValue,
    /// A variable's size depends on the value.
    DataSize,
    /// A variable's initial contents refer to different symbols.
    DataReference,
    /// Bytes of a data section that no symbol covers (string literals, constant pools) differ.
    SectionData,
    /// Code outside any function differs: an executable section without function symbols,
    /// such as `.altinstr_replacement`, whose instructions the kernel copies into functions
    /// when it patches alternatives.
    UnattributedCode,
    /// The user excluded the unit from the tunable: whatever the constant reaches there keeps
    /// the compiled value (V1), and the effect's detail says what that is.
    ExcludedUnit,
}

impl UncoveredKind {
    /// Every kind.
    pub const ALL: [UncoveredKind; 10] = [
        UncoveredKind::InstructionsChanged,
        UncoveredKind::BranchTarget,
        UncoveredKind::ReferenceTarget,
        UncoveredKind::FrameLayout,
        UncoveredKind::DataValue,
        UncoveredKind::DataSize,
        UncoveredKind::DataReference,
        UncoveredKind::SectionData,
        UncoveredKind::UnattributedCode,
        UncoveredKind::ExcludedUnit,
    ];

    /// The kind's name as serialized (`data_value`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            UncoveredKind::InstructionsChanged => "instructions_changed",
            UncoveredKind::BranchTarget => "branch_target",
            UncoveredKind::ReferenceTarget => "reference_target",
            UncoveredKind::FrameLayout => "frame_layout",
            UncoveredKind::DataValue => "data_value",
            UncoveredKind::DataSize => "data_size",
            UncoveredKind::DataReference => "data_reference",
            UncoveredKind::SectionData => "section_data",
            UncoveredKind::UnattributedCode => "unattributed_code",
            UncoveredKind::ExcludedUnit => "excluded_unit",
        }
    }
}

impl fmt::Display for UncoveredKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TunablePlan {
    /// The site with this id.
    pub fn site(&self, id: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.id == id)
    }

    /// The safe span with this id.
    pub fn safe_span(&self, id: &str) -> Option<&SafeSpan> {
        self.safe_spans.iter().find(|s| s.id == id)
    }

    /// Accepts V' or says which bound of which site rejects it. Checks the tunable's range and
    /// every site's own, so a plan built in memory without [`Plan::validate`] is safe too.
    pub fn check(&self, v: i64) -> Result<(), TunableOutOfRange> {
        self.range.check(v)?;
        for site in &self.sites {
            site.recipe.range.check(v).map_err(|e| TunableOutOfRange {
                value: v,
                min: e.min,
                max: e.max,
                site: Some(site.id.clone()),
                reason: e.reason,
            })?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), PlanError> {
        let tunable = || self.name.clone();
        let v1 = self.source.values()[0];
        if self.default != v1 {
            return Err(PlanError::DefaultNotV1 {
                tunable: tunable(),
                default: self.default,
                v1,
            });
        }
        let mut ids = HashSet::new();
        for id in self
            .sites
            .iter()
            .map(|s| &s.id)
            .chain(self.safe_spans.iter().map(|s| &s.id))
        {
            if !ids.insert(id.as_str()) {
                return Err(PlanError::DuplicateId {
                    tunable: tunable(),
                    id: id.clone(),
                });
            }
        }
        for site in &self.sites {
            if self.safe_span(&site.safe_span).is_none() {
                return Err(PlanError::UnknownSpan {
                    tunable: tunable(),
                    site: site.id.clone(),
                    span: site.safe_span.clone(),
                });
            }
            let len = usize::from(site.len);
            if site.bytes.len() != len || site.mask.len() != len {
                return Err(PlanError::ExpectedBytes {
                    tunable: tunable(),
                    site: site.id.clone(),
                    len: site.len,
                    bytes: site.bytes.len(),
                    mask: site.mask.len(),
                });
            }
            let r = &site.recipe.range;
            let restricted = r.restriction.is_none_or(|restriction| {
                self.range
                    .restrictions
                    .iter()
                    .any(|x| x.site == site.id && x.restriction == restriction)
            });
            let inside =
                self.range.is_empty() || (self.range.min >= r.min && self.range.max <= r.max);
            if !(inside && restricted) {
                return Err(PlanError::RangeExceedsSite {
                    tunable: tunable(),
                    min: self.range.min,
                    max: self.range.max,
                    site: site.id.clone(),
                    site_range: r.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl Plan {
    /// A plan in the current format.
    pub fn new(kernel: KernelIdentity, tunables: Vec<TunablePlan>) -> Plan {
        Plan {
            format_version: FORMAT_VERSION,
            kernel,
            tunables,
        }
    }

    /// The tunable with this name.
    pub fn tunable(&self, name: &str) -> Option<&TunablePlan> {
        self.tunables.iter().find(|t| t.name == name)
    }

    /// Checks what the types alone do not: the version, distinct names and ids, sites that
    /// name existing safe spans, expected bytes as long as the instruction, defaults equal to
    /// V1, and tunable ranges inside every site's range.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.format_version != FORMAT_VERSION {
            return Err(PlanError::UnsupportedVersion {
                path: None,
                found: u64::from(self.format_version),
                supported: FORMAT_VERSION,
            });
        }
        let mut names = HashSet::new();
        for t in &self.tunables {
            if !names.insert(t.name.as_str()) {
                return Err(PlanError::DuplicateTunable {
                    name: t.name.clone(),
                });
            }
            t.validate()?;
        }
        Ok(())
    }

    /// Parses and validates a plan.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, None)
    }

    /// The plan as the file holds it (validated first).
    pub fn to_json(&self) -> Result<String, PlanError> {
        self.validate()?;
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| PlanError::Serialize { source })?;
        text.push('\n');
        Ok(text)
    }

    /// Reads, parses and validates a plan file.
    pub fn read(path: impl AsRef<Path>) -> Result<Plan, PlanError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_owned(),
            source,
        })?;
        Plan::parse(&text, Some(path))
    }

    /// Writes the plan to `path` atomically: to a new file in the same directory, flushed to
    /// disk, then renamed over `path`. A reader sees the old plan or the new one, never a part.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), PlanError> {
        let path = path.as_ref();
        let text = self.to_json()?;
        write_atomically(path, text.as_bytes()).map_err(|source| PlanError::Write {
            path: path.to_owned(),
            source,
        })
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Plan, PlanError> {
        // The version first: a newer plan should fail as a version, not as a missing field.
        #[derive(Deserialize)]
        struct Header {
            format_version: u64,
        }
        let parse_error = |source| PlanError::Parse {
            path: path.map(Path::to_owned),
            source,
        };
        let header: Header = serde_json::from_str(text).map_err(parse_error)?;
        if header.format_version != u64::from(FORMAT_VERSION) {
            return Err(PlanError::UnsupportedVersion {
                path: path.map(Path::to_owned),
                found: header.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let plan: Plan = serde_json::from_str(text).map_err(parse_error)?;
        plan.validate()?;
        Ok(plan)
    }
}

/// Distinguishes the temporary files of concurrent writers in one process.
static WRITES: AtomicU64 = AtomicU64::new(0);

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp: PathBuf = dir.join(tmp_name);
    let result = (|| {
        let mut options = OpenOptions::new();
        // create_new: never follow or reuse a file someone else put there.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable; not every file system lets a directory be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
