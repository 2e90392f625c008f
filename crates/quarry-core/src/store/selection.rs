//! Which indexed documents a task reads: a filter's, under the folders or
//! files the user named.

use super::library::Library;
use super::{DocState, DocumentRecord, Filter};
use crate::error::Result;

/// Whether `path` is `root` or inside it.
fn under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches(['/', '\\']);
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with(['/', '\\']))
}

/// The indexed documents a filter selects (path prefix, extensions, dates)
/// that are one of `roots` or inside one (all when `roots` is empty), by path.
pub async fn select_documents(
    library: &Library,
    filter: &Filter,
    roots: &[String],
) -> Result<Vec<DocumentRecord>> {
    let mut docs: Vec<DocumentRecord> = library
        .documents()
        .await?
        .into_iter()
        .filter(|d| d.state == DocState::Indexed && d.chunks > 0)
        .filter(|d| {
            filter
                .path_prefix
                .as_deref()
                .is_none_or(|p| d.path.starts_with(p))
        })
        .filter(|d| {
            filter.extensions.is_empty()
                || std::path::Path::new(&d.path).extension().is_some_and(|e| {
                    filter
                        .extensions
                        .contains(&e.to_string_lossy().to_lowercase())
                })
        })
        .filter(|d| filter.date_matches(d.mtime_ns))
        .filter(|d| filter.paths.as_ref().is_none_or(|ps| ps.contains(&d.path)))
        .filter(|d| roots.is_empty() || roots.iter().any(|r| under(&d.path, r)))
        .collect();
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(docs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_root_holds_itself_and_what_is_inside_it_only() {
        assert!(super::under("/a/b.txt", "/a"));
        assert!(super::under("/a/b.txt", "/a/"));
        assert!(super::under("/a/b.txt", "/a/b.txt"));
        assert!(!super::under("/ab/c.txt", "/a"));
    }
}
