//! Serde mirrors of the TOML file, before any check (style B2: raw, then validated).
//!
//! Keys are matched by hand rather than with `#[derive(Deserialize)]` so that unknown keys are
//! kept, with their spans, for warnings; `#[serde(flatten)]` would have done that but loses
//! `toml::Spanned`. Scalars stay [`RawValue`]s of any type, so `validate` can say "`values`
//! entry 2 must be an integer, found a string" instead of serde's generic message.
//!
//! Unknown values are skipped with `IgnoredAny`, never wrapped in `Spanned`: `toml` cannot
//! give spans inside a table that has no header of its own (dotted keys), and an unknown key
//! must never fail the parse.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use crate::error::SpecError;
use crate::position::{Loc, Locator};

/// Byte range in the file text.
pub(crate) type Span = Range<usize>;

/// A TOML value whose type is not checked yet. Array elements keep their spans.
#[derive(Debug)]
pub(crate) enum RawValue {
    Integer(i64),
    Float,
    Boolean,
    String(String),
    Array(Vec<Spanned<RawValue>>),
    Table,
    Datetime,
}

impl RawValue {
    /// The type's name, for "found ..." in messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RawValue::Integer(_) => "an integer",
            RawValue::Float => "a float",
            RawValue::Boolean => "a boolean",
            RawValue::String(_) => "a string",
            RawValue::Array(_) => "an array",
            RawValue::Table => "a table",
            RawValue::Datetime => "a date-time",
        }
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<RawValue, E> {
        Ok(RawValue::Boolean)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        // TOML integers are i64; this only guards against another deserializer.
        i64::try_from(v)
            .map(RawValue::Integer)
            .map_err(|_| E::custom("integer does not fit in 64 signed bits"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawValue::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        // `toml` hands a date-time over as a one-entry map with this private key; it is only
        // used to word the "found ..." part of a message.
        let mut value = RawValue::Table;
        if let Some(key) = map.next_key::<String>()? {
            if key.starts_with("$__toml_private_datetime") {
                value = RawValue::Datetime;
            }
            map.next_value::<IgnoredAny>()?;
        }
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(value)
    }
}

/// A known key: where the key is written (for "used together with ..." messages) and its value.
#[derive(Debug)]
pub(crate) struct Field<T = RawValue> {
    pub(crate) key: Span,
    pub(crate) value: Spanned<T>,
}

impl<T> Field<T> {
    pub(crate) fn span(&self) -> Span {
        self.value.span()
    }
}

/// An array of tables (`[[tunables]]`, `[[safe_spans]]`).
#[derive(Debug)]
pub(crate) struct RawList<T>(pub(crate) Vec<Spanned<T>>);

/// The whole file: the multi form's `tunables`, or one tunable's keys at the top level.
#[derive(Debug, Default)]
pub(crate) struct RawSpecFile {
    pub(crate) kernel_dir: Option<Field>,
    pub(crate) tunables: Option<Field<RawList<RawTunable>>>,
    /// Single form and short form: the tunable written at the top level.
    pub(crate) single: RawTunable,
    pub(crate) unknown: Vec<Spanned<String>>,
}

/// One tunable: a `[[tunables]]` entry, or the top level of a single-tunable file.
#[derive(Debug, Default)]
pub(crate) struct RawTunable {
    pub(crate) name: Option<Field>,
    pub(crate) description: Option<Field>,
    /// `[source]` (the prototype's single form) or `[tunables.source]`.
    pub(crate) source: Option<Field<RawSource>>,
    /// Source keys written next to `name` (the multi form, and the short form).
    pub(crate) inline: RawSource,
    pub(crate) safe_spans: Option<Field<RawList<RawSafeSpan>>>,
    pub(crate) exclude_units: Option<Field>,
    pub(crate) unknown: Vec<Spanned<String>>,
}

/// Where the constant is: a text pattern (`original`, `modified`, ...) or a macro name.
#[derive(Debug, Default)]
pub(crate) struct RawSource {
    pub(crate) file: Option<Field>,
    pub(crate) original: Option<Field>,
    pub(crate) modified: Option<Field>,
    pub(crate) values: Option<Field>,
    pub(crate) lines: Option<Field>,
    pub(crate) macro_name: Option<Field>,
    pub(crate) unknown: Vec<Spanned<String>>,
}

impl RawSource {
    /// The keys present, with their `Field`s, in the order they are checked.
    pub(crate) fn present(&self) -> impl Iterator<Item = (&'static str, &Field)> {
        [
            ("file", &self.file),
            ("original", &self.original),
            ("modified", &self.modified),
            ("values", &self.values),
            ("lines", &self.lines),
            ("macro", &self.macro_name),
        ]
        .into_iter()
        .filter_map(|(key, field)| field.as_ref().map(|field| (key, field)))
    }
}

/// One `[[safe_spans]]` entry.
#[derive(Debug, Default)]
pub(crate) struct RawSafeSpan {
    pub(crate) function: Option<Field>,
    pub(crate) start_offset: Option<Field>,
    pub(crate) end_offset: Option<Field>,
    pub(crate) unknown: Vec<Spanned<String>>,
}

/// A table whose keys are matched by hand; see the module doc for why.
trait RawTable: Default {
    /// What serde says was expected when the value is not a table.
    const EXPECTING: &'static str;
    /// What serde says was expected when an array of these is not an array.
    const LIST_EXPECTING: &'static str = "an array of tables";

    /// Reads the value of `key` into `self` and returns true, or returns false (without reading
    /// the value) when the key is not one of this table's.
    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        at: Span,
        map: &mut A,
    ) -> Result<bool, A::Error>;

    fn unknown(&mut self) -> &mut Vec<Spanned<String>>;
}

