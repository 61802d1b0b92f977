//! Dovecot passwd-file users, so the sign-in page can check the password people already have.
//!
//! The format is Dovecot's: `user:password:uid:gid:gecos:home:shell:extra_fields`, one user a
//! line, `#` comments and blank lines skipped. Only the first two fields matter here. The
//! password is `{SCHEME}value`; without a scheme Dovecot uses its default scheme (`CRYPT` for
//! passwd-file), and so do we — but only when the value starts with `$` (a modular-crypt
//! string says what it is). Anything else without a scheme we refuse to guess at.
//!
//! Schemes verified (names case-insensitive), each through its own crate:
//!
//! | scheme                      | value                                   | crate       |
//! |-----------------------------|-----------------------------------------|-------------|
//! | `ARGON2ID`, `ARGON2I`       | PHC string `$argon2id$v=19$m=…`         | `argon2`    |
//! | `BLF-CRYPT`                 | bcrypt `$2y$` / `$2b$` / `$2a$`         | `bcrypt`    |
//! | `SHA512-CRYPT`, `SHA256-CRYPT` | `$6$…` / `$5$…`                      | `sha-crypt` |
//! | `CRYPT`                     | any of the `$…$` forms above            |             |
//! | `PLAIN`, `CLEARTEXT`        | the password itself                     | `subtle`    |
//!
//! An entry with another scheme (`SSHA512`, `MD5-CRYPT`, yescrypt `$y$`, DES crypt, …), no
//! password, or a value that does not have its scheme's form is *unusable*: its user cannot
//! sign in, and it is warned about once at load with its line number, never its value.
//! Malformed lines (no `:`) are skipped the same way. As in Dovecot, the first line naming a
//! user wins; later ones are skipped.
//!
//! Reloading is the caller's business: a [`PasswdFile`] is a plain value.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The largest passwd-file [`PasswdFile::load`] reads: 16 MiB, about 100 times what 1_000
/// users with long argon2 hashes need.
pub const MAX_FILE_SIZE: u64 = 16 * 1_024 * 1_024;

/// The longest password [`PasswdFile::verify`] hashes, in bytes: SHA-crypt's work grows with
/// the password's length, so an unbounded one makes every guess as costly as the attacker
/// likes. 1 KiB is eight times what OWASP ASVS (2.1.2) asks a form to accept.
pub const MAX_PASSWORD_LEN: usize = 1_024;

/// What unknown and unusable users are checked against when the file has no usable entry
/// at all: bcrypt, cost 10, made by Python's `crypt` (glibc). Its password does not matter;
/// the result is thrown away.
const FALLBACK_DUMMY: &str = "$2b$10$.qjOdhLAioHYUpPgyD2Fm.t.Tp30mdZpDyODKQOKihv9R4S.WFPKW";

/// Why a passwd-file could not be loaded: always the operator's to fix. Names the path and
/// never the contents.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// Opening or reading failed.
    #[error("cannot read passwd-file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_SIZE`].
    #[error("passwd-file {} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit it broke.
        limit: u64,
    },
    /// A line is not UTF-8.
    #[error("passwd-file {} line {line} is not UTF-8", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The first line that is not (1-based).
        line: usize,
    },
}

/// The outcome of [`PasswdFile::verify`].
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The user exists, its entry is usable and the password matches.
    Accepted,
    /// Anything else; deliberately not saying which.
    Refused,
}

/// A line that defines no usable user, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// 1-based line number.
    pub line: usize,
    /// Why.
    pub reason: SkipReason,
}

/// Why a line defines no usable user. Never carries the password field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// No `:` after the user name, or an empty user name.
    Malformed,
    /// The password field is empty.
    NoPassword,
    /// No `{SCHEME}` and the value is not a `$…$` crypt string: we refuse to guess.
    NoScheme,
    /// A scheme (or, under `CRYPT`, a crypt method such as `$1$`) this server does not verify;
    /// its name when that is short and printable, `?` otherwise.
    UnsupportedScheme(String),
    /// The value does not have the form its scheme requires.
    InvalidHash,
    /// An earlier line named the same user; the first one wins, as in Dovecot.
    Duplicate,
}

