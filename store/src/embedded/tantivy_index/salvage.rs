//! A day partition's files checked against their checksums before the partition serves.
//!
//! tantivy writes a checksum in the footer of every segment file. At open, each existing
//! partition is read through once (every segment file's footer checksum); a segment with a
//! damaged (or truncated, or missing)
//! file is cut out of the partition (its `meta.json` rewritten without it) and its files
//! moved to the quarantine (`crate::damage`). A partition that cannot even be opened (its
//! `meta.json` damaged, a segment file missing) is quarantined whole and starts empty.
//! Either way the spans stay in the span store, readable by trace id; what is lost is that
//! the index finds them. Runtime corruption (a byte flipped after open) is not re-checked.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tantivy::directory::{Directory, MmapDirectory};
use tantivy::Index;

use crate::damage::{move_into, quarantine_dir, Damage};

const META: &str = "meta.json";

/// Checks the partition in `dir` (if it has been committed at all) and quarantines what is
/// damaged under `data_dir`; returns what it found. I/O errors while quarantining are
/// reported as they are: the caller's open then fails on its own.
pub fn check_partition(dir: &Path, data_dir: &Path) -> std::io::Result<Vec<Damage>> {
    if !dir.join(META).exists() {
        return Ok(Vec::new());
    }
    let index = match MmapDirectory::open(dir)
        .map_err(|e| e.to_string())
        .and_then(|d| Index::open(d).map_err(|e| e.to_string()))
    {
        Ok(index) => index,
        Err(e) => return quarantine_whole(dir, data_dir, format!("cannot be opened: {e}")),
    };
    let metas = match index.load_metas() {
        Ok(m) => m,
        Err(e) => {
            drop(index);
            return quarantine_whole(dir, data_dir, format!("cannot be verified: {e}"));
        }
    };
    // file by file (tantivy's `Index::validate_checksum` gives up on the first file it
    // cannot read, e.g. a truncated one without its footer): unreadable counts as damaged
    let managed = index.directory().list_managed_files();
    let damaged: HashSet<PathBuf> = metas
        .list_segment_files()
        .intersection(&managed)
        .filter(|path| !matches!(index.directory().validate_checksum(path), Ok(true)))
        .cloned()
        .collect();
    if damaged.is_empty() {
        return Ok(Vec::new());
    }
    let damaged_ids: HashSet<String> = damaged.iter().filter_map(|p| segment_id(p)).collect();
    let (bad, good): (Vec<_>, Vec<_>) = metas
        .segments
        .iter()
        .cloned()
        .partition(|s| damaged_ids.contains(&s.id().uuid_string()));
    if bad.is_empty() {
        drop(index);
        let files = names(damaged.iter());
        return quarantine_whole(dir, data_dir, format!("checksum mismatch in {files}"));
    }
    let mut kept = metas.clone();
    kept.segments = good;
    let mut json = serde_json::to_vec_pretty(&kept).map_err(std::io::Error::other)?;
    json.push(b'\n');
    index.directory().atomic_write(Path::new(META), &json)?;
    index.directory().sync_directory()?;
    drop(index);

    let to = quarantine_dir(data_dir, "index segment")?;
    let mut found = Vec::new();
    for segment in bad {
        let id = segment.id().uuid_string();
        let files: Vec<PathBuf> = damaged
            .iter()
            .filter(|p| segment_id(p).as_deref() == Some(id.as_str()))
            .cloned()
            .collect();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&id))
            {
                move_into(&path, &to)?;
            }
        }
        found.push(
            Damage {
                part: "index segment",
                path: dir.join(&id),
                quarantined_to: to.clone(),
                detail: format!(
                    "checksum mismatch in {}; its {} span documents are no longer searchable, \
                     the spans stay readable by trace id",
                    names(files.iter()),
                    segment.num_docs()
                ),
            }
            .report(),
        );
    }
    Ok(found)
}

/// Moves the whole partition directory into the quarantine.
fn quarantine_whole(dir: &Path, data_dir: &Path, why: String) -> std::io::Result<Vec<Damage>> {
    let to = quarantine_dir(data_dir, "index partition")?;
    move_into(dir, &to)?;
    Ok(vec![Damage {
        part: "index partition",
        path: dir.to_path_buf(),
        quarantined_to: to,
        detail: format!("{why}; the partition starts empty, its spans stay readable by trace id"),
    }
    .report()])
}

/// The segment a file belongs to: its name up to the first dot (`<uuid>.term`).
fn segment_id(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let (id, _) = name.split_once('.')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
}

/// The paths, sorted, as one comma-separated text.
fn names<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> String {
    let mut v: Vec<String> = paths.map(|p| p.display().to_string()).collect();
    v.sort();
    v.join(", ")
}
