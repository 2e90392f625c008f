//! `quarry forget PATH…`: remove documents so that it can be shown — their
//! chunks, vectors and keyword entries, then every copy the stores keep
//! (LanceDB fragments and old versions, tantivy segments, the answer cache,
//! kept results) — and check every file of the library for what should be
//! gone. The report is printed (or `--json`) to be kept as evidence; the
//! command fails when a copy is still found.

use std::path::PathBuf;

use anyhow::Result;
use quarry_core::ingest::forget::{forget as forget_documents, ForgetReport};
use quarry_core::Library;

use crate::context::Context;

#[derive(clap::Args)]
pub struct ForgetArgs {
    /// Files or folders whose indexed documents to forget (they need not exist any more).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Print the deletion report as JSON.
    #[arg(long)]
    json: bool,
    /// Encrypted libraries: then replace the library's key and destroy the
    /// old one, so copies the library cannot rewrite (backups, snapshots,
    /// old disk blocks) no longer open (asks for a new passphrase at a
    /// terminal, or QUARRY_NEW_LIBRARY_PASSPHRASE).
    #[arg(long)]
    rekey: bool,
    /// With --rekey: keep the new key in the OS keychain.
    #[arg(long, requires = "rekey")]
    keychain: bool,
}

pub async fn forget(ctx: &Context, args: ForgetArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library.clone());
    if args.rekey && !quarry_core::store::sealed::LibraryKey::is_encrypted(&dir) {
        anyhow::bail!(
            "--rekey destroys an encrypted library's key; {} is not encrypted (`quarry encrypt` encrypts it)",
            dir.display()
        );
    }
    let mut lib = Library::open(&dir).await?;
    let paths: Vec<PathBuf> = args
        .paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let mut report = forget_documents(&mut lib, &paths).await?;
    drop(lib);
    let mut kept_passphrase = false;
    if args.rekey && report.residues.is_empty() {
        let rotation = crate::commands::encrypt::rotate(&dir, args.keychain, false)?;
        kept_passphrase = rotation.kept_passphrase;
        report.key_rotation = Some(rotation.report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, kept_passphrase);
    }
    if !report.residues.is_empty() {
        anyhow::bail!(
            "copies of the forgotten text are still in {} place(s) of the library (listed above)",
            report.residues.len()
        );
    }
    Ok(())
}

fn print_report(r: &ForgetReport, kept_passphrase: bool) {
    println!("Deletion report for {}", r.library.display());
    println!("Started {}, finished {}", r.started, r.finished);
    println!(
        "Forgotten ({} documents, {} chunks):",
        r.documents.len(),
        r.chunks
    );
    for d in &r.documents {
        println!("  {} (content sha256 {})", d.path, d.content_hash);
    }
    println!("Done:");
    for step in &r.rewritten {
        println!("  {step}");
    }
    println!(
        "Check: {} files ({:.1} MB, {} compressed blocks) searched for {} runs of eight words and {} vector prefixes of the forgotten chunks",
        r.files_scanned,
        r.bytes_scanned as f64 / 1e6,
        r.compressed_blocks,
        r.text_probes,
        r.vector_probes
    );
    if r.shared_with_other_documents > 0 {
        println!(
            "  {} run(s) of words also appear in documents still in the library, so finding them proves nothing and they were set aside",
            r.shared_with_other_documents
        );
    }
    if r.verified {
        println!("Result: VERIFIED: no file of the library holds the forgotten text or vectors");
    } else if r.residues.is_empty() {
        println!("Result: nothing distinctive to search for (the documents were too short): removed, not verified");
    } else {
        println!("Result: COPIES FOUND:");
        for res in &r.residues {
            println!(
                "  {} ({:?} probe {}{})",
                res.file.display(),
                res.kind,
                res.probe,
                if res.compressed {
                    ", in a compressed block"
                } else {
                    ""
                }
            );
        }
    }
    if let Some(rotation) = &r.key_rotation {
        println!("Key destruction:");
        for line in crate::commands::encrypt::describe(rotation, kept_passphrase) {
            println!("  {line}");
        }
    }
    for p in &r.still_in_folders {
        println!("Note: {p} is still on disk in a folder of the library; the next `quarry index` of that folder adds it again unless you delete or move it");
    }
}
