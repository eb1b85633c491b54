//! The seal verifier (`kassette::catalog::seal`): any bytes give a verdict,
//! never a panic; sealing any JSON object gives bytes that verify and are
//! still the same JSON; one byte changed anywhere in sealed bytes never
//! verifies; a record of a sealed kind that parses at format version 2 or
//! later carries a valid seal.
#![no_main]

use kassette::catalog::manifest::{Record, SEALED_SINCE};
use kassette::catalog::seal::{self, Sealed};
use kassette::catalog::{BackupManifest, Index, LockRecord, StartedRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Sealed bytes verify; the same bytes with one byte changed (where and
/// how, taken from `data`) never do.
fn sealed_holds(sealed: &[u8], data: &[u8]) {
    assert_eq!(seal::check(sealed), Ok(Sealed::Valid));
    let at = data
        .iter()
        .fold(7usize, |a, b| a.wrapping_mul(31).wrapping_add(usize::from(*b)))
        % sealed.len();
    let change = data.first().copied().unwrap_or(1).max(1);
    let mut changed = sealed.to_vec();
    changed[at] ^= change;
    assert_ne!(seal::check(&changed), Ok(Sealed::Valid), "byte {at} xor {change}");
}

fn parses_only_sealed<R: Record>(data: &[u8]) {
    if let Ok(record) = R::from_json(data)
        && record.format_version() >= SEALED_SINCE
    {
        assert_eq!(seal::check(data), Ok(Sealed::Valid));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = seal::check(data);
    // Whatever the bytes between the braces, sealing is hashing.
    if let Ok(sealed) = seal::seal(data) {
        sealed_holds(&sealed, data);
    }
    if let Ok(object) = serde_json::from_slice::<Map<String, Value>>(data)
        && !object.contains_key(seal::FIELD)
    {
        let json = serde_json::to_vec_pretty(&object).unwrap();
        let sealed = seal::seal(&json).unwrap();
        sealed_holds(&sealed, data);
        let mut back: Map<String, Value> = serde_json::from_slice(&sealed).unwrap();
        assert!(back.remove(seal::FIELD).is_some());
        assert_eq!(back, object);
    }
    parses_only_sealed::<BackupManifest>(data);
    parses_only_sealed::<Index>(data);
    parses_only_sealed::<LockRecord>(data);
    parses_only_sealed::<StartedRecord>(data);
});
