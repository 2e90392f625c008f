//! The UI's TypeScript types, generated from the views (`ui/src/bindings/`,
//! checked in). A test fails when they are out of date; regenerate them with
//! `QUARRY_WRITE_BINDINGS=1 cargo test --workspace bindings`, and the UI's
//! type check then shows every place a changed view breaks.

use std::path::{Path, PathBuf};

use ts_rs::{Config, TS};

use crate::calls::{
    AskRequest, DocumentQuery, EmbedderRequest, IndexRequest, OpenRequest, PrivacyRequest,
    RemoveRequest, SearchQuery,
};
use crate::error::AppError;
use crate::models::{FetchRequest, ImportRequest, UseRequest};
use crate::views::{
    AskEvent, DocumentView, ImportedView, ModelsView, OpenedView, RemovedView, SearchView,
    SettingsView, StatusView, StoppingView,
};

/// Where the UI keeps the generated types.
pub fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ui/src/bindings")
}

/// Write every view and request type (and the types they use) to `dir`, one
/// `.ts` file per type. Large integers are `number` (JSON numbers).
pub fn export_to(dir: &Path) -> Result<(), ts_rs::ExportError> {
    let cfg = Config::new().with_out_dir(dir).with_large_int("number");
    StatusView::export_all(&cfg)?;
    SearchView::export_all(&cfg)?;
    SettingsView::export_all(&cfg)?;
    DocumentView::export_all(&cfg)?;
    OpenedView::export_all(&cfg)?;
    ImportedView::export_all(&cfg)?;
    RemovedView::export_all(&cfg)?;
    StoppingView::export_all(&cfg)?;
    ModelsView::export_all(&cfg)?;
    AskEvent::export_all(&cfg)?;
    AppError::export_all(&cfg)?;
    AskRequest::export_all(&cfg)?;
    SearchQuery::export_all(&cfg)?;
    IndexRequest::export_all(&cfg)?;
    DocumentQuery::export_all(&cfg)?;
    OpenRequest::export_all(&cfg)?;
    PrivacyRequest::export_all(&cfg)?;
    RemoveRequest::export_all(&cfg)?;
    EmbedderRequest::export_all(&cfg)?;
    FetchRequest::export_all(&cfg)?;
    ImportRequest::export_all(&cfg)?;
    UseRequest::export_all(&cfg)?;
    crate::tasks::ExtractRequest::export_all(&cfg)?;
    crate::tasks::SaveSchemaRequest::export_all(&cfg)?;
    quarry_core::tasks::saved::SavedSchema::export_all(&cfg)?;
    crate::tasks::ExtractUpdate::export_all(&cfg)?;
    crate::tasks::SummarizeRequest::export_all(&cfg)?;
    crate::tasks::SummaryUpdate::export_all(&cfg)?;
    crate::agents::AgentsView::export_all(&cfg)?;
    crate::agents::HttpEndpoint::export_all(&cfg)?;
    Ok(())
}

/// The `.ts` files of `dir`, by name.
pub fn read_dir(dir: &Path) -> std::io::Result<std::collections::BTreeMap<String, String>> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "ts") {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.insert(name, std::fs::read_to_string(&p)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checked-in types are what the views generate now.
    #[test]
    fn ui_bindings_are_current() {
        let fresh = tempfile::tempdir().unwrap();
        export_to(fresh.path()).unwrap();
        let generated = read_dir(fresh.path()).unwrap();
        assert!(
            generated.contains_key("StatusView.ts"),
            "{:?}",
            generated.keys()
        );
        if std::env::var_os("QUARRY_WRITE_BINDINGS").is_some() {
            let dir = ui_dir();
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, text) in &generated {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }
        let checked_in = read_dir(&ui_dir()).unwrap_or_default();
        assert!(
            generated == checked_in,
            "ui/src/bindings is out of date: run `QUARRY_WRITE_BINDINGS=1 cargo test --workspace bindings` \
             and fix what the UI's type check then reports"
        );
    }
}
