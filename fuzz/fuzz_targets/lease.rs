//! Lease records and lease keys as read from storage: any bytes give a
//! record (or a sequence number) or an error, never a panic.
#![no_main]

use kassette::catalog::manifest::Record;
use kassette::catalog::{Layout, LockRecord};
use kassette::storage::ObjectKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(lock) = LockRecord::from_json(data) {
        let _ = lock.is_expired(jiff::Timestamp::now());
        let again = LockRecord::from_json(&lock.to_json().unwrap()).unwrap();
        assert_eq!(again, lock);
    }
    // A listed key under `locks/`: a sequence number or nothing.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(layout) = Layout::new("prod", "dc1")
        && let Ok(key) = ObjectKey::new(format!("kassette/v1/prod/dc1/locks/{text}"))
        && let Some(sequence) = layout.lock_sequence(&key)
    {
        assert!(layout.lock(sequence).is_ok());
    }
});
