//! C integer constant expressions made of literals: what a `#define`'s value must be for KernelX
//! to know V1 without compiling anything (`16`, `(16000U)`, `(1 << 4)`, `0x10UL`).
//!
//! Types follow C11 on x86-64 (LP64): a literal's type is the first of `int`, `unsigned int`,
//! `long`, `unsigned long` its value and suffix allow (decimal literals without `u` skip the
//! unsigned ones), operands are converted the usual way, and results wrap to their type.

use std::fmt;

/// A C integer type of x86-64, as far as literal expressions can produce one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntType {
    /// `unsigned`.
    pub unsigned: bool,
    /// 32 (`int`) or 64 (`long`, `long long`).
    pub bits: u8,
}

impl IntType {
    /// `int`.
    pub const INT: IntType = IntType {
        unsigned: false,
        bits: 32,
    };
    const UINT: IntType = IntType {
        unsigned: true,
        bits: 32,
    };
    const LONG: IntType = IntType {
        unsigned: false,
        bits: 64,
    };
    const ULONG: IntType = IntType {
        unsigned: true,
        bits: 64,
    };

    /// The smallest and largest value of the type.
    pub fn range(self) -> (i128, i128) {
        if self.unsigned {
            (0, (1i128 << self.bits) - 1)
        } else {
            (-(1i128 << (self.bits - 1)), (1i128 << (self.bits - 1)) - 1)
        }
    }

    /// Whether `value` is representable.
    pub fn holds(self, value: i128) -> bool {
        let (lo, hi) = self.range();
        (lo..=hi).contains(&value)
    }

    /// `value` reduced modulo 2^bits into the type's range, as C conversions do.
    fn wrap(self, value: i128) -> i128 {
        let modulus = 1i128 << self.bits;
        let mut v = value.rem_euclid(modulus);
        if !self.unsigned && v >= modulus / 2 {
            v -= modulus;
        }
        v
    }

    /// The literal suffix that gives a value this type: ``, `U`, `L`, `UL`.
    pub fn suffix(self) -> &'static str {
        match (self.unsigned, self.bits) {
            (false, 32) => "",
            (true, 32) => "U",
            (false, _) => "L",
            (true, _) => "UL",
        }
    }

    /// The usual arithmetic conversions of two (promoted) operand types.
    fn common(self, other: IntType) -> IntType {
        if self.bits != other.bits {
            let wide = if self.bits > other.bits { self } else { other };
            // A 64-bit signed type holds every 32-bit unsigned value, so it wins.
            return wide;
        }
        IntType {
            unsigned: self.unsigned || other.unsigned,
            bits: self.bits,
        }
    }
}

impl fmt::Display for IntType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.unsigned, self.bits) {
            (false, 32) => "int",
            (true, 32) => "unsigned int",
            (false, _) => "long",
            (true, _) => "unsigned long",
        })
    }
}

/// A value and its C type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IntValue {
    /// The value, within the type's range.
    pub value: i128,
    /// Its type.
    pub ty: IntType,
}

impl IntValue {
    fn new(value: i128, ty: IntType) -> Self {
        IntValue {
            value: ty.wrap(value),
            ty,
        }
    }
}

/// Evaluates `text` as a C integer constant expression of literals.
///
/// # Errors
///
/// A short description of the first thing that is not such an expression: an identifier, a
/// cast, a floating literal, division by zero, a missing parenthesis.
pub fn evaluate(text: &str) -> Result<IntValue, &'static str> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err("the value is empty");
    }
    let mut parser = Parser { tokens, pos: 0 };
    let value = parser.conditional()?;
    if parser.pos != parser.tokens.len() {
        return Err("unexpected text after the expression");
    }
    Ok(value)
}

/// Where a literal's digits are and how it is written, for [`rewrite_literal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiteralForm {
    /// `""`, `"0x"`, `"0X"`, `"0"` (octal) or `"0b"`.
    pub prefix: String,
    /// The suffix as written, e.g. `U`, `ul`.
    pub suffix: String,
}

