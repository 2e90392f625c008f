//! Ids of documents and chunks: short content hashes that every index of a
//! library (vectors, keywords, document rows, journals) agrees on.

use sha2::{Digest, Sha256};

/// A short hex hash of `parts` (each part length-prefixed, so no two splits
/// of the same bytes collide).
pub fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

/// Id of the document at `path`.
pub fn doc_id(path: &str) -> String {
    short_hash(&[path.as_bytes()])
}
