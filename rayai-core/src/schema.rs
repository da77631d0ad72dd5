//! The JSON schemas of an agent's input and output ([`AgentSchema`]), and the validation of a
//! request's `data` against the input schema, every error in FastAPI's (pydantic v2) shape.
//!
//! The validator walks the subset of JSON Schema (draft 2020-12) that `schemars` emits for plain
//! Rust types: `$ref`/`$defs`, `type` (one or a list, `null` for options), `properties`,
//! `required`, `additionalProperties`, `items`, `prefixItems`, `enum`, `const`, `anyOf`,
//! `oneOf`, `allOf`, the integer `format`s (`uint8` … `int64`), `minimum`, `maximum`, their
//! exclusive forms, `minLength`, `maxLength`, `minItems` and `maxItems`. Other keywords (`pattern`,
//! string `format`s, `propertyNames`, `uniqueItems`) are not checked: serde's own check, after
//! this one, still rejects what it cannot read.
//!
//! It is as strict as serde, which reads the value next: `"5"` is not an integer and `5.0` is not
//! one either. Where pydantic's lax mode also refuses an input, the error is the one FastAPI
//! writes (`int_parsing` for `"abc"`, `int_from_float` for `5.5`); where pydantic would have
//! coerced it (`"5"`, `5.0`), the error is the one of pydantic's strict mode (`int_type`).

use serde_json::{Map, Number, Value, json};

/// The JSON schemas (draft 2020-12) of what an agent takes (the request's `data`) and what it
/// answers (the `result`): the source of its OpenAPI description.
///
/// A [`crate::TypedAgent`]'s come from its `Input` and `Output` types; an agent on
/// [`serde_json::Value`] takes and answers any object ([`AgentSchema::any`]), unless its
/// [`crate::Agent::schema`] says otherwise.
///
/// # Examples
///
/// ```
/// use rayai_core::AgentSchema;
/// use serde_json::json;
///
/// let schema = AgentSchema::new(
///     json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
///     json!({"type": "object"}),
/// );
/// assert!(schema.validate(&json!({"text": "hi"})).is_ok());
/// let errors = schema.validate(&json!({"text": 5})).unwrap_err();
/// assert_eq!(
///     errors[0],
///     json!({"type": "string_type", "loc": ["body", "data", "text"],
///            "msg": "Input should be a valid string", "input": 5}),
/// );
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AgentSchema {
    /// The schema of the request's `data`.
    pub input: Value,
    /// The schema of the answer's `result`.
    pub output: Value,
}

impl AgentSchema {
    /// The schemas `input` and `output`.
    pub fn new(input: Value, output: Value) -> Self {
        AgentSchema { input, output }
    }

    /// Any object in, any object out: the schema of an agent on [`serde_json::Value`].
    pub fn any() -> Self {
        AgentSchema::new(json!({"type": "object"}), json!({"type": "object"}))
    }

