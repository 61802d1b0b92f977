//! Where token files live and how they are read and written.
//!
//! - `$XDG_STATE_HOME/bearergate/tokens/NAME.json` (else `~/.local/state/…`), directories
//!   made `0700`; or any path the user names.
//! - A file is created `0600` from the start (never written then narrowed), through a
//!   temporary file in the same directory, fsync'd, then renamed over the old one: a crash
//!   leaves the old file or the new one, never half of either. A rotated refresh token that
//!   is lost is a grant lost, so the directory is fsync'd too.
//! - A file that group or others may read or write is refused: its tokens may have leaked,
//!   and writing new ones into it would leak them too.
//! - Symbolic links are not followed, at the token file's name or the lock file's: in a
//!   directory others can write, a planted link would have us create files elsewhere or
//!   rotate tokens kept elsewhere (the rename that stores new ones replaces the link, and the
//!   file it pointed to keeps a spent refresh token).
//! - Mail programs run the token command concurrently (neomutt and mbsync at the same
//!   minute): read-refresh-write happens under an exclusive lock on `NAME.json.lock`, so a
//!   rotated refresh token is never presented twice, which an issuer following RFC 9700
//!   §4.14.2 answers by revoking the whole grant.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use super::store::{FormatError, TokenFile};

/// The account used when none is named.
pub const DEFAULT_ACCOUNT: &str = "default";
/// Largest token file read: tokens are at most 16 KiB each; anything far larger is not ours.
pub const MAX_FILE_LEN: u64 = 256 * 1024;
/// Longest account name.
const MAX_ACCOUNT_LEN: usize = 64;

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// There is no file: nobody signed in for this account yet.
    #[error("no token file at {}", .path.display())]
    Missing {
        /// The path looked at.
        path: PathBuf,
    },
    /// Group or others have permissions on it.
    #[error(
        "{} is accessible to other users (mode {mode:04o}); its tokens may have leaked: \
         revoke them, remove the file and sign in again (it is created 0600)",
        .path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading, writing, locking or making a directory failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The system's error.
        source: io::Error,
    },
    /// The file is not a token file we can read.
    #[error("{}: {source}", .path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: FormatError,
    },
    /// Neither `XDG_STATE_HOME` nor `HOME` says where the files go.
    #[error("set HOME or XDG_STATE_HOME, or name the file with --token-file")]
    NoHome,
    /// An account name that would not make a plain file name.
    #[error(
        "account name {0:?}: use 1 to {MAX_ACCOUNT_LEN} letters, digits and . _ - + @ \
         (not starting with a dot)"
    )]
    BadAccount(String),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The directory of named accounts' files, from the environment `var` gives: the XDG Base
/// Directory rule (a relative `XDG_STATE_HOME` is ignored, as the specification says).
pub fn tokens_dir(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, StoreError> {
    let absolute = |name: &str| var(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = match absolute("XDG_STATE_HOME") {
        Some(state) => state,
        None => absolute("HOME")
            .ok_or(StoreError::NoHome)?
            .join(".local/state"),
    };
    Ok(state.join("bearergate").join("tokens"))
}

/// The file of account `name` in `dir`.
pub fn account_file(dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_ACCOUNT_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'@'));
    if !valid {
        return Err(StoreError::BadAccount(name.to_owned()));
    }
    Ok(dir.join(format!("{name}.json")))
}

/// Opens the file at `path` itself, never what a symbolic link there points to: the name is
/// looked at first, and the file opened must be the one looked at (a link swapped in
/// between is caught by comparing device and inode).
fn open_unlinked(path: &Path, options: &OpenOptions) -> io::Result<File> {
    let seen = fs::symlink_metadata(path)?;
    if seen.file_type().is_symlink() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a symbolic link; name the file itself",
        ));
    }
    let file = options.open(path)?;
    let opened = file.metadata()?;
    if (opened.dev(), opened.ino()) != (seen.dev(), seen.ino()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it was replaced while being opened",
        ));
    }
    Ok(file)
}

/// Reads the token file at `path`, refusing one others may access.
pub fn read(path: &Path) -> Result<TokenFile, StoreError> {
    let file = match open_unlinked(path, OpenOptions::new().read(true)) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StoreError::Missing {
                path: path.to_owned(),
            })
        }
        Err(e) => return Err(io_error("open", path)(e)),
    };
    let metadata = file.metadata().map_err(io_error("inspect", path))?;
    check_private(path, &metadata)?;
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io_error("read", path))?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(StoreError::Format {
            path: path.to_owned(),
            source: FormatError::Malformed(format!("larger than {MAX_FILE_LEN} bytes")),
        });
    }
    TokenFile::from_json(&text).map_err(|source| StoreError::Format {
        path: path.to_owned(),
        source,
    })
}

fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    if !metadata.is_file() {
        return Err(StoreError::Format {
            path: path.to_owned(),
            source: FormatError::Malformed("not a regular file".to_owned()),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

/// Makes sure `path` can be written: its directory exists (made `0700` if not) and an
/// existing file there is private. Called before a sign-in, so that the person does not
/// sign in only to learn the tokens cannot be kept.
pub fn prepare(path: &Path) -> Result<(), StoreError> {
    let dir = parent(path);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(io_error("create the directory", &dir))?;
    // Not `metadata`: a link here would be replaced by the first write.
    match fs::symlink_metadata(path) {
        Ok(metadata) => check_private(path, &metadata),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("inspect", path)(e)),
    }
}

/// Writes `file` to `path` atomically, `0600`.
pub fn write(path: &Path, file: &TokenFile) -> Result<(), StoreError> {
    prepare(path)?;
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = write_new(&temporary, file.to_json().as_bytes())
        .and_then(|()| fs::rename(&temporary, path).map_err(io_error("replace", path)));
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result?;
    // The rename itself must survive a crash, or the old (spent) refresh token comes back.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync the directory", &dir))
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Ok(file) => file,
        // Left by a crashed run with the same process id: ours to replace.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(path).map_err(io_error("remove", path))?;
            open().map_err(io_error("create", path))?
        }
        Err(e) => return Err(io_error("create", path)(e)),
    };
    file.write_all(bytes).map_err(io_error("write", path))?;
    file.sync_all().map_err(io_error("sync", path))
}

