//! Schemas saved with the library under a name, so an extraction is run
//! again from the CLI (`quarry extract --schema NAME`), the app or an agent
//! without typing its fields again. One small JSON file per schema in
//! `<library>/schemas/`, named by a key of the name: names are compared
//! without regard to case (as the file systems of Windows and macOS do), and
//! any name the user likes is a safe file name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::results::short_key;
use super::schema::Schema;
use crate::error::{Error, Result};
use crate::store::sealed::LibraryFiles;

/// Longest schema name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// A schema kept with the library.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSchema {
    /// Its name, as the user wrote it.
    pub name: String,
    /// The fields.
    pub schema: Schema,
    /// When it was last saved (ms since the Unix epoch).
    #[ts(type = "number")]
    pub saved_ms: u64,
}

/// The schemas saved in one library.
pub struct SchemaShelf {
    library: PathBuf,
    dir: PathBuf,
}

impl SchemaShelf {
    /// The shelf of the library at `library_dir` (nothing is created until a
    /// schema is saved).
    pub fn of(library_dir: &Path) -> Self {
        SchemaShelf {
            library: library_dir.to_path_buf(),
            dir: library_dir.join("schemas"),
        }
    }

    /// Every saved schema, by name. A file that cannot be read is skipped
    /// with a warning, so one damaged file does not hide the others.
    pub fn list(&self) -> Result<Vec<SavedSchema>> {
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let files = LibraryFiles::of(&self.library)?;
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match read(&files, &path) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!("skipping saved schema {}: {e}", path.display()),
            }
        }
        out.sort_by_key(|s| s.name.to_lowercase());
        Ok(out)
    }

    /// The schema saved as `name`, or an error that names the saved ones.
    pub fn get(&self, name: &str) -> Result<SavedSchema> {
        let path = self.file(name)?;
        if !path.exists() {
            let names: Vec<String> = self.list()?.into_iter().map(|s| s.name).collect();
            return Err(Error::InvalidInput(if names.is_empty() {
                format!("no schema is saved as \"{name}\" (none is saved in this library yet)")
            } else {
                format!(
                    "no schema is saved as \"{name}\"; saved: {}",
                    names.join(", ")
                )
            }));
        }
        read(&LibraryFiles::of(&self.library)?, &path)
    }

    /// Save `schema` as `name` (replacing one of the same name), durably.
    pub fn save(&self, name: &str, schema: &Schema) -> Result<SavedSchema> {
        let path = self.file(name)?;
        let saved = SavedSchema {
            name: name.trim().to_string(),
            schema: schema.clone(),
            saved_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        LibraryFiles::of(&self.library)?.write(&path, &serde_json::to_vec_pretty(&saved)?)?;
        Ok(saved)
    }

    /// Delete the schema saved as `name`; false when there was none.
    pub fn delete(&self, name: &str) -> Result<bool> {
        let path = self.file(name)?;
        if !path.exists() {
            return Ok(false);
        }
        crate::fsio::remove_durably(&path)?;
        Ok(true)
    }

    fn file(&self, name: &str) -> Result<PathBuf> {
        let name = check_name(name)?;
        Ok(self
            .dir
            .join(format!("{}.json", short_key(&name.to_lowercase()))))
    }
}

/// A name the user may give a schema: not empty, not too long, no control
/// characters. Returns it trimmed.
fn check_name(name: &str) -> Result<&str> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::InvalidInput("a saved schema needs a name".into()));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidInput(format!(
            "a schema's name has at most {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "a schema's name cannot hold control characters".into(),
        ));
    }
    Ok(name)
}

fn read(files: &LibraryFiles, path: &Path) -> Result<SavedSchema> {
    let bytes = files.read(path)?.ok_or_else(|| Error::BadPath {
        path: path.to_path_buf(),
        reason: "the saved schema is gone".into(),
    })?;
    let saved: SavedSchema = serde_json::from_slice(&bytes)?;
    // What is on disk is checked as anything the user gives.
    let value = serde_json::to_value(&saved.schema)?;
    Schema::parse(&value)?;
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[&str]) -> Schema {
        let fields: Vec<_> = fields
            .iter()
            .map(|f| serde_json::json!({"name": f, "type": "string", "description": f}))
            .collect();
        Schema::parse(&serde_json::json!({ "fields": fields })).unwrap()
    }

    #[test]
    fn a_saved_schema_comes_back_by_name_in_any_case_and_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = SchemaShelf::of(dir.path());
        assert!(shelf.list().unwrap().is_empty());
        shelf.save("Claims / 2026", &schema(&["claimant"])).unwrap();
        shelf.save("invoices", &schema(&["total", "due"])).unwrap();
        assert_eq!(
            shelf.get("claims / 2026").unwrap().schema,
            schema(&["claimant"])
        );
        let names: Vec<_> = shelf.list().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["Claims / 2026", "invoices"]);
        // Saving again under the same name (another case) replaces it.
        shelf.save("INVOICES", &schema(&["total"])).unwrap();
        assert_eq!(shelf.list().unwrap().len(), 2);
        assert_eq!(shelf.get("invoices").unwrap().schema, schema(&["total"]));
        assert!(shelf.delete("Invoices").unwrap());
        assert!(!shelf.delete("invoices").unwrap());
        let err = shelf.get("invoices").unwrap_err().to_string();
        assert!(err.contains("saved: Claims / 2026"), "{err}");
    }

    #[test]
    fn bad_names_and_damaged_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = SchemaShelf::of(dir.path());
        for bad in ["", "  ", "a\nb", &"x".repeat(65)] {
            assert!(shelf.save(bad, &schema(&["a"])).is_err(), "{bad:?}");
        }
        shelf.save("ok", &schema(&["a"])).unwrap();
        std::fs::write(dir.path().join("schemas").join("junk.json"), "{not json").unwrap();
        // The damaged file is skipped; the good one is still listed.
        assert_eq!(shelf.list().unwrap().len(), 1);
    }
}
