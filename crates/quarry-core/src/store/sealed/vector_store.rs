//! The vector store's folder, sealed: an [`ObjectStore`] over the local file
//! system that seals every object lance writes (data files, deletion files,
//! indexes, manifests, transactions) and opens only the blocks a read
//! touches; and the lance session that routes a library's tables through it.
//!
//! Lance reads `file://` tables with its own direct file reader, below any
//! object store, so a sealed library's tables are opened under the
//! `file-object-store://` scheme, which lance serves through an object store
//! with the same commit rules (conditional put) as `file://`. The session
//! given to lancedb maps that scheme to lance's local provider with this
//! store wrapped around it.

use std::fmt;
use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use lance::session::Session;
use lance_io::object_store::providers::local::FileStoreProvider;
use lance_io::object_store::{
    ObjectStore as LanceStore, ObjectStoreParams, ObjectStoreProvider, ObjectStoreRegistry,
};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, UploadPart,
};
use url::Url;

use super::format::{self, Opener, Sealer, HEADER_LEN};
use super::key::LibraryKey;

/// The URI scheme a sealed library's tables are opened under.
pub const SEALED_SCHEME: &str = "file-object-store";

/// The lancedb URI of a sealed library's vector folder `dir`.
pub fn sealed_uri(dir: &FsPath) -> String {
    let url = Url::from_directory_path(dir).expect("an absolute folder");
    format!("{SEALED_SCHEME}://{}", url.path().trim_end_matches('/'))
}

/// A lance session whose local tables (under [`SEALED_SCHEME`]) are sealed
/// with `key`.
pub fn sealed_session(key: LibraryKey) -> Arc<Session> {
    let registry = ObjectStoreRegistry::default();
    registry.insert(SEALED_SCHEME, Arc::new(SealedProvider { key }));
    Arc::new(Session::new(
        lance::dataset::DEFAULT_INDEX_CACHE_SIZE,
        lance::dataset::DEFAULT_METADATA_CACHE_SIZE,
        Arc::new(registry),
    ))
}

/// Lance's local provider with every store it makes sealed.
#[derive(Debug)]
struct SealedProvider {
    key: LibraryKey,
}

#[async_trait]
impl ObjectStoreProvider for SealedProvider {
    async fn new_store(&self, base: Url, params: &ObjectStoreParams) -> lance::Result<LanceStore> {
        let mut store = FileStoreProvider.new_store(base, params).await?;
        store.inner = Arc::new(SealedStore {
            inner: store.inner.clone(),
            key: self.key.clone(),
        });
        Ok(store)
    }

    fn extract_path(&self, url: &Url) -> lance::Result<Path> {
        FileStoreProvider.extract_path(url)
    }

    fn calculate_object_store_prefix(
        &self,
        url: &Url,
        options: Option<&std::collections::HashMap<String, String>>,
    ) -> lance::Result<String> {
        FileStoreProvider.calculate_object_store_prefix(url, options)
    }
}

/// An object store whose objects are sealed files.
#[derive(Debug)]
pub struct SealedStore {
    inner: Arc<dyn ObjectStore>,
    key: LibraryKey,
}

impl fmt::Display for SealedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({})", self.inner)
    }
}

fn damaged(location: &Path, e: format::FormatError) -> object_store::Error {
    object_store::Error::Generic {
        store: "sealed",
        source: format!("{location}: {e}").into(),
    }
}

/// `meta` with the plain size in place of the sealed one.
fn plain_meta(mut meta: ObjectMeta) -> object_store::Result<ObjectMeta> {
    meta.size = format::plain_len(meta.size).map_err(|e| damaged(&meta.location, e))?;
    Ok(meta)
}

impl SealedStore {
    async fn read(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let wanted = options.range.clone();
        let head = GetOptions {
            head: true,
            range: None,
            ..options
        };
        let meta = plain_meta(self.inner.get_opts(location, head).await?.meta)?;
        let range: Range<u64> = match wanted {
            Some(r) => r
                .as_range(meta.size)
                .map_err(|e| object_store::Error::Generic {
                    store: "sealed",
                    source: Box::new(e),
                })?,
            None => 0..meta.size,
        };
        let header = self.inner.get_range(location, 0..HEADER_LEN as u64).await?;
        let sealed_size = format::sealed_len(meta.size);
        let opener = Opener::new(self.key.cipher(), &header, sealed_size)
            .map_err(|e| damaged(location, e))?;
        let span = opener.sealed_range(&range);
        let sealed = self.inner.get_range(location, span).await?;
        let plain = opener
            .open(range.clone(), &sealed)
            .map_err(|e| damaged(location, e))?;
        Ok(GetResult {
            payload: GetResultPayload::Stream(
                stream::once(async { Ok(Bytes::from(plain)) }).boxed(),
            ),
            meta,
            range,
            attributes: Default::default(),
            extensions: Default::default(),
        })
    }
}

#[async_trait]
impl ObjectStore for SealedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let mut sealer = Sealer::new(self.key.cipher().clone());
        let mut out =
            Vec::with_capacity(format::sealed_len(payload.content_length() as u64) as usize);
        for part in payload.iter() {
            sealer.push(part, &mut out);
        }
        sealer.finish(&mut out);
        self.inner.put_opts(location, out.into(), opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SealedUpload {
            inner,
            sealer: Some(Sealer::new(self.key.cipher().clone())),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if options.head {
            let mut got = self.inner.get_opts(location, options).await?;
            got.meta = plain_meta(got.meta)?;
            got.range = 0..got.meta.size;
            return Ok(got);
        }
        self.read(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner
            .list(prefix)
            .map(|meta| meta.and_then(plain_meta))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut listed = self.inner.list_with_delimiter(prefix).await?;
        listed.objects = listed
            .objects
            .into_iter()
            .map(plain_meta)
            .collect::<object_store::Result<_>>()?;
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        // A sealed file is bound to its own id, not its path: copied whole, it
        // opens as it did.
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload that seals its parts as they come, whole blocks at a
/// time, and the last block at `complete`.
struct SealedUpload {
    inner: Box<dyn MultipartUpload>,
    sealer: Option<Sealer>,
}

impl fmt::Debug for SealedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedUpload({:?})", self.inner)
    }
}

#[async_trait]
impl MultipartUpload for SealedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let Some(sealer) = self.sealer.as_mut() else {
            return Box::pin(async {
                Err(object_store::Error::Generic {
                    store: "sealed",
                    source: "a part after the upload was completed".into(),
                })
            });
        };
        let mut out = Vec::new();
        for part in data.iter() {
            sealer.push(part, &mut out);
        }
        if out.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        self.inner.put_part(out.into())
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if let Some(sealer) = self.sealer.take() {
            let mut out = Vec::new();
            sealer.finish(&mut out);
            self.inner.put_part(out.into()).await?;
        }
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.sealer = None;
        self.inner.abort().await
    }
}
