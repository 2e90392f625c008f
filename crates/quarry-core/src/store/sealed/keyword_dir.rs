//! The keyword index's folder, sealed: a tantivy [`Directory`] over
//! tantivy's own memory-mapped one that seals every file written through it
//! (segments, the doc store of chunk texts, `meta.json`, `.managed.json`) and
//! opens only the blocks a read touches.

use std::io::{self, BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{
    DeleteError, LockError, OpenDirectoryError, OpenReadError, OpenWriteError,
};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, OwnedBytes,
    TerminatingWrite, WatchCallback, WatchHandle, WritePtr,
};
use tantivy::HasLen;

use super::format::{self, Opener, Sealer, HEADER_LEN};
use super::key::LibraryKey;

/// A sealed tantivy folder.
#[derive(Clone, Debug)]
pub struct SealedDirectory {
    inner: MmapDirectory,
    key: LibraryKey,
    root: PathBuf,
}

impl SealedDirectory {
    /// The sealed index folder at `root` (which must exist).
    pub fn open(root: &Path, key: LibraryKey) -> Result<SealedDirectory, OpenDirectoryError> {
        Ok(SealedDirectory {
            inner: MmapDirectory::open(root)?,
            key,
            root: root.to_path_buf(),
        })
    }

    fn damaged(&self, path: &Path, e: format::FormatError) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", self.root.join(path).display()),
        )
    }
}

impl Directory for SealedDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        let sealed = self.inner.get_file_handle(path)?;
        let header = sealed
            .read_bytes(0..HEADER_LEN.min(sealed.len()))
            .map_err(|e| OpenReadError::wrap_io_error(e, path.to_path_buf()))?;
        let plain_len = Opener::new(self.key.cipher(), header.as_slice(), sealed.len() as u64)
            .map_err(|e| OpenReadError::wrap_io_error(self.damaged(path, e), path.into()))?
            .plain_len();
        Ok(Arc::new(SealedFile {
            sealed,
            header: header.as_slice().to_vec(),
            plain_len: plain_len as usize,
            key: self.key.clone(),
            path: self.root.join(path),
        }))
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        let inner = self.inner.open_write(path)?;
        Ok(BufWriter::new(Box::new(SealingWriter {
            inner,
            sealer: Some(Sealer::new(self.key.cipher().clone())),
            out: Vec::new(),
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        let sealed = self.inner.atomic_read(path)?;
        format::unseal(self.key.cipher(), &sealed)
            .map_err(|e| OpenReadError::wrap_io_error(self.damaged(path, e), path.into()))
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner
            .atomic_write(path, &format::seal(self.key.cipher(), data))
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

/// A sealed file opened for reading: each read opens the blocks it touches
/// from the memory-mapped sealed bytes.
struct SealedFile {
    sealed: Arc<dyn FileHandle>,
    header: Vec<u8>,
    plain_len: usize,
    key: LibraryKey,
    path: PathBuf,
}

impl std::fmt::Debug for SealedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedFile({})", self.path.display())
    }
}

impl HasLen for SealedFile {
    fn len(&self) -> usize {
        self.plain_len
    }
}

impl FileHandle for SealedFile {
    fn read_bytes(&self, range: Range<usize>) -> io::Result<OwnedBytes> {
        if range.is_empty() {
            return Ok(OwnedBytes::empty());
        }
        let opener = Opener::new(self.key.cipher(), &self.header, self.sealed.len() as u64)
            .map_err(|e| invalid(&self.path, e))?;
        let plain = range.start as u64..range.end as u64;
        let span = opener.sealed_range(&plain);
        let sealed = self
            .sealed
            .read_bytes(span.start as usize..span.end as usize)?;
        let bytes = opener
            .open(plain, sealed.as_slice())
            .map_err(|e| invalid(&self.path, e))?;
        Ok(OwnedBytes::new(bytes))
    }
}

fn invalid(path: &Path, e: format::FormatError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

/// Seals what tantivy writes, block by block, into the file beneath.
struct SealingWriter {
    inner: WritePtr,
    sealer: Option<Sealer>,
    out: Vec<u8>,
}

impl Write for SealingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sealer = self
            .sealer
            .as_mut()
            .ok_or_else(|| io::Error::other("write after the file was finished"))?;
        sealer.push(buf, &mut self.out);
        if !self.out.is_empty() {
            self.inner.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Only whole blocks can be written before the end; the buffered one
        // is sealed at `terminate`.
        self.inner.flush()
    }
}

impl TerminatingWrite for SealingWriter {
    fn terminate_ref(&mut self, token: AntiCallToken) -> io::Result<()> {
        if let Some(sealer) = self.sealer.take() {
            sealer.finish(&mut self.out);
            self.inner.write_all(&self.out)?;
            self.out.clear();
        }
        self.inner.terminate_ref(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use tantivy::schema::{Schema, Value, STORED, TEXT};
    use tantivy::{doc, Index, TantivyDocument};

    fn key(dir: &Path) -> LibraryKey {
        LibraryKey::create(dir, &SecretString::from("a long passphrase")).unwrap()
    }

    #[test]
    fn an_index_in_a_sealed_folder_searches_and_holds_no_plain_text() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(dir.path());
        let root = dir.path().join("tantivy");
        std::fs::create_dir_all(&root).unwrap();
        let mut schema = Schema::builder();
        let body = schema.add_text_field("body", TEXT | STORED);
        let schema = schema.build();
        let sentence = "the quarterly reconciliation of the Zurich escrow account";
        {
            let sealed = SealedDirectory::open(&root, k.clone()).unwrap();
            let index = Index::create(sealed, schema.clone(), Default::default()).unwrap();
            let mut writer = index.writer(15_000_000).unwrap();
            for i in 0..300 {
                writer
                    .add_document(doc!(body => format!("{sentence} number {i}")))
                    .unwrap();
            }
            writer.commit().unwrap();
        }
        for entry in std::fs::read_dir(&root).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("escrow"), "plain text on disk");
            assert!(!text.contains("\"segments\""), "plain meta.json on disk");
        }
        let sealed = SealedDirectory::open(&root, k).unwrap();
        let index = Index::open(sealed).unwrap();
        let searcher = index.reader().unwrap().searcher();
        let query = tantivy::query::QueryParser::for_index(&index, vec![body])
            .parse_query("escrow AND 217")
            .unwrap();
        let top = searcher
            .search(
                &query,
                &tantivy::collector::TopDocs::with_limit(3).order_by_score(),
            )
            .unwrap();
        assert_eq!(top.len(), 1);
        let found: TantivyDocument = searcher.doc(top[0].1).unwrap();
        let text = found.get_first(body).and_then(|v| v.as_str()).unwrap();
        assert_eq!(text, format!("{sentence} number 217"));
    }

    #[test]
    fn a_sealed_index_does_not_open_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tantivy");
        std::fs::create_dir_all(&root).unwrap();
        let mut schema = Schema::builder();
        schema.add_text_field("body", TEXT);
        let sealed = SealedDirectory::open(&root, key(dir.path())).unwrap();
        Index::create(sealed, schema.build(), Default::default()).unwrap();
        let other = tempfile::tempdir().unwrap();
        let wrong = SealedDirectory::open(&root, key(other.path())).unwrap();
        assert!(Index::open(wrong).is_err());
    }
}
