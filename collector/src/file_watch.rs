//! Noticing that a file changed, by polling its (modification time, length): what
//! re-reads the alert rules, and the binary's re-reading of `[auth]` tokens, look at.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A file and how it looked when last asked.
#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
}

impl FileWatch {
    /// Starts from the file as it is now (an unchanged file is not reported).
    pub fn new(path: PathBuf) -> FileWatch {
        let stamp = stamp(&path);
        FileWatch { path, stamp }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file looks different from the last call (or from `new`); a file that
    /// vanished counts as a change once, and again when it comes back.
    pub fn changed(&mut self) -> bool {
        let now = stamp(&self.path);
        if now == self.stamp {
            return false;
        }
        self.stamp = now;
        true
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_is_a_change_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clew.toml");
        std::fs::write(&path, "a = 1\n").unwrap();
        let mut watch = FileWatch::new(path.clone());
        assert!(!watch.changed());
        std::fs::write(&path, "a = 12\n").unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
        std::fs::remove_file(&path).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed());
    }
}
