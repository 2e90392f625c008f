//! Finding installed models by id: the registry's defaults, and generators
//! named by a registry id or a `.gguf` file anywhere, the same way for every
//! front-end (the embedder and the generator load themselves from here:
//! `Embedder::from_store`, `LocalModel::from_store`).

use std::path::{Path, PathBuf};

use super::{ModelRole, ModelStore};
use crate::error::{Error, Result};

/// A `.gguf` file named directly rather than a registry id.
fn as_gguf_file(model: &str) -> Option<&Path> {
    let path = Path::new(model);
    (model.ends_with(".gguf") || path.is_file()).then_some(path)
}

impl ModelStore {
    /// The registry's default model for `role`.
    pub fn default_id(&self, role: ModelRole) -> Result<String> {
        self.registry()
            .default_for(role)
            .map(|m| m.id.clone())
            .ok_or_else(|| Error::UnknownModel(format!("(no default {role:?} in the registry)")))
    }

    /// The name a generator goes by: its registry id, a `.gguf` file's stem,
    /// or, when `model` is `None`, the user's chosen generator or else the
    /// registry's default.
    pub fn generator_name(&self, model: Option<&str>) -> Result<String> {
        match model.or(self.generator_choice()) {
            Some(m) => Ok(as_gguf_file(m)
                .and_then(|p| p.file_stem())
                .map_or_else(|| m.to_string(), |s| s.to_string_lossy().into_owned())),
            None => self.default_id(ModelRole::Generator),
        }
    }

    /// The GGUF file of a generator: `model` as a `.gguf` path, a registry id,
    /// or the chosen (else the default) generator.
    pub fn generator_file(&self, model: Option<&str>) -> Result<PathBuf> {
        let model = model.or(self.generator_choice());
        if let Some(path) = model.and_then(as_gguf_file) {
            return Ok(path.to_path_buf());
        }
        let id = self.generator_name(model)?;
        let spec = self.registry().get(&id)?;
        let file = spec.files.first().ok_or_else(|| Error::ModelLoad {
            id: id.clone(),
            reason: "the registry lists no file for it".into(),
        })?;
        Ok(self.require(&id)?.join(&file.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Registry;

    #[test]
    fn generators_resolve_by_path_id_or_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path(), Registry::builtin());
        let default = store.default_id(ModelRole::Generator).unwrap();
        assert_eq!(store.generator_name(None).unwrap(), default);
        assert_eq!(store.generator_name(Some("/m/tiny.gguf")).unwrap(), "tiny");
        assert_eq!(store.generator_name(Some(&default)).unwrap(), default);
        assert_eq!(
            store.generator_file(Some("/m/tiny.gguf")).unwrap(),
            PathBuf::from("/m/tiny.gguf")
        );
        // Not installed in this empty store: a clear "not installed" error.
        assert!(matches!(
            store.generator_file(None),
            Err(Error::ModelMissing { .. })
        ));
        assert!(matches!(
            store.require(&store.default_id(ModelRole::Embedder).unwrap()),
            Err(Error::ModelMissing { .. })
        ));
    }

    #[test]
    fn the_users_choice_replaces_the_default_but_not_a_named_model() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path(), Registry::builtin())
            .with_generator_choice(Some("/m/chosen.gguf".into()));
        assert_eq!(store.generator_name(None).unwrap(), "chosen");
        assert_eq!(
            store.generator_file(None).unwrap(),
            PathBuf::from("/m/chosen.gguf")
        );
        assert_eq!(
            store.generator_name(Some("/m/named.gguf")).unwrap(),
            "named"
        );
    }
}
