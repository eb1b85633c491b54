//! The seal: a record's checksum of itself, so that damage that leaves a
//! record valid JSON (a digit of a count, a letter of the backed-up schema,
//! a keyspace name) is found like any other damage.
//!
//! A sealed record is a JSON object whose **last member** is
//! `"seal": "<64 lowercase hex>"`, written exactly as the trailer
//! `"seal": "<hex>"` + `\n}` at the very end of the bytes. The hex is the
//! BLAKE3 of the record's exact bytes with those 64 characters replaced by
//! `0`. No canonical JSON is needed: the reader hashes the bytes it read,
//! not a re-serialisation. Because the trailer is anchored at the end and a
//! JSON string cannot hold an unescaped `"`, the trailer can never be
//! found inside a string value.
//!
//! [`check`] says whether the bytes carry a seal and, if they do, whether
//! it matches; which records must carry one (format version 2 and later of
//! the backup manifest, index, lease and start record) is decided by the
//! record types in [`super::manifest`]. `docs/storage-format.md`, "Seal",
//! is the specification.

/// The field that carries the seal.
pub const FIELD: &str = "seal";

/// Length of the seal's value: a BLAKE3 hash in hex.
const HEX_LEN: usize = 64;

/// What comes before the hex in the trailer.
const OPEN: &[u8] = b"\"seal\": \"";
/// What comes after it: the end of the record.
const CLOSE: &[u8] = b"\"\n}";

/// Why a seal is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The bytes are not what was sealed: damaged after writing.
    #[error("damaged: its seal (BLAKE3 {sealed}) does not match its bytes (BLAKE3 {actual})")]
    Mismatch { sealed: String, actual: String },
    /// A record of a version that is always sealed has no seal (or one not
    /// written as the record's last member): damaged after writing.
    #[error(
        "damaged: format version {version} records end with a \"seal\" member, and this one does not"
    )]
    Missing { version: u32 },
    /// [`seal`] was given something other than a JSON object.
    #[error("cannot seal: not a JSON object")]
    NotAnObject,
}

/// Whether a record carries a seal (one that matched: a seal that does not
/// match is a [`SealError::Mismatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// It carries a seal and its bytes match it.
    Valid,
    /// It carries no seal (records of format version 1 never do).
    Absent,
}

/// Appends the seal to the bytes of a JSON object (as `serde_json` writes
/// it: ending in `}`, no member named `seal`).
pub fn seal(json: &[u8]) -> Result<Vec<u8>, SealError> {
    let end = trim_end(json);
    if end == 0 || json[end - 1] != b'}' {
        return Err(SealError::NotAnObject);
    }
    let body_end = trim_end(&json[..end - 1]);
    let body = &json[..body_end];
    if body.first() != Some(&b'{') {
        return Err(SealError::NotAnObject);
    }
    let mut out = Vec::with_capacity(body_end + OPEN.len() + HEX_LEN + CLOSE.len() + 4);
    out.extend_from_slice(body);
    if body != b"{" {
        out.push(b',');
    }
    out.extend_from_slice(b"\n  ");
    out.extend_from_slice(OPEN);
    let at = out.len();
    out.resize(at + HEX_LEN, b'0');
    out.extend_from_slice(CLOSE);
    let hex = blake3::hash(&out).to_hex();
    out[at..at + HEX_LEN].copy_from_slice(hex.as_bytes());
    Ok(out)
}

/// Checks the seal of `bytes`: [`Sealed::Valid`] if the trailer is there
/// and matches, [`Sealed::Absent`] if there is no trailer, an error if it
/// is there and does not match.
pub fn check(bytes: &[u8]) -> Result<Sealed, SealError> {
    let Some(at) = hex_position(bytes) else {
        return Ok(Sealed::Absent);
    };
    let sealed = &bytes[at..at + HEX_LEN];
    let mut hasher = blake3::Hasher::new();
    hasher.update(&bytes[..at]);
    hasher.update(&[b'0'; HEX_LEN]);
    hasher.update(&bytes[at + HEX_LEN..]);
    let actual = hasher.finalize().to_hex();
    if actual.as_bytes() == sealed {
        Ok(Sealed::Valid)
    } else {
        Err(SealError::Mismatch {
            sealed: String::from_utf8_lossy(sealed).into_owned(),
            actual: actual.to_string(),
        })
    }
}

/// Where the seal's hex starts, if `bytes` end with the trailer.
fn hex_position(bytes: &[u8]) -> Option<usize> {
    let before_close = bytes.len().checked_sub(CLOSE.len())?;
    if &bytes[before_close..] != CLOSE {
        return None;
    }
    let at = before_close.checked_sub(HEX_LEN)?;
    let hex = &bytes[at..before_close];
    if !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let open = at.checked_sub(OPEN.len())?;
    (&bytes[open..at] == OPEN).then_some(at)
}

/// The length of `bytes` without trailing JSON whitespace.
fn trim_end(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{
  "format_version": 2,
  "name": "n1",
  "bytes": 42
}"#;

    #[test]
    fn a_sealed_record_checks_and_is_still_the_same_json() {
        let sealed = seal(RECORD.as_bytes()).unwrap();
        assert_eq!(check(&sealed), Ok(Sealed::Valid));
        let value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(value["bytes"], 42);
        assert_eq!(value[FIELD].as_str().unwrap().len(), HEX_LEN);
        let text = String::from_utf8(sealed).unwrap();
        assert!(text.ends_with("\"\n}"), "{text}");
        // An empty object can be sealed too.
        let empty = seal(b"{}").unwrap();
        assert_eq!(check(&empty), Ok(Sealed::Valid));
        assert!(serde_json::from_slice::<serde_json::Value>(&empty).is_ok());
    }

    #[test]
    fn unsealed_records_and_non_objects() {
        assert_eq!(check(RECORD.as_bytes()), Ok(Sealed::Absent));
        assert_eq!(check(b""), Ok(Sealed::Absent));
        assert_eq!(check(b"\"\n}"), Ok(Sealed::Absent));
        for bad in [&b""[..], b"[]", b"  ", b"}", b"{", b"x}"] {
            assert_eq!(seal(bad), Err(SealError::NotAnObject), "{bad:?}");
        }
    }

    /// Every single-byte change of a sealed record, to every other value,
    /// is found: the seal no longer matches, or there is no seal any more.
    #[test]
    fn every_single_byte_change_is_found() {
        let sealed = seal(RECORD.as_bytes()).unwrap();
        let mut changed = sealed.clone();
        let mut tried = 0;
        for i in 0..sealed.len() {
            for x in 1..=255u8 {
                changed[i] = sealed[i] ^ x;
                assert_ne!(
                    check(&changed),
                    Ok(Sealed::Valid),
                    "byte {i} xor {x:#04x} not found"
                );
                tried += 1;
            }
            changed[i] = sealed[i];
        }
        assert_eq!(tried, sealed.len() * 255);
    }

    #[test]
    fn the_seal_is_the_blake3_of_the_bytes_with_the_seal_zeroed() {
        let sealed = seal(RECORD.as_bytes()).unwrap();
        let at = hex_position(&sealed).unwrap();
        let mut zeroed = sealed.clone();
        zeroed[at..at + HEX_LEN].fill(b'0');
        assert_eq!(
            blake3::hash(&zeroed).to_hex().as_bytes(),
            &sealed[at..at + HEX_LEN]
        );
    }
}
