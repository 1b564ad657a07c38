//! A small reader for BTF, the kernel's type information (`/sys/kernel/btf/vmlinux`).
//!
//! It validates the header, walks the whole type section (every kind, with its correct size, so
//! that type ids are right) and resolves names in the string section. It reads only what
//! KernelX needs so far: enums and their enumerators, e.g. to find out whether the kernel's
//! `enum btf_kfunc_hook` has `BTF_KFUNC_HOOK_KPROBE`.
//!
//! Layout reference: `include/uapi/linux/btf.h` and Documentation/bpf/btf.rst in the kernel
//! sources. Split BTF (a module's `/sys/kernel/btf/<module>`, whose ids and string offsets
//! continue those of vmlinux) is not supported: it is rejected with [`BtfError::SplitBtf`].

use std::fmt;

/// `BTF_MAGIC`, read in the file's own byte order.
const MAGIC: u16 = 0xeb9f;
/// The only BTF version there is.
const VERSION: u8 = 1;
/// `sizeof(struct btf_header)` for version 1.
const HEADER_LEN: usize = 24;
/// `sizeof(struct btf_type)`: name_off, info, size/type.
const TYPE_LEN: usize = 12;

/// Why a BTF blob could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BtfError {
    /// The data ends before a structure it announces.
    #[error("BTF truncated: {what} at byte {offset} runs past the end")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
    },
    /// The first two bytes are not `0xeb9f` in either byte order.
    #[error("not BTF: bad magic {found:#06x}")]
    BadMagic {
        /// The first two bytes, little-endian.
        found: u16,
    },
    /// A BTF version this reader does not know.
    #[error("unsupported BTF version {0} (only version 1 exists)")]
    UnsupportedVersion(u8),
    /// The header's section offsets or lengths are inconsistent.
    #[error("bad BTF header: {0}")]
    BadHeader(&'static str),
    /// The string section does not start with the empty string: this is split BTF, which
    /// needs its base (vmlinux) BTF.
    #[error("split BTF (a module's BTF) needs its base BTF, which this reader does not support")]
    SplitBtf,
    /// A type has a kind this reader does not know (a kernel newer than this reader).
    #[error("type id {id} at byte {offset} of the type section has unknown kind {kind}")]
    UnknownKind {
        /// The type's id.
        id: u32,
        /// Its offset in the type section.
        offset: usize,
        /// The kind number.
        kind: u8,
    },
    /// A name offset points outside the string section or at bytes that are not UTF-8.
    #[error("bad string offset {0}")]
    BadString(u32),
}

/// The kind of a BTF type (`BTF_KIND_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(
    missing_docs,
    reason = "each variant is the BTF_KIND_* of the same name"
)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(kind: u8) -> Option<Kind> {
        Some(match kind {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// The bytes that follow the 12-byte `struct btf_type` for a type of this kind with
    /// `vlen` entries.
    fn trailing_len(self, vlen: usize) -> usize {
        match self {
            // u32 encoding / u32 linkage / i32 component_idx
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            // struct btf_array { type, index_type, nelems }
            Kind::Array => 12,
            // struct btf_member { name_off, type, offset }
            Kind::Struct | Kind::Union => 12 * vlen,
            // struct btf_enum { name_off, val }
            Kind::Enum => 8 * vlen,
            // struct btf_param { name_off, type }
            Kind::FuncProto => 8 * vlen,
            // struct btf_var_secinfo { type, offset, size }
            Kind::Datasec => 12 * vlen,
            // struct btf_enum64 { name_off, val_lo32, val_hi32 }
            Kind::Enum64 => 12 * vlen,
            Kind::Ptr
            | Kind::Fwd
            | Kind::Typedef
            | Kind::Volatile
            | Kind::Const
            | Kind::Restrict
            | Kind::Func
            | Kind::Float
            | Kind::TypeTag => 0,
        }
    }
}

/// One type of the type section, without its trailing data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Type {
    /// Its type id (ids start at 1; 0 is `void`).
    pub id: u32,
    /// Its kind.
    pub kind: Kind,
    /// Offset of its name in the string section (0: anonymous).
    pub name_off: u32,
    /// `vlen`: the number of members, enumerators, parameters or variables.
    pub vlen: u16,
    /// `kind_flag` (for enums: the values are signed).
    pub kind_flag: bool,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    /// Offset of its trailing data in the type section.
    data_offset: usize,
}

/// An enumerator of an enum type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enumerator<'a> {
    /// Its name, e.g. `BTF_KFUNC_HOOK_KPROBE`.
    pub name: &'a str,
    /// Its value; `i128` holds both signed and unsigned 64-bit values exactly.
    pub value: i128,
}

