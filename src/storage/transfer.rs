//! Machinery shared by the backends: part sizing, reading a file in parts
//! while hashing it, and writing a download to a temporary file that is
//! renamed into place only when its digest matches.

use std::path::{Path, PathBuf};

use std::collections::VecDeque;
use std::future::Future;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Reads a local file part by part, feeding every byte to one [`Hasher`],
/// so the digest describes exactly the bytes handed out.
pub struct PartReader {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: Hasher,
    remaining: u64,
}

impl PartReader {
    pub async fn open(path: &Path) -> Result<(Self, u64)> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::local(path, e))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| Error::local(path, e))?
            .len();
        let reader = Self {
            file,
            path: path.to_path_buf(),
            hasher: Hasher::new(),
            remaining: size,
        };
        Ok((reader, size))
    }

    /// The next part of at most `len` bytes; empty at the end of the file.
    pub async fn next_part(&mut self, len: u64) -> Result<Bytes> {
        let want = len.min(self.remaining) as usize;
        let mut buf = BytesMut::zeroed(want);
        self.file
            .read_exact(&mut buf)
            .await
            .map_err(|e| Error::local(&self.path, e))?;
        self.hasher.update(&buf);
        self.remaining -= want as u64;
        Ok(buf.freeze())
    }

    /// The digest of everything read. Fails if the file grew or shrank
    /// since it was opened (an SSTable never does; anything else is unsafe
    /// to back up as is).
    pub async fn finish(mut self, expected_size: u64) -> Result<Digest> {
        let mut probe = [0u8; 1];
        let extra = self
            .file
            .read(&mut probe)
            .await
            .map_err(|e| Error::local(&self.path, e))?;
        let digest = self.hasher.finish();
        if extra != 0 || digest.size != expected_size {
            return Err(Error::local(
                &self.path,
                std::io::Error::other("file changed size while it was being read"),
            ));
        }
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
        // Network chunks are small; writing them 1 MiB at a time saves
        // a blocking-pool round trip per chunk.
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
const WRITE_BUFFER: usize = 1 << 20;

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
}
