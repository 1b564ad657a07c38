//! A policy's parameters: its `KX_PARAM` globals in `.data.kx_params`, set with
//! `--param name=value` and shown by `kernelx status`.
//!
//! Values are in the host's byte order: `clang -target bpf` compiles for the host's
//! endianness, and the kernel reads the globals as the policy does.
//!
//! Display: the symbol table gives a parameter's size but not its C type's signedness, so a
//! value is shown unsigned, followed by its signed reading when its top bit is set
//! (`255 (-1)` for a byte of all ones): neither reading of a `__u8` 200 nor of an `int` -1 is
//! hidden.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::PolicyError;

/// A `KX_PARAM`: where the global lives in `.data.kx_params`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// The global's name.
    pub name: String,
    /// Its byte offset in the section.
    pub offset: u32,
    /// Its size in bytes: 1, 2, 4 or 8.
    pub size: u8,
}

/// A parsed `name=value`: the bytes to write at the parameter's offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamAssignment {
    /// The parameter.
    pub spec: ParamSpec,
    /// The value, `spec.size` bytes in the host's byte order.
    pub bytes: Vec<u8>,
}

impl ParamAssignment {
    /// Writes the value into `image`, the contents of `.data.kx_params`.
    ///
    /// # Errors
    ///
    /// [`PolicyError::ParamOutside`] when `image` is too short for the parameter.
    pub fn write_into(&self, image: &mut [u8]) -> Result<(), PolicyError> {
        let range = byte_range(&self.spec, image.len())?;
        image[range].copy_from_slice(&self.bytes);
        Ok(())
    }
}

/// A parameter's current value, read from a section image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamValue {
    /// The parameter.
    pub name: String,
    /// Its size in bytes.
    pub size: u8,
    /// The value's bits, zero-extended.
    pub bits: u64,
}

impl ParamValue {
    /// The value read as a signed integer of the parameter's size.
    pub fn signed(&self) -> i64 {
        let unused = 64 - u32::from(self.size) * 8;
        ((self.bits << unused) as i64) >> unused
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.bits)?;
        if self.signed() < 0 {
            write!(f, " ({})", self.signed())?;
        }
        Ok(())
    }
}

/// Parses `--param` arguments (`name=value`; value decimal, negative decimal or `0x` hex)
/// against the policy's parameters.
///
/// # Errors
///
/// [`PolicyError::ParamSyntax`] without `=`, [`PolicyError::UnknownParam`] (listing the
/// parameters) for an unknown name, [`PolicyError::ParamValue`] for a value that is no integer
/// or fits the parameter's size neither signed nor unsigned.
pub fn parse_assignments<S: AsRef<str>>(
    params: &[ParamSpec],
    assignments: &[S],
) -> Result<Vec<ParamAssignment>, PolicyError> {
    assignments
        .iter()
        .map(|a| parse_assignment(params, a.as_ref()))
        .collect()
}

fn parse_assignment(
    params: &[ParamSpec],
    assignment: &str,
) -> Result<ParamAssignment, PolicyError> {
    let (name, value) = assignment
        .split_once('=')
        .ok_or_else(|| PolicyError::ParamSyntax {
            assignment: assignment.to_owned(),
        })?;
    let (name, value) = (name.trim(), value.trim());
    let spec = params
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| PolicyError::UnknownParam {
            name: name.to_owned(),
            known: params.iter().map(|p| p.name.clone()).collect(),
        })?;
    let error = |reason| PolicyError::ParamValue {
        name: spec.name.clone(),
        value: value.to_owned(),
        size: spec.size,
        reason,
    };
    let number = parse_integer(value).map_err(error)?;
    let bits = u32::from(spec.size) * 8;
    if number < -(1i128 << (bits - 1)) || number >= 1i128 << bits {
        return Err(error("out of range"));
    }
    // Two's complement truncated to the size: -1 and 0xff are the same byte.
    let bytes = (number as u64).to_ne_bytes();
    let bytes = if cfg!(target_endian = "little") {
        bytes[..usize::from(spec.size)].to_vec()
    } else {
        bytes[8 - usize::from(spec.size)..].to_vec()
    };
    Ok(ParamAssignment {
        spec: spec.clone(),
        bytes,
    })
}

/// The integer `text` denotes, or why there is none.
fn parse_integer(text: &str) -> Result<i128, &'static str> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (digits, radix) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (hex, 16),
        None => (digits, 10),
    };
    // from_str_radix would take a sign of its own.
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err("not an integer");
    }
    let magnitude = u128::from_str_radix(digits, radix)
        .ok()
        .and_then(|m| i128::try_from(m).ok())
        .ok_or("out of range")?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// The parameters' values in `image`, the contents of `.data.kx_params`, in `params`' order.
///
/// # Errors
///
/// [`PolicyError::ParamOutside`] when `image` is too short for a parameter.
pub fn decode_params(params: &[ParamSpec], image: &[u8]) -> Result<Vec<ParamValue>, PolicyError> {
    params
        .iter()
        .map(|spec| {
            let range = byte_range(spec, image.len())?;
            let mut bytes = [0u8; 8];
            if cfg!(target_endian = "little") {
                bytes[..usize::from(spec.size)].copy_from_slice(&image[range]);
            } else {
                bytes[8 - usize::from(spec.size)..].copy_from_slice(&image[range]);
            }
            Ok(ParamValue {
                name: spec.name.clone(),
                size: spec.size,
                bits: u64::from_ne_bytes(bytes),
            })
        })
        .collect()
}

