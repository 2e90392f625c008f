//! Extraction quality: a folder of documents with known field values
//! (`docs/`, `schema.json`, `truth.jsonl` of `{"doc": "docs/x.txt",
//! "fields": {NAME: value}}`), scored field by field: accuracy (a value
//! equal to the truth after normalising, null where the truth is null), how
//! many values were verified in their passage, and how often a verified
//! value is still wrong.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::tasks::extract::DocumentFields;
use crate::tasks::schema::Schema;

/// One labelled document.
#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    /// Path relative to the set's folder.
    pub doc: String,
    /// The true values (null: the document does not give it).
    pub fields: serde_json::Map<String, Value>,
}

/// A labelled extraction set.
#[derive(Debug, Clone)]
pub struct ExtractionSet {
    /// The folder.
    pub dir: PathBuf,
    /// Its schema.
    pub schema: Schema,
    /// Its documents and truths.
    pub labelled: Vec<Labelled>,
}

impl ExtractionSet {
    /// Read `dir/schema.json` and `dir/truth.jsonl`.
    pub fn load(dir: &Path) -> Result<Self> {
        let schema_text = fs_err::read_to_string(dir.join("schema.json"))?;
        let schema = Schema::parse(&serde_json::from_str(&schema_text)?)?;
        let mut labelled = Vec::new();
        for (i, line) in fs_err::read_to_string(dir.join("truth.jsonl"))?
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let l: Labelled = serde_json::from_str(line)
                .map_err(|e| Error::InvalidInput(format!("truth.jsonl line {}: {e}", i + 1)))?;
            labelled.push(l);
        }
        Ok(ExtractionSet {
            dir: dir.to_path_buf(),
            schema,
            labelled,
        })
    }

    /// Absolute path of a labelled document (as the library stores it).
    pub fn doc_path(&self, l: &Labelled) -> PathBuf {
        let p = self.dir.join(&l.doc);
        p.canonicalize().unwrap_or(p)
    }
}

/// The scores of one field.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FieldScore {
    /// Field name.
    pub field: String,
    /// Documents scored.
    pub documents: usize,
    /// Share with the right value (or rightly empty).
    pub accuracy: f64,
    /// Share whose value and the truth contain one another (partly right).
    pub overlap: f64,
    /// Share of the values given that were not verified in their passage.
    pub unverified_share: f64,
    /// Share of the verified values that are right.
    pub verified_precision: f64,
    /// Share of the values given that are right.
    pub precision: f64,
}

/// Whether `predicted` is `truth`: numbers equal, text equal after
/// normalising (case, spacing, outer punctuation), null for null.
pub fn same(predicted: &Value, truth: &Value) -> bool {
    match (predicted, truth) {
        (Value::Null, Value::Null) => true,
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Null, _) | (_, Value::Null) => false,
        (a, b) => norm(&text(a)) == norm(&text(b)),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Text for comparison: lower case, single spaces, no leading "the", no
/// punctuation at the ends (inner punctuation counts: GPL-2 is not GPL-2+).
fn norm(s: &str) -> String {
    let lower = s.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let joined = words.join(" ");
    let trimmed = joined.trim_matches(|c: char| matches!(c, '.' | ',' | ';' | ':' | '"' | '\''));
    trimmed.strip_prefix("the ").unwrap_or(trimmed).to_string()
}

/// Whether either value's normalised text contains the other's.
fn overlaps(predicted: &Value, truth: &Value) -> bool {
    if same(predicted, truth) {
        return true;
    }
    if predicted.is_null() || truth.is_null() {
        return false;
    }
    let (p, t) = (norm(&text(predicted)), norm(&text(truth)));
    !p.is_empty() && !t.is_empty() && (p.contains(&t) || t.contains(&p))
}

/// Score `rows` (by path) against the set's truths, field by field.
pub fn score(set: &ExtractionSet, rows: &[DocumentFields]) -> Vec<FieldScore> {
    set.schema
        .fields
        .iter()
        .map(|f| {
            let mut s = FieldScore {
                field: f.name.clone(),
                ..Default::default()
            };
            let (mut right, mut overlap, mut given, mut unverified) = (0, 0, 0, 0);
            let (mut verified, mut verified_right, mut given_right) = (0, 0, 0);
            for l in &set.labelled {
                let path = set.doc_path(l).to_string_lossy().to_string();
                let Some(row) = rows.iter().find(|r| r.path == path) else {
                    continue;
                };
                s.documents += 1;
                let truth = l.fields.get(&f.name).unwrap_or(&Value::Null);
                let got = row.fields.get(&f.name);
                let value = got.map_or(&Value::Null, |v| &v.value);
                let ok = same(value, truth);
                right += ok as usize;
                overlap += overlaps(value, truth) as usize;
                if let Some(v) = got.filter(|v| !v.value.is_null()) {
                    given += 1;
                    given_right += ok as usize;
                    if v.verified {
                        verified += 1;
                        verified_right += ok as usize;
                    } else {
                        unverified += 1;
                    }
                }
            }
            let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            s.accuracy = share(right, s.documents);
            s.overlap = share(overlap, s.documents);
            s.unverified_share = share(unverified, given);
            s.verified_precision = share(verified_right, verified);
            s.precision = share(given_right, given);
            s
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_compare_after_normalising() {
        assert!(same(&json!("The GPL-2+"), &json!("gpl-2+")));
        assert!(same(&json!(2006), &json!(2006.0)));
        assert!(same(&json!(null), &json!(null)));
        assert!(!same(&json!("GPL-2"), &json!("GPL-3")));
        assert!(!same(&json!("GPL-2"), &json!("GPL-2+")));
        assert!(!same(&json!(null), &json!("x")));
        assert!(overlaps(&json!("Intel"), &json!("Intel Corporation")));
        assert!(!overlaps(&json!("Intel"), &json!(null)));
    }
}
