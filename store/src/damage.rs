//! Damaged data found on disk and set aside, so that the rest keeps serving.
//!
//! An embedded backend that finds a part of its files damaged when it opens (a checksum
//! that does not match: a flipped or truncated byte) does not refuse to start — that
//! would make clew crash at every start until someone deletes files by hand — and does
//! not serve the damaged part as valid. It moves the damaged files into
//! `<data_dir>/quarantine/<unix seconds>-<part>/` (kept for inspection, never read again),
//! opens the rest, and reports what it did: an `error` log line, the
//! `clew_storage_quarantined_total{part}` counter, and a [`Damage`] that `/readyz` lists
//! (clew is ready: it serves everything else). The next start finds nothing damaged and
//! reports nothing.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics as m;

/// One damaged part found and quarantined at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// What was damaged: `index segment`, `index partition`, `index wal`, `store journal`.
    pub part: &'static str,
    /// Where it was.
    pub path: PathBuf,
    /// Where its files are now.
    pub quarantined_to: PathBuf,
    /// What was found, and what is lost for serving.
    pub detail: String,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} was damaged ({}); quarantined to {}",
            self.part,
            self.path.display(),
            self.detail,
            self.quarantined_to.display()
        )
    }
}

impl Damage {
    /// Logs and counts this damage (once, when it is found).
    pub fn report(self) -> Damage {
        tracing::error!(
            part = self.part,
            path = %self.path.display(),
            quarantined_to = %self.quarantined_to.display(),
            detail = %self.detail,
            "damaged data quarantined; the rest keeps serving"
        );
        metrics::counter!(m::STORAGE_QUARANTINED_TOTAL, "part" => self.part).increment(1);
        self
    }
}

/// A fresh quarantine directory for `part` under `<data_dir>/quarantine/`, created.
pub fn quarantine_dir(data_dir: &Path, part: &str) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = data_dir.join("quarantine");
    let slug = part.replace(' ', "-");
    for n in 0u32.. {
        let dir = match n {
            0 => base.join(format!("{secs}-{slug}")),
            n => base.join(format!("{secs}-{slug}-{n}")),
        };
        match std::fs::create_dir_all(&base).and_then(|()| std::fs::create_dir(&dir)) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("u32 quarantine names exhausted")
}

/// Moves `file` into `dir`, keeping its name; falls back to copy + remove across
/// filesystems.
pub fn move_into(file: &Path, dir: &Path) -> std::io::Result<()> {
    let name = file.file_name().unwrap_or(file.as_os_str());
    let to = dir.join(name);
    match std::fs::rename(file, &to) {
        Ok(()) => Ok(()),
        Err(_) => {
            if file.is_dir() {
                return std::fs::rename(file, &to);
            }
            std::fs::copy(file, &to)?;
            std::fs::remove_file(file)
        }
    }
}
