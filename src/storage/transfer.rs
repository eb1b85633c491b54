//! Machinery shared by the backends: part sizing, hashing a file part by
//! part and streaming each part from the file (no part is held in memory;
//! a retry reads its range again), and writing a download to a temporary
//! file that is renamed into place only when its digest matches.

use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::ObjectMeta;
use super::digest::{Digest, Hasher};
use super::error::{Error, Result};
use super::limits::Limits;

/// Smallest part of a multipart / chunked upload (S3 needs ≥ 5 MiB for all
/// but the last part; GCS needs multiples of 256 KiB).
pub const MIN_PART_SIZE: u64 = 8 << 20;
/// S3's limit on parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// The part size for a file of `size` bytes: 8 MiB, or larger (in whole
/// MiB) when needed so the file fits in 10,000 parts — 5 TiB files use
/// 525 MiB parts.
pub fn part_size_for(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(MIN_PART_SIZE)
}

/// Bytes read per step when a part is hashed, and per body chunk when a
/// part is sent: what one in-flight request holds of a file (two chunks at
/// most: one being read, one being written to the socket).
pub const READ_CHUNK: usize = 256 << 10;

/// One part of a file: where it starts, how long it is, and its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRange {
    /// 0-based position of the part in the file.
    pub index: u32,
    pub offset: u64,
    pub len: u64,
}

/// A part's own checksums, computed while it was hashed: its CRC32C (S3,
/// GCS) and, when asked for, its MD5 (Azure's `Content-MD5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSums {
    pub crc32c: u32,
    pub md5: Option<[u8; 16]>,
}

impl PartSums {
    /// The MD5 in the `Content-MD5` form (base64), when computed.
    pub fn md5_base64(&self) -> Option<String> {
        use base64::Engine;
        self.md5
            .map(|md5| base64::engine::general_purpose::STANDARD.encode(md5))
    }
}

/// A local file opened once for an upload and shared by its parts:
/// every read is positional (`pread`), so parts can be read concurrently
/// and a retried part reads its own range again instead of being held in
/// memory (the file is an immutable SSTable).
#[derive(Debug, Clone)]
pub struct SourceFile {
    file: Arc<std::fs::File>,
    path: Arc<PathBuf>,
    size: u64,
}

impl SourceFile {
    pub async fn open(path: &Path) -> Result<Self> {
        let owned = path.to_path_buf();
        let (file, size) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&owned)?;
            let size = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, size))
        })
        .await
        .map_err(|e| Error::local(path, std::io::Error::other(e)))?
        .map_err(|e| Error::local(path, e))?;
        Ok(Self {
            file: Arc::new(file),
            path: Arc::new(path.to_path_buf()),
            size,
        })
    }

    /// The size when the file was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads exactly `len` bytes at `offset` into a fresh buffer, on the
    /// blocking pool.
    async fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            file.read_exact_at(&mut buf, offset)?;
            Ok(buf.freeze())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The bytes of `range`, read from the file chunk by chunk as the
    /// consumer (the HTTP body) asks for them: at most [`READ_CHUNK`]
    /// bytes are read ahead. Called again for every attempt of a request.
    pub fn stream(&self, range: PartRange) -> BoxStream<'static, std::io::Result<Bytes>> {
        let source = self.clone();
        futures::stream::try_unfold(
            (source, range.offset, range.len),
            |(source, offset, remaining)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let len = remaining.min(READ_CHUNK as u64);
                let chunk = source.read_at(offset, len as usize).await?;
                Ok(Some((chunk, (source, offset + len, remaining - len))))
            },
        )
        .boxed()
    }

    /// Fails unless `read` bytes were read and the file still has the size
    /// it had when opened (nothing appended, nothing cut).
    pub async fn check_size(&self, read: u64) -> Result<()> {
        let file = self.file.clone();
        let size = self.size;
        let (extra, now) = tokio::task::spawn_blocking(move || {
            let mut probe = [0u8; 1];
            let extra = file.read_at(&mut probe, size)?;
            Ok::<_, std::io::Error>((extra, file.metadata()?.len()))
        })
        .await
        .map_err(|e| Error::local(self.path(), std::io::Error::other(e)))?
        .map_err(|e| Error::local(self.path(), e))?;
        if extra != 0 || now != size || read != size {
            return Err(Error::local(
                self.path(),
                std::io::Error::other("file changed size while it was being read"),
            ));
        }
        Ok(())
    }

    /// The whole of `range` in memory (for a request whose client needs
    /// the body whole: small objects to GCS).
    pub async fn read(&self, range: PartRange) -> Result<Bytes> {
        self.read_at(range.offset, range.len as usize)
            .await
            .map_err(|e| Error::local(self.path(), e))
    }
}