/// An enum type (`BTF_KIND_ENUM` or `BTF_KIND_ENUM64`) with its enumerators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumType<'a> {
    /// Its type id.
    pub id: u32,
    /// Its name.
    pub name: &'a str,
    /// Its enumerators, in declaration order.
    pub enumerators: Vec<Enumerator<'a>>,
}

impl EnumType<'_> {
    /// `true` when it has an enumerator called `name`.
    pub fn has_enumerator(&self, name: &str) -> bool {
        self.enumerators.iter().any(|e| e.name == name)
    }
}

/// Parsed BTF, borrowing the bytes it was parsed from.
pub struct Btf<'a> {
    big_endian: bool,
    type_section: &'a [u8],
    strings: &'a [u8],
    types: Vec<Type>,
}

impl fmt::Debug for Btf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("big_endian", &self.big_endian)
            .field("types", &self.types.len())
            .field("string_bytes", &self.strings.len())
            .finish()
    }
}

impl<'a> Btf<'a> {
    /// Parses a BTF blob (the contents of `/sys/kernel/btf/vmlinux`, or a `.BTF` section).
    pub fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        let magic = data.get(..2).ok_or(BtfError::Truncated {
            what: "header",
            offset: 0,
        })?;
        let big_endian = match [magic[0], magic[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            m => {
                return Err(BtfError::BadMagic {
                    found: u16::from_le_bytes(m),
                });
            }
        };
        if data.len() < HEADER_LEN {
            return Err(BtfError::Truncated {
                what: "header",
                offset: 0,
            });
        }
        let version = data[2];
        if version != VERSION {
            return Err(BtfError::UnsupportedVersion(version));
        }
        let field = |offset| read_u32(data, offset, big_endian) as usize;
        let hdr_len = field(4);
        let (type_off, type_len) = (field(8), field(12));
        let (str_off, str_len) = (field(16), field(20));
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(BtfError::BadHeader("hdr_len out of range"));
        }
        let body = &data[hdr_len..];
        let section = |off: usize, len: usize, what| {
            off.checked_add(len)
                .and_then(|end| body.get(off..end))
                .ok_or(BtfError::Truncated {
                    what,
                    offset: hdr_len + off,
                })
        };
        if type_off % 4 != 0 {
            return Err(BtfError::BadHeader("type section not 4-byte aligned"));
        }
        let type_section = section(type_off, type_len, "type section")?;
        let strings = section(str_off, str_len, "string section")?;
        if strings.first() != Some(&0) {
            return Err(BtfError::SplitBtf);
        }
        if strings.last() != Some(&0) {
            return Err(BtfError::BadHeader("string section does not end with NUL"));
        }

