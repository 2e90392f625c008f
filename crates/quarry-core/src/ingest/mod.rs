//! Ingestion: find files ([`walk`]), index them in two phases — keywords
//! first, then vectors — and remove what is gone ([`index`]), keep a library
//! in sync with its folders ([`watch`]), and switch its embedder
//! ([`reembed`]), and forget documents provably ([`forget`]).

pub mod forget;
pub mod index;
pub mod language;
pub mod reembed;
pub mod walk;
pub mod watch;

pub use index::{finish_embedding, index, remove_folder, IndexEvent, IndexOptions, IndexReport};
pub use reembed::{switch_embedder, SwitchReport};
