//! Helpers shared by the real-model tests.

use std::path::PathBuf;

use quarry_core::generate::{LoadOptions, LocalModel};
use quarry_core::models::{ModelStore, Registry};

/// Load the installed registry model `id` from its `file`, with the same
/// re-quantization cache the CLI uses (so conversions are made once).
pub fn load_installed(id: &str, file: &str, requantize: bool) -> LocalModel {
    load_installed_with(id, file, requantize, false)
}

/// [`load_installed`], choosing whether prompts run through the quantized
/// kernels instead of dense copies.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn load_installed_with(
    id: &str,
    file: &str,
    requantize: bool,
    quantized_prompts: bool,
) -> LocalModel {
    let models = std::env::var_os("QUARRY_MODELS_DIR")
        .map(PathBuf::from)
        .expect("set QUARRY_MODELS_DIR (`quarry models fetch` fills it)");
    let store = ModelStore::new(models, Registry::builtin());
    let dir = store
        .require(id)
        .unwrap_or_else(|e| panic!("{id} not installed ({e}): run `quarry models fetch {id}`"));
    LocalModel::load(
        &dir.join(file),
        &LoadOptions {
            requantize_slow: requantize,
            cache_dir: Some(store.root().join(".converted")),
            quantized_prompts,
        },
    )
    .unwrap()
}

/// Indices of the `n` largest logits, best first.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn top(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|a, b| logits[*b].total_cmp(&logits[*a]));
    idx.truncate(n);
    idx
}