/// Walks a file part by part, in order, feeding every byte to one
/// [`Hasher`] (the whole file's digest) and computing each part's own
/// [`PartSums`], so the checksum a part is sent with is known before its
/// first byte goes out. Holds one [`READ_CHUNK`] buffer, never a part.
///
/// The part is then sent by reading its range again
/// ([`SourceFile::stream`]), from the page cache it was just read into.
/// The store verifies each part against the CRC32C computed here, so the
/// digest [`PartHasher::finish`] returns describes exactly the bytes the
/// store accepted.
pub struct PartHasher {
    source: SourceFile,
    hasher: Option<Hasher>,
    buf: Option<Vec<u8>>,
    offset: u64,
    index: u32,
    part_size: u64,
    md5: bool,
}

impl PartHasher {
    /// Parts of `part_size` bytes (the last may be shorter); `md5` adds
    /// each part's MD5 to its sums.
    pub fn new(source: &SourceFile, part_size: u64, md5: bool) -> Self {
        Self {
            source: source.clone(),
            hasher: Some(Hasher::new()),
            buf: Some(Vec::new()),
            offset: 0,
            index: 0,
            part_size: part_size.max(1),
            md5,
        }
    }

    /// Hashes the next part; `None` after the last. A file of 0 bytes has
    /// one empty part.
    pub async fn next(&mut self) -> Result<Option<(PartRange, PartSums)>> {
        let size = self.source.size;
        if self.offset >= size && !(size == 0 && self.index == 0) {
            return Ok(None);
        }
        let range = PartRange {
            index: self.index,
            offset: self.offset,
            len: self.part_size.min(size - self.offset),
        };
        let (Some(mut hasher), Some(mut buf)) = (self.hasher.take(), self.buf.take()) else {
            return Err(Error::local(
                self.source.path(),
                std::io::Error::other("hashing stopped by an earlier failure"),
            ));
        };
        let file = self.source.file.clone();
        let md5 = self.md5;
        let (hasher, buf, sums) = tokio::task::spawn_blocking(move || {
            use md5::Digest as _;
            buf.resize(READ_CHUNK.min(range.len as usize), 0);
            let mut crc = 0u32;
            let mut md5 = md5.then(md5::Md5::new);
            let mut at = range.offset;
            let end = range.offset + range.len;
            while at < end {
                let want = ((end - at) as usize).min(buf.len());
                let chunk = &mut buf[..want];
                file.read_exact_at(chunk, at)?;
                hasher.update(chunk);
                crc = crc32c::crc32c_append(crc, chunk);
                if let Some(md5) = md5.as_mut() {
                    md5.update(&*chunk);
                }
                at += want as u64;
            }
            let md5 = md5.map(|m| m.finalize().into());
            Ok::<_, std::io::Error>((hasher, buf, PartSums { crc32c: crc, md5 }))
        })
        .await
        .map_err(|e| Error::local(self.source.path(), std::io::Error::other(e)))?
        .map_err(|e| Error::local(self.source.path(), e))?;
        self.hasher = Some(hasher);
        self.buf = Some(buf);
        self.offset += range.len;
        self.index += 1;
        Ok(Some((range, sums)))
    }

