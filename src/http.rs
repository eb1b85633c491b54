//! Building HTTP clients: a client that cannot be built is an error naming
//! what it was for, never a default client that silently lacks the
//! timeouts, CA certificates or TLS settings it was configured with.

/// A client that could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for {what}: {message}")]
pub struct ClientBuildError {
    pub what: String,
    pub message: String,
}

/// Builds `builder`'s client, or says why not.
pub fn build(
    what: &str,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, ClientBuildError> {
    builder.build().map_err(|e| ClientBuildError {
        what: what.to_string(),
        message: crate::storage::error_chain(&e),
    })
}

/// Reads a response body whole, up to `max` bytes: a longer one is an
/// error (saying how long) as soon as it passes the limit, so a misbehaving
/// peer cannot make kassette allocate without bound.
pub async fn read_capped(mut response: reqwest::Response, max: u64) -> Result<Vec<u8>, String> {
    let too_large = |size: u64| format!("{size} bytes or more, larger than the {max} allowed");
    if let Some(size) = response.content_length()
        && size > max
    {
        return Err(too_large(size));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| crate::storage::error_chain(&e))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_large((body.len() + chunk.len()) as u64));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_cannot_be_built_is_an_error() {
        // A TLS configuration reqwest does not know makes `build` fail.
        let builder = reqwest::Client::builder().tls_backend_preconfigured(());
        let err = build("the agent at 10.0.0.1:7300", builder).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot build the HTTP client for the agent at 10.0.0.1:7300"),
            "{err}"
        );
    }
}
