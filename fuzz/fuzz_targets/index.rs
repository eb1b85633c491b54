//! The index as read from storage: any bytes give an index or an error,
//! never a panic; an index that parses names only valid backups and
//! survives a round trip.
#![no_main]

use kassette::catalog::manifest::Record;
use kassette::catalog::{Index, names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = Index::from_json(data) {
        for entry in &index.backups {
            assert!(names::check_backup_name(&entry.name).is_ok());
        }
        let sorted = Index::new(index.backups.clone());
        let _ = sorted.latest();
        let again = Index::from_json(&index.to_json().unwrap()).unwrap();
        assert_eq!(again, index);
    }
});
