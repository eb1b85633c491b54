//! Snapshot inventory: every file of snapshot `<tag>` on this node.
//!
//! Cassandra keeps a table's snapshot in
//! `<data_dir>/<keyspace>/<table>-<table_id>/snapshots/<tag>/`, with
//! secondary indexes in `.<index_name>/` subfolders beside the SSTables and
//! a `manifest.json` / `schema.cql` written by Cassandra itself. With several
//! data directories (JBOD) a table's files are spread over all of them.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One file of a snapshot, with what is needed to upload and hash it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// Index of the data directory that holds it.
    pub data_dir: u32,
    pub keyspace: String,
    pub table: String,
    pub table_id: String,
    /// Path inside the snapshot directory, `/`-separated.
    pub path: String,
    /// Where it is on disk now.
    pub absolute: PathBuf,
    pub identity: FileIdentity,
}

/// What identifies a file's content without reading it, for immutable
/// files: same device, inode, size and modification time, same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub size: u64,
    pub mtime_ns: i128,
}

impl FileIdentity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// Why an inventory could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct InventoryError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Lists every file of snapshot `tag` under `data_dirs`, sorted by
/// (keyspace, table, path, data dir). A missing data directory or keyspace
/// is simply empty; an unreadable one is an error.
pub fn inventory(data_dirs: &[PathBuf], tag: &str) -> Result<Vec<SnapshotFile>, InventoryError> {
    let mut files = Vec::new();
    for (index, data_dir) in data_dirs.iter().enumerate() {
        for keyspace in subdirectories(data_dir)? {
            let keyspace_dir = data_dir.join(&keyspace);
            for table_dir_name in subdirectories(&keyspace_dir)? {
                // `<table>-<32 hex id>`; anything else is not a table.
                let Some((table, table_id)) = table_dir_name.rsplit_once('-') else {
                    continue;
                };
                let snapshot_dir = keyspace_dir
                    .join(&table_dir_name)
                    .join("snapshots")
                    .join(tag);
                let found = walk(&snapshot_dir)?;
                files.extend(
                    found
                        .into_iter()
                        .map(|(path, absolute, identity)| SnapshotFile {
                            data_dir: index as u32,
                            keyspace: keyspace.clone(),
                            table: table.to_string(),
                            table_id: table_id.to_string(),
                            path,
                            absolute,
                            identity,
                        }),
                );
            }
        }
    }
    files.sort_by(|a, b| {
        (&a.keyspace, &a.table, &a.path, a.data_dir).cmp(&(
            &b.keyspace,
            &b.table,
            &b.path,
            b.data_dir,
        ))
    });
    Ok(files)
}

/// Tags of every snapshot present under `data_dirs`, sorted, read from the
/// directories rather than through JMX (cheap, and what counts for disk).
pub fn snapshot_tags(data_dirs: &[PathBuf]) -> Result<Vec<String>, InventoryError> {
    let mut tags = std::collections::BTreeSet::new();
    for data_dir in data_dirs {
        for keyspace in subdirectories(data_dir)? {
            let keyspace_dir = data_dir.join(&keyspace);
            for table_dir in subdirectories(&keyspace_dir)? {
                let snapshots = keyspace_dir.join(&table_dir).join("snapshots");
                tags.extend(subdirectories(&snapshots)?);
            }
        }
    }
    Ok(tags.into_iter().collect())
}

/// Every snapshot under `data_dirs` as (tag, keyspace, table), sorted and
/// deduplicated (a JBOD node has a table in several data directories).
/// The table is its directory name without the `-<table id>` suffix.
pub fn table_snapshots(
    data_dirs: &[PathBuf],
) -> Result<Vec<(String, String, String)>, InventoryError> {
    let mut found = std::collections::BTreeSet::new();
    for data_dir in data_dirs {
        for keyspace in subdirectories(data_dir)? {
            let keyspace_dir = data_dir.join(&keyspace);
            for table_dir in subdirectories(&keyspace_dir)? {
                let table = match table_dir.rsplit_once('-') {
                    Some((name, _id)) => name.to_string(),
                    None => table_dir.clone(),
                };
                let snapshots = keyspace_dir.join(&table_dir).join("snapshots");
                for tag in subdirectories(&snapshots)? {
                    found.insert((tag, keyspace.clone(), table.clone()));
                }
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// Names of the subdirectories of `dir` (none if it does not exist).
fn subdirectories(dir: &Path) -> Result<Vec<String>, InventoryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(InventoryError {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| InventoryError {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Every regular file under `root`, with its `/`-separated relative path.
fn walk(root: &Path) -> Result<Vec<(String, PathBuf, FileIdentity)>, InventoryError> {
    let mut out = Vec::new();
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(InventoryError { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| InventoryError {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            // Snapshots are hard links; metadata of the link is the file's.
            let meta = std::fs::metadata(&path).map_err(|source| InventoryError {
                path: path.clone(),
                source,
            })?;
            let relative = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if meta.is_dir() {
                pending.push((path, relative));
            } else if meta.is_file() {
                out.push((relative, path, FileIdentity::of(&meta)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path, content: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn finds_files_of_one_tag_across_data_dirs_and_index_folders() {
        let root = tempfile::tempdir().unwrap();
        let d0 = root.path().join("data0");
        let d1 = root.path().join("data1");
        let table = "orders-5a1c395e0b1d11eeb7a6f9e9b4d5c1a2";
        touch(
            &d0.join("shop")
                .join(table)
                .join("snapshots/t1/nb-1-big-Data.db"),
            b"a",
        );
        touch(
            &d0.join("shop")
                .join(table)
                .join("snapshots/t1/.orders_by_email/nb-1-big-Data.db"),
            b"b",
        );
        touch(
            &d1.join("shop")
                .join(table)
                .join("snapshots/t1/nb-2-big-Data.db"),
            b"c",
        );
        // Another tag and the live SSTables are not part of the snapshot.
        touch(
            &d0.join("shop")
                .join(table)
                .join("snapshots/t2/nb-9-big-Data.db"),
            b"x",
        );
        touch(&d0.join("shop").join(table).join("nb-1-big-Data.db"), b"a");

        let files = inventory(&[d0, d1, root.path().join("missing")], "t1").unwrap();
        let seen: Vec<(u32, &str)> = files
            .iter()
            .map(|f| (f.data_dir, f.path.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (0, ".orders_by_email/nb-1-big-Data.db"),
                (0, "nb-1-big-Data.db"),
                (1, "nb-2-big-Data.db")
            ]
        );
        assert!(
            files
                .iter()
                .all(|f| f.keyspace == "shop" && f.table == "orders")
        );
        assert_eq!(files[0].table_id, "5a1c395e0b1d11eeb7a6f9e9b4d5c1a2");
        assert_eq!(files[0].identity.size, 1);
    }
}