/// When `text` is a single literal, possibly in parentheses, how it is written.
pub(crate) fn literal_form(text: &str) -> Option<LiteralForm> {
    let tokens = tokenize(text).ok()?;
    let mut inner = tokens.as_slice();
    while let [Token::Punct("("), middle @ .., Token::Punct(")")] = inner {
        inner = middle;
    }
    match inner {
        [Token::Literal { form, .. }] => Some(form.clone()),
        _ => None,
    }
}

/// Rewrites `text` (a `#define`'s value) to give `new` instead, keeping what can be kept: the
/// parentheses, base and suffix of a lone literal (`(16000U)` → `(32000U)`, `0x10` → `0x20`);
/// any other expression becomes `(<new><suffix of its type>)`.
pub fn rewrite_value(text: &str, ty: IntType, new: i64) -> String {
    let trimmed = text.trim();
    if let Some(form) = literal_form(trimmed)
        && new >= 0
    {
        let digits = match form.prefix.as_str() {
            "0x" => format!("{new:x}"),
            "0X" => format!("{new:X}"),
            "0b" | "0B" => format!("{new:b}"),
            "0" => format!("{new:o}"),
            _ => new.to_string(),
        };
        let open = trimmed.len() - trimmed.trim_start_matches('(').len();
        let close = trimmed.len() - trimmed.trim_end_matches(')').len();
        return format!(
            "{}{}{}{}{}",
            "(".repeat(open),
            form.prefix,
            digits,
            form.suffix,
            ")".repeat(close)
        );
    }
    format!("({new}{})", ty.suffix())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal { value: IntValue, form: LiteralForm },
    Punct(&'static str),
}

const PUNCTS: [&str; 23] = [
    "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "(", ")", "+", "-", "*", "/", "%", "<", ">",
    "&", "|", "^", "~", "!", "?",
];

fn tokenize(text: &str) -> Result<Vec<Token>, &'static str> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = text[i + 2..]
                .find("*/")
                .ok_or("unterminated comment in the value")?;
            i += end + 4;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            break;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'\'') {
                i += 1;
            }
            if bytes.get(i) == Some(&b'.') {
                return Err("a floating-point literal is not an integer");
            }
            tokens.push(literal(&text[start..i])?);
        } else if c == b'_' || c.is_ascii_alphabetic() {
            return Err("the value names an identifier (another macro, a cast or a variable)");
        } else if c == b':' {
            tokens.push(Token::Punct(":"));
            i += 1;
        } else if let Some(p) = PUNCTS.iter().find(|p| text[i..].starts_with(**p)) {
            tokens.push(Token::Punct(p));
            i += p.len();
        } else {
            return Err("the value holds a character that is not part of an integer expression");
        }
    }
    Ok(tokens)
}