        let mut btf = Btf {
            big_endian,
            type_section,
            strings,
            types: Vec::new(),
        };
        btf.types = btf.walk_types()?;
        Ok(btf)
    }

    fn walk_types(&self) -> Result<Vec<Type>, BtfError> {
        let mut types = Vec::new();
        let mut offset = 0;
        while offset < self.type_section.len() {
            let id = types.len() as u32 + 1;
            if offset + TYPE_LEN > self.type_section.len() {
                return Err(BtfError::Truncated {
                    what: "type",
                    offset,
                });
            }
            let name_off = self.u32_at(offset);
            let info = self.u32_at(offset + 4);
            let size_or_type = self.u32_at(offset + 8);
            // info: bits 0-15 vlen, bits 24-28 kind, bit 31 kind_flag.
            let raw_kind = ((info >> 24) & 0x1f) as u8;
            let kind = Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind {
                id,
                offset,
                kind: raw_kind,
            })?;
            let vlen = (info & 0xffff) as u16;
            let data_offset = offset + TYPE_LEN;
            let end = data_offset + kind.trailing_len(vlen.into());
            if end > self.type_section.len() {
                return Err(BtfError::Truncated {
                    what: "type data",
                    offset: data_offset,
                });
            }
            types.push(Type {
                id,
                kind,
                name_off,
                vlen,
                kind_flag: info >> 31 == 1,
                size_or_type,
                data_offset,
            });
            offset = end;
        }
        Ok(types)
    }

    fn u32_at(&self, offset: usize) -> u32 {
        read_u32(self.type_section, offset, self.big_endian)
    }

    /// The number of types (not counting `void`, id 0).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Every type, in id order.
    pub fn types(&self) -> impl Iterator<Item = &Type> {
        self.types.iter()
    }

    /// The type with this id (`None` for 0, `void`, and out-of-range ids).
    pub fn type_by_id(&self, id: u32) -> Option<&Type> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.types.get(index)
    }

    /// The string at `offset` in the string section.
    pub fn string_at(&self, offset: u32) -> Result<&'a str, BtfError> {
        let bad = || BtfError::BadString(offset);
        let rest = self.strings.get(offset as usize..).ok_or_else(bad)?;
        let len = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        std::str::from_utf8(&rest[..len]).map_err(|_| bad())
    }

    /// The name of `ty` (empty for anonymous types).
    pub fn name_of(&self, ty: &Type) -> Result<&'a str, BtfError> {
        self.string_at(ty.name_off)
    }

    /// The first enum (32- or 64-bit) named `name`, with its enumerators.
    pub fn find_enum(&self, name: &str) -> Result<Option<EnumType<'a>>, BtfError> {
        for ty in &self.types {
            if matches!(ty.kind, Kind::Enum | Kind::Enum64) && self.name_of(ty)? == name {
                return self.enumerators(ty).map(|enumerators| {
                    Some(EnumType {
                        id: ty.id,
                        name: self.string_at(ty.name_off).unwrap_or_default(),
                        enumerators,
                    })
                });
            }
        }
        Ok(None)
    }

    fn enumerators(&self, ty: &Type) -> Result<Vec<Enumerator<'a>>, BtfError> {
        let signed = ty.kind_flag;
        (0..usize::from(ty.vlen))
            .map(|i| {
                let (name_off, value) = if ty.kind == Kind::Enum64 {
                    let at = ty.data_offset + 12 * i;
                    let lo = u64::from(self.u32_at(at + 4));
                    let hi = u64::from(self.u32_at(at + 8));
                    let raw = hi << 32 | lo;
                    let value = if signed {
                        i128::from(raw as i64)
                    } else {
                        i128::from(raw)
                    };
                    (self.u32_at(at), value)
                } else {
                    let at = ty.data_offset + 8 * i;
                    let raw = self.u32_at(at + 4);
                    let value = if signed {
                        i128::from(raw as i32)
                    } else {
                        i128::from(raw)
                    };
                    (self.u32_at(at), value)
                };
                Ok(Enumerator {
                    name: self.string_at(name_off)?,
                    value,
                })
            })
            .collect()
    }
}

fn read_u32(data: &[u8], offset: usize, big_endian: bool) -> u32 {
    let bytes: [u8; 4] = data[offset..offset + 4]
        .try_into()
        .expect("callers check bounds");
    if big_endian {
        u32::from_be_bytes(bytes)
    } else {
        u32::from_le_bytes(bytes)
    }
}