    /// Checks `data` against the input schema.
    ///
    /// # Errors
    ///
    /// Every error found (not only the first), each as FastAPI writes it in a 422's `detail`
    /// list: `{"type", "loc", "msg", "input"}` and a `ctx` for some types, with `loc` starting
    /// with `"body", "data"`.
    pub fn validate(&self, data: &Value) -> Result<(), Vec<Value>> {
        let errors = validate(&self.input, data);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Where every location starts: the request body's `data`.
const LOC_PREFIX: [&str; 2] = ["body", "data"];

/// How deep the walk follows `$ref`s and nesting before it gives up (silently: serde checks).
const MAX_DEPTH: usize = 256;

/// The errors of `data` against `schema`, in FastAPI's shape.
pub(crate) fn validate(schema: &Value, data: &Value) -> Vec<Value> {
    let walker = Walker { root: schema };
    let mut loc: Vec<Value> = LOC_PREFIX.iter().map(|s| json!(s)).collect();
    let mut errors = Vec::new();
    walker.check(schema, data, &mut loc, 0, &mut errors);
    errors.into_iter().map(FieldError::into_json).collect()
}

/// One line of a client error's message: `author.age: Input should be a valid integer`.
pub(crate) fn summary(errors: &[Value]) -> String {
    let lines: Vec<String> = errors
        .iter()
        .map(|e| {
            let path: Vec<String> = e["loc"]
                .as_array()
                .map(|loc| {
                    loc.iter()
                        .skip(LOC_PREFIX.len())
                        .map(|part| match part {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let msg = e["msg"].as_str().unwrap_or("invalid");
            if path.is_empty() {
                format!("data: {msg}")
            } else {
                format!("{}: {msg}", path.join("."))
            }
        })
        .collect();
    let n = errors.len();
    format!(
        "{n} validation error{} for data: {}",
        if n == 1 { "" } else { "s" },
        lines.join("; ")
    )
}

/// An error found by the walk, before it becomes JSON.
#[derive(Debug, Clone, PartialEq)]
struct FieldError {
    kind: &'static str,
    loc: Vec<Value>,
    msg: String,
    input: Value,
    ctx: Option<Value>,
    /// The value has the wrong shape for the schema altogether (a type, enum or literal error):
    /// in a union, another branch fits better.
    mismatch: bool,
}

impl FieldError {
    fn into_json(self) -> Value {
        let mut out = Map::new();
        out.insert("type".to_owned(), json!(self.kind));
        out.insert("loc".to_owned(), Value::Array(self.loc));
        out.insert("msg".to_owned(), Value::String(self.msg));
        out.insert("input".to_owned(), self.input);
        if let Some(ctx) = self.ctx {
            out.insert("ctx".to_owned(), ctx);
        }
        Value::Object(out)
    }
}

/// The walk over one schema document (its root holds the `$defs` that `$ref`s point into).
struct Walker<'s> {
    root: &'s Value,
}

impl Walker<'_> {
    /// Pushes onto `out` the errors of `value` (at `loc`) against `schema`.
    fn check(
        &self,
        schema: &Value,
        value: &Value,
        loc: &mut Vec<Value>,
        depth: usize,
        out: &mut Vec<FieldError>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let Value::Object(s) = schema else {
            // `true` accepts anything; `false` (which schemars only writes for `items` and
            // `additionalProperties`, handled where they are) is left to serde.
            return;
        };
        let error = |kind, msg: String, ctx: Option<Value>, mismatch, loc: &[Value]| FieldError {
            kind,
            loc: loc.to_vec(),
            msg,
            input: value.clone(),
            ctx,
            mismatch,
        };

        if let Some(target) = s.get("$ref").and_then(Value::as_str)
            && let Some(resolved) = self.resolve(target)
        {
            self.check(resolved, value, loc, depth + 1, out);
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, value, loc, depth + 1, out);
            }
        }
        for union in ["anyOf", "oneOf"] {
            if let Some(alternatives) = s.get(union).and_then(Value::as_array) {
                self.check_union(alternatives, value, loc, depth, out);
            }
        }
        if let Some(expected) = s.get("const") {
            if value != expected {
                let expected = python_repr(expected);
                out.push(error(
                    "literal_error",
                    format!("Input should be {expected}"),
                    Some(json!({ "expected": expected })),
                    true,
                    loc,
                ));
            }
            return;
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                let expected = one_of(allowed);
                out.push(error(
                    "enum",
                    format!("Input should be {expected}"),
                    Some(json!({ "expected": expected })),
                    true,
                    loc,
                ));
            }
            return;
        }
        if let Some(types) = s.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.is_empty() && !types.iter().any(|t| is_of_type(value, t)) {
                let first = types.iter().find(|t| **t != "null").unwrap_or(&types[0]);
                let (kind, msg) = type_error(first, value, s);
                out.push(error(kind, msg.to_owned(), None, true, loc));
                return;
            }
        }
        match value {
            Value::Number(n) => self.check_number(s, n, value, loc, out),
            Value::String(text) => check_length(s, text, value, loc, out),
            Value::Array(items) => self.check_array(s, items, value, loc, depth, out),
            Value::Object(fields) => self.check_object(s, fields, value, loc, depth, out),
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// `$ref`: a JSON pointer into the root document.
    fn resolve(&self, target: &str) -> Option<&Value> {
        let pointer = target.strip_prefix('#')?;
        if pointer.is_empty() {
            Some(self.root)
        } else {
            self.root.pointer(pointer)
        }
    }

    /// `anyOf`/`oneOf`: fine when one alternative accepts the value. Otherwise the errors of the
    /// alternative that fits best (the fewest errors among those whose shape fits), or, when no
    /// shape fits, one `enum` error for literal alternatives and the shape errors of the others.
    fn check_union(
        &self,
        alternatives: &[Value],
        value: &Value,
        loc: &mut Vec<Value>,
        depth: usize,
        out: &mut Vec<FieldError>,
    ) {
        let mut results = Vec::with_capacity(alternatives.len());
        for alternative in alternatives {
            let mut errors = Vec::new();
            self.check(alternative, value, loc, depth + 1, &mut errors);
            if errors.is_empty() {
                return;
            }
            results.push((alternative, errors));
        }
        let is_mismatch = |errors: &[FieldError]| {
            errors.len() == 1 && errors[0].mismatch && errors[0].loc.len() == loc.len()
        };
        // A `null` alternative (an `Option`) says nothing about a value that is not null.
        results.retain(|(alternative, _)| !is_null_schema(alternative));
        if let Some((_, errors)) = results
            .iter()
            .filter(|(_, errors)| !is_mismatch(errors))
            .min_by_key(|(_, errors)| errors.len())
        {
            out.extend(errors.iter().cloned());
            return;
        }
        let mut literals = Vec::new();
        let mut others: Vec<FieldError> = Vec::new();
        for (alternative, errors) in results {
            let schema = self.deref(alternative, depth);
            match (
                schema.get("const"),
                schema.get("enum").and_then(Value::as_array),
            ) {
                (Some(one), _) => literals.push(one.clone()),
                (None, Some(many)) => literals.extend(many.iter().cloned()),
                (None, None) => {
                    for e in errors {
                        if !others.iter().any(|o| o.kind == e.kind && o.msg == e.msg) {
                            others.push(e);
                        }
                    }
                }
            }
        }
        if !literals.is_empty() {
            let expected = one_of(&literals);
            out.push(FieldError {
                kind: "enum",
                loc: loc.clone(),
                msg: format!("Input should be {expected}"),
                input: value.clone(),
                ctx: Some(json!({ "expected": expected })),
                mismatch: true,
            });
        }
        out.extend(others);
    }

    /// The schema a `$ref` (or chain of them) leads to.
    fn deref<'a>(&'a self, mut schema: &'a Value, depth: usize) -> &'a Value {
        for _ in depth..MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(target) => match self.resolve(target) {
                    Some(next) => schema = next,
                    None => break,
                },
                None => break,
            }
        }
        schema
    }

