//! `quarry encrypt` (seal an existing plain library in place) and `quarry
//! rekey` (replace an encrypted library's key and destroy the old one, so
//! that copies made before — backups, snapshots, old disk blocks — no longer
//! open). Both can be run again to finish a change that was interrupted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use quarry_core::store::sealed::rekey::{change_key, next_needs_passphrase, NewKey, RekeyReport};
use quarry_core::store::sealed::{LibraryKey, NEXT_KEY_FILE, PASSPHRASE_ENV};
use secrecy::{ExposeSecret, SecretString};

use crate::context::{Context, LibraryArg};

/// Where scripts pass the new passphrase of `quarry rekey`.
pub const NEW_PASSPHRASE_ENV: &str = "QUARRY_NEW_LIBRARY_PASSPHRASE";

/// Options of `quarry encrypt`.
#[derive(clap::Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub lib: LibraryArg,
    /// Keep the library's key in the OS keychain instead of asking for a
    /// passphrase.
    #[arg(long)]
    pub keychain: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `quarry rekey`.
#[derive(clap::Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub lib: LibraryArg,
    /// Keep the new key in the OS keychain (from then on no passphrase is
    /// asked). The default is how the library is unlocked now.
    #[arg(long, conflicts_with = "passphrase")]
    pub keychain: bool,
    /// Wrap the new key under a passphrase (typed twice, or
    /// QUARRY_NEW_LIBRARY_PASSPHRASE), also when it is in the keychain now.
    #[arg(long)]
    pub passphrase: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `quarry encrypt`.
pub fn encrypt(ctx: &Context, args: EncryptArgs) -> Result<()> {
    let dir = library(ctx, &args.lib);
    let resuming = dir.join(NEXT_KEY_FILE).exists();
    if LibraryKey::is_encrypted(&dir) && !resuming {
        bail!(
            "{} is already encrypted; `quarry rekey` replaces its key",
            dir.display()
        );
    }
    let asks = match resuming {
        true => next_needs_passphrase(&dir),
        false => !args.keychain,
    };
    let passphrase = match asks {
        true => Some(crate::commands::init::passphrase(!resuming)?),
        false => None,
    };
    let new = match &passphrase {
        Some(p) => NewKey::Passphrase(p),
        None => NewKey::Keychain,
    };
    eprintln!(
        "Encrypting {} in place (close the desktop app and any `quarry serve` on it first)…",
        dir.display()
    );
    let report = change_key(&dir, None, new, &mut progress())?;
    finish_progress();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    for line in describe(&report, false) {
        println!("{line}");
    }
    Ok(())
}

/// Run `quarry rekey`.
pub fn rekey(ctx: &Context, args: RekeyArgs) -> Result<()> {
    let dir = library(ctx, &args.lib);
    let rotation = rotate(&dir, args.keychain, args.passphrase)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rotation.report)?);
        return Ok(());
    }
    for line in describe(&rotation.report, rotation.kept_passphrase) {
        println!("{line}");
    }
    Ok(())
}

/// A key replaced, and whether the passphrase stayed the same.
pub struct Rotation {
    /// What the change did.
    pub report: RekeyReport,
    /// The new key is wrapped under the same passphrase as the old one.
    pub kept_passphrase: bool,
}

/// Replace the key of the encrypted library in `dir` (see [`rekey`]); the
/// current passphrase and a new one are asked at the terminal or taken from
/// [`PASSPHRASE_ENV`] and [`NEW_PASSPHRASE_ENV`]. The new key is kept the
/// way the old one was unless `keychain` or `passphrase` says otherwise.
pub fn rotate(dir: &Path, keychain: bool, passphrase: bool) -> Result<Rotation> {
    let resuming = dir.join(NEXT_KEY_FILE).exists();
    if !LibraryKey::is_encrypted(dir) && !resuming {
        bail!(
            "{} is not encrypted; `quarry encrypt` encrypts it",
            dir.display()
        );
    }
    let current = match LibraryKey::needs_passphrase(dir) {
        true => Some(current_passphrase(dir)?),
        // A change cut short between its two renames leaves no current key
        // file: the passphrase in the environment may still be the one to keep.
        false if resuming && !LibraryKey::is_encrypted(dir) => std::env::var(PASSPHRASE_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(SecretString::from),
        false => None,
    };
    let keychain = keychain || (current.is_none() && !passphrase);
    let new_passphrase = match resuming {
        true if !next_needs_passphrase(dir) => None,
        false if keychain => None,
        _ => Some(new_passphrase(current.as_ref(), resuming)?),
    };
    let new = match &new_passphrase {
        Some(p) => NewKey::Passphrase(p),
        None => NewKey::Keychain,
    };
    eprintln!(
        "Resealing every file of {} under a new key (close the desktop app and any `quarry serve` on it first)…",
        dir.display()
    );
    let kept_passphrase = match (&current, &new) {
        (Some(c), NewKey::Passphrase(n)) => c.expose_secret() == n.expose_secret(),
        _ => false,
    };
    let report = change_key(dir, current.as_ref(), new, &mut progress())?;
    finish_progress();
    Ok(Rotation {
        report,
        kept_passphrase,
    })
}

fn library(ctx: &Context, lib: &LibraryArg) -> PathBuf {
    lib.library
        .clone()
        .unwrap_or_else(|| ctx.dirs.library.clone())
}

/// The library's current passphrase: from the environment, or typed.
fn current_passphrase(dir: &Path) -> Result<SecretString> {
    if let Some(p) = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty()) {
        return Ok(SecretString::from(p));
    }
    let typed = rpassword::prompt_password(format!(
        "Current passphrase of the encrypted library {}: ",
        dir.display()
    ))
    .with_context(|| format!("no terminal to type a passphrase at; set {PASSPHRASE_ENV}"))?;
    Ok(SecretString::from(typed))
}