/// Hand-built BTF blobs, for tests here and in crates that read BTF through this one (feature
/// `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    use super::{HEADER_LEN, MAGIC, VERSION};

    /// Builds BTF blobs by hand: one call per type, then [`BtfBuilder::finish`].
    #[derive(Debug, Clone)]
    pub struct BtfBuilder {
        big_endian: bool,
        types: Vec<u8>,
        /// Crate-visible so that a test can fake split BTF's string section.
        pub(crate) strings: Vec<u8>,
    }

    impl BtfBuilder {
        /// An empty blob in little- or big-endian byte order.
        pub fn new(big_endian: bool) -> Self {
            BtfBuilder {
                big_endian,
                types: Vec::new(),
                strings: vec![0],
            }
        }

        fn word(&self, v: u32) -> [u8; 4] {
            if self.big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        /// Adds `s` to the string section and returns its offset (`0` for the empty string).
        pub fn string(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        /// Appends a type: `kind` number, name, vlen, kind_flag, size/type, trailing words.
        pub fn raw_type(
            &mut self,
            kind: u32,
            name: &str,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
            trailing: &[u32],
        ) -> &mut Self {
            let name_off = self.string(name);
            let info = u32::from(kind_flag) << 31 | kind << 24 | vlen;
            for w in [name_off, info, size_or_type].iter().chain(trailing) {
                let bytes = self.word(*w);
                self.types.extend_from_slice(&bytes);
            }
            self
        }

        /// Appends a 32-bit enum.
        pub fn enum32(&mut self, name: &str, enumerators: &[(&str, i32)]) -> &mut Self {
            let mut trailing = Vec::new();
            for (n, v) in enumerators {
                trailing.push(self.string(n));
                trailing.push(*v as u32);
            }
            self.raw_type(6, name, enumerators.len() as u32, true, 4, &trailing)
        }

        /// The blob: header, type section, string section.
        pub fn finish(&self) -> Vec<u8> {
            let magic = if self.big_endian {
                MAGIC.to_be_bytes()
            } else {
                MAGIC.to_le_bytes()
            };
            let mut out = magic.to_vec();
            out.extend_from_slice(&[VERSION, 0]);
            let type_len = self.types.len() as u32;
            // hdr_len, type_off, type_len, str_off, str_len
            for w in [
                HEADER_LEN as u32,
                0,
                type_len,
                type_len,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&self.word(w));
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::BtfBuilder;
    use super::*;

    /// One type of every kind, in an order where any wrong trailing size shifts the enum that
    /// follows out of place.
    fn every_kind(big_endian: bool) -> Vec<u8> {
        let mut b = BtfBuilder::new(big_endian);
        let (lo, minus_one) = (b.string("LO"), b.string("MINUS_ONE"));
        b.raw_type(1, "int", 0, false, 4, &[0x0100_0020]) // 1 INT, encoding word
            .raw_type(2, "", 0, false, 1, &[]) // 2 PTR -> int
            .raw_type(3, "", 0, false, 0, &[1, 1, 16]) // 3 ARRAY int[16]
            .raw_type(4, "pair", 2, false, 8, &[0, 1, 0, 0, 1, 32]) // 4 STRUCT, 2 members
            .raw_type(5, "u", 1, false, 4, &[0, 1, 0]) // 5 UNION, 1 member
            .enum32("decoy", &[("A", 0)]) // 6 ENUM
            .raw_type(7, "fwd", 0, false, 0, &[]) // 7 FWD
            .raw_type(8, "int_t", 0, false, 1, &[]) // 8 TYPEDEF
            .raw_type(9, "", 0, false, 1, &[]) // 9 VOLATILE
            .raw_type(10, "", 0, false, 1, &[]) // 10 CONST
            .raw_type(11, "", 0, false, 2, &[]) // 11 RESTRICT
            .raw_type(13, "", 2, false, 1, &[0, 1, 0, 2]) // 12 FUNC_PROTO, 2 params
            .raw_type(12, "f", 0, false, 12, &[]) // 13 FUNC
            .raw_type(14, "v", 0, false, 1, &[1]) // 14 VAR, linkage
            .raw_type(15, ".data", 1, false, 4, &[14, 0, 4]) // 15 DATASEC, 1 var
            .raw_type(16, "double", 0, false, 8, &[]) // 16 FLOAT
            .raw_type(17, "tag", 0, false, 13, &[u32::MAX]) // 17 DECL_TAG, component -1
            .raw_type(18, "user", 0, false, 1, &[]) // 18 TYPE_TAG
            // 19 ENUM64, signed: LO = 1, MINUS_ONE = -1
            .raw_type(
                19,
                "big",
                2,
                true,
                8,
                &[lo, 1, 0, minus_one, u32::MAX, u32::MAX],
            )
            .enum32(
                "btf_kfunc_hook",
                &[
                    ("BTF_KFUNC_HOOK_COMMON", 0),
                    ("BTF_KFUNC_HOOK_KPROBE", 13),
                    ("BTF_KFUNC_HOOK_MAX", 14),
                ],
            );
        b.finish()
    }

    #[test]
    fn walks_every_kind_and_finds_the_enum_after_them() {
        for big_endian in [false, true] {
            let data = every_kind(big_endian);
            let btf = Btf::parse(&data).unwrap();
            assert_eq!(btf.type_count(), 20, "big_endian={big_endian}");
            let hook = btf.find_enum("btf_kfunc_hook").unwrap().unwrap();
            assert_eq!(hook.id, 20);
            assert!(hook.has_enumerator("BTF_KFUNC_HOOK_KPROBE"));
            assert_eq!(hook.enumerators[1].value, 13);
            assert_eq!(btf.type_by_id(16).unwrap().kind, Kind::Float);
            assert_eq!(btf.name_of(btf.type_by_id(15).unwrap()).unwrap(), ".data");
            assert!(btf.type_by_id(0).is_none());
            assert!(btf.find_enum("no_such_enum").unwrap().is_none());
        }
    }

    #[test]
    fn reads_enum64_values_by_signedness() {
        let data = every_kind(false);
        let btf = Btf::parse(&data).unwrap();
        let big = btf.find_enum("big").unwrap().unwrap();
        assert_eq!(
            big.enumerators,
            vec![
                Enumerator {
                    name: "LO",
                    value: 1
                },
                Enumerator {
                    name: "MINUS_ONE",
                    value: -1
                },
            ]
        );
    }

    #[test]
    fn rejects_broken_blobs() {
        let good = every_kind(false);
        assert_eq!(
            Btf::parse(&good[..10]).unwrap_err(),
            BtfError::Truncated {
                what: "header",
                offset: 0
            }
        );
        assert!(matches!(
            Btf::parse(b"\x7fELF and more bytes than a header").unwrap_err(),
            BtfError::BadMagic { .. }
        ));
        let mut v2 = good.clone();
        v2[2] = 2;
        assert_eq!(
            Btf::parse(&v2).unwrap_err(),
            BtfError::UnsupportedVersion(2)
        );
        // Cut the blob inside the string section: the header now overstates it.
        assert!(matches!(
            Btf::parse(&good[..good.len() - 3]).unwrap_err(),
            BtfError::Truncated {
                what: "string section",
                ..
            }
        ));
        // Kind 31 does not exist.
        let mut b = BtfBuilder::new(false);
        b.raw_type(31, "x", 0, false, 0, &[]);
        assert_eq!(
            Btf::parse(&b.finish()).unwrap_err(),
            BtfError::UnknownKind {
                id: 1,
                offset: 0,
                kind: 31
            }
        );
        // A struct announcing more members than the section holds.
        let mut b = BtfBuilder::new(false);
        b.raw_type(4, "s", 5, false, 8, &[0, 0, 0]);
        assert!(matches!(
            Btf::parse(&b.finish()).unwrap_err(),
            BtfError::Truncated {
                what: "type data",
                ..
            }
        ));
        // Split BTF: the string section does not start at the empty string.
        let mut split = BtfBuilder::new(false);
        split.strings = b"mod\0".to_vec();
        assert_eq!(Btf::parse(&split.finish()).unwrap_err(), BtfError::SplitBtf);
    }

    /// The running kernel's BTF, when this host has one, is the real test of the walk.
    #[test]
    fn parses_this_hosts_vmlinux_btf_if_any() {
        let path = "/sys/kernel/btf/vmlinux";
        let Ok(data) = std::fs::read(path) else {
            println!("skipped: {path} is not readable on this host");
            return;
        };
        let btf = Btf::parse(&data).unwrap();
        assert!(btf.type_count() > 1000, "{btf:?}");
        let prog_type = btf.find_enum("bpf_prog_type").unwrap().unwrap();
        assert!(prog_type.has_enumerator("BPF_PROG_TYPE_KPROBE"));
        let kprobe = prog_type
            .enumerators
            .iter()
            .find(|e| e.name == "BPF_PROG_TYPE_KPROBE")
            .unwrap();
        // UAPI: BPF_PROG_TYPE_KPROBE = 2.
        assert_eq!(kprobe.value, 2);
        println!("{path}: {} types", btf.type_count());
    }
}