/// A stored password in the form it is checked in.
#[derive(Clone)]
enum Stored {
    /// A PHC string, already checked to parse as the scheme's algorithm.
    Argon2(String),
    /// `$2y$` / `$2b$` / `$2a$`.
    Bcrypt(String),
    /// `$6$`.
    Sha512Crypt(String),
    /// `$5$`.
    Sha256Crypt(String),
    /// SHA-256 of a `PLAIN` password: comparing digests in constant time hides the
    /// password's length too, and the password itself is not kept in memory.
    Plain([u8; 32]),
}

impl Stored {
    /// Position in the tally that picks the dummy for unknown users.
    fn kind(&self) -> usize {
        match self {
            Stored::Argon2(_) => 0,
            Stored::Bcrypt(_) => 1,
            Stored::Sha512Crypt(_) => 2,
            Stored::Sha256Crypt(_) => 3,
            Stored::Plain(_) => 4,
        }
    }

    fn matches(&self, password: &str) -> bool {
        match self {
            Stored::Argon2(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            }),
            Stored::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Stored::Sha512Crypt(hash) => sha_crypt::sha512_check(password, hash).is_ok(),
            Stored::Sha256Crypt(hash) => sha_crypt::sha256_check(password, hash).is_ok(),
            Stored::Plain(digest) => plain_digest(password).ct_eq(digest).into(),
        }
    }
}

fn plain_digest(password: &str) -> [u8; 32] {
    Sha256::digest(password.as_bytes()).into()
}

/// The users of one Dovecot passwd-file. `Debug` shows counts only.
#[derive(Clone)]
pub struct PasswdFile {
    /// `None`: the user's first line is unusable, so the user cannot sign in.
    users: HashMap<String, Option<Stored>>,
    usable: usize,
    skipped: Vec<Skipped>,
    /// What unknown and unusable users are checked against, so that whether an account
    /// exists does not show in how long a refusal takes: the first entry of the scheme most
    /// entries use (same cost as a real user's check), else [`FALLBACK_DUMMY`].
    dummy: Stored,
}

