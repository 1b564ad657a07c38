//! Byte strings written as hex in the plan (instruction bytes, masks, build-ids).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes, serialized as a lower-case hex string without separators (`"81fdffff0000"`).
///
/// Parsing accepts upper case and ignores whitespace (`"81 FD ff ff 00 00"`).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes(pub Vec<u8>);

impl HexBytes {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(bytes: Vec<u8>) -> HexBytes {
        HexBytes(bytes)
    }
}

impl From<&[u8]> for HexBytes {
    fn from(bytes: &[u8]) -> HexBytes {
        HexBytes(bytes.to_vec())
    }
}

impl fmt::Display for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl FromStr for HexBytes {
    type Err = String;

    fn from_str(s: &str) -> Result<HexBytes, String> {
        let digits: Vec<u32> = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| {
                c.to_digit(16)
                    .ok_or_else(|| format!("{c:?} is not a hex digit in {s:?}"))
            })
            .collect::<Result<_, _>>()?;
        if !digits.len().is_multiple_of(2) {
            return Err(format!("odd number of hex digits in {s:?}"));
        }
        Ok(HexBytes(
            digits
                .chunks(2)
                .map(|pair| (pair[0] << 4 | pair[1]) as u8)
                .collect(),
        ))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HexBytes, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let h: HexBytes = "81 FD ff ff 00 00".parse().unwrap();
        assert_eq!(h.as_bytes(), [0x81, 0xfd, 0xff, 0xff, 0, 0]);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"81fdffff0000\"");
        assert_eq!(serde_json::from_str::<HexBytes>(&json).unwrap(), h);
        assert!("abc".parse::<HexBytes>().is_err());
        assert!("zz".parse::<HexBytes>().unwrap_err().contains("'z'"));
        assert!(serde_json::from_str::<HexBytes>("\"0g\"").is_err());
    }
}
