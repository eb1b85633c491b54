//! Storage benchmark driver for `make bench` (see scripts/bench.sh).
//!
//!     storage_bench kassette upload   DIR PREFIX DIGESTS.json
//!     storage_bench kassette download DIR PREFIX DIGESTS.json
//!     storage_bench raw      upload   DIR PREFIX
//!     storage_bench raw      download DIR PREFIX
//!     storage_bench kassette delete   -    PREFIX
//!     storage_bench kassette create   -    -        (Azure: the container)
//!
//! `kassette` moves the files through kassette's storage layer (checksums,
//! limits, retries, verified downloads), configured by the usual
//! `KASSETTE_STORAGE_*` / `KASSETTE_CONCURRENCY` variables. `raw` is the
//! baseline: the same bytes, the same server, the same part size and
//! concurrency, straight through the backend's client with no kassette
//! logic — `aws-sdk-s3` for S3; for Azure, single signed `reqwest` requests
//! (Put Blob, Put Block + Put Block List, Get Blob) with no checksums,
//! retries or limits. Both print one JSON line: files, bytes, seconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use kassette::cli::StorageArgs;
use kassette::config::{Backend, StorageConfig};
use kassette::storage::{self, Digest, MIN_PART_SIZE, ObjectKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

#[derive(Parser)]
struct Args {
    /// `kassette` or `raw`.
    engine: String,
    /// `upload` or `download`.
    operation: String,
    dir: PathBuf,
    prefix: String,
    /// Where `kassette upload` records digests for `kassette download`.
    digests: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if args.engine == "kassette" {
        // As the kassette binary sets itself up (allocator, runtime), so the
        // peak RSS measured is the agent's; the raw baseline keeps the
        // defaults anyone would start from.
        kassette::tune_allocator();
        runtime.max_blocking_threads(kassette::MAX_BLOCKING_THREADS);
    }
    runtime.build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = StorageConfig::from_args(&args.storage)?;
    let concurrency = config.limits.concurrency as usize;
    let start = Instant::now();
    let azure = matches!(config.backend, Backend::Azure(_));
    let (files, bytes) = match (args.engine.as_str(), args.operation.as_str()) {
        ("kassette", "upload") => kassette_upload(&config, &args, concurrency).await?,
        ("kassette", "download") => kassette_download(&config, &args, concurrency).await?,
        ("kassette", "create") => {
            azure_raw::store(&config).await?.create_container().await?;
            (0, 0)
        }
        ("raw", "upload") if azure => azure_raw::upload(&config, &args, concurrency).await?,
        ("raw", "download") if azure => azure_raw::download(&config, &args, concurrency).await?,
        ("raw", "upload") => raw_upload(&args, concurrency).await?,
        ("raw", "download") => raw_download(&args, concurrency).await?,
        ("kassette", "delete") => kassette_delete(&config, &args).await?,
        other => bail!("unknown engine/operation {other:?}"),
    };
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({"files": files, "bytes": bytes, "seconds": seconds})
    );
    Ok(())
}

