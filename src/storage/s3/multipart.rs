//! Multipart uploads of the S3 backend: the file is hashed part by part in
//! order (BLAKE3 + CRC32C of the whole file, CRC32C of each part) and each
//! part is streamed from the file to UploadPart with its CRC32C, so the
//! store refuses a damaged part. No part is held in memory: a part is
//! read from the file again for each attempt (the file is an immutable
//! SSTable, and the store checks the bytes against the CRC32C computed
//! while hashing). A failed upload is aborted; uploads orphaned by a killed
//! process are found and aborted by [`S3Store::abort_stale_uploads`].

use std::time::{Duration, SystemTime};

use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;

use super::S3Store;
use super::errors::classify;
use crate::storage::PendingUpload;
use crate::storage::digest::{Digest, crc32c_base64};
use crate::storage::error::{Error, Result};
use crate::storage::key::full_name;
use crate::storage::transfer::{PartHasher, PartRange, SourceFile, part_size_for};

impl S3Store {
    /// Aborts multipart uploads of keys starting with `prefix` (relative to
    /// the store's root) started more than `older_than` ago: leftovers of
    /// killed processes, which S3 bills for and never shows in listings.
    /// Returns how many were aborted.
    ///
    /// MinIO lists uploads only for an exact object key (and expires stale
    /// uploads itself after 24 h); AWS S3 and Ceph accept any prefix.
    pub async fn abort_stale_uploads(&self, prefix: &str, older_than: Duration) -> Result<usize> {
        let stale = self.list_stale_uploads(prefix, older_than).await?;
        for upload in &stale {
            self.abort(&upload.name, &upload.id).await;
        }
        Ok(stale.len())
    }

    /// Multipart uploads of keys starting with `prefix` (relative to the
    /// store's root) initiated before now − `older_than`.
    pub(super) async fn list_stale_uploads(
        &self,
        prefix: &str,
        older_than: Duration,
    ) -> Result<Vec<PendingUpload>> {
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let prefix = full_name(&self.root, prefix);
        let mut stale = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .retry
                .run("list multipart uploads", || async {
                    self.client
                        .list_multipart_uploads()
                        .bucket(&self.bucket)
                        .prefix(&prefix)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                        .await
                        .map_err(|e| classify("list multipart uploads", &prefix, e))
                })
                .await?;
            for upload in page.uploads() {
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                if started.is_some_and(|t| t < cutoff)
                    && let (Some(key), Some(id)) = (upload.key(), upload.upload_id())
                {
                    stale.push(PendingUpload {
                        name: key.to_string(),
                        id: id.to_string(),
                        started,
                    });
                }
            }
            if page.is_truncated() != Some(true) {
                return Ok(stale);
            }
            key_marker = page.next_key_marker().map(String::from);
            id_marker = page.next_upload_id_marker().map(String::from);
        }
    }

    /// Best-effort abort; a failure only leaves work for
    /// [`S3Store::abort_stale_uploads`].
    async fn abort(&self, name: &str, upload_id: &str) {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(name)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(err) = result {
            tracing::warn!(key = name, error = %classify("abort upload", name, err), "could not abort multipart upload");
        }
    }

    /// Uploads a file of more than one part; returns the digest of the
    /// bytes the store accepted.
    pub(super) async fn put_multipart(&self, name: &str, source: &SourceFile) -> Result<Digest> {
        let part_size = part_size_for(source.size());
        let created = self
            .retry
            .run("create multipart upload", || async {
                let request = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(name)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C);
                with_object_settings!(request, self)
                    .send()
                    .await
                    .map_err(|e| classify("create multipart upload", name, e))
            })
            .await?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                Error::permanent("create multipart upload", name, "no upload id returned")
            })?
            .to_string();
        let mut hasher = PartHasher::new(source, part_size, false);
        let completed = match self.send_parts(name, &upload_id, source, &mut hasher).await {
            Ok(parts) => match hasher.finish().await {
                Ok(digest) => self
                    .complete(name, &upload_id, parts)
                    .await
                    .map(|()| digest),
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        };
        if completed.is_err() {
            self.abort(name, &upload_id).await;
        }
        completed
    }

    /// Hashes parts in order and uploads them concurrently; returns them
    /// sorted by part number. A part is hashed only once a concurrency
    /// slot is free, and that slot carries its first attempt: at most
    /// `KASSETTE_CONCURRENCY` parts are between hashing and sent, process-wide.
    async fn send_parts(
        &self,
        name: &str,
        upload_id: &str,
        source: &SourceFile,
        hasher: &mut PartHasher,
    ) -> Result<Vec<CompletedPart>> {
        let mut tasks: JoinSet<Result<CompletedPart>> = JoinSet::new();
        let mut parts = Vec::new();
        loop {
            let slot = self.limits.slot().await;
            let Some((range, sums)) = hasher.next().await? else {
                break;
            };
            let store = self.clone();
            let (task_name, task_id, task_source) =
                (name.to_string(), upload_id.to_string(), source.clone());
            tasks.spawn(async move {
                store
                    .upload_part(&task_name, &task_id, &task_source, range, sums.crc32c, slot)
                    .await
            });
            // Collect finished parts as we go so an early failure stops the
            // upload instead of reading the rest of the file.
            while let Some(done) = tasks.try_join_next() {
                parts.push(joined(done, name)?);
            }
        }
        while let Some(done) = tasks.join_next().await {
            parts.push(joined(done, name)?);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// Sends one part, streamed from the file; every attempt reads the
    /// part's range again. `slot` is the concurrency slot taken before the
    /// part was hashed: the first attempt uses it, later ones wait for one.
    async fn upload_part(
        &self,
        name: &str,
        upload_id: &str,
        source: &SourceFile,
        range: PartRange,
        crc32c: u32,
        slot: OwnedSemaphorePermit,
    ) -> Result<CompletedPart> {
        let crc = crc32c_base64(crc32c);
        let number = range.index as i32 + 1;
        let mut first = Some(slot);
        let done = self
            .retry
            .run("upload part", || {
                let held = first.take();
                let crc = &crc;
                async move {
                    let _slot = match held {
                        Some(slot) => slot,
                        None => self.limits.slot().await,
                    };
                    self.limits.bandwidth(range.len).await;
                    let request = self
                        .client
                        .upload_part()
                        .bucket(&self.bucket)
                        .key(name)
                        .upload_id(upload_id)
                        .part_number(number)
                        .content_length(range.len as i64)
                        .checksum_crc32_c(crc)
                        .body(super::body(source, range));
                    with_customer_key!(request, self.encryption)
                        .send()
                        .await
                        .map_err(|e| classify("upload part", name, e))
                }
            })
            .await?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(done.e_tag().map(String::from))
            .checksum_crc32_c(crc)
            .build())
    }

    async fn complete(&self, name: &str, upload_id: &str, parts: Vec<CompletedPart>) -> Result<()> {
        let upload = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.retry
            .run("complete multipart upload", || async {
                let request = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(name)
                    .upload_id(upload_id)
                    .multipart_upload(upload.clone());
                // S3 wants the SSE-C key again when parts carried checksums.
                with_customer_key!(request, self.encryption)
                    .send()
                    .await
                    .map_err(|e| classify("complete multipart upload", name, e))
            })
            .await
            .map(|_| ())
    }
}

/// The outcome of a part upload task.
fn joined(
    done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
    name: &str,
) -> Result<CompletedPart> {
    done.map_err(|join| Error::permanent("upload part", name, &join.to_string()))?
}