/// Removes the token file (its lock file stays: removing a lock file others may be waiting
/// on would let two processes hold "the" lock at once).
pub fn remove(path: &Path) -> Result<(), StoreError> {
    fs::remove_file(path).map_err(io_error("remove", path))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The lock file beside a token file: `NAME.json.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// An exclusive lock on a token file, held until dropped.
#[derive(Debug)]
pub struct Lock {
    // Closing the file releases the lock.
    _file: File,
}

/// Takes the exclusive lock of the token file at `path`, waiting while another process
/// holds it (its work is bounded by the request timeout). The directory must exist (a
/// missing one means nobody signed in: [`StoreError::Missing`]); `print` creates nothing.
pub fn lock(path: &Path) -> Result<Lock, StoreError> {
    let lock = lock_path(path);
    // Created exclusively (which never follows a link), else opened without following one.
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&lock);
    let file = match created {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            open_unlinked(&lock, OpenOptions::new().read(true).write(true))
                .map_err(io_error("open the lock file", &lock))?
        }
        opened => opened.map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing {
                path: path.to_owned(),
            },
            _ => io_error("open the lock file", &lock)(e),
        })?,
    };
    file.lock().map_err(io_error("lock", &lock))?;
    Ok(Lock { _file: file })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::token::store::tests::sample;

    /// A fresh private directory, removed on drop.
    pub(crate) struct Scratch(pub PathBuf);

    impl Scratch {
        pub(crate) fn new(label: &str) -> Self {
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "bearergate-token-{label}-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            DirBuilder::new().mode(0o700).create(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn xdg_state_home_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            tokens_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/s/bearergate/tokens")
        );
        assert_eq!(
            tokens_dir(env(&[("XDG_STATE_HOME", "rel"), ("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.local/state/bearergate/tokens")
        );
        assert!(matches!(tokens_dir(env(&[])), Err(StoreError::NoHome)));
    }

    #[test]
    fn account_names_stay_in_the_directory() {
        let dir = Path::new("/t");
        assert_eq!(
            account_file(dir, "alice@example.test").unwrap(),
            PathBuf::from("/t/alice@example.test.json")
        );
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(65)] {
            assert!(account_file(dir, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn writes_private_files_and_directories_atomically() {
        let scratch = Scratch::new("write");
        let path = scratch.0.join("deep/er/work.json");
        let file = sample(1_000, 3_600, "at-1", "rt-1");
        write(&path, &file).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&scratch.0.join("deep/er")), 0o700);
        assert_eq!(read(&path).unwrap(), file);
        let mut next = file.clone();
        next.mark_login_required("gone", 2_000);
        write(&path, &next).unwrap();
        assert_eq!(read(&path).unwrap(), next);
        assert_eq!(mode(&path), 0o600);
        // Nothing left beside it but the file itself.
        let names: Vec<_> = fs::read_dir(scratch.0.join("deep/er"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [OsString::from("work.json")]);
    }

    #[test]
    fn refuses_files_others_can_read() {
        let scratch = Scratch::new("exposed");
        let path = scratch.0.join("t.json");
        write(&path, &sample(1, 60, "a", "r")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read(&path),
            Err(StoreError::Exposed { mode: 0o640, .. })
        ));
        assert!(matches!(
            write(&path, &sample(1, 60, "b", "s")),
            Err(StoreError::Exposed { .. })
        ));
        assert!(matches!(
            read(&scratch.0.join("none.json")),
            Err(StoreError::Missing { .. })
        ));
    }

    #[test]
    fn symbolic_links_are_not_followed() {
        // A token file named in a directory others can write (`--token-file /tmp/t.json`):
        // a link planted at the lock file's name must not make us create or open the file
        // it points to, and a link at the token file's name must not make us read (and
        // then rotate) tokens that live elsewhere, leaving a spent refresh token there.
        use std::os::unix::fs::symlink;
        let scratch = Scratch::new("links");
        let victim = scratch.0.join("victim-file");
        let path = scratch.0.join("t.json");
        symlink(&victim, lock_path(&path)).unwrap();
        assert!(lock(&path).is_err());
        assert!(!victim.exists(), "the lock followed a planted link");

        let elsewhere = scratch.0.join("real.json");
        write(&elsewhere, &sample(1, 60, "a", "r")).unwrap();
        let linked = scratch.0.join("linked.json");
        symlink(&elsewhere, &linked).unwrap();
        assert!(read(&linked).is_err(), "a linked token file was read");
        assert!(
            prepare(&linked).is_err(),
            "a sign-in would replace the link"
        );
    }

    #[test]
    fn lock_is_exclusive_between_handles() {
        let scratch = Scratch::new("lock");
        assert!(matches!(
            lock(&scratch.0.join("absent/t.json")),
            Err(StoreError::Missing { .. })
        ));
        assert!(!scratch.0.join("absent").exists());
        let path = scratch.0.join("t.json");
        let held = lock(&path).unwrap();
        let other = File::options().write(true).open(lock_path(&path)).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop(held);
        other.try_lock().unwrap();
        assert_eq!(
            fs::metadata(lock_path(&path)).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