    /// The bounds of a number: `minimum`, `maximum`, their exclusive forms, and the range of an
    /// integer `format` (`uint8`: 0 to 255).
    fn check_number(
        &self,
        s: &Map<String, Value>,
        n: &Number,
        value: &Value,
        loc: &[Value],
        out: &mut Vec<FieldError>,
    ) {
        let (format_min, format_max) = s
            .get("format")
            .and_then(Value::as_str)
            .map_or((None, None), format_range);
        let lower = [
            (s.get("minimum").and_then(Value::as_number).cloned(), false),
            (
                s.get("exclusiveMinimum")
                    .and_then(Value::as_number)
                    .cloned(),
                true,
            ),
            (format_min, false),
        ];
        for (bound, exclusive) in lower.into_iter() {
            let Some(bound) = bound else { continue };
            let ok = match compare(n, &bound) {
                Some(std::cmp::Ordering::Greater) => true,
                Some(std::cmp::Ordering::Equal) => !exclusive,
                _ => false,
            };
            if !ok {
                let (kind, word, key) = if exclusive {
                    ("greater_than", "greater than", "gt")
                } else {
                    ("greater_than_equal", "greater than or equal to", "ge")
                };
                out.push(bound_error(kind, word, key, &bound, value, loc));
                break;
            }
        }
        let upper = [
            (s.get("maximum").and_then(Value::as_number).cloned(), false),
            (
                s.get("exclusiveMaximum")
                    .and_then(Value::as_number)
                    .cloned(),
                true,
            ),
            (format_max, false),
        ];
        for (bound, exclusive) in upper.into_iter() {
            let Some(bound) = bound else { continue };
            let ok = match compare(n, &bound) {
                Some(std::cmp::Ordering::Less) => true,
                Some(std::cmp::Ordering::Equal) => !exclusive,
                _ => false,
            };
            if !ok {
                let (kind, word, key) = if exclusive {
                    ("less_than", "less than", "lt")
                } else {
                    ("less_than_equal", "less than or equal to", "le")
                };
                out.push(bound_error(kind, word, key, &bound, value, loc));
                break;
            }
        }
    }