impl fmt::Debug for PasswdFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdFile")
            .field("users", &self.usable)
            .field("skipped", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

impl PasswdFile {
    /// Reads and parses the file at `path`, refusing one larger than [`MAX_FILE_SIZE`], and
    /// warns once about each line that defines no usable user.
    pub fn load(path: &Path) -> Result<Self, PasswdError> {
        Self::load_bounded(path, MAX_FILE_SIZE)
    }

    fn load_bounded(path: &Path, limit: u64) -> Result<Self, PasswdError> {
        let read_error = |source| PasswdError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        // `take` rather than the metadata length: the file may grow while it is read.
        let mut bytes = Vec::new();
        file.take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > limit {
            return Err(PasswdError::TooLarge {
                path: path.to_owned(),
                limit,
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            PasswdError::NotUtf8 {
                path: path.to_owned(),
                line: valid.iter().filter(|&&b| b == b'\n').count() + 1,
            }
        })?;
        let file = Self::parse_quietly(&text);
        file.warn(Some(path));
        Ok(file)
    }

    /// Parses passwd-file text, warning once about each line that defines no usable user.
    pub fn parse(text: &str) -> Self {
        let file = Self::parse_quietly(text);
        file.warn(None);
        file
    }

    fn parse_quietly(text: &str) -> Self {
        let mut users = HashMap::new();
        let mut skipped = Vec::new();
        let mut tally = [0_usize; 5];
        let mut first_of_kind: [Option<Stored>; 5] = Default::default();
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut skip = |reason| {
                skipped.push(Skipped {
                    line: line_number,
                    reason,
                })
            };
            let mut fields = line.split(':');
            let (Some(user), Some(password)) = (fields.next(), fields.next()) else {
                skip(SkipReason::Malformed);
                continue;
            };
            if user.is_empty() {
                skip(SkipReason::Malformed);
                continue;
            }
            if users.contains_key(user) {
                skip(SkipReason::Duplicate);
                continue;
            }
            match password_field(password) {
                Ok(stored) => {
                    let kind = stored.kind();
                    tally[kind] += 1;
                    first_of_kind[kind].get_or_insert_with(|| stored.clone());
                    users.insert(user.to_owned(), Some(stored));
                }
                Err(reason) => {
                    skip(reason);
                    users.insert(user.to_owned(), None);
                }
            }
        }
        let most_used = (0..tally.len()).max_by_key(|&kind| (tally[kind], usize::MAX - kind));
        let dummy = most_used
            .and_then(|kind| first_of_kind[kind].take())
            .unwrap_or_else(|| Stored::Bcrypt(FALLBACK_DUMMY.to_owned()));
        Self {
            usable: tally.iter().sum(),
            users,
            skipped,
            dummy,
        }
    }

    fn warn(&self, path: Option<&Path>) {
        let path = path.map(|p| p.display().to_string()).unwrap_or_default();
        for Skipped { line, reason } in &self.skipped {
            tracing::warn!(path, line, ?reason, "passwd-file line skipped");
        }
    }

    /// Checks `password` for `user`, looked up exactly as given (the caller normalises).
    /// An unknown user, or one whose entry is unusable, is checked against a dummy entry and
    /// refused, so that refusals take about as long whether or not the account exists.
    ///
    /// A password longer than [`MAX_PASSWORD_LEN`] is refused without hashing anything (its
    /// length, not the account, decides; the sign-in form refuses such passwords first).
    pub fn verify(&self, user: &str, password: &str) -> Verdict {
        if password.len() > MAX_PASSWORD_LEN {
            return Verdict::Refused;
        }
        match self.users.get(user) {
            Some(Some(stored)) if stored.matches(password) => Verdict::Accepted,
            Some(Some(_)) => Verdict::Refused,
            Some(None) | None => {
                // black_box: the result is unused, and the work must not be optimised away.
                std::hint::black_box(self.dummy.matches(std::hint::black_box(password)));
                Verdict::Refused
            }
        }
    }

    /// Users who can sign in (usable entries).
    pub fn len(&self) -> usize {
        self.usable
    }

    /// No user can sign in.
    pub fn is_empty(&self) -> bool {
        self.usable == 0
    }

    /// Lines that define no usable user, in file order.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }
}

/// The password field: `{SCHEME}value`, or a schemeless `$…$` crypt string.
fn password_field(field: &str) -> Result<Stored, SkipReason> {
    let Some((scheme, value)) = field
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
    else {
        return match field {
            "" => Err(SkipReason::NoPassword),
            crypt_string if crypt_string.starts_with('$') => crypt(crypt_string),
            _ => Err(SkipReason::NoScheme),
        };
    };
    if value.is_empty() {
        return Err(SkipReason::NoPassword);
    }
    match scheme.to_ascii_uppercase().as_str() {
        "ARGON2ID" => argon2(value, argon2::ARGON2ID_IDENT.as_str()),
        "ARGON2I" => argon2(value, argon2::ARGON2I_IDENT.as_str()),
        "BLF-CRYPT" => bcrypt(value),
        "SHA512-CRYPT" => sha_crypt(value, "$6$", 86).map(|()| Stored::Sha512Crypt(value.into())),
        "SHA256-CRYPT" => sha_crypt(value, "$5$", 43).map(|()| Stored::Sha256Crypt(value.into())),
        "CRYPT" => crypt(value),
        "PLAIN" | "CLEARTEXT" => Ok(Stored::Plain(plain_digest(value))),
        _ => Err(SkipReason::UnsupportedScheme(printable(
            &scheme.to_ascii_uppercase(),
        ))),
    }
}

/// `{CRYPT}`: the modular-crypt forms we can check, told apart by their `$id$`.
fn crypt(value: &str) -> Result<Stored, SkipReason> {
    let id = value
        .strip_prefix('$')
        .and_then(|rest| rest.split('$').next())
        .unwrap_or_default();
    match id {
        "argon2id" | "argon2i" => argon2(value, id),
        "2a" | "2b" | "2y" => bcrypt(value),
        "6" => sha_crypt(value, "$6$", 86).map(|()| Stored::Sha512Crypt(value.into())),
        "5" => sha_crypt(value, "$5$", 43).map(|()| Stored::Sha256Crypt(value.into())),
        _ if !value.starts_with('$') => Err(SkipReason::UnsupportedScheme("CRYPT (DES)".into())),
        _ => Err(SkipReason::UnsupportedScheme(format!(
            "CRYPT ${}$",
            printable(id)
        ))),
    }
}

/// A PHC string of exactly the algorithm the scheme names, with parameters argon2 accepts.
fn argon2(value: &str, algorithm: &str) -> Result<Stored, SkipReason> {
    let hash = PasswordHash::new(value).map_err(|_| SkipReason::InvalidHash)?;
    let complete = hash.salt.is_some() && hash.hash.is_some();
    if hash.algorithm.as_str() != algorithm || !complete || argon2::Params::try_from(&hash).is_err()
    {
        return Err(SkipReason::InvalidHash);
    }
    Ok(Stored::Argon2(value.to_owned()))
}

/// `$2?$NN$` + 22 characters of salt + 31 of hash; `$2x$` (the buggy variant) refused.
fn bcrypt(value: &str) -> Result<Stored, SkipReason> {
    let known_variant = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| value.starts_with(p));
    let parts: Result<bcrypt::HashParts, _> = value.parse();
    match parts {
        Ok(parts) if known_variant && value.len() == 60 && (4..=31).contains(&parts.get_cost()) => {
            Ok(Stored::Bcrypt(value.to_owned()))
        }
        _ => Err(SkipReason::InvalidHash),
    }
}

