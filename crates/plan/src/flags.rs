//! The arithmetic flags a recipe recomputes or whose consumers it protects.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One arithmetic flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Flag {
    /// Carry (RFLAGS bit 0).
    Cf,
    /// Parity of the low byte of the result (bit 2).
    Pf,
    /// Auxiliary carry out of bit 3 (bit 4).
    Af,
    /// Zero (bit 6).
    Zf,
    /// Sign (bit 7).
    Sf,
    /// Signed overflow (bit 11).
    Of,
}

impl Flag {
    /// All six arithmetic flags.
    pub const ALL: [Flag; 6] = [Flag::Cf, Flag::Pf, Flag::Af, Flag::Zf, Flag::Sf, Flag::Of];

    /// The bit position in RFLAGS.
    pub const fn bit(self) -> u32 {
        match self {
            Flag::Cf => 0,
            Flag::Pf => 2,
            Flag::Af => 4,
            Flag::Zf => 6,
            Flag::Sf => 7,
            Flag::Of => 11,
        }
    }

    /// The flag's name as the SDM writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Flag::Cf => "CF",
            Flag::Pf => "PF",
            Flag::Af => "AF",
            Flag::Zf => "ZF",
            Flag::Sf => "SF",
            Flag::Of => "OF",
        }
    }
}

/// A set of arithmetic flags, stored as the RFLAGS bit mask (so a runtime can use it as-is).
///
/// Serialized as that mask, a number: `2261` is CF|PF|AF|ZF|SF|OF, `65` is CF|ZF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FlagSet(u16);

impl FlagSet {
    /// No flag.
    pub const EMPTY: FlagSet = FlagSet(0);
    /// CF, PF, AF, ZF, SF and OF.
    pub const ARITHMETIC: FlagSet = FlagSet(0x8d5);

    /// The set holding `flags`.
    pub const fn of(flags: &[Flag]) -> FlagSet {
        let mut mask = 0u16;
        let mut i = 0;
        while i < flags.len() {
            mask |= 1 << flags[i].bit();
            i += 1;
        }
        FlagSet(mask)
    }

    /// The arithmetic flags of an RFLAGS value (other bits are ignored).
    pub const fn from_rflags(rflags: u64) -> FlagSet {
        FlagSet((rflags & FlagSet::ARITHMETIC.0 as u64) as u16)
    }

    /// The RFLAGS bit mask.
    pub const fn mask(self) -> u64 {
        self.0 as u64
    }

    /// Whether `flag` is in the set.
    pub const fn contains(self, flag: Flag) -> bool {
        self.0 & (1 << flag.bit()) != 0
    }

    /// Whether every flag of `other` is in the set.
    pub const fn contains_all(self, other: FlagSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The set plus `flag`.
    pub const fn with(self, flag: Flag) -> FlagSet {
        FlagSet(self.0 | (1 << flag.bit()))
    }

    /// Union.
    pub const fn union(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 | other.0)
    }

    /// Intersection.
    pub const fn intersection(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 & other.0)
    }

    /// The flags of `self` not in `other`.
    pub const fn difference(self, other: FlagSet) -> FlagSet {
        FlagSet(self.0 & !other.0)
    }

    /// The flags in the set, in RFLAGS bit order.
    pub fn iter(self) -> impl Iterator<Item = Flag> {
        Flag::ALL.into_iter().filter(move |f| self.contains(*f))
    }
}

impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no flags");
        }
        let mut first = true;
        for flag in self.iter() {
            if !first {
                f.write_str("|")?;
            }
            first = false;
            f.write_str(flag.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_are_rflags_masks() {
        assert_eq!(FlagSet::ARITHMETIC.to_string(), "CF|PF|AF|ZF|SF|OF");
        assert_eq!(FlagSet::of(&[Flag::Cf, Flag::Zf]).mask(), 65);
        assert_eq!(
            FlagSet::from_rflags(0x202 | 0x41),
            FlagSet::of(&[Flag::Cf, Flag::Zf])
        );
        assert_eq!(FlagSet::EMPTY.to_string(), "no flags");
    }
}
