//! `quarry init`: create a library before its first index — encrypted when
//! asked, so that nothing of it is ever written in plain text.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use quarry_core::store::sealed::{LibraryKey, MIN_PASSPHRASE_CHARS, PASSPHRASE_ENV};
use quarry_core::Library;
use secrecy::{ExposeSecret, SecretString};

use crate::context::{Context, LibraryArg};

/// Options of `quarry init`.
#[derive(clap::Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub lib: LibraryArg,
    /// Encrypt every file of the library with a key derived from a
    /// passphrase (QUARRY_LIBRARY_PASSPHRASE, or typed twice at the terminal).
    #[arg(long)]
    pub encrypt: bool,
    /// The embedder the library will use (default: the registry's default).
    #[arg(long)]
    pub embedder: Option<String>,
}

/// Run `quarry init`.
pub async fn run(ctx: &Context, args: InitArgs) -> Result<()> {
    let dir = args.lib.library.unwrap_or_else(|| ctx.dirs.library.clone());
    if dir.join("library.json").exists() {
        if args.encrypt && !LibraryKey::is_encrypted(&dir) {
            bail!(
                "{} already holds a library in plain files; an existing library cannot be encrypted in place yet: create an encrypted one with `quarry init --encrypt --library NEW` and index its folders into it",
                dir.display()
            );
        }
        println!("{} already holds a library.", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if args.encrypt {
        make_key(&dir)?;
    }
    let embedder_id = match args.embedder {
        Some(id) => id,
        None => ctx.default_embedder()?,
    };
    let embedder = ctx.load_embedder(&embedder_id)?;
    let lib = Library::open_or_create(&dir, embedder.id(), embedder.dim()).await?;
    if args.encrypt {
        println!(
            "Created an encrypted library at {} (XChaCha20-Poly1305; key derived from your passphrase with Argon2id).\nKeep the passphrase safe: without it nothing in this library can be read.",
            lib.dir().display()
        );
    } else {
        println!("Created a library at {}.", lib.dir().display());
    }
    Ok(())
}

/// Make the library's key (or open it, when a first `init` stopped after
/// making it) and keep it for this process.
fn make_key(dir: &Path) -> Result<()> {
    if LibraryKey::is_encrypted(dir) {
        let passphrase = passphrase(false)?;
        let key = LibraryKey::unlock(dir, Some(&passphrase))?.expect("encrypted");
        LibraryKey::remember(dir, key);
        return Ok(());
    }
    let passphrase = passphrase(true)?;
    let key = LibraryKey::create(dir, &passphrase)?;
    LibraryKey::remember(dir, key);
    Ok(())
}

/// The passphrase from the environment, or typed (twice for a new one).
fn passphrase(new: bool) -> Result<SecretString> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(SecretString::from(p));
    }
    let first = rpassword::prompt_password(format!(
        "Passphrase for the library (at least {MIN_PASSPHRASE_CHARS} characters): "
    ))
    .with_context(|| format!("no terminal to type a passphrase at; set {PASSPHRASE_ENV}"))?;
    if new {
        let again = rpassword::prompt_password("The same passphrase again: ")?;
        if again != first {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    let p = SecretString::from(first);
    if p.expose_secret().is_empty() {
        bail!("no passphrase given");
    }
    Ok(p)
}
