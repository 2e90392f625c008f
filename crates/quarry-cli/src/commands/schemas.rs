//! `quarry schemas`: the extraction schemas saved in a library (`quarry
//! schemas --save NAME --file F` or `quarry extract --schema F --save-schema
//! NAME` saves one; `quarry extract --schema NAME` runs it).

use std::path::PathBuf;

use anyhow::{bail, Result};
use quarry_core::tasks::saved::SchemaShelf;

use crate::context::Context;

#[derive(clap::Args)]
pub struct SchemasArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Print one saved schema's fields as JSON (a file `--schema` reads).
    #[arg(long, value_name = "NAME", conflicts_with = "delete")]
    show: Option<String>,
    /// Delete a saved schema (its kept results stay until the documents change).
    #[arg(long, value_name = "NAME", conflicts_with = "save")]
    delete: Option<String>,
    /// Save the schema in --file under this name (replacing one of that name).
    #[arg(long, value_name = "NAME", requires = "file", conflicts_with = "show")]
    save: Option<String>,
    /// The schema to save: a JSON Schema object or {"fields": [...]}.
    #[arg(long, value_name = "FILE", requires = "save")]
    file: Option<PathBuf>,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

/// Run `quarry schemas`.
pub fn run(ctx: &Context, args: SchemasArgs) -> Result<()> {
    let lib_dir = ctx.library_dir(args.lib.library);
    let shelf = SchemaShelf::of(&lib_dir);
    if let (Some(name), Some(file)) = (&args.save, &args.file) {
        let schema = super::extract::read_schema(&lib_dir, &file.to_string_lossy())?;
        let saved = shelf.save(name, &schema)?;
        eprintln!(
            "saved the schema as \"{}\": `quarry extract --schema \"{}\"` runs it",
            saved.name, saved.name
        );
        return Ok(());
    }
    if let Some(name) = &args.show {
        let saved = shelf.get(name)?;
        println!("{}", serde_json::to_string_pretty(&saved.schema)?);
        return Ok(());
    }
    if let Some(name) = &args.delete {
        if !shelf.delete(name)? {
            bail!(quarry_core::Error::InvalidInput(format!(
                "no schema is saved as \"{name}\""
            )));
        }
        eprintln!("deleted the schema \"{}\"", name.trim());
        return Ok(());
    }
    let list = shelf.list()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else if list.is_empty() {
        eprintln!("no schemas saved; `quarry extract --schema FILE --save-schema NAME` saves one");
    } else {
        for s in &list {
            let fields: Vec<String> = s
                .schema
                .fields
                .iter()
                .map(|f| format!("{} ({})", f.name, f.kind.name()))
                .collect();
            println!("{}\t{}", s.name, fields.join(", "));
        }
    }
    Ok(())
}
