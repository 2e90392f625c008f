//! What the user asks to extract: fields with a type and a description, read
//! from a JSON Schema or from a short list, and turned into the JSON Schema
//! the model's output is constrained to (every field may be null: a value
//! the documents do not give stays empty).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Most fields in one schema.
pub const MAX_FIELDS: usize = 32;
/// Longest text value the model may write.
pub const MAX_TEXT_CHARS: usize = 200;
/// Largest magnitude of a number field.
pub const MAX_NUMBER: f64 = 1e15;
/// Most items of a list field.
pub const MAX_LIST_ITEMS: usize = 12;

/// A field's type.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "choices")]
pub enum FieldType {
    /// Text, copied from the document.
    String,
    /// A number.
    Number,
    /// A calendar date, written YYYY-MM-DD.
    Date,
    /// Yes or no.
    Boolean,
    /// One of the user's choices (a classifier).
    Enum(Vec<String>),
    /// Several texts.
    List,
}

impl FieldType {
    /// Short name as users write it.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
            FieldType::Enum(_) => "enum",
            FieldType::List => "list",
        }
    }

    /// The JSON Schema of a value (without null).
    fn json_schema(&self) -> Value {
        match self {
            FieldType::String => json!({"type": "string", "maxLength": MAX_TEXT_CHARS}),
            // Bounded, with at most 6 decimals: JSON's own numbers have no
            // limit, and a model sampling hot can write digits (or an
            // exponent) until no f64 holds the value.
            FieldType::Number => json!({
                "type": "number",
                "minimum": -MAX_NUMBER,
                "maximum": MAX_NUMBER,
                "multipleOf": 0.000001,
            }),
            FieldType::Date => {
                json!({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"})
            }
            FieldType::Boolean => json!({"type": "boolean"}),
            FieldType::Enum(choices) => json!({"enum": choices}),
            FieldType::List => json!({
                "type": "array",
                "items": {"type": "string", "maxLength": MAX_TEXT_CHARS},
                "maxItems": MAX_LIST_ITEMS,
            }),
        }
    }

    /// How the prompt describes it.
    fn hint(&self) -> String {
        match self {
            FieldType::String => "text".into(),
            FieldType::Number => "number".into(),
            FieldType::Date => "date, YYYY-MM-DD".into(),
            FieldType::Boolean => "true or false".into(),
            FieldType::Enum(c) => format!("one of: {}", c.join(", ")),
            FieldType::List => "list of texts".into(),
        }
    }
}

/// One field to fill in.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// Its name (a JSON key and a table column).
    pub name: String,
    /// Its type.
    #[serde(flatten)]
    pub kind: FieldType,
    /// One line on what it is; also what the field's passages are searched with.
    #[serde(default)]
    pub description: String,
}

impl Field {
    /// The search query that finds the passages for this field.
    pub fn query(&self) -> String {
        let name = self.name.replace(['_', '-'], " ");
        if self.description.is_empty() {
            name
        } else {
            format!("{name}: {}", self.description)
        }
    }

    /// The field as the prompt lists it.
    pub fn prompt_line(&self) -> String {
        let mut line = format!("- {} ({})", self.name, self.kind.hint());
        if !self.description.is_empty() {
            line.push_str(": ");
            line.push_str(&self.description);
        }
        line
    }
}

/// The fields of one extraction.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// In the order of the table's columns.
    pub fields: Vec<Field>,
}

/// The short list form: `{"fields": [{"name", "type", "description", "choices"?}]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListForm {
    fields: Vec<ListField>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListField {
    name: String,
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    choices: Vec<String>,
}

fn default_type() -> String {
    "string".into()
}