/// `<id>[rounds=N$]salt$hash` (Drepper's SHA-crypt): rounds in the range glibc writes, salt
/// of at most 16 characters, hash of exactly `hash_len` crypt-base64 characters.
fn sha_crypt(value: &str, id: &str, hash_len: usize) -> Result<(), SkipReason> {
    let rest = value.strip_prefix(id).ok_or(SkipReason::InvalidHash)?;
    let parts: Vec<&str> = rest.split('$').collect();
    let (salt, hash) = match parts.as_slice() {
        [rounds, salt, hash] => {
            let rounds: usize = rounds
                .strip_prefix("rounds=")
                .and_then(|n| n.parse().ok())
                .ok_or(SkipReason::InvalidHash)?;
            if !(sha_crypt::ROUNDS_MIN..=sha_crypt::ROUNDS_MAX).contains(&rounds) {
                return Err(SkipReason::InvalidHash);
            }
            (salt, hash)
        }
        [salt, hash] => (salt, hash),
        _ => return Err(SkipReason::InvalidHash),
    };
    let crypt_b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'/';
    if salt.len() > 16 || hash.len() != hash_len || !hash.bytes().all(crypt_b64) {
        return Err(SkipReason::InvalidHash);
    }
    Ok(())
}

/// A scheme name fit for a log line: short and plain, or `?`.
fn printable(name: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.is_empty() && name.len() <= 32 && name.chars().all(plain) {
        name.to_owned()
    } else {
        "?".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, SaltString};
    use argon2::{Algorithm, Params, Version};

    use super::*;

    /// Made by real tools, pasted literally: `openssl passwd -6 secret` / `-5` (OpenSSL 3.0),
    /// Python 3.11 `crypt.crypt("secret", crypt.mksalt(…))` and Perl `crypt` (glibc /
    /// libxcrypt), and the Argon2 reference implementation (P-H-C/phc-winner-argon2
    /// `src/test.c`, password `password`, salt `somesalt`).
    const REAL: &[(&str, &str)] = &[
        ("{SHA512-CRYPT}$6$GXpni5mGdt5LGoUu$AGgQaeT7KvfHU3lRhlGddndIT4X/9o7b16kDIQsgkBNKHBEJcj0qq/mzrb/bpoyx7GjTBsp7VwMiDlmT4pkeA.", "secret"),
        ("{SHA512-CRYPT}$6$0dzWyHnEXtcV0cXZ$4MCX5SbiOj6cHVtZCkJynXHOucY/vHxe2uT0hy4NbF5f87cxHSdXDjVtESwxxVoRY52QY3s8YvyW.DafqrX51.", "secret"),
        ("{CRYPT}$6$rounds=1000$saltsalt$LAV5VE5Y7w1d73x1mFNspYWUpazfmwv2SoepNXNKJ/otop/Zok96Hr8Q13LEv0DRY/x8v0/crpIjl8NJSAqXV/", "secret"),
        ("{SHA256-CRYPT}$5$PvJUTvYtWxj.xF1E$lgDEMCQiKw6te9.z1d/DUgxI3flXcOT.8vulT2dWoV5", "secret"),
        ("$5$rounds=1000$HfSU7sRgWs3pwjcC$O4f0zaktL0kLU7i3WwZLKf40N9iSjFQhhsO0otiP.U2", "secret"),
        ("{BLF-CRYPT}$2b$04$3mt4Xon2/AtyGQpOUcQ6bevmcOsGXtT1rUMuF/Yrbt0Ssq12bH4O2", "secret"),
        ("{BLF-CRYPT}$2y$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW", "secret"),
        ("{CRYPT}$2a$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW", "secret"),
        ("{ARGON2I}$argon2i$v=19$m=256,t=2,p=1$c29tZXNhbHQ$iekCn0Y3spW+sCcFanM2xBT63UP2sghkUoHLIUpWRS8", "password"),
        ("{ARGON2ID}$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4", "password"),
        ("$argon2id$v=19$m=256,t=2,p=2$c29tZXNhbHQ$bQk8UB/VmZZF4Oo79iDXuL5/0ttZwg2f/5U52iv1cDc", "password"),
        ("{PLAIN}secret", "secret"),
        ("{CLEARTEXT}pass word", "pass word"),
    ];

    fn single(password_field: &str) -> PasswdFile {
        let file = PasswdFile::parse(&format!("alice:{password_field}:1000:1000::/home/alice:\n"));
        assert_eq!(file.skipped(), &[], "{password_field}");
        assert_eq!(file.len(), 1);
        file
    }

    #[test]
    fn real_tool_vectors_are_accepted_and_wrong_passwords_refused() {
        for &(field, password) in REAL {
            let file = single(field);
            assert_eq!(file.verify("alice", password), Verdict::Accepted, "{field}");
            for wrong in ["", "Secret", "secret ", "passwor", "wrong"] {
                assert_eq!(
                    file.verify("alice", wrong),
                    Verdict::Refused,
                    "{field} {wrong:?}"
                );
            }
        }
    }

    fn argon2_phc(algorithm: Algorithm, password: &str) -> String {
        let params = Params::new(256, 2, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn hashes_made_by_the_same_crates_are_accepted_under_each_name() {
        let pw = "correct horse battery staple";
        let sha512 = sha_crypt::sha512_simple(pw, &sha_crypt::Sha512Params::new(1_000).unwrap());
        let sha256 = sha_crypt::sha256_simple(pw, &sha_crypt::Sha256Params::new(1_000).unwrap());
        let (sha512, sha256) = (sha512.unwrap(), sha256.unwrap());
        let bcrypt = bcrypt::hash(pw, 4).unwrap();
        let argon2id = argon2_phc(Algorithm::Argon2id, pw);
        let argon2i = argon2_phc(Algorithm::Argon2i, pw);
        let fields = [
            format!("{{SHA512-CRYPT}}{sha512}"),
            format!("{{sha512-crypt}}{sha512}"),
            format!("{{CRYPT}}{sha512}"),
            sha512.clone(),
            format!("{{SHA256-CRYPT}}{sha256}"),
            format!("{{Crypt}}{sha256}"),
            format!("{{BLF-CRYPT}}{bcrypt}"),
            format!("{{blf-crypt}}{bcrypt}"),
            bcrypt.clone(),
            format!("{{ARGON2ID}}{argon2id}"),
            format!("{{argon2id}}{argon2id}"),
            format!("{{CRYPT}}{argon2id}"),
            format!("{{ARGON2I}}{argon2i}"),
            argon2i.clone(),
            format!("{{plain}}{pw}"),
        ];
        for field in &fields {
            let file = single(field);
            assert_eq!(file.verify("alice", pw), Verdict::Accepted, "{field}");
            assert_eq!(
                file.verify("alice", "correct horse"),
                Verdict::Refused,
                "{field}"
            );
        }
    }

    #[test]
    fn plain_compares_whole_passwords_and_keeps_no_copy() {
        let file = single("{PLAIN}hunter2");
        for wrong in ["hunter", "hunter22", "Hunter2", "", "hunter2\0"] {
            assert_eq!(file.verify("alice", wrong), Verdict::Refused, "{wrong:?}");
        }
        assert_eq!(file.verify("alice", "hunter2"), Verdict::Accepted);
        let Some(Some(Stored::Plain(digest))) = file.users.get("alice") else {
            panic!("PLAIN is stored as a digest");
        };
        assert_eq!(digest, &plain_digest("hunter2"));
    }

    #[test]
    fn lines_without_a_usable_password_are_skipped_and_counted() {
        let text = "\
# comment:{PLAIN}x
\n   \n\
ok:{PLAIN}fine
noscheme:secret
md5:{MD5-CRYPT}$1$abcdefgh$abcdefghijklmnopqrstuv
ssha:{SSHA512}c29tZWhhc2g=
crypt-md5:{CRYPT}$1$abcdefgh$abcdefghijklmnopqrstuv
yescrypt:$y$j9T$salt$hash
des:{CRYPT}abJnggxhB/yWI
a password pasted by mistake
:{PLAIN}nobody
empty::1000:1000
emptyplain:{PLAIN}
mismatch:{SHA512-CRYPT}$5$PvJUTvYtWxj.xF1E$lgDEMCQiKw6te9.z1d/DUgxI3flXcOT.8vulT2dWoV5
wrongargon:{ARGON2I}$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4
bcrypt2x:{BLF-CRYPT}$2x$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW
short:{SHA512-CRYPT}$6$salt$tooshort
rounds:{SHA256-CRYPT}$5$rounds=10$salt$lgDEMCQiKw6te9.z1d/DUgxI3flXcOT.8vulT2dWoV5
odd:{we!rd}x
ok:{PLAIN}second
";
        let file = PasswdFile::parse(text);
        use SkipReason::*;
        let unsupported = |name: &str| UnsupportedScheme(name.to_owned());
        let expected = [
            (5, NoScheme),
            (6, unsupported("MD5-CRYPT")),
            (7, unsupported("SSHA512")),
            (8, unsupported("CRYPT $1$")),
            (9, unsupported("CRYPT $y$")),
            (10, unsupported("CRYPT (DES)")),
            (11, Malformed),
            (12, Malformed),
            (13, NoPassword),
            (14, NoPassword),
            (15, InvalidHash),
            (16, InvalidHash),
            (17, InvalidHash),
            (18, InvalidHash),
            (19, InvalidHash),
            (20, unsupported("?")),
            (21, Duplicate),
        ];
        let expected: Vec<Skipped> = expected
            .into_iter()
            .map(|(line, reason)| Skipped { line, reason })
            .collect();
        assert_eq!(file.skipped(), expected.as_slice());
        assert_eq!(file.len(), 1);
        assert!(!file.is_empty());
        // The first line naming a user wins.
        assert_eq!(file.verify("ok", "fine"), Verdict::Accepted);
        assert_eq!(file.verify("ok", "second"), Verdict::Refused);
        // Unusable entries refuse everything, including their own value.
        assert_eq!(file.verify("noscheme", "secret"), Verdict::Refused);
        assert_eq!(file.verify("mismatch", "secret"), Verdict::Refused);
        assert_eq!(file.verify("emptyplain", ""), Verdict::Refused);
        assert_eq!(file.verify("", "nobody"), Verdict::Refused);
    }

    #[test]
    fn overlong_passwords_are_refused_before_hashing() {
        // SHA-crypt's work grows with the password's length: a 64 KiB password would cost a
        // second of CPU per guess, for known and unknown users alike.
        let longest = "p".repeat(MAX_PASSWORD_LEN);
        let file = single(&format!("{{PLAIN}}{longest}"));
        assert_eq!(file.verify("alice", &longest), Verdict::Accepted);
        let too_long = "p".repeat(MAX_PASSWORD_LEN + 1);
        let file = single(&format!("{{PLAIN}}{too_long}"));
        assert_eq!(file.verify("alice", &too_long), Verdict::Refused);
        assert_eq!(file.verify("nobody", &too_long), Verdict::Refused);
    }

    #[test]
    fn users_are_looked_up_exactly_and_unknown_users_refused() {
        let file = single("{PLAIN}secret");
        for user in ["Alice", "alice ", "bob", "", "alice@example.org"] {
            assert_eq!(file.verify(user, "secret"), Verdict::Refused, "{user:?}");
        }
    }

    #[test]
    fn unknown_users_are_checked_against_the_most_used_scheme() {
        let text = "\
a:{PLAIN}x
b:{BLF-CRYPT}$2b$04$3mt4Xon2/AtyGQpOUcQ6bevmcOsGXtT1rUMuF/Yrbt0Ssq12bH4O2
c:$2y$04$abcdefghijklmnopqrstuu2r9OfJnfCsdneAXAGHnS4UpFFP8WIrW
";
        let file = PasswdFile::parse(text);
        let Stored::Bcrypt(dummy) = &file.dummy else {
            panic!("bcrypt is used most");
        };
        assert!(dummy.starts_with("$2b$04$"), "the first bcrypt entry");
        assert_eq!(file.verify("b-typo", "secret"), Verdict::Refused);

        let nothing_usable = PasswdFile::parse("# none\nx:{SSHA}abc\n");
        assert!(nothing_usable.is_empty());
        assert!(matches!(&nothing_usable.dummy, Stored::Bcrypt(h) if h == FALLBACK_DUMMY));
        assert!(
            bcrypt(FALLBACK_DUMMY).is_ok(),
            "the fallback is a valid entry"
        );
        assert_eq!(nothing_usable.verify("x", "abc"), Verdict::Refused);
    }

    #[test]
    fn debug_shows_counts_not_users_or_hashes() {
        let text: String = REAL
            .iter()
            .enumerate()
            .map(|(i, (field, _))| format!("user{i}:{field}\n"))
            .collect();
        let file = PasswdFile::parse(&text);
        let debug = format!("{file:?}");
        assert!(debug.contains(&format!("users: {}", REAL.len())), "{debug}");
        assert!(!debug.contains('$') && !debug.contains("user0") && !debug.contains("secret"));
    }

    /// A file of its own in the temporary directory, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, contents: &[u8]) -> Self {
            let path =
                std::env::temp_dir().join(format!("authz-passwd-{}-{name}", std::process::id()));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn load_reads_a_file_with_crlf_lines() {
        let file = TempFile::new("ok", b"# users\r\nalice:{PLAIN}secret:1000:1000\r\n");
        let users = PasswdFile::load(&file.0).unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(users.verify("alice", "secret"), Verdict::Accepted);
    }

    #[test]
    fn load_errors_name_the_path_and_never_the_contents() {
        let big = TempFile::new("big", b"alice:{PLAIN}topsecret\n");
        let error = PasswdFile::load_bounded(&big.0, 10).unwrap_err();
        assert!(matches!(error, PasswdError::TooLarge { limit: 10, .. }));
        let message = error.to_string();
        assert!(message.contains(&*big.0.to_string_lossy()) && !message.contains("topsecret"));
        assert!(
            PasswdFile::load_bounded(&big.0, 23).is_ok(),
            "exactly the limit is fine"
        );

        let latin1 = TempFile::new("latin1", b"a:{PLAIN}x\nb:{PLAIN}caf\xe9\n");
        let error = PasswdFile::load(&latin1.0).unwrap_err();
        assert!(
            matches!(error, PasswdError::NotUtf8 { line: 2, .. }),
            "{error}"
        );
        assert!(!error.to_string().contains("caf"));

        let missing = std::env::temp_dir().join("authz-passwd-does-not-exist");
        let error = PasswdFile::load(&missing).unwrap_err();
        assert!(matches!(error, PasswdError::Read { .. }));
        assert!(error.to_string().contains("authz-passwd-does-not-exist"));
    }
}