    /// `prefixItems` (tuples), `items`, `minItems` and `maxItems`.
    fn check_array(
        &self,
        s: &Map<String, Value>,
        items: &[Value],
        value: &Value,
        loc: &mut Vec<Value>,
        depth: usize,
        out: &mut Vec<FieldError>,
    ) {
        let prefix = s
            .get("prefixItems")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        for (i, item) in items.iter().enumerate() {
            let schema = match prefix.get(i) {
                Some(schema) => Some(schema),
                None => s.get("items"),
            };
            if let Some(schema) = schema {
                loc.push(json!(i));
                self.check(schema, item, loc, depth + 1, out);
                loc.pop();
            }
        }
        let len = items.len() as u64;
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            out.push(FieldError {
                kind: "too_short",
                loc: loc.clone(),
                msg: format!(
                    "List should have at least {min} item{} after validation, not {len}",
                    plural(min)
                ),
                input: value.clone(),
                ctx: Some(json!({"field_type": "List", "min_length": min, "actual_length": len})),
                mismatch: false,
            });
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            out.push(FieldError {
                kind: "too_long",
                loc: loc.clone(),
                msg: format!(
                    "List should have at most {max} item{} after validation, not {len}",
                    plural(max)
                ),
                input: value.clone(),
                ctx: Some(json!({"field_type": "List", "max_length": max, "actual_length": len})),
                mismatch: false,
            });
        }
    }

    /// `properties` in their order (each present one checked, each required missing one
    /// `missing`), then the keys the schema does not name: `extra_forbidden` under
    /// `additionalProperties: false`, checked against `additionalProperties` when it is a
    /// schema (maps).
    fn check_object(
        &self,
        s: &Map<String, Value>,
        fields: &Map<String, Value>,
        value: &Value,
        loc: &mut Vec<Value>,
        depth: usize,
        out: &mut Vec<FieldError>,
    ) {
        let properties = s.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = s
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let missing = |name: &str, loc: &[Value]| {
            let mut at = loc.to_vec();
            at.push(json!(name));
            FieldError {
                kind: "missing",
                loc: at,
                msg: "Field required".to_owned(),
                input: value.clone(),
                ctx: None,
                mismatch: false,
            }
        };
        if let Some(properties) = properties {
            for (name, schema) in properties {
                match fields.get(name) {
                    Some(field) => {
                        loc.push(json!(name));
                        self.check(schema, field, loc, depth + 1, out);
                        loc.pop();
                    }
                    None if required.contains(&name.as_str()) => out.push(missing(name, loc)),
                    None => {}
                }
            }
        }
        for name in &required {
            if !properties.is_some_and(|p| p.contains_key(*name)) && !fields.contains_key(*name) {
                out.push(missing(name, loc));
            }
        }
        let Some(additional) = s.get("additionalProperties") else {
            return;
        };
        for (name, field) in fields {
            if properties.is_some_and(|p| p.contains_key(name)) {
                continue;
            }
            loc.push(json!(name));
            match additional {
                Value::Bool(false) => out.push(FieldError {
                    kind: "extra_forbidden",
                    loc: loc.clone(),
                    msg: "Extra inputs are not permitted".to_owned(),
                    input: field.clone(),
                    ctx: None,
                    mismatch: false,
                }),
                schema => self.check(schema, field, loc, depth + 1, out),
            }
            loc.pop();
        }
    }
}

/// `minLength` and `maxLength`, counted in characters (as JSON Schema and Python count them).
fn check_length(
    s: &Map<String, Value>,
    text: &str,
    value: &Value,
    loc: &[Value],
    out: &mut Vec<FieldError>,
) {
    let min = s.get("minLength").and_then(Value::as_u64);
    let max = s.get("maxLength").and_then(Value::as_u64);
    if min.is_none() && max.is_none() {
        return;
    }
    let len = text.chars().count() as u64;
    let plural = |n: u64| if n == 1 { "character" } else { "characters" };
    if let Some(min) = min
        && len < min
    {
        out.push(FieldError {
            kind: "string_too_short",
            loc: loc.to_vec(),
            msg: format!("String should have at least {min} {}", plural(min)),
            input: value.clone(),
            ctx: Some(json!({ "min_length": min })),
            mismatch: false,
        });
    }
    if let Some(max) = max
        && len > max
    {
        out.push(FieldError {
            kind: "string_too_long",
            loc: loc.to_vec(),
            msg: format!("String should have at most {max} {}", plural(max)),
            input: value.clone(),
            ctx: Some(json!({ "max_length": max })),
            mismatch: false,
        });
    }
}

/// `{"type": "null"}`, the alternative an `Option` adds.
fn is_null_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
}

