//! Filling a schema's fields from one document: the passages that matter for
//! each field (hybrid search restricted to the document), one prompt with
//! only those passages, output constrained to JSON valid for the schema, and
//! every value checked against the passages ([`super::verify`]) and cited.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::schema::Schema;
use super::verify::{check, Check};
use crate::error::{Error, Result};
use crate::generate::{ChatMessage, GenerateOptions, LocalModel};
use crate::retrieve::{HybridSearch, SearchMode, SearchOptions};
use crate::store::{DocumentRecord, Filter, Hit};

/// Changes when the prompt or the passage selection changes: results kept
/// from another version are computed again.
pub const PROMPT_VERSION: u32 = 1;

const SYSTEM: &str = "You fill in fields from passages of one document. \
Copy text exactly as the passages write it. Write dates as YYYY-MM-DD and \
numbers without units or thousands separators. Use null for a field the \
passages do not give: never guess.";

/// How passages are chosen and the model run.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Passages searched per field.
    pub per_field: usize,
    /// Most passages in one prompt.
    pub max_passages: usize,
    /// Most tokens of passages in one prompt.
    pub passage_tokens: usize,
    /// Retrieval inside the document (keyword when there is no embedder).
    pub mode: SearchMode,
    /// Sampling; `max_tokens` is raised to what the schema needs.
    pub generate: GenerateOptions,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            per_field: 2,
            max_passages: 6,
            passage_tokens: 1200,
            mode: SearchMode::Hybrid,
            generate: GenerateOptions {
                lookup: false,
                ..Default::default()
            },
        }
    }
}

/// Where a value is written.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Citation {
    /// Absolute path of the document.
    pub path: String,
    /// 1-based page, when the format has pages.
    pub page: Option<u32>,
    /// The passage (the chunk the value was found in).
    pub passage: String,
    /// Character offsets of the passage in the document text.
    pub char_start: u64,
    /// End offset.
    pub char_end: u64,
}

/// One extracted value.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldValue {
    /// The value (null when the document does not give it).
    #[ts(type = "unknown")]
    pub value: Value,
    /// Whether the value was found in its cited passage.
    pub verified: bool,
    /// How it was checked.
    pub check: Check,
    /// The passage holding it (else the best passage for the field).
    pub citation: Option<Citation>,
}

/// The fields of one document.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentFields {
    /// Absolute path.
    pub path: String,
    /// sha256 of the content the values come from.
    pub hash: String,
    /// By field name.
    pub fields: BTreeMap<String, FieldValue>,
    /// Why the document has no values, when it failed.
    pub error: Option<String>,
    /// Passages the model read.
    pub passages: usize,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens the model generated (forced ones included).
    pub generated_tokens: usize,
    /// Milliseconds for the document.
    pub ms: u64,
}

/// The passages of one document chosen for a schema.
struct Gathered {
    /// In document order.
    passages: Vec<Hit>,
    /// For each field, the passages its search ranked, best first.
    ranked: Vec<Vec<usize>>,
}