fn literal(text: &str) -> Result<Token, &'static str> {
    let cleaned: String = text.chars().filter(|&c| c != '\'').collect();
    let lower = cleaned.to_ascii_lowercase();
    let (prefix_len, radix) = if lower.starts_with("0x") {
        (2, 16)
    } else if lower.starts_with("0b") {
        (2, 2)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (1, 8)
    } else {
        (0, 10)
    };
    let body = &lower[prefix_len..];
    let digits_end = body
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(body.len());
    let (digits, suffix) = body.split_at(digits_end);
    if digits.is_empty() && radix != 8 {
        return Err("a literal without digits");
    }
    let value = if digits.is_empty() {
        0
    } else {
        u128::from_str_radix(digits, radix).map_err(|_| "a literal too large for any C type")?
    };
    let value = i128::try_from(value).map_err(|_| "a literal too large for any C type")?;
    let (unsigned_suffix, long_suffix) = match suffix {
        "" => (false, false),
        "u" => (true, false),
        "l" | "ll" => (false, true),
        "ul" | "lu" | "ull" | "llu" => (true, true),
        _ => return Err("a literal with an unknown suffix"),
    };
    let candidates: &[IntType] = match (unsigned_suffix, long_suffix, radix == 10) {
        (false, false, true) => &[IntType::INT, IntType::LONG],
        (false, false, false) => &[IntType::INT, IntType::UINT, IntType::LONG, IntType::ULONG],
        (true, false, _) => &[IntType::UINT, IntType::ULONG],
        (false, true, true) => &[IntType::LONG],
        (false, true, false) => &[IntType::LONG, IntType::ULONG],
        (true, true, _) => &[IntType::ULONG],
    };
    let ty = candidates
        .iter()
        .copied()
        .find(|ty| ty.holds(value))
        .ok_or("a literal too large for its type")?;
    let prefix = if radix == 8 && prefix_len == 1 {
        "0".to_owned()
    } else {
        cleaned[..prefix_len].to_owned()
    };
    let written_suffix = cleaned[cleaned.len() - suffix.len()..].to_owned();
    Ok(Token::Literal {
        value: IntValue { value, ty },
        form: LiteralForm {
            prefix,
            suffix: written_suffix,
        },
    })
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// Binary operators by precedence level, loosest first.
const LEVELS: [&[&str]; 10] = [
    &["||"],
    &["&&"],
    &["|"],
    &["^"],
    &["&"],
    &["==", "!="],
    &["<", ">", "<=", ">="],
    &["<<", ">>"],
    &["+", "-"],
    &["*", "/", "%"],
];

impl Parser {
    fn peek_punct(&self) -> Option<&'static str> {
        match self.tokens.get(self.pos) {
            Some(Token::Punct(p)) => Some(p),
            _ => None,
        }
    }

    fn expect(&mut self, punct: &'static str, error: &'static str) -> Result<(), &'static str> {
        if self.peek_punct() == Some(punct) {
            self.pos += 1;
            Ok(())
        } else {
            Err(error)
        }
    }

    fn conditional(&mut self) -> Result<IntValue, &'static str> {
        let condition = self.binary(0)?;
        if self.peek_punct() != Some("?") {
            return Ok(condition);
        }
        self.pos += 1;
        let yes = self.conditional()?;
        self.expect(":", "`?` without `:`")?;
        let no = self.conditional()?;
        let ty = yes.ty.common(no.ty);
        let chosen = if condition.value != 0 { yes } else { no };
        Ok(IntValue::new(chosen.value, ty))
    }

    fn binary(&mut self, level: usize) -> Result<IntValue, &'static str> {
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary(level + 1)?;
        while let Some(op) = self.peek_punct().filter(|p| LEVELS[level].contains(p)) {
            self.pos += 1;
            let right = self.binary(level + 1)?;
            left = apply(op, left, right)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<IntValue, &'static str> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Literal { value, .. }) => {
                self.pos += 1;
                Ok(value)
            }
            Some(Token::Punct("(")) => {
                self.pos += 1;
                let value = self.conditional()?;
                self.expect(")", "a `(` without its `)`")?;
                Ok(value)
            }
            Some(Token::Punct(op @ ("-" | "+" | "~" | "!"))) => {
                self.pos += 1;
                let operand = self.unary()?;
                Ok(match op {
                    "-" => IntValue::new(-operand.value, operand.ty),
                    "+" => operand,
                    "~" => IntValue::new(!operand.value, operand.ty),
                    _ => IntValue::new(i128::from(operand.value == 0), IntType::INT),
                })
            }
            Some(_) => Err("an operator where a value was expected"),
            None => Err("the expression ends early"),
        }
    }
}

