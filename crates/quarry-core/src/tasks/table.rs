//! Extraction results as a table: CSV, XLSX (unverified cells marked and
//! every cell's passage in a note) or JSON (one object per document).

use std::path::Path;

use serde_json::{json, Value};

use super::extract::{DocumentFields, FieldValue};
use super::schema::Schema;
use crate::error::{Error, Result};

/// A table format, chosen by the output file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Comma-separated values.
    Csv,
    /// An Excel workbook.
    Xlsx,
    /// JSON: `[{"path", "fields": {NAME: {"value", "verified", "citation"}}}]`.
    Json,
}

impl TableFormat {
    /// The format of `path` by its extension.
    pub fn of(path: &Path) -> Result<TableFormat> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "csv" => Ok(TableFormat::Csv),
            "xlsx" => Ok(TableFormat::Xlsx),
            "json" => Ok(TableFormat::Json),
            _ => Err(Error::InvalidInput(format!(
                "{}: write a .csv, .xlsx or .json file",
                path.display()
            ))),
        }
    }
}

/// A value as a table cell shows it: text as is, lists joined with "; ".
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join("; "),
        other => other.to_string(),
    }
}

fn unverified(schema: &Schema, d: &DocumentFields) -> String {
    schema
        .fields
        .iter()
        .filter(|f| {
            d.fields
                .get(&f.name)
                .is_some_and(|v| !v.verified && !v.value.is_null())
        })
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Write the table of `rows` to `path` in the format its extension names.
pub fn write_table(path: &Path, schema: &Schema, rows: &[DocumentFields]) -> Result<()> {
    let bytes = match TableFormat::of(path)? {
        TableFormat::Csv => to_csv(schema, rows)?,
        TableFormat::Json => serde_json::to_vec_pretty(&to_json(schema, rows))?,
        TableFormat::Xlsx => to_xlsx(schema, rows)?,
    };
    crate::fsio::write_atomically(path, &bytes)
}

/// The JSON form: one object per document, fields in the schema's order.
pub fn to_json(schema: &Schema, rows: &[DocumentFields]) -> Value {
    let docs: Vec<Value> = rows
        .iter()
        .map(|d| {
            let mut fields = serde_json::Map::new();
            for f in &schema.fields {
                if let Some(v) = d.fields.get(&f.name) {
                    fields.insert(f.name.clone(), json!(v));
                }
            }
            let mut doc = json!({"path": d.path, "fields": fields});
            if let Some(e) = &d.error {
                doc["error"] = json!(e);
            }
            doc
        })
        .collect();
    Value::Array(docs)
}

fn header(schema: &Schema) -> Vec<String> {
    let mut h = vec!["path".to_string()];
    h.extend(schema.fields.iter().map(|f| f.name.clone()));
    h.push("unverified".into());
    h.push("error".into());
    h
}

/// CSV: the path, one column per field, the unverified fields, the error.
pub fn to_csv(schema: &Schema, rows: &[DocumentFields]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err = |e: csv::Error| Error::Internal(format!("csv: {e}"));
    w.write_record(header(schema)).map_err(csv_err)?;
    for d in rows {
        let mut rec = vec![d.path.clone()];
        for f in &schema.fields {
            rec.push(
                d.fields
                    .get(&f.name)
                    .map_or(String::new(), |v| cell_text(&v.value)),
            );
        }
        rec.push(unverified(schema, d));
        rec.push(d.error.clone().unwrap_or_default());
        w.write_record(rec).map_err(csv_err)?;
    }
    w.into_inner()
        .map_err(|e| Error::Internal(format!("csv: {e}")))
}

fn note(v: &FieldValue) -> Option<String> {
    let c = v.citation.as_ref()?;
    let page = c.page.map(|p| format!(", page {p}")).unwrap_or_default();
    let check = if v.verified { "found" } else { "NOT found" };
    let passage: String = c.passage.chars().take(600).collect();
    Some(format!("{check} in {}{page}:\n{passage}", c.path))
}

/// XLSX: like the CSV; unverified values on a yellow fill, and each value's
/// passage in the cell's note.
pub fn to_xlsx(schema: &Schema, rows: &[DocumentFields]) -> Result<Vec<u8>> {
    use rust_xlsxwriter::{Color, Format, Note, Workbook};
    let x = |e: rust_xlsxwriter::XlsxError| Error::Internal(format!("xlsx: {e}"));
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    let bold = Format::new().set_bold();
    let flagged = Format::new().set_background_color(Color::RGB(0xFFF2A8));
    for (c, h) in header(schema).iter().enumerate() {
        sheet
            .write_string_with_format(0, c as u16, h, &bold)
            .map_err(x)?;
    }
    for (r, d) in rows.iter().enumerate() {
        let r = r as u32 + 1;
        sheet.write_string(r, 0, &d.path).map_err(x)?;
        for (c, f) in schema.fields.iter().enumerate() {
            let c = c as u16 + 1;
            let Some(v) = d.fields.get(&f.name) else {
                continue;
            };
            let text = cell_text(&v.value);
            match (&v.value, v.verified) {
                (Value::Null, _) => continue,
                (Value::Number(n), true) => {
                    sheet
                        .write_number(r, c, n.as_f64().unwrap_or_default())
                        .map_err(x)?;
                }
                (_, true) => {
                    sheet.write_string(r, c, &text).map_err(x)?;
                }
                (_, false) => {
                    sheet
                        .write_string_with_format(r, c, &text, &flagged)
                        .map_err(x)?;
                }
            }
            if let Some(n) = note(v) {
                sheet.insert_note(r, c, &Note::new(n)).map_err(x)?;
            }
        }
        let n = schema.fields.len() as u16;
        sheet
            .write_string(r, n + 1, unverified(schema, d))
            .map_err(x)?;
        sheet
            .write_string(r, n + 2, d.error.clone().unwrap_or_default())
            .map_err(x)?;
    }
    sheet.autofit();
    book.save_to_buffer().map_err(x)
}