/// Reads the value of a known key together with the key's span.
fn field<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<Field<T>>,
    at: Span,
    map: &mut A,
) -> Result<bool, A::Error> {
    *slot = Some(Field {
        key: at,
        value: map.next_value()?,
    });
    Ok(true)
}

impl RawTable for RawSpecFile {
    const EXPECTING: &'static str = "a TOML document";

    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        at: Span,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "kernel_dir" => field(&mut self.kernel_dir, at, map),
            "tunables" => field(&mut self.tunables, at, map),
            _ => self.single.take(key, at, map),
        }
    }

    fn unknown(&mut self) -> &mut Vec<Spanned<String>> {
        &mut self.unknown
    }
}

impl RawTable for RawTunable {
    const EXPECTING: &'static str = "a [[tunables]] table";
    const LIST_EXPECTING: &'static str = "an array of [[tunables]] tables";

    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        at: Span,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "name" => field(&mut self.name, at, map),
            "description" => field(&mut self.description, at, map),
            "source" => field(&mut self.source, at, map),
            "safe_spans" => field(&mut self.safe_spans, at, map),
            "exclude_units" => field(&mut self.exclude_units, at, map),
            _ => self.inline.take(key, at, map),
        }
    }

    fn unknown(&mut self) -> &mut Vec<Spanned<String>> {
        &mut self.unknown
    }
}

impl RawTable for RawSource {
    const EXPECTING: &'static str = "a [source] table";

    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        at: Span,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "file" => field(&mut self.file, at, map),
            "original" => field(&mut self.original, at, map),
            "modified" => field(&mut self.modified, at, map),
            "values" => field(&mut self.values, at, map),
            "lines" => field(&mut self.lines, at, map),
            "macro" => field(&mut self.macro_name, at, map),
            _ => Ok(false),
        }
    }

    fn unknown(&mut self) -> &mut Vec<Spanned<String>> {
        &mut self.unknown
    }
}

impl RawTable for RawSafeSpan {
    const EXPECTING: &'static str = "a [[safe_spans]] table";
    const LIST_EXPECTING: &'static str = "an array of [[safe_spans]] tables";

    fn take<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        at: Span,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "function" => field(&mut self.function, at, map),
            "start_offset" => field(&mut self.start_offset, at, map),
            "end_offset" => field(&mut self.end_offset, at, map),
            _ => Ok(false),
        }
    }

    fn unknown(&mut self) -> &mut Vec<Spanned<String>> {
        &mut self.unknown
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: RawTable> Visitor<'de> for TableVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut table = T::default();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if !table.take(key.get_ref(), key.span(), &mut map)? {
                map.next_value::<IgnoredAny>()?;
                table.unknown().push(key);
            }
        }
        Ok(table)
    }
}

struct ListVisitor<T>(PhantomData<T>);

impl<'de, T: RawTable> Visitor<'de> for ListVisitor<T>
where
    T: Deserialize<'de>,
{
    type Value = RawList<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::LIST_EXPECTING)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawList<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(RawList(items))
    }
}

impl<'de, T: RawTable + Deserialize<'de>> Deserialize<'de> for RawList<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ListVisitor(PhantomData))
    }
}

macro_rules! deserialize_as_table {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_map(TableVisitor(PhantomData))
            }
        }
    )*};
}

deserialize_as_table!(RawSpecFile, RawTunable, RawSource, RawSafeSpan);

/// Parses the text into the raw mirror. Syntax errors, and tables of the wrong shape (`source =
/// 3`), are reported with `toml`'s message and position.
pub(crate) fn parse(text: &str, loc: &Locator) -> Result<RawSpecFile, SpecError> {
    toml::from_str(text).map_err(|error: toml::de::Error| {
        let Loc { path, line, col } = loc.at(error.span().map_or(0, |span| span.start));
        SpecError::Toml {
            path,
            line,
            col,
            message: toml_message(error.message()),
        }
    })
}

/// `toml`'s message, reworded where it leaks serde's or its own internals.
fn toml_message(message: &str) -> String {
    let message = message.trim();
    // `toml` gives no span inside a table without a header of its own (`source.file = ..`),
    // so `Spanned` fails there with an internal-sounding message; say what to write.
    if message.contains("expected a borrowed string")
        || message.contains("expected a spanned value")
    {
        return "this key belongs to a table that has no header of its own (a dotted key such as `source.file = ...`, or a `[source.x]` header without `[source]`); write the table with its own header, e.g. [source]".to_owned();
    }
    // serde's "invalid type: map, expected a [source] table": a value of the wrong shape where
    // one of our tables belongs.
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        let found = match found {
            "map" => "a table",
            "sequence" => "an array",
            other => other,
        };
        return format!("expected {expected} here, found {found}");
    }
    format!("invalid TOML: {}", message.replace('\n', "; "))
}