    /// Hashes a file that is sent as one part: its only part's range and
    /// sums (`md5` adds the part's MD5), and the file's digest.
    pub async fn whole(source: &SourceFile, md5: bool) -> Result<(PartRange, PartSums, Digest)> {
        let mut hasher = Self::new(source, source.size(), md5);
        let Some((range, sums)) = hasher.next().await? else {
            return Err(Error::local(
                source.path(),
                std::io::Error::other("no part to send"),
            ));
        };
        Ok((range, sums, hasher.finish().await?))
    }

    /// The digest of the whole file. Fails if the file grew or shrank
    /// since it was opened (an SSTable never does; anything else is unsafe
    /// to back up as is).
    pub async fn finish(mut self) -> Result<Digest> {
        let Some(hasher) = self.hasher.take() else {
            return Err(Error::local(
                self.source.path(),
                std::io::Error::other("hashing stopped by an earlier failure"),
            ));
        };
        let digest = hasher.finish();
        self.source.check_size(digest.size).await?;
        Ok(digest)
    }
}

/// A name beside `dest` for the download in progress; listing and cleanup
/// recognise it by [`TEMP_MARKER`].
pub fn temp_path_for(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nonce: u64 = rand::random();
    dest.with_file_name(format!(".{name}{TEMP_MARKER}{nonce:016x}"))
}

/// Part of every temporary file name kassette creates.
pub const TEMP_MARKER: &str = ".kassette-tmp-";

/// Writes `chunks` to a temporary file beside `dest`, hashing as it goes;
/// renames it to `dest` only when size and BLAKE3 match `expected`.
///
/// The file is not fsynced: a restore syncs its staging directory once,
/// before anything is imported, which costs one flush instead of one per
/// file. The rename still guarantees that a mismatching download never
/// appears under its name.
pub async fn write_verified<S>(
    key: &str,
    dest: &Path,
    expected: &Digest,
    mut chunks: S,
    limits: &Limits,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    if let Some(dir) = dest.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::local(dir, e))?;
    }
    let temp = temp_path_for(dest);
    let result = async {
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| Error::local(&temp, e))?;
        // Network chunks are small (16 KiB and less); writing them
        // READ_CHUNK at a time saves a blocking-pool round trip per chunk.
        let mut file = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            limits.bandwidth(chunk.len() as u64).await;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::local(&temp, e))?;
        }
        file.flush().await.map_err(|e| Error::local(&temp, e))?;
        let actual = Digest {
            size,
            blake3: *hasher.finalize().as_bytes(),
            crc32c: 0,
        };
        check_digest(key, expected, &actual)
    }
    .await;
    match result {
        Ok(()) => tokio::fs::rename(&temp, dest)
            .await
            .map_err(|e| Error::local(dest, e)),
        Err(err) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(err)
        }
    }
}

/// Bytes buffered before each write of a download.
const WRITE_BUFFER: usize = READ_CHUNK;

/// Turns a page fetcher into a stream of objects, fetching the next page only
/// when the previous one has been consumed: one page in memory at a time.
/// `fetch(token)` returns a page and the token of the next one, if any.
pub fn paginate<'a, F, Fut>(fetch: F) -> BoxStream<'a, Result<ObjectMeta>>
where
    F: Fn(Option<String>) -> Fut + Send + 'a,
    Fut: Future<Output = Result<(Vec<ObjectMeta>, Option<String>)>> + Send + 'a,
{
    // State: the current page's items, and the next page's token — `None`
    // once the last page has been fetched.
    let start: (VecDeque<ObjectMeta>, Option<Option<String>>) = (VecDeque::new(), Some(None));
    futures::stream::unfold(
        (start, fetch),
        |((mut items, mut next), fetch)| async move {
            loop {
                if let Some(item) = items.pop_front() {
                    return Some((Ok(item), ((items, next), fetch)));
                }
                let token = next.take()?;
                match fetch(token).await {
                    Ok((page, following)) => {
                        items.extend(page);
                        next = following.map(Some);
                    }
                    Err(err) => return Some((Err(err), ((items, None), fetch))),
                }
            }
        },
    )
    .boxed()
}

