//! Durable state (`EmulatorConfig::state_file`): a snapshot of every object (`FILE`, the
//! compacted base) and a journal of the changes committed since (`FILE.journal`, one JSON line
//! per stored or removed object with its resourceVersion), written and fsynced before a write is
//! answered. `start` loads the snapshot, replays the journal and compacts; so do a clean
//! shutdown and a journal grown past its limit. `store` records the changes; `http` calls
//! `Shared::persist` before it answers a write.
//!
//! A crash loses no answered write. A torn last journal line (the process died while writing
//! it, before the answer) is ignored. Both files, and the snapshot's temporary file, are
//! created 0600 and refused at start when others may read them: they hold every Secret.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::Shared;
use crate::error::EmulatorError;
use crate::store::State;

/// One committed change, recorded by `State::put`/`remove` until it is in the journal.
#[derive(Debug)]
pub enum Entry {
    Put {
        rv: u64,
        resource: String,
        object: Arc<Value>,
    },
    Delete {
        rv: u64,
        resource: String,
        namespace: String,
        name: String,
    },
}

impl Entry {
    fn write_line(&self, buf: &mut Vec<u8>) {
        // Serializing a Value into a Vec cannot fail.
        let _ = match self {
            Entry::Put {
                rv,
                resource,
                object,
            } => serde_json::to_writer(
                &mut *buf,
                &serde_json::json!({"rv": rv, "resource": resource, "object": &**object}),
            ),
            Entry::Delete {
                rv,
                resource,
                namespace,
                name,
            } => serde_json::to_writer(
                &mut *buf,
                &serde_json::json!({"rv": rv, "resource": resource, "deleted": [namespace, name]}),
            ),
        };
        buf.push(b'\n');
    }

    /// A journal line as `write_line` wrote it.
    pub fn parse(line: &[u8]) -> Option<Entry> {
        let v: Value = serde_json::from_slice(line).ok()?;
        let rv = v["rv"].as_u64()?;
        let resource = v["resource"].as_str()?.to_owned();
        if let Some([ns, name]) = v["deleted"].as_array().map(Vec::as_slice) {
            return Some(Entry::Delete {
                rv,
                resource,
                namespace: ns.as_str()?.to_owned(),
                name: name.as_str()?.to_owned(),
            });
        }
        let object = v.get("object").filter(|o| o.is_object())?.clone();
        Some(Entry::Put {
            rv,
            resource,
            object: Arc::new(object),
        })
    }
}

/// Every object and the resourceVersion counter at one point, for the snapshot file.
#[derive(Debug)]
pub struct Snapshot {
    pub rv: u64,
    pub objects: Vec<(String, Arc<Value>)>,
}

impl Snapshot {
    /// `{"resourceVersion":N,"objects":[{"resource":..,"object":..},…]}`, the format
    /// `State::restore` reads (and the only one before the journal existed).
    fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + self.objects.len() * 1024);
        buf.extend_from_slice(
            format!("{{\"resourceVersion\":{},\"objects\":[", self.rv).as_bytes(),
        );
        for (i, (resource, object)) in self.objects.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            buf.extend_from_slice(b"{\"resource\":");
            let _ = serde_json::to_writer(&mut buf, resource);
            buf.extend_from_slice(b",\"object\":");
            let _ = serde_json::to_writer(&mut buf, &**object);
            buf.push(b'}');
        }
        buf.extend_from_slice(b"]}");
        buf
    }
}

/// The journal is compacted when it outgrows this many times the snapshot (and `MIN_COMPACT`).
const COMPACT_RATIO: u64 = 2;
const MIN_COMPACT: u64 = 1024 * 1024;

/// The open state files.
#[derive(Debug)]
pub struct Journal {
    snapshot: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes appended since the last compaction, and the size of that snapshot.
    bytes: u64,
    snapshot_bytes: u64,
}

