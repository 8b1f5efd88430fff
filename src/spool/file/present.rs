//! Which delivery state files (`state/<id>.<k>.json`) and verdicts records
//! (`auth/<id>.json`) exist, kept in memory so that a delivery's path does
//! not ask the filesystem for files that are not there. Most deliveries
//! have neither (a state file is written only after a failed attempt, a
//! verdicts record only with `POSTERN_AUTH_CHECKS`), and each of a
//! delivery's failed `open`s and `unlink`s was a path lookup in the kernel:
//! seven per message on the default path.
//!
//! Filled from the directories at start, a name is added *before* its file
//! is written and removed only *after* its file is gone, so the set never
//! misses a file that exists (only one process uses a spool directory). A
//! name in the set whose file is not there (a failed write, say) costs one
//! failed lookup, as before.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub(super) struct Present {
    names: Mutex<HashSet<Box<str>>>,
}

impl Present {
    /// The names (without `.json`) of the files in `dir`.
    pub fn of_dir(dir: &Path) -> std::io::Result<Present> {
        let mut names = HashSet::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.insert(name.strip_suffix(".json").unwrap_or(name).into());
            }
        }
        Ok(Present {
            names: Mutex::new(names),
        })
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashSet<Box<str>>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a file of that name may exist.
    pub fn may_exist(&self, name: &str) -> bool {
        self.names().contains(name)
    }

    /// Call before writing the file.
    pub fn add(&self, name: &str) {
        self.names().insert(name.into());
    }

    /// Call once the file is gone.
    pub fn remove(&self, name: &str) {
        self.names().remove(name);
    }
}

/// The name of delivery `index` of message `id` in the state set.
pub(super) fn state_name(id: &str, index: usize) -> String {
    format!("{id}.{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_directory_and_follow_writes_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m1.0.json"), b"{}").unwrap();
        std::fs::write(dir.path().join("m2.json"), b"{}").unwrap();
        let p = Present::of_dir(dir.path()).unwrap();
        assert!(p.may_exist("m1.0") && p.may_exist("m2"));
        assert!(!p.may_exist("m1.1"));
        p.add("m1.1");
        assert!(p.may_exist("m1.1"));
        p.remove("m1.0");
        assert!(!p.may_exist("m1.0"));
        assert_eq!(state_name("m1", 3), "m1.3");
    }
}