fn byte_range(spec: &ParamSpec, len: usize) -> Result<std::ops::Range<usize>, PolicyError> {
    let start = spec.offset as usize;
    let end = start + usize::from(spec.size);
    if end > len {
        return Err(PolicyError::ParamOutside {
            name: spec.name.clone(),
            offset: spec.offset,
            size: spec.size,
            len,
        });
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<ParamSpec> {
        vec![
            ParamSpec {
                name: "cgroup".into(),
                offset: 0,
                size: 8,
            },
            ParamSpec {
                name: "limit".into(),
                offset: 8,
                size: 4,
            },
            ParamSpec {
                name: "flag".into(),
                offset: 12,
                size: 1,
            },
        ]
    }

    fn bytes(assignment: &str) -> Result<Vec<u8>, PolicyError> {
        let mut parsed = parse_assignments(&specs(), &[assignment])?;
        Ok(parsed.remove(0).bytes)
    }

    #[test]
    fn decimal_negative_and_hex_values_encode_at_the_parameter_size() {
        assert_eq!(bytes("limit=64").unwrap(), 64u32.to_ne_bytes());
        assert_eq!(bytes("limit=-1").unwrap(), [0xff; 4]);
        assert_eq!(bytes("limit=0xffffffff").unwrap(), [0xff; 4]);
        assert_eq!(bytes("flag=0x80").unwrap(), [0x80]);
        assert_eq!(bytes("flag=-128").unwrap(), [0x80]);
        assert_eq!(
            bytes("cgroup=18446744073709551615").unwrap(),
            u64::MAX.to_ne_bytes()
        );
        assert_eq!(
            bytes("cgroup=-9223372036854775808").unwrap(),
            i64::MIN.to_ne_bytes()
        );
        assert_eq!(bytes(" limit = 7 ").unwrap(), 7u32.to_ne_bytes());
    }

    #[test]
    fn values_fitting_neither_signed_nor_unsigned_are_refused() {
        for assignment in [
            "flag=256",
            "flag=-129",
            "limit=0x100000000",
            "limit=-2147483649",
            "cgroup=18446744073709551616",
            "cgroup=-9223372036854775809",
            "cgroup=0x10000000000000000",
            "cgroup=1000000000000000000000000000000000000000000000000",
        ] {
            let error = bytes(assignment).unwrap_err();
            assert!(
                matches!(
                    error,
                    PolicyError::ParamValue {
                        reason: "out of range",
                        ..
                    }
                ),
                "{assignment}: {error}"
            );
        }
        let text = bytes("flag=256").unwrap_err().to_string();
        assert!(text.contains("from -128 to 255"), "{text}");
    }

    #[test]
    fn malformed_values_are_refused() {
        for assignment in [
            "limit=",
            "limit=abc",
            "limit=+5",
            "limit=0x",
            "limit=--1",
            "limit=0x-1",
            "limit=1.5",
        ] {
            let error = bytes(assignment).unwrap_err();
            assert!(
                matches!(
                    error,
                    PolicyError::ParamValue {
                        reason: "not an integer",
                        ..
                    }
                ),
                "{assignment}: {error}"
            );
        }
        assert!(matches!(
            bytes("limit").unwrap_err(),
            PolicyError::ParamSyntax { .. }
        ));
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let text = bytes("limt=5").unwrap_err().to_string();
        assert!(text.contains("\"limt\""), "{text}");
        assert!(text.contains("cgroup, limit, flag"), "{text}");
        let none = parse_assignments(&[], &["x=1"]).unwrap_err().to_string();
        assert!(none.contains("declares no KX_PARAM"), "{none}");
    }

    #[test]
    fn assignments_round_trip_through_an_image() {
        let specs = specs();
        let mut image = vec![0u8; 13];
        for assignment in
            parse_assignments(&specs, &["cgroup=0x1234", "limit=-5", "flag=200"]).unwrap()
        {
            assignment.write_into(&mut image).unwrap();
        }
        let values = decode_params(&specs, &image).unwrap();
        let shown: Vec<String> = values.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["cgroup=4660", "limit=4294967291 (-5)", "flag=200 (-56)"]
        );
        assert_eq!(values[1].signed(), -5);
    }

    #[test]
    fn a_short_image_is_an_error() {
        let error = decode_params(&specs(), &[0u8; 12]).unwrap_err();
        assert!(matches!(error, PolicyError::ParamOutside { ref name, .. } if name == "flag"));
        let assignment = parse_assignments(&specs(), &["limit=1"]).unwrap().remove(0);
        assert!(assignment.write_into(&mut [0u8; 8]).is_err());
    }

    #[test]
    fn specs_serialize_by_field_name() {
        let json = serde_json::to_string(&specs()[1]).unwrap();
        assert_eq!(json, r#"{"name":"limit","offset":8,"size":4}"#);
        assert_eq!(
            serde_json::from_str::<ParamSpec>(&json).unwrap(),
            specs()[1]
        );
    }
}
