//! `quarry init`: create a library before its first index — encrypted when
//! asked, so that nothing of it is ever written in plain text.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use quarry_core::store::sealed::{KeySource, LibraryKey, MIN_PASSPHRASE_CHARS, PASSPHRASE_ENV};
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
    /// With --encrypt: keep the library's key in the OS keychain (Keychain,
    /// Credential Manager, Secret Service) instead of asking for a passphrase.
    #[arg(long, requires = "encrypt")]
    pub keychain: bool,
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
                "{} already holds a library in plain files; `quarry encrypt` encrypts it in place",
                dir.display()
            );
        }
        println!("{} already holds a library.", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if args.encrypt {
        make_key(&dir, args.keychain)?;
    }
    let embedder_id = match args.embedder {
        Some(id) => id,
        None => ctx.default_embedder()?,
    };
    let embedder = ctx.load_embedder(&embedder_id)?;
    let lib = Library::open_or_create(&dir, embedder.id(), embedder.dim()).await?;
    if args.keychain {
        println!(
            "Created an encrypted library at {} (XChaCha20-Poly1305; its key is kept in your OS keychain).\nThe library opens only for this user on this machine while the keychain holds that key.",
            lib.dir().display()
        );
    } else if args.encrypt {
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
fn make_key(dir: &Path, keychain: bool) -> Result<()> {
    let key = if LibraryKey::is_encrypted(dir) {
        let passphrase = match LibraryKey::needs_passphrase(dir) {
            true => Some(passphrase(false)?),
            false => None,
        };
        LibraryKey::unlock(dir, passphrase.as_ref())?.expect("encrypted")
    } else if keychain {
        LibraryKey::create_with(dir, KeySource::Keychain)?
    } else {
        LibraryKey::create(dir, &passphrase(true)?)?
    };
    LibraryKey::remember(dir, key);
    Ok(())
}

/// The passphrase from the environment, or typed (twice for a new one).
pub(crate) fn passphrase(new: bool) -> Result<SecretString> {
    if let Some(p) = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()) {
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