impl Schema {
    /// Read a schema: a JSON Schema object (`properties`), or the short list
    /// form (`fields`).
    pub fn parse(value: &Value) -> Result<Schema> {
        let schema = if value.get("fields").is_some() {
            let list: ListForm = serde_json::from_value(value.clone())
                .map_err(|e| invalid(format!("the field list: {e}")))?;
            let fields = list
                .fields
                .into_iter()
                .map(|f| {
                    let kind = type_named(&f.kind, f.choices, &f.name)?;
                    Ok(Field {
                        name: f.name,
                        kind,
                        description: f.description,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Schema { fields }
        } else if let Some(props) = value.get("properties").and_then(Value::as_object) {
            let fields = props
                .iter()
                .map(|(name, p)| from_json_schema(name, p))
                .collect::<Result<Vec<_>>>()?;
            Schema { fields }
        } else {
            return Err(invalid(
                "a schema is a JSON Schema object with \"properties\", or {\"fields\": [...]}"
                    .into(),
            ));
        };
        schema.validate()?;
        Ok(schema)
    }

    /// A classifier: one `category` field with the user's labels and a
    /// `reason` for the choice.
    pub fn classifier(labels: &[String]) -> Result<Schema> {
        let schema = Schema {
            fields: vec![
                Field {
                    name: "category".into(),
                    kind: FieldType::Enum(labels.to_vec()),
                    description: "the category the document belongs to".into(),
                },
                Field {
                    name: "reason".into(),
                    kind: FieldType::String,
                    description: "the words of the document that show its category".into(),
                },
            ],
        };
        schema.validate()?;
        Ok(schema)
    }

    fn validate(&self) -> Result<()> {
        if self.fields.is_empty() || self.fields.len() > MAX_FIELDS {
            return Err(invalid(format!(
                "a schema has 1 to {MAX_FIELDS} fields, not {}",
                self.fields.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for f in &self.fields {
            let ok_name = !f.name.is_empty()
                && f.name.len() <= 64
                && f.name
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '));
            if !ok_name {
                return Err(invalid(format!(
                    "field name {:?}: use 1-64 letters, digits, '_', '-' or spaces",
                    f.name
                )));
            }
            if !seen.insert(f.name.as_str()) {
                return Err(invalid(format!("field {:?} appears twice", f.name)));
            }
            if let FieldType::Enum(c) = &f.kind {
                let distinct: std::collections::HashSet<_> = c.iter().collect();
                if c.is_empty() || distinct.len() != c.len() || c.iter().any(|x| x.is_empty()) {
                    return Err(invalid(format!(
                        "field {:?}: an enum needs distinct, non-empty choices",
                        f.name
                    )));
                }
            }
        }
        Ok(())
    }

    /// The JSON Schema the model's output is constrained to: an object with
    /// every field, in order, each of its type or null.
    pub fn output_schema(&self) -> Value {
        let mut props = serde_json::Map::new();
        for f in &self.fields {
            props.insert(
                f.name.clone(),
                json!({"anyOf": [f.kind.json_schema(), {"type": "null"}]}),
            );
        }
        let names: Vec<&str> = self.fields.iter().map(|f| f.name.as_str()).collect();
        json!({
            "type": "object",
            "properties": props,
            "required": names,
            "additionalProperties": false,
        })
    }

    /// A short hash of the fields: results are kept per schema.
    pub fn key(&self) -> String {
        let text = serde_json::to_string(self).expect("a schema serialises");
        hex::encode(&Sha256::digest(text.as_bytes())[..8])
    }

    /// Field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn invalid(msg: String) -> Error {
    Error::InvalidInput(format!("schema: {msg}"))
}

fn type_named(kind: &str, choices: Vec<String>, field: &str) -> Result<FieldType> {
    Ok(match kind {
        "string" | "text" => FieldType::String,
        "number" | "integer" | "amount" => FieldType::Number,
        "date" => FieldType::Date,
        "boolean" | "bool" => FieldType::Boolean,
        "enum" | "choice" | "category" => FieldType::Enum(choices),
        "list" | "array" => FieldType::List,
        other => {
            return Err(invalid(format!(
                "field {field:?}: unknown type {other:?} \
                 (string, number, date, boolean, enum, list)"
            )))
        }
    })
}

/// A property of a JSON Schema object as a field.
fn from_json_schema(name: &str, p: &Value) -> Result<Field> {
    let description = p
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = if let Some(choices) = p.get("enum").and_then(Value::as_array) {
        let choices = choices
            .iter()
            .map(|c| match c {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid(format!(
                    "field {name:?}: enum choices must be strings, not {other}"
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        FieldType::Enum(choices)
    } else {
        let ty = match p.get("type") {
            Some(Value::String(t)) => t.as_str(),
            // ["string", "null"] and the like: the non-null type.
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("string"),
            _ => "string",
        };
        let is_date = p
            .get("format")
            .and_then(Value::as_str)
            .is_some_and(|f| f == "date" || f == "date-time");
        match ty {
            "string" if is_date => FieldType::Date,
            "object" => {
                return Err(invalid(format!(
                    "field {name:?}: nested objects are not supported; flatten them into fields"
                )))
            }
            t => type_named(t, Vec::new(), name)?,
        }
    };
    Ok(Field {
        name: name.to_string(),
        kind,
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_the_same_fields() {
        let list = json!({"fields": [
            {"name": "claimant", "type": "string", "description": "who claims"},
            {"name": "amount", "type": "number"},
            {"name": "loss_date", "type": "date"},
            {"name": "kind", "type": "enum", "choices": ["fire", "flood"]},
        ]});
        let js = json!({"type": "object", "properties": {
            "claimant": {"type": "string", "description": "who claims"},
            "amount": {"type": ["number", "null"]},
            "loss_date": {"type": "string", "format": "date"},
            "kind": {"enum": ["fire", "flood"]},
        }});
        let a = Schema::parse(&list).unwrap();
        let b = Schema::parse(&js).unwrap();
        assert_eq!(a.fields.len(), 4);
        assert_eq!(a.field("loss_date").unwrap().kind, FieldType::Date);
        assert_eq!(
            a.field("kind").unwrap().kind,
            FieldType::Enum(vec!["fire".into(), "flood".into()])
        );
        // serde_json keeps keys sorted: compare by name.
        for f in &a.fields {
            assert_eq!(Some(f), b.field(&f.name), "{}", f.name);
        }
    }

    #[test]
    fn bad_schemas_say_what_is_wrong() {
        for (bad, says) in [
            (json!({"fields": []}), "1 to"),
            (
                json!({"fields": [{"name": "a", "type": "money"}]}),
                "unknown type",
            ),
            (json!({"fields": [{"name": "a"}, {"name": "a"}]}), "twice"),
            (
                json!({"fields": [{"name": "k", "type": "enum"}]}),
                "choices",
            ),
            (json!({"fields": [{"name": "a/b"}]}), "field name"),
            (json!({"type": "object"}), "properties"),
            (
                json!({"properties": {"x": {"type": "object"}}}),
                "nested objects",
            ),
            (
                json!({"fields": [{"name": "a", "typo": 1}]}),
                "unknown field",
            ),
        ] {
            let e = Schema::parse(&bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn output_schema_allows_null_for_every_field_and_nothing_else() {
        let s = Schema::classifier(&["a".into(), "b".into()]).unwrap();
        let out = s.output_schema();
        assert_eq!(out["required"], json!(["category", "reason"]));
        assert_eq!(out["additionalProperties"], json!(false));
        assert_eq!(
            out["properties"]["category"]["anyOf"][1],
            json!({"type": "null"})
        );
        assert_ne!(s.key(), Schema::classifier(&["a".into()]).unwrap().key());
    }
}