/// Compares a computed digest with the expected one.
pub fn check_digest(key: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if !actual.same_content(expected) {
        return Err(Error::Corrupt {
            key: key.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_any_file_up_to_5_tib_in_10000_parts() {
        assert_eq!(part_size_for(0), MIN_PART_SIZE);
        assert_eq!(part_size_for(MIN_PART_SIZE * MAX_PARTS), MIN_PART_SIZE);
        let five_tib = 5u64 << 40;
        let part = part_size_for(five_tib);
        assert!(five_tib.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % (1 << 20), 0);
        assert!(part <= 5 << 30, "S3 parts are at most 5 GiB");
    }

    #[tokio::test]
    async fn a_download_that_does_not_match_never_appears() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out");
        let expected = super::super::digest_of(b"good");
        let chunks = futures::stream::iter([Ok(Bytes::from_static(b"evil"))]);
        let limits = Limits::unlimited_for_tests();
        let err = write_verified("k", &dest, &expected, chunks, &limits)
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { ref key, .. } if key == "k"),
            "{err}"
        );
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp file left behind"
        );

        let chunks =
            futures::stream::iter([Ok(Bytes::from_static(b"go")), Ok(Bytes::from_static(b"od"))]);
        write_verified("k", &dest, &expected, chunks, &limits)
            .await
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"good");
    }

    #[tokio::test]
    async fn parts_are_hashed_in_order_and_streamed_from_their_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(READ_CHUNK * 3 + 17))
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let source = SourceFile::open(&path).await.unwrap();
        let part = (READ_CHUNK + 100) as u64;
        let mut hasher = PartHasher::new(&source, part, true);
        let mut parts = Vec::new();
        while let Some(next) = hasher.next().await.unwrap() {
            parts.push(next);
        }
        assert_eq!(parts.len(), 3);
        for (i, (range, sums)) in parts.iter().enumerate() {
            let bytes = &data[range.offset as usize..(range.offset + range.len) as usize];
            assert_eq!(range.index as usize, i);
            assert_eq!(sums.crc32c, crc32c::crc32c(bytes), "part {i} CRC32C");
            use md5::Digest as _;
            let md5: [u8; 16] = md5::Md5::digest(bytes).into();
            assert_eq!(sums.md5, Some(md5), "part {i} MD5");
            // Streamed twice (a retry): the same bytes each time.
            for _ in 0..2 {
                let chunks: Vec<Bytes> = source.stream(*range).map(|c| c.unwrap()).collect().await;
                assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
                assert!(chunks.concat() == bytes, "part {i} streamed other bytes");
            }
        }
        assert_eq!(
            parts.iter().map(|(r, _)| r.len).sum::<u64>(),
            data.len() as u64
        );
        assert_eq!(
            hasher.finish().await.unwrap(),
            super::super::digest_of(&data)
        );
    }

    use std::io::Write as _;

    #[tokio::test]
    async fn an_empty_file_is_one_empty_part_and_a_grown_file_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        let source = SourceFile::open(&path).await.unwrap();
        let mut hasher = PartHasher::new(&source, MIN_PART_SIZE, false);
        let (range, _) = hasher.next().await.unwrap().unwrap();
        assert_eq!((range.offset, range.len), (0, 0));
        assert!(hasher.next().await.unwrap().is_none());
        assert_eq!(hasher.finish().await.unwrap(), super::super::digest_of(b""));

        std::fs::write(&path, b"abc").unwrap();
        let source = SourceFile::open(&path).await.unwrap();
        let mut hasher = PartHasher::new(&source, MIN_PART_SIZE, false);
        while hasher.next().await.unwrap().is_some() {}
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"d")
            .unwrap();
        let err = hasher.finish().await.unwrap_err();
        assert!(err.to_string().contains("changed size"), "{err}");
    }
}
