//! Blob Batch: up to 256 Delete Blob subrequests in one `multipart/mixed`
//! request, each authorised on its own, each answered with its own status.

/// Subrequests per batch (the service's limit).
pub(crate) const MAX_BATCH: usize = 256;

/// One subrequest: the blob's URL path and query without the leading `/`
/// (`container/name`, percent-encoded) and its already computed headers.
pub(crate) struct SubRequest {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

/// The body of a batch request.
pub(crate) fn body(boundary: &str, requests: &[SubRequest]) -> Vec<u8> {
    let mut out = String::new();
    for (id, request) in requests.iter().enumerate() {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {id}\r\n\r\nDELETE /{} HTTP/1.1\r\n",
            request.path
        ));
        for (name, value) in &request.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n\r\n");
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

/// The status of each subrequest, by its Content-ID, from a batch response
/// body with the given boundary. `None` when the body cannot be read.
pub(crate) fn statuses(boundary: &str, body: &str, count: usize) -> Option<Vec<u16>> {
    let mut out = vec![0u16; count];
    let marker = format!("--{boundary}");
    for part in body.split(marker.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let id: usize = header_value(part, "content-id")?.parse().ok()?;
        let status = part
            .lines()
            .find_map(|line| line.strip_prefix("HTTP/1.1 "))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        *out.get_mut(id)? = status;
    }
    out.iter().all(|s| *s != 0).then_some(out)
}

fn header_value<'a>(part: &'a str, name: &str) -> Option<&'a str> {
    part.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The boundary of a `multipart/mixed; boundary=…` content type.
pub(crate) fn boundary_of(content_type: &str) -> Option<&str> {
    content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_and_response_statuses() {
        let body = body(
            "batch_x",
            &[SubRequest {
                path: "c/a%20b".into(),
                headers: vec![("x-ms-date".into(), "D".into())],
            }],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--batch_x\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 0\r\n\r\nDELETE /c/a%20b HTTP/1.1\r\nx-ms-date: D\r\n\r\n\r\n--batch_x--\r\n"
        );
        let response = "--batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 1\r\n\r\nHTTP/1.1 404 The specified blob does not exist.\r\nx-ms-error-code: BlobNotFound\r\n\r\n\
                        --batchresponse_1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\nHTTP/1.1 202 Accepted\r\n\r\n--batchresponse_1--\r\n";
        assert_eq!(
            statuses("batchresponse_1", response, 2),
            Some(vec![202, 404])
        );
        assert_eq!(statuses("batchresponse_1", response, 3), None);
        assert_eq!(
            boundary_of("multipart/mixed; boundary=batchresponse_1"),
            Some("batchresponse_1")
        );
    }
}