impl Journal {
    /// Checks the files' permissions, loads snapshot and journal into `st` and starts
    /// recording its changes. The caller compacts once it has seeded what it seeds.
    pub fn open(snapshot: &Path, st: &mut State) -> Result<Journal, EmulatorError> {
        let path = sibling(snapshot, ".journal");
        check_private(snapshot)?;
        check_private(&path)?;
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| EmulatorError::StateIo { path, source }
        };
        let snap: Value = match std::fs::read(snapshot) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| EmulatorError::StateFormat {
                    path: snapshot.display().to_string(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Null,
            Err(e) => return Err(io(snapshot)(e)),
        };
        let entries = match std::fs::read(&path) {
            Ok(bytes) => read_journal(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        st.restore(&snap, entries);
        st.journal = Some(Vec::new());
        let file = open_private(&path, true).map_err(io(&path))?;
        Ok(Journal {
            snapshot: snapshot.to_owned(),
            path,
            file,
            bytes: 0,
            snapshot_bytes: 0,
        })
    }

    /// Appends `entries` and waits until they are on disk.
    fn append(&mut self, entries: &[Entry]) -> Result<(), EmulatorError> {
        let mut buf = Vec::with_capacity(entries.len() * 1024);
        for e in entries {
            e.write_line(&mut buf);
        }
        let io = |source| EmulatorError::StateIo {
            path: self.path.display().to_string(),
            source,
        };
        self.file.write_all(&buf).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn wants_compaction(&self) -> bool {
        self.bytes > MIN_COMPACT.max(COMPACT_RATIO * self.snapshot_bytes)
    }

    /// Writes `snap` as the new snapshot (temporary file, fsync, rename, fsync of the
    /// directory), then empties the journal, whose changes the snapshot holds.
    pub fn compact(&mut self, snap: &Snapshot) -> Result<(), EmulatorError> {
        let bytes = snap.encode();
        let tmp = sibling(&self.snapshot, ".tmp");
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| EmulatorError::StateIo { path, source }
        };
        // A temporary file left by a crash may have any mode; this one is created 0600.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
            _ => {}
        }
        let mut file = open_private(&tmp, false).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.snapshot).map_err(io(&self.snapshot))?;
        sync_dir(&self.snapshot).map_err(io(&self.snapshot))?;
        self.file.set_len(0).map_err(io(&self.path))?;
        self.file.sync_all().map_err(io(&self.path))?;
        self.bytes = 0;
        self.snapshot_bytes = bytes.len() as u64;
        Ok(())
    }
}

impl Shared {
    /// Makes the changes committed so far durable; a no-op without a state file. Called
    /// before a write is answered, so concurrent writers share one fsync.
    pub(crate) fn persist(&self) -> Result<(), EmulatorError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        // Entries are taken and written under the journal lock, so they reach the file in
        // resourceVersion order, and a writer that finds none waits for the fsync of its own.
        let mut journal = lock(journal);
        let entries = self.lock().take_journal();
        if entries.is_empty() {
            return Ok(());
        }
        journal.append(&entries)?;
        if journal.wants_compaction() {
            let snap = self.lock().take_snapshot();
            journal.compact(&snap)?;
        }
        Ok(())
    }

    /// Writes a snapshot of everything and empties the journal.
    pub(crate) fn compact(&self) -> Result<(), EmulatorError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut journal = lock(journal);
        let snap = self.lock().take_snapshot();
        journal.compact(&snap)
    }
}

fn lock(journal: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal.lock().unwrap_or_else(|e| e.into_inner())
}

/// The journal's changes; a last line that does not parse was torn by a crash while it was
/// written (its write was never answered) and is ignored, any other is an error.
fn read_journal(path: &Path, bytes: &[u8]) -> Result<Vec<Entry>, EmulatorError> {
    let mut entries = Vec::new();
    let mut lines = bytes.split(|b| *b == b'\n').peekable();
    let mut number = 0;
    while let Some(line) = lines.next() {
        number += 1;
        let last = lines.peek().is_none_or(|rest| rest.is_empty());
        if line.is_empty() && last {
            break;
        }
        match Entry::parse(line) {
            Some(e) => entries.push(e),
            None if last => {
                tracing::warn!(path = %path.display(), line = number, "ignoring a torn last journal line");
            }
            None => {
                return Err(EmulatorError::StateJournal {
                    path: path.display().to_string(),
                    line: number,
                });
            }
        }
    }
    Ok(entries)
}

/// `FILE` + `suffix`, beside it.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true).create(true);
    } else {
        options.write(true).create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Refuses a state file that others may read or write.
fn check_private(path: &Path) -> Result<(), EmulatorError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(md) if md.permissions().mode() & 0o077 != 0 => {
                return Err(EmulatorError::StateNotPrivate {
                    path: path.display().to_string(),
                    mode: md.permissions().mode() & 0o777,
                });
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(EmulatorError::StateIo {
                    path: path.display().to_string(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    let _ = path;
    Ok(())
}

/// Makes a rename in `path`'s directory durable.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn journal_lines_round_trip_and_a_torn_last_line_is_ignored() {
        let put = Entry::Put {
            rv: 7,
            resource: "/secrets".into(),
            object: Arc::new(json!({"metadata": {"name": "s", "namespace": "ns"}})),
        };
        let delete = Entry::Delete {
            rv: 8,
            resource: "/secrets".into(),
            namespace: "ns".into(),
            name: "s".into(),
        };
        let mut buf = Vec::new();
        put.write_line(&mut buf);
        delete.write_line(&mut buf);
        let whole = read_journal(Path::new("j"), &buf).unwrap();
        assert!(
            matches!(&whole[..], [Entry::Put { rv: 7, .. }, Entry::Delete { rv: 8, name, .. }] if name == "s")
        );
        let torn = &buf[..buf.len() - 5];
        let entries = read_journal(Path::new("j"), torn).unwrap();
        assert!(matches!(&entries[..], [Entry::Put { rv: 7, .. }]));
        let mut corrupt = b"{\"rv\":1}\n".to_vec();
        corrupt.extend_from_slice(&buf);
        assert!(matches!(
            read_journal(Path::new("j"), &corrupt),
            Err(EmulatorError::StateJournal { line: 1, .. })
        ));
    }
}