/// The new passphrase: from [`NEW_PASSPHRASE_ENV`], or typed (twice for a
/// change not begun yet; Enter keeps the current one); the current one
/// without either.
fn new_passphrase(current: Option<&SecretString>, resuming: bool) -> Result<SecretString> {
    if let Some(p) = std::env::var(NEW_PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(SecretString::from(p));
    }
    let keep = || {
        current
            .cloned()
            .context("the library has no passphrase to keep; give a new one or --keychain")
    };
    if !std::io::stdin().is_terminal() {
        return keep();
    }
    let first = rpassword::prompt_password(match resuming {
        true => "Passphrase given when this change began (Enter if it kept the current one): ",
        false => "New passphrase (Enter keeps the current one; a new one also makes old backups unreadable): ",
    })?;
    if first.is_empty() {
        return keep();
    }
    if resuming {
        return Ok(SecretString::from(first));
    }
    if rpassword::prompt_password("The new passphrase again: ")? != first {
        bail!("the two passphrases differ; nothing was changed");
    }
    Ok(SecretString::from(first))
}

fn progress() -> impl FnMut(usize, usize) {
    let tty = std::io::stderr().is_terminal();
    move |done, all| {
        if tty && (done % 50 == 0 || done == all) {
            eprint!("\r  {done}/{all} files");
        }
    }
}

fn finish_progress() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// A key change in words, for the terminal and the deletion report.
pub fn describe(r: &RekeyReport, kept_passphrase: bool) -> Vec<String> {
    let mut lines = vec![format!(
        "{} files ({:.1} MB) sealed under key {} ({}){}; {} temporary leftover(s) removed.",
        r.files_resealed,
        r.bytes as f64 / 1e6,
        r.new_key,
        r.new_unlock,
        match r.already_done {
            0 => String::new(),
            n => format!(", {n} already were (an interrupted change finished)"),
        },
        r.leftovers_removed
    )];
    if r.plain_wiped > 0 {
        lines.push(format!(
            "{} plain file(s) overwritten with zeros after their sealed copy replaced them (on a copy-on-write file system or an SSD old blocks may survive: use full-disk encryption as well).",
            r.plain_wiped
        ));
    }
    let Some(old) = &r.old_key else {
        return lines;
    };
    lines.push(format!("The old key {old} is destroyed: {}", match r.old_unlock.as_deref() {
        Some("keychain") => "its wrapped copy and its keychain entry are gone, so nothing sealed under it — in a backup, a snapshot or a disk block — can be opened again.".to_string(),
        _ if kept_passphrase => "its wrapped copy is gone from the library, but the passphrase was kept: a backup that includes the old encryption.json still opens with it. Run `quarry rekey` with a new passphrase (or --keychain) for old copies to be unreadable.".to_string(),
        _ => "its wrapped copy is gone from the library; a backup that includes the old encryption.json opens only with the old passphrase, which no longer opens this library.".to_string(),
    }));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passphrase_rotation_says_what_a_kept_passphrase_does_not_protect() {
        let report = RekeyReport {
            old_key: Some("aa".into()),
            old_unlock: Some("passphrase".into()),
            new_key: "bb".into(),
            new_unlock: "passphrase".into(),
            files_resealed: 3,
            ..RekeyReport::default()
        };
        let text = describe(&report, true).join("\n");
        assert!(text.contains("passphrase was kept"), "{text}");
        assert!(text.contains("key bb"), "{text}");
        let keychain = RekeyReport {
            old_unlock: Some("keychain".into()),
            ..report
        };
        assert!(describe(&keychain, true)
            .join(" ")
            .contains("keychain entry are gone"));
        assert!(!describe(&keychain, false).join(" ").contains("was kept"));
    }
}
