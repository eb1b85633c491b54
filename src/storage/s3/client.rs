//! Configuration of the S3 client: region, credentials (the AWS default
//! chain or an INI file), a private CA, timeouts, the SDK's retries off
//! (the crate-wide policy decides), and for a custom endpoint path-style
//! addressing with SDK checksums only where an operation requires them.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::types::StorageClass;

use super::S3Store;
use super::encryption::Encryption;
use super::tls::http_client_trusting;
use crate::config::{Backend, StorageConfig};
use crate::storage::error::{Error, Result};
use crate::storage::limits::Limits;
use crate::storage::retry::RetryPolicy;

impl S3Store {
    /// Builds the client from validated settings; no request is sent.
    pub async fn open(config: &StorageConfig, limits: Limits) -> Result<Self> {
        let Backend::S3 {
            bucket,
            endpoint,
            region,
            credentials_file,
            ca_bundle,
            storage_class,
            encryption,
        } = &config.backend
        else {
            return Err(Error::setup("not an S3 configuration"));
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            // A configured region needs no lookup (the default chain would
            // ask the instance metadata service, and warn where there is none).
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(file) = credentials_file {
            let files = aws_runtime::env_config::file::EnvConfigFiles::builder()
                .with_file(
                    aws_runtime::env_config::file::EnvConfigFileKind::Credentials,
                    file,
                )
                .build();
            let provider = aws_config::profile::ProfileFileCredentialsProvider::builder()
                .profile_files(files)
                .build();
            loader = loader.credentials_provider(provider);
        }
        if let Some(pem) = ca_bundle {
            loader = loader.http_client(http_client_trusting(pem)?);
        }
        let shared = loader.load().await;
        let region = region
            .clone()
            .map(Region::new)
            .or_else(|| shared.region().cloned())
            .unwrap_or_else(|| Region::new("us-east-1"));
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            .region(region)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = endpoint {
            builder = builder
                .endpoint_url(url.as_str().trim_end_matches('/'))
                .force_path_style(true)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        Ok(Self {
            client: Client::from_conf(builder.build()),
            bucket: bucket.clone(),
            root: config.prefix.clone(),
            limits,
            retry: RetryPolicy::default(),
            storage_class: storage_class.as_deref().map(StorageClass::from),
            encryption: Encryption::from_config(encryption),
        })
    }
}