fn files_in(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

async fn kassette_upload(
    config: &StorageConfig,
    args: &Args,
    concurrency: usize,
) -> Result<(usize, u64)> {
    let store = storage::open(config).await?;
    let files = files_in(&args.dir)?;
    let digests: BTreeMap<String, Digest> = futures::stream::iter(files)
        .map(|(name, path)| {
            let store = store.clone();
            let key = ObjectKey::new(format!("{}/{name}", args.prefix));
            async move {
                let digest = store.put_file(&key?, &path).await?;
                anyhow::Ok((name, digest))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let bytes = digests.values().map(|d| d.size).sum();
    let path = args.digests.as_ref().context("digests file required")?;
    std::fs::write(path, serde_json::to_vec(&digests)?)?;
    Ok((digests.len(), bytes))
}

async fn kassette_download(
    config: &StorageConfig,
    args: &Args,
    concurrency: usize,
) -> Result<(usize, u64)> {
    let store = storage::open(config).await?;
    let path = args.digests.as_ref().context("digests file required")?;
    let digests: BTreeMap<String, Digest> = serde_json::from_slice(&std::fs::read(path)?)?;
    std::fs::create_dir_all(&args.dir)?;
    let count = digests.len();
    let bytes = digests.values().map(|d| d.size).sum();
    futures::stream::iter(digests)
        .map(|(name, digest)| {
            let store = store.clone();
            let dest = args.dir.join(&name);
            let key = ObjectKey::new(format!("{}/{name}", args.prefix));
            async move { anyhow::Ok(store.get_file(&key?, &dest, &digest).await?) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok((count, bytes))
}

/// Deletes everything under the prefix, so runs do not pile up in the store.
async fn kassette_delete(config: &StorageConfig, args: &Args) -> Result<(usize, u64)> {
    let store = storage::open(config).await?;
    let objects: Vec<_> = store
        .list(&format!("{}/", args.prefix))
        .try_collect()
        .await?;
    let bytes = objects.iter().map(|o| o.size).sum();
    let keys: Vec<ObjectKey> = objects.into_iter().map(|o| o.key).collect();
    store.delete_many(&keys).await?;
    Ok((keys.len(), bytes))
}

/// The baseline client: the test server, path style, no extra checksums.
fn raw_client() -> Result<(aws_sdk_s3::Client, String)> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} not set"));
    let credentials = aws_sdk_s3::config::Credentials::new(
        var("KASSETTE_TEST_S3_ACCESS_KEY")?,
        var("KASSETTE_TEST_S3_SECRET_KEY")?,
        None,
        None,
        "bench",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(var("KASSETTE_STORAGE_ENDPOINT")?)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Ok((
        aws_sdk_s3::Client::from_conf(config),
        var("KASSETTE_STORAGE_BUCKET")?,
    ))
}

async fn raw_upload(args: &Args, concurrency: usize) -> Result<(usize, u64)> {
    let (client, bucket) = raw_client()?;
    let requests = Arc::new(Semaphore::new(concurrency));
    let files = files_in(&args.dir)?;
    let count = files.len();
    let sizes: Vec<u64> = futures::stream::iter(files)
        .map(|(name, path)| {
            let (client, bucket, requests) = (client.clone(), bucket.clone(), requests.clone());
            let key = format!("{}/{name}", args.prefix);
            async move { raw_upload_file(&client, &bucket, &key, &path, &requests).await }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((count, sizes.iter().sum()))
}

async fn raw_upload_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &Path,
    requests: &Arc<Semaphore>,
) -> Result<u64> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    if size <= MIN_PART_SIZE {
        let mut data = vec![0u8; size as usize];
        file.read_exact(&mut data).await?;
        let _permit = requests.acquire().await?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await?;
        return Ok(size);
    }
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let id = upload.upload_id().context("no upload id")?.to_string();
    let mut tasks = tokio::task::JoinSet::new();
    let mut offset = 0;
    let mut number = 1;
    while offset < size {
        let len = MIN_PART_SIZE.min(size - offset);
        let permit = requests.clone().acquire_owned().await?;
        let mut data = vec![0u8; len as usize];
        file.read_exact(&mut data).await?;
        let (client, bucket, key, id) = (
            client.clone(),
            bucket.to_string(),
            key.to_string(),
            id.clone(),
        );
        tasks.spawn(async move {
            let done = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(data))
                .send()
                .await;
            drop(permit);
            done.map(|d| {
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(d.e_tag().map(String::from))
                    .build()
            })
        });
        offset += len;
        number += 1;
    }
    let mut parts = Vec::new();
    while let Some(part) = tasks.join_next().await {
        parts.push(part??);
    }
    parts.sort_by_key(|p| p.part_number());
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(size)
}

async fn raw_download(args: &Args, concurrency: usize) -> Result<(usize, u64)> {
    let (client, bucket) = raw_client()?;
    std::fs::create_dir_all(&args.dir)?;
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix(format!("{}/", args.prefix))
            .set_continuation_token(token)
            .send()
            .await?;
        listed.extend(page.contents().iter().cloned());
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    let count = listed.len();
    let sizes: Vec<u64> = futures::stream::iter(listed)
        .map(|object| {
            let (client, bucket) = (client.clone(), bucket.clone());
            let key = object.key().unwrap_or_default().to_string();
            let dest = args.dir.join(key.rsplit('/').next().unwrap_or_default());
            async move {
                let mut body = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await?
                    .body;
                let mut file = tokio::fs::File::create(&dest).await?;
                let mut size = 0u64;
                while let Some(chunk) = body.try_next().await? {
                    size += chunk.len() as u64;
                    file.write_all(&chunk).await?;
                }
                anyhow::Ok(size)
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok((count, sizes.iter().sum()))
}

/// The Azure baseline: each request signed and sent as it is.
mod azure_raw {
    use super::*;
    use base64::Engine;
    use bytes::Bytes;
    use kassette::storage::Limits;
    use kassette::storage::azure::AzureStore;
    use reqwest::Method;

    pub async fn store(config: &StorageConfig) -> Result<AzureStore> {
        Ok(AzureStore::open(config, Limits::new(&config.limits)).await?)
    }

    pub async fn upload(
        config: &StorageConfig,
        args: &Args,
        concurrency: usize,
    ) -> Result<(usize, u64)> {
        let store = store(config).await?;
        let requests = Arc::new(Semaphore::new(concurrency));
        let files = files_in(&args.dir)?;
        let count = files.len();
        let sizes: Vec<u64> = futures::stream::iter(files)
            .map(|(name, path)| {
                let (store, requests) = (store.clone(), requests.clone());
                let key = format!("{}/{name}", args.prefix);
                async move { upload_file(&store, &key, &path, &requests).await }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok((count, sizes.iter().sum()))
    }

    async fn upload_file(
        store: &AzureStore,
        key: &str,
        path: &Path,
        requests: &Arc<Semaphore>,
    ) -> Result<u64> {
        let mut file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        if size <= MIN_PART_SIZE {
            let mut data = vec![0u8; size as usize];
            file.read_exact(&mut data).await?;
            let _permit = requests.acquire().await?;
            store
                .send_raw(
                    Method::PUT,
                    key,
                    &[],
                    &[("x-ms-blob-type", "BlockBlob")],
                    Some(data.into()),
                )
                .await?;
            return Ok(size);
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut ids = Vec::new();
        let mut offset = 0;
        while offset < size {
            let len = MIN_PART_SIZE.min(size - offset);
            let permit = requests.clone().acquire_owned().await?;
            let mut data = vec![0u8; len as usize];
            file.read_exact(&mut data).await?;
            let id = base64::engine::general_purpose::STANDARD.encode(format!("{:08}", ids.len()));
            ids.push(id.clone());
            let (store, key) = (store.clone(), key.to_string());
            tasks.spawn(async move {
                let done = store
                    .send_raw(
                        Method::PUT,
                        &key,
                        &[("comp", "block"), ("blockid", &id)],
                        &[],
                        Some(Bytes::from(data)),
                    )
                    .await;
                drop(permit);
                done.map(|_| ())
            });
            offset += len;
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        let list: String = ids
            .iter()
            .map(|id| format!("<Latest>{id}</Latest>"))
            .collect();
        let body =
            format!(r#"<?xml version="1.0" encoding="utf-8"?><BlockList>{list}</BlockList>"#);
        store
            .send_raw(
                Method::PUT,
                key,
                &[("comp", "blocklist")],
                &[],
                Some(Bytes::from(body)),
            )
            .await?;
        Ok(size)
    }

    pub async fn download(
        config: &StorageConfig,
        args: &Args,
        concurrency: usize,
    ) -> Result<(usize, u64)> {
        let store = store(config).await?;
        std::fs::create_dir_all(&args.dir)?;
        // The listing (a few requests) goes through kassette's store; the
        // downloads, which carry the bytes, do not.
        let listed: Vec<String> =
            kassette::storage::Store::list(&store, &format!("{}/", args.prefix))
                .map_ok(|meta| meta.key.to_string())
                .try_collect()
                .await?;
        let count = listed.len();
        let sizes: Vec<u64> = futures::stream::iter(listed)
            .map(|key| {
                let store = store.clone();
                let dest = args.dir.join(key.rsplit('/').next().unwrap_or_default());
                async move {
                    let response = store.send_raw(Method::GET, &key, &[], &[], None).await?;
                    let mut body = response.bytes_stream();
                    let mut file = tokio::fs::File::create(&dest).await?;
                    let mut size = 0u64;
                    while let Some(chunk) = body.try_next().await? {
                        size += chunk.len() as u64;
                        file.write_all(&chunk).await?;
                    }
                    anyhow::Ok(size)
                }
            })
            .buffer_unordered(concurrency)
            .try_collect()
            .await?;
        Ok((count, sizes.iter().sum()))
    }
}