/// Whether `value` is of the JSON Schema `ty`, as serde reads it: an integer is a number
/// without a fraction *as written* (`5.0` is not one).
fn is_of_type(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

/// The pydantic error (type and message) for `value`, which is not of the JSON type `ty`.
fn type_error(
    ty: &str,
    value: &Value,
    schema: &Map<String, Value>,
) -> (&'static str, &'static str) {
    match ty {
        "string" => ("string_type", "Input should be a valid string"),
        "integer" => match value {
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() != 0.0) => (
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            ),
            Value::String(s) if s.trim().parse::<i128>().is_err() => (
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            ),
            _ => ("int_type", "Input should be a valid integer"),
        },
        "number" => match value {
            Value::String(s) if s.trim().parse::<f64>().is_err() => (
                "float_parsing",
                "Input should be a valid number, unable to parse string as a number",
            ),
            _ => ("float_type", "Input should be a valid number"),
        },
        "boolean" => {
            let interpretable = match value {
                Value::String(s) => matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "0" | "off"
                        | "f"
                        | "false"
                        | "n"
                        | "no"
                        | "1"
                        | "on"
                        | "t"
                        | "true"
                        | "y"
                        | "yes"
                ),
                Value::Number(n) => n.as_f64().is_some_and(|f| f == 0.0 || f == 1.0),
                _ => true,
            };
            if interpretable {
                ("bool_type", "Input should be a valid boolean")
            } else {
                (
                    "bool_parsing",
                    "Input should be a valid boolean, unable to interpret input",
                )
            }
        }
        "array" => ("list_type", "Input should be a valid list"),
        "object" if schema.contains_key("properties") || schema.contains_key("required") => (
            "model_attributes_type",
            "Input should be a valid dictionary or object to extract fields from",
        ),
        "object" => ("dict_type", "Input should be a valid dictionary"),
        "null" => ("none_required", "Input should be None"),
        _ => ("value_error", "Input is not valid"),
    }
}

/// The range of an integer `format` that schemars writes (`uint8`, `int32`, `uint` for `usize`).
fn format_range(format: &str) -> (Option<Number>, Option<Number>) {
    let signed = |bits: u32| {
        let max = (1i64 << (bits - 1)) - 1;
        (Some(Number::from(-max - 1)), Some(Number::from(max)))
    };
    let unsigned = |bits: u32| {
        (
            Some(Number::from(0)),
            Some(Number::from((1u64 << bits) - 1)),
        )
    };
    match format {
        "int8" => signed(8),
        "int16" => signed(16),
        "int32" => signed(32),
        "int64" | "int" => (Some(Number::from(i64::MIN)), Some(Number::from(i64::MAX))),
        "uint8" => unsigned(8),
        "uint16" => unsigned(16),
        "uint32" => unsigned(32),
        "uint64" | "uint" => (Some(Number::from(0)), Some(Number::from(u64::MAX))),
        _ => (None, None),
    }
}

