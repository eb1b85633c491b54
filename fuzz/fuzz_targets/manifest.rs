//! Node and backup manifests (and the started record) as read from
//! storage: any bytes give a record or an error, never a panic; a record
//! that parses holds only names the catalog's rule accepts.
#![no_main]

use kassette::catalog::manifest::Record;
use kassette::catalog::{BackupManifest, NodeManifest, StartedRecord, names};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = NodeManifest::from_json(data) {
        for file in &node.files {
            assert!(names::check_file(&file.keyspace, &file.table, &file.path).is_ok());
        }
        // What the catalog writes, it reads back the same.
        let again = NodeManifest::from_json(&node.to_json().unwrap()).unwrap();
        assert_eq!(again, node);
    }
    if let Ok(backup) = BackupManifest::from_json(data) {
        for keyspace in &backup.keyspaces {
            assert!(names::check_keyspace(keyspace).is_ok());
        }
        for statement in kassette::cassandra::schema::parse(&backup.schema_cql) {
            assert!(names::check_keyspace(&statement.keyspace).is_ok());
            let _ = statement.if_not_exists();
        }
    }
    let _ = StartedRecord::from_json(data);
});