/// Find the passages for every field: each field's best `per_field` hits,
/// taken rank by rank across fields until the passage or token budget is
/// spent, then put back in document order.
async fn gather(
    search: &HybridSearch<'_>,
    model: &LocalModel,
    schema: &Schema,
    doc: &DocumentRecord,
    opts: &ExtractOptions,
) -> Result<Gathered> {
    let search_opts = SearchOptions {
        mode: opts.mode,
        k: opts.per_field,
        filter: Filter {
            paths: Some(vec![doc.path.clone()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut per_field = Vec::with_capacity(schema.fields.len());
    for f in &schema.fields {
        per_field.push(search.search(&f.query(), &search_opts).await?.hits);
    }
    let mut chosen: Vec<Hit> = Vec::new();
    let mut tokens = 0;
    'ranks: for rank in 0..opts.per_field {
        for hits in &per_field {
            let Some(hit) = hits.get(rank) else { continue };
            if chosen.iter().any(|c| c.chunk_id == hit.chunk_id) {
                continue;
            }
            let t = model.count_tokens(&hit.text);
            if chosen.len() >= opts.max_passages
                || (!chosen.is_empty() && tokens + t > opts.passage_tokens)
            {
                break 'ranks;
            }
            tokens += t;
            chosen.push(hit.clone());
        }
    }
    chosen.sort_by_key(|h| h.char_start);
    let ranked = per_field
        .iter()
        .map(|hits| {
            hits.iter()
                .filter_map(|h| chosen.iter().position(|c| c.chunk_id == h.chunk_id))
                .collect()
        })
        .collect();
    Ok(Gathered {
        passages: chosen,
        ranked,
    })
}

/// The chat prompt: instructions and fields first (the same for every
/// document, so their keys and values are reused), then the passages.
fn prompt(
    model: &LocalModel,
    schema: &Schema,
    doc: &DocumentRecord,
    g: &Gathered,
) -> Result<String> {
    let fields: Vec<String> = schema.fields.iter().map(|f| f.prompt_line()).collect();
    let system = format!("{SYSTEM}\n\nFields:\n{}", fields.join("\n"));
    let name = std::path::Path::new(&doc.path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut user = format!("Passages from \"{name}\":\n");
    for (i, p) in g.passages.iter().enumerate() {
        user.push_str(&format!("\n[{}] {}\n", i + 1, p.text.trim()));
    }
    user.push_str("\nWrite the JSON object of the fields.");
    model.render_chat(&[
        ChatMessage::new("system", system),
        ChatMessage::new("user", user),
    ])
}

/// Tokens the JSON of `schema` may need, at most.
fn max_tokens(schema: &Schema) -> usize {
    schema
        .fields
        .iter()
        .map(|f| match f.kind {
            super::schema::FieldType::List => 160,
            super::schema::FieldType::String => 80,
            _ => 24,
        })
        .sum::<usize>()
        + 8
}

/// Fill `schema` from `doc`. `on_text` sees the JSON as it is written and
/// returns `false` to stop (an error: a half-filled document is not kept).
pub async fn extract_document(
    search: &HybridSearch<'_>,
    model: &mut LocalModel,
    schema: &Schema,
    doc: &DocumentRecord,
    opts: &ExtractOptions,
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<DocumentFields> {
    let started = Instant::now();
    let g = gather(search, model, schema, doc, opts).await?;
    let mut out = DocumentFields {
        path: doc.path.clone(),
        hash: doc.hash.clone(),
        fields: BTreeMap::new(),
        error: None,
        passages: g.passages.len(),
        prompt_tokens: 0,
        generated_tokens: 0,
        ms: 0,
    };
    if g.passages.is_empty() {
        out.error = Some("no indexed text to extract from".into());
        out.ms = started.elapsed().as_millis() as u64;
        return Ok(out);
    }
    let prompt = prompt(model, schema, doc, &g)?;
    let gen = GenerateOptions {
        max_tokens: opts.generate.max_tokens.max(max_tokens(schema)),
        ..opts.generate.clone()
    };
    let (value, stats) = model.generate_json(&prompt, &schema.output_schema(), &gen, on_text)?;
    out.prompt_tokens = stats.prompt_tokens;
    out.generated_tokens = stats.generated_tokens;
    out.fields = verify_all(schema, &value, &g)?;
    out.ms = started.elapsed().as_millis() as u64;
    Ok(out)
}

/// Check every value against the passages and cite it.
fn verify_all(
    schema: &Schema,
    value: &Value,
    g: &Gathered,
) -> Result<BTreeMap<String, FieldValue>> {
    let obj = value
        .as_object()
        .ok_or_else(|| Error::Internal(format!("constrained output is not an object: {value}")))?;
    let texts: Vec<&str> = g.passages.iter().map(|p| p.text.as_str()).collect();
    let mut fields = BTreeMap::new();
    for (f, ranked) in schema.fields.iter().zip(&g.ranked) {
        let v = obj.get(&f.name).cloned().unwrap_or(Value::Null);
        let verdict = check(&v, &f.kind, &texts, ranked);
        let citation = verdict.passage.map(|i| {
            let p = &g.passages[i];
            Citation {
                path: p.path.clone(),
                page: p.page,
                passage: p.text.clone(),
                char_start: p.char_start,
                char_end: p.char_end,
            }
        });
        let check = verdict.check;
        fields.insert(
            f.name.clone(),
            FieldValue {
                value: v,
                verified: check.verified(),
                check,
                citation: if check == Check::Missing {
                    None
                } else {
                    citation
                },
            },
        );
    }
    Ok(fields)
}
