//! What every command needs: the directories and the model store, read
//! from the environment once, here at the edge; and the `--library` option.

use std::path::{Path, PathBuf};

use anyhow::Result;
use quarry_core::cloud::Settings;
use quarry_core::dirs::Dirs;
use quarry_core::models::{ModelRole, ModelStore, Registry};
use quarry_core::store::sealed::{LibraryKey, PASSPHRASE_ENV};
use quarry_core::Embedder;

/// Options naming the library.
#[derive(clap::Args, Clone)]
pub struct LibraryArg {
    /// Library folder (default: the platform data dir, or QUARRY_LIBRARY_DIR).
    #[arg(long, short = 'l')]
    pub library: Option<PathBuf>,
}

/// The options of a command that reads one library and can print JSON.
#[derive(clap::Args)]
pub struct LibraryJsonArgs {
    #[command(flatten)]
    pub lib: LibraryArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What every command needs: directories and the model store.
pub struct Context {
    pub dirs: Dirs,
    pub store: ModelStore,
}

impl Context {
    /// Read the environment once, here at the edge.
    pub fn from_env() -> Self {
        let dirs = Dirs::from_env(|k| std::env::var_os(k));
        let registry = match std::env::var_os("QUARRY_MODEL_REGISTRY") {
            Some(p) => Registry::load(Path::new(&p)).unwrap_or_else(|e| {
                eprintln!("warning: {e}; using the built-in registry");
                Registry::builtin()
            }),
            None => Registry::builtin(),
        };
        let python = std::env::var("QUARRY_PYTHON").unwrap_or_else(|_| "python3".into());
        let choice = chosen_generator(&dirs.config);
        let store = ModelStore::new(dirs.models.clone(), registry)
            .with_python(python)
            .with_generator_choice(choice);
        Context { dirs, store }
    }

    /// The global settings (`settings.toml`).
    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings::load(&self.dirs.config)?)
    }

    /// The library folder named by `--library`, or the default one. An
    /// encrypted library is unlocked here when its passphrase is not in the
    /// environment and there is a terminal to type it at.
    pub fn library_dir(&self, arg: Option<PathBuf>) -> PathBuf {
        let dir = arg.unwrap_or_else(|| self.dirs.library.clone());
        unlock_at_terminal(&dir);
        dir
    }

    /// The registry's default embedder.
    pub fn default_embedder(&self) -> Result<String> {
        Ok(self.store.default_id(ModelRole::Embedder)?)
    }

    pub fn load_embedder(&self, id: &str) -> Result<Embedder> {
        Ok(Embedder::from_store(&self.store, id)?)
    }
}

/// Ask for the passphrase of the encrypted library in `dir` at the terminal
/// (three tries) and keep its key for this process. Without a terminal, or
/// with the passphrase in the environment, nothing is asked: opening the
/// library then says what is needed.
fn unlock_at_terminal(dir: &Path) {
    use std::io::IsTerminal;
    if !LibraryKey::needs_passphrase(dir)
        || std::env::var_os(PASSPHRASE_ENV).is_some_and(|p| !p.is_empty())
        || !std::io::stdin().is_terminal()
    {
        return;
    }
    for _ in 0..3 {
        let prompt = format!("Passphrase for the encrypted library {}: ", dir.display());
        let Ok(typed) = rpassword::prompt_password(prompt) else {
            return;
        };
        match LibraryKey::unlock(dir, Some(&secrecy::SecretString::from(typed))) {
            Ok(Some(key)) => return LibraryKey::remember(dir, key),
            Ok(None) => return,
            Err(e) => eprintln!("{e}"),
        }
    }
}

/// The answer model the user chose in the settings, if any (an unreadable
/// settings file is reported and ignored here; the commands that change
/// settings report it as an error).
fn chosen_generator(config: &Path) -> Option<String> {
    match Settings::load(config) {
        Ok(s) => s.generator,
        Err(e) => {
            eprintln!("warning: {e}; using the default answer model");
            None
        }
    }
}