fn apply(op: &str, left: IntValue, right: IntValue) -> Result<IntValue, &'static str> {
    let truth = |b: bool| Ok(IntValue::new(i128::from(b), IntType::INT));
    match op {
        "&&" => return truth(left.value != 0 && right.value != 0),
        "||" => return truth(left.value != 0 || right.value != 0),
        "<<" | ">>" => {
            let shift = u32::try_from(right.value)
                .ok()
                .filter(|&s| s < u32::from(left.ty.bits))
                .ok_or("a shift count outside the width of its operand")?;
            let value = if op == "<<" {
                left.value << shift
            } else {
                left.value >> shift
            };
            return Ok(IntValue::new(value, left.ty));
        }
        _ => {}
    }
    let ty = left.ty.common(right.ty);
    let (a, b) = (ty.wrap(left.value), ty.wrap(right.value));
    let value = match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" | "%" if b == 0 => return Err("division by zero"),
        "/" => a / b,
        "%" => a % b,
        "&" => a & b,
        "|" => a | b,
        "^" => a ^ b,
        "==" => return truth(a == b),
        "!=" => return truth(a != b),
        "<" => return truth(a < b),
        ">" => return truth(a > b),
        "<=" => return truth(a <= b),
        ">=" => return truth(a >= b),
        _ => unreachable!("operator {op} is in LEVELS"),
    };
    Ok(IntValue::new(value, ty))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> (i128, String) {
        let v = evaluate(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        (v.value, v.ty.to_string())
    }

    #[test]
    fn literals_get_their_c_types() {
        assert_eq!(eval("16"), (16, "int".into()));
        assert_eq!(eval("(16000U)"), (16000, "unsigned int".into()));
        assert_eq!(eval("0x10UL"), (16, "unsigned long".into()));
        assert_eq!(eval("010"), (8, "int".into()));
        assert_eq!(eval("0"), (0, "int".into()));
        assert_eq!(eval("0b101"), (5, "int".into()));
        assert_eq!(eval("2147483648"), (2147483648, "long".into()));
        assert_eq!(eval("0x80000000"), (0x8000_0000, "unsigned int".into()));
        assert_eq!(eval("10LL"), (10, "long".into()));
    }

    #[test]
    fn expressions_follow_c_rules() {
        assert_eq!(eval("(1 << 4)"), (16, "int".into()));
        assert_eq!(eval("4 * 1024 - 1"), (4095, "int".into()));
        assert_eq!(eval("((1))"), (1, "int".into()));
        assert_eq!(eval("-1U"), (0xffff_ffff, "unsigned int".into()));
        assert_eq!(eval("1 ? 2 : 3U"), (2, "unsigned int".into()));
        assert_eq!(eval("7 / 2 + 7 % 2"), (4, "int".into()));
        assert_eq!(eval("~0UL"), (u64::MAX as i128, "unsigned long".into()));
        assert_eq!(eval("1 + 2UL"), (3, "unsigned long".into()));
        assert_eq!(eval("10 /* restarts */"), (10, "int".into()));
        assert_eq!(eval("10 // restarts"), (10, "int".into()));
        assert_eq!(eval("!0 && 3 > 2"), (1, "int".into()));
    }

    #[test]
    fn rejects_what_is_not_a_literal_expression() {
        for bad in [
            "HZ / 10",
            "(unsigned long)16",
            "1.5",
            "(1",
            "1 +",
            "1 / 0",
            "",
            "1 << 40",
            "'a'",
        ] {
            assert!(evaluate(bad).is_err(), "{bad:?} should not evaluate");
        }
    }

    #[test]
    fn rewrites_keep_the_literal_form() {
        let int = IntType::INT;
        assert_eq!(rewrite_value("16", int, 32), "32");
        assert_eq!(rewrite_value("(16000U)", IntType::UINT, 32000), "(32000U)");
        assert_eq!(rewrite_value("0x10", int, 32), "0x20");
        assert_eq!(rewrite_value("0X1fUL", IntType::ULONG, 255), "0XFFUL");
        assert_eq!(rewrite_value("(1 << 4)", int, 8), "(8)");
        assert_eq!(rewrite_value("(1UL << 4)", IntType::ULONG, 8), "(8UL)");
        assert_eq!(rewrite_value("5", int, -3), "(-3)");
    }
}