/// Compares two JSON numbers exactly when both are integers, as floats otherwise.
fn compare(a: &Number, b: &Number) -> Option<std::cmp::Ordering> {
    let int = |n: &Number| {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
    };
    match (int(a), int(b)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `Input should be greater than or equal to 0`, with `ctx: {"ge": 0}`.
fn bound_error(
    kind: &'static str,
    word: &str,
    key: &str,
    bound: &Number,
    value: &Value,
    loc: &[Value],
) -> FieldError {
    let mut ctx = Map::new();
    ctx.insert(key.to_owned(), Value::Number(bound.clone()));
    FieldError {
        kind,
        loc: loc.to_vec(),
        msg: format!("Input should be {word} {bound}"),
        input: value.clone(),
        ctx: Some(Value::Object(ctx)),
        mismatch: false,
    }
}

/// `'a', 'b' or 'c'`, as pydantic lists expected values.
fn one_of(values: &[Value]) -> String {
    let reprs: Vec<String> = values.iter().map(python_repr).collect();
    match reprs.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A JSON value as Python's `repr` prints it: `'text'`, `5`, `True`, `None`.
fn python_repr(value: &Value) -> String {
    match value {
        Value::String(s) if s.contains('\'') && !s.contains('"') => format!("\"{s}\""),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use schemars::JsonSchema;
    use serde::Deserialize;

    use super::*;

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    struct Author {
        name: String,
        age: u8,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    enum Mood {
        Happy,
        Sad,
        Mixed,
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    enum Shape {
        Dot,
        Circle { r: f64 },
        Pair(i32, i32),
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: i64 },
        B { y: String },
    }

    #[allow(dead_code)]
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Input {
        text: String,
        count: Option<i64>,
        author: Author,
        co_author: Option<Author>,
        tags: Vec<String>,
        ratio: f32,
        flag: bool,
        mood: Mood,
        #[serde(default)]
        shape: Option<Shape>,
        #[serde(default)]
        tagged: Option<Tagged>,
        #[serde(default)]
        scores: HashMap<String, u32>,
        #[serde(default)]
        pair: Option<(u8, String)>,
        #[serde(default)]
        any: Value,
        #[serde(default)]
        initial: Option<char>,
    }

    /// A valid input, changed by `edit`.
    fn input(edit: impl FnOnce(&mut Map<String, Value>)) -> Value {
        let mut data = json!({
            "text": "hello",
            "count": 2,
            "author": {"name": "Ada", "age": 36},
            "co_author": null,
            "tags": ["a", "b"],
            "ratio": 0.5,
            "flag": true,
            "mood": "Happy",
        });
        edit(data.as_object_mut().unwrap());
        data
    }

    /// The errors of `data` against `Input`.
    fn errors(data: &Value) -> Vec<Value> {
        validate(&schemars::schema_for!(Input).to_value(), data)
    }

    /// The errors of `data` with `field` set to `value`: one expected, of type `kind`.
    fn one_error(field: &str, value: Value) -> Value {
        let data = input(|d| {
            d.insert(field.to_owned(), value);
        });
        let e = errors(&data);
        assert_eq!(e.len(), 1, "{field}: {e:#?}");
        e[0].clone()
    }

    #[test]
    fn a_valid_input_has_no_errors() {
        assert_eq!(errors(&input(|_| {})), Vec::<Value>::new());
        let full = input(|d| {
            d.insert("count".into(), json!(null));
            d.insert("co_author".into(), json!({"name": "Bo", "age": 0}));
            d.insert("ratio".into(), json!(3));
            d.insert("shape".into(), json!({"Circle": {"r": 1}}));
            d.insert("tagged".into(), json!({"kind": "B", "y": "z"}));
            d.insert("scores".into(), json!({"x": 1, "y": 4294967295_u64}));
            d.insert("pair".into(), json!([255, "x"]));
            d.insert("any".into(), json!([1, {"a": null}]));
            d.insert("initial".into(), json!("é"));
        });
        assert_eq!(errors(&full), Vec::<Value>::new());
        assert!(
            errors(&input(|d| {
                d.insert("shape".into(), json!("Dot"));
            }))
            .is_empty()
        );
    }

    #[test]
    fn every_error_is_reported_in_field_order_with_fastapi_shapes() {
        let data = json!({
            "count": "abc",
            "author": {"name": 5},
            "tags": ["a", 7, null],
            "ratio": "x",
            "flag": "maybe",
            "mood": "Angry",
            "extra": 1,
        });
        let e = errors(&data);
        assert_eq!(
            Value::Array(e),
            json!([
                {"type": "missing", "loc": ["body", "data", "text"], "msg": "Field required",
                 "input": data},
                {"type": "int_parsing", "loc": ["body", "data", "count"],
                 "msg": "Input should be a valid integer, unable to parse string as an integer",
                 "input": "abc"},
                {"type": "string_type", "loc": ["body", "data", "author", "name"],
                 "msg": "Input should be a valid string", "input": 5},
                {"type": "missing", "loc": ["body", "data", "author", "age"],
                 "msg": "Field required", "input": {"name": 5}},
                {"type": "string_type", "loc": ["body", "data", "tags", 1],
                 "msg": "Input should be a valid string", "input": 7},
                {"type": "string_type", "loc": ["body", "data", "tags", 2],
                 "msg": "Input should be a valid string", "input": null},
                {"type": "float_parsing", "loc": ["body", "data", "ratio"],
                 "msg": "Input should be a valid number, unable to parse string as a number",
                 "input": "x"},
                {"type": "bool_parsing", "loc": ["body", "data", "flag"],
                 "msg": "Input should be a valid boolean, unable to interpret input",
                 "input": "maybe"},
                {"type": "enum", "loc": ["body", "data", "mood"],
                 "msg": "Input should be 'Happy', 'Sad' or 'Mixed'", "input": "Angry",
                 "ctx": {"expected": "'Happy', 'Sad' or 'Mixed'"}},
                {"type": "extra_forbidden", "loc": ["body", "data", "extra"],
                 "msg": "Extra inputs are not permitted", "input": 1},
            ])
        );
    }

    #[test]
    fn scalars_are_as_strict_as_serde() {
        let int_type = "Input should be a valid integer";
        for (value, kind, msg) in [
            (json!("5"), "int_type", int_type),
            (json!(5.0), "int_type", int_type),
            (json!(true), "int_type", int_type),
            (json!([1]), "int_type", int_type),
            (
                json!(5.5),
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            ),
        ] {
            let e = one_error("count", value.clone());
            assert_eq!(
                (e["type"].as_str(), e["msg"].as_str()),
                (Some(kind), Some(msg)),
                "{value}"
            );
            assert_eq!(e["input"], value);
        }
        let e = one_error("ratio", json!("1.5"));
        assert_eq!(
            (e["type"].as_str(), e["msg"].as_str()),
            (Some("float_type"), Some("Input should be a valid number"))
        );
        assert_eq!(one_error("ratio", json!(null))["type"], "float_type");
        assert_eq!(one_error("flag", json!("true"))["type"], "bool_type");
        assert_eq!(one_error("flag", json!(1))["type"], "bool_type");
        assert_eq!(one_error("flag", json!(2))["type"], "bool_parsing");
        assert_eq!(
            one_error("flag", json!(null))["msg"],
            "Input should be a valid boolean"
        );
        assert_eq!(one_error("text", json!(["x"]))["type"], "string_type");
    }

    #[test]
    fn containers_and_nested_structs() {
        let e = one_error("tags", json!("a"));
        assert_eq!(
            (e["type"].as_str(), e["msg"].as_str()),
            (Some("list_type"), Some("Input should be a valid list"))
        );
        let e = one_error("scores", json!([]));
        assert_eq!(
            (e["type"].as_str(), e["msg"].as_str()),
            (
                Some("dict_type"),
                Some("Input should be a valid dictionary")
            )
        );
        let e = one_error("author", json!("Ada"));
        assert_eq!(
            e,
            json!({"type": "model_attributes_type", "loc": ["body", "data", "author"],
                   "msg": "Input should be a valid dictionary or object to extract fields from",
                   "input": "Ada"})
        );
        // An `Option` of a struct: the struct's errors, not the `null` branch's.
        let e = one_error("co_author", json!({"name": "Bo", "age": -1}));
        assert_eq!(
            e,
            json!({"type": "greater_than_equal", "loc": ["body", "data", "co_author", "age"],
                   "msg": "Input should be greater than or equal to 0", "input": -1,
                   "ctx": {"ge": 0}})
        );
        let e = one_error("scores", json!({"a": 1, "b": 4294967296_u64}));
        assert_eq!(e["loc"], json!(["body", "data", "scores", "b"]));
        assert_eq!(e["msg"], "Input should be less than or equal to 4294967295");
        assert_eq!(e["ctx"], json!({"le": 4294967295_u64}));
    }

    #[test]
    fn tuples_and_lengths() {
        let e = one_error("pair", json!([256, "x"]));
        assert_eq!(e["loc"], json!(["body", "data", "pair", 0]));
        assert_eq!(e["type"], "less_than_equal");
        let e = one_error("pair", json!([1]));
        assert_eq!(
            e,
            json!({"type": "too_short", "loc": ["body", "data", "pair"],
                   "msg": "List should have at least 2 items after validation, not 1",
                   "input": [1],
                   "ctx": {"field_type": "List", "min_length": 2, "actual_length": 1}})
        );
        assert_eq!(one_error("pair", json!([1, "a", 2]))["type"], "too_long");
        let e = one_error("initial", json!("ab"));
        assert_eq!(
            e,
            json!({"type": "string_too_long", "loc": ["body", "data", "initial"],
                   "msg": "String should have at most 1 character", "input": "ab",
                   "ctx": {"max_length": 1}})
        );
        assert_eq!(
            one_error("initial", json!(""))["msg"],
            "String should have at least 1 character"
        );
    }

    #[test]
    fn unions_report_the_branch_that_fits_best() {
        // An enum with data: the variant whose shape fits.
        let e = one_error("shape", json!({"Circle": {"r": "big"}}));
        assert_eq!(e["loc"], json!(["body", "data", "shape", "Circle", "r"]));
        assert_eq!(e["type"], "float_parsing");
        // A value no variant's shape fits: the unit variants as one `enum` error, and the
        // shape error of the others, once.
        let e = errors(&input(|d| {
            d.insert("shape".into(), json!("Square"));
        }));
        assert_eq!(e.len(), 2, "{e:#?}");
        assert_eq!(e[0]["type"], "enum");
        assert_eq!(e[0]["msg"], "Input should be 'Dot'");
        assert_eq!(e[1]["type"], "model_attributes_type");
        // An internally tagged enum: the variant the tag names.
        let e = one_error("tagged", json!({"kind": "B", "y": 5}));
        assert_eq!(e["loc"], json!(["body", "data", "tagged", "y"]));
        assert_eq!(e["type"], "string_type");
        let e = errors(&input(|d| {
            d.insert("tagged".into(), json!({"kind": "A"}));
        }));
        assert_eq!(e.len(), 1, "{e:#?}");
        assert_eq!(e[0]["loc"], json!(["body", "data", "tagged", "x"]));
        assert_eq!(e[0]["type"], "missing");
    }

    #[test]
    fn const_and_null_schemas() {
        let schema = json!({"type": "object", "properties": {
            "v": {"const": "x"}, "n": {"type": "null"}, "b": {"enum": [true, null, 1]},
        }});
        let e = validate(&schema, &json!({"v": "y", "n": 1, "b": "it's"}));
        assert_eq!(
            Value::Array(e),
            json!([
                {"type": "literal_error", "loc": ["body", "data", "v"], "msg": "Input should be 'x'",
                 "input": "y", "ctx": {"expected": "'x'"}},
                {"type": "none_required", "loc": ["body", "data", "n"], "msg": "Input should be None",
                 "input": 1},
                {"type": "enum", "loc": ["body", "data", "b"], "msg": "Input should be True, None or 1",
                 "input": "it's", "ctx": {"expected": "True, None or 1"}},
            ])
        );
    }

    #[test]
    fn exclusive_bounds_and_float_bounds() {
        let schema = json!({"type": "object", "properties": {
            "p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1.5},
        }});
        let e = validate(&schema, &json!({"p": 0}));
        assert_eq!(e[0]["type"], "greater_than");
        assert_eq!(e[0]["msg"], "Input should be greater than 0");
        assert_eq!(e[0]["ctx"], json!({"gt": 0}));
        let e = validate(&schema, &json!({"p": 2}));
        assert_eq!(e[0]["msg"], "Input should be less than or equal to 1.5");
        assert!(validate(&schema, &json!({"p": 1.5})).is_empty());
    }

    #[test]
    fn data_that_is_no_object_is_one_error_at_data() {
        let e = errors(&json!([1]));
        assert_eq!(e.len(), 1);
        assert_eq!(e[0]["loc"], json!(["body", "data"]));
        assert_eq!(e[0]["type"], "model_attributes_type");
    }

    #[test]
    fn the_summary_names_each_field() {
        let e = errors(
            &json!({"count": "abc", "author": {"name": "A", "age": 1}, "tags": [1],
            "ratio": 1, "flag": true, "mood": "Sad"}),
        );
        assert_eq!(
            summary(&e),
            "3 validation errors for data: text: Field required; count: Input should be a valid \
             integer, unable to parse string as an integer; tags.0: Input should be a valid string"
        );
        assert_eq!(
            summary(&errors(&json!(1))),
            "1 validation error for data: data: Input should be a valid dictionary or object to \
             extract fields from"
        );
    }

    #[test]
    fn declared_bounds_and_lengths_are_checked() {
        #[allow(dead_code)]
        #[derive(Deserialize, JsonSchema)]
        struct Bounded {
            #[schemars(range(min = 1, max = 10))]
            n: u32,
            #[schemars(length(min = 2))]
            s: String,
            #[schemars(length(max = 1))]
            v: Vec<u8>,
        }
        let schema = schemars::schema_for!(Bounded).to_value();
        let e = validate(&schema, &json!({"n": 11, "s": "x", "v": [1, 2]}));
        let kinds: Vec<&str> = e.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["less_than_equal", "string_too_short", "too_long"]);
        assert_eq!(e[0]["ctx"], json!({"le": 10}));
        assert_eq!(e[1]["msg"], "String should have at least 2 characters");
        assert_eq!(
            e[2]["msg"],
            "List should have at most 1 item after validation, not 2"
        );
        assert!(validate(&schema, &json!({"n": 1, "s": "xy", "v": []})).is_empty());
    }

    #[test]
    fn any_schema_takes_any_object() {
        let any = AgentSchema::any();
        assert!(any.validate(&json!({"x": [1, 2]})).is_ok());
        assert_eq!(any.validate(&json!(1)).unwrap_err()[0]["type"], "dict_type");
    }
}
