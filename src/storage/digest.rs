//! Checksums computed in the same pass that reads or writes the bytes.
//!
//! Two sums, each for its job: CRC32C is what both S3 (`x-amz-checksum-crc32c`)
//! and GCS (`crc32c`) verify on arrival, so a damaged upload is rejected by
//! the store itself; BLAKE3 (a 256-bit cryptographic hash) identifies content
//! in manifests and is what downloads and `verify --deep` check. BLAKE3
//! rather than SHA-256 because it is 2.7× faster here (4.8 vs 1.8 GB/s on one
//! core with SHA-NI), and on a busy Cassandra node every cycle the backup
//! spends hashing is taken from the database. CRC32C runs at ~15 GB/s.

use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The identity of a file's content: its size and checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Digest {
    pub size: u64,
    #[serde(with = "hex_bytes")]
    pub blake3: [u8; 32],
    pub crc32c: u32,
}

impl Digest {
    /// The BLAKE3 hash as lowercase hex.
    pub fn blake3_hex(&self) -> String {
        hex::encode(self.blake3)
    }

    /// Whether `other` describes the same content (size and BLAKE3).
    pub fn same_content(&self, other: &Digest) -> bool {
        self.size == other.size && self.blake3 == other.blake3
    }

    /// The CRC32C the way S3 and GCS headers carry it: base64 of the
    /// big-endian bytes.
    pub fn crc32c_base64(&self) -> String {
        crc32c_base64(self.crc32c)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes, blake3 {}", self.size, self.blake3_hex())
    }
}

/// Base64 of a CRC32C's big-endian bytes (the S3 and GCS wire form).
pub fn crc32c_base64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Parses the wire form back; `None` when it is not 4 base64 bytes.
pub fn crc32c_from_base64(text: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Accumulates a [`Digest`] over bytes fed in order.
#[derive(Clone, Default)]
pub struct Hasher {
    blake3: blake3::Hasher,
    crc32c: u32,
    size: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        self.crc32c = crc32c::crc32c_append(self.crc32c, bytes);
        self.size += bytes.len() as u64;
    }

    pub fn finish(self) -> Digest {
        Digest {
            size: self.size,
            blake3: *self.blake3.finalize().as_bytes(),
            crc32c: self.crc32c,
        }
    }
}

/// Digest of an in-memory buffer.
pub fn digest_of(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::new();
    hasher.update(bytes);
    hasher.finish()
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let d = digest_of(b"123456789");
        // The CRC32C check value from RFC 3720.
        assert_eq!(d.crc32c, 0xE306_9283);
        assert_eq!(crc32c_from_base64(&d.crc32c_base64()), Some(d.crc32c));
        // BLAKE3 of the empty input, from the BLAKE3 specification.
        assert_eq!(
            digest_of(b"").blake3_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn incremental_equals_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        let mut h = Hasher::new();
        for chunk in data.chunks(777) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), digest_of(&data));
    }

    #[test]
    fn serde_uses_hex() {
        let d = digest_of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains(&d.blake3_hex()));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
