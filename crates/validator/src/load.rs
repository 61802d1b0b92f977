//! Reading `[validator]`: [`ValidatorConfig`] and [`IssuerConfig`] deserialize themselves
//! (serde; durations as `"5s"`, secrets as [`secrecy::SecretString`]) from either shape:
//!
//! - one identity provider written in `[validator]` itself, beside the cache keys;
//! - the cache keys in `[validator]`, and one `[[validator.issuers]]` table per provider.
//!
//! An issuer's table is tagged by `kind` (`introspection`, `jwt` or `userinfo`), and each
//! of its other keys applies to some kinds only. Three steps, each naming the key at fault:
//!
//! 1. Deserializing refuses unknown keys, wrong types, and a secret given both inline and as
//!    a file, where serde stands on the key, so that `serde_path_to_error` gives its path
//!    (`validator.issuers[1].timeout`).
//! 2. [`ValidatorConfig::read_secret_files`] reads the secrets that `client_secret_file` and
//!    `hmac_secret_file` name, relative to the configuration file's directory.
//! 3. [`ValidatorConfig::validate`] reports what depends on other keys: a key of another kind
//!    (an `audience` on a `userinfo` issuer would be silently ignored, so it is refused), a
//!    key the kind needs, issuer keys in `[validator]` beside `[[validator.issuers]]`, names
//!    used twice, and each value's own rules.

mod keys;

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::config::ClientAuth;
use crate::error::{ConfigError, KeyError};
use crate::issuer::{IssuerConfig, Source, ValidatorConfig};

use keys::{Built, HumanDuration, IssuerBuilder, IssuerKey, Kind, Refuse, SecretSlot, ISSUER_KEYS};

/// What reading an issuer's table left for `validate()` and `read_secret_files()`.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyNotes {
    /// Keys written that do not apply to the issuer's kind.
    foreign: Vec<&'static str>,
    /// Secrets still to be read: which, and the file as written.
    secret_files: Vec<(SecretSlot, PathBuf)>,
}

/// The keys of `[validator]` itself that are not issuer keys.
const CACHE_KEYS: [&str; 3] = ["cache_max_ttl", "negative_cache_ttl", "cache_capacity"];

/// Every key `[validator]` may hold, for serde's "unknown field, expected one of" message.
const VALIDATOR_KEYS: [&str; ISSUER_KEYS.len() + 4] = {
    let mut names = [""; ISSUER_KEYS.len() + 4];
    let mut i = 0;
    while i < ISSUER_KEYS.len() {
        names[i] = ISSUER_KEYS[i];
        i += 1;
    }
    names[i] = CACHE_KEYS[0];
    names[i + 1] = CACHE_KEYS[1];
    names[i + 2] = CACHE_KEYS[2];
    names[i + 3] = "issuers";
    names
};

/// The problem of an issuer key written in `[validator]` beside `[[validator.issuers]]`.
const MISPLACED: &str =
    "with [[validator.issuers]], issuer keys go in each issuer, not in [validator]";

impl<'de> Deserialize<'de> for ValidatorConfig {
    /// `[validator]`: the cache keys, and one issuer's keys or `[[validator.issuers]]`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ValidatorVisitor)
    }
}

impl<'de> Deserialize<'de> for IssuerConfig {
    /// One identity provider's table; named `default` unless it has a `name`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let built = deserializer.deserialize_map(IssuerVisitor)?;
        Ok(named(built, || "default".to_owned()))
    }
}

struct ValidatorVisitor;

impl<'de> Visitor<'de> for ValidatorVisitor {
    type Value = ValidatorConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a [validator] table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValidatorConfig, A::Error> {
        let mut config = ValidatorConfig::several(Vec::new());
        let mut inline = IssuerBuilder::default();
        let mut listed = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "cache_max_ttl" => config.cache_max_ttl = map.next_value::<HumanDuration>()?.0,
                "negative_cache_ttl" => {
                    config.negative_cache_ttl = map.next_value::<HumanDuration>()?.0;
                }
                "cache_capacity" => config.cache_capacity = map.next_value()?,
                "issuers" => listed = map.next_value::<Vec<Listed>>()?,
                other => match IssuerKey::named(other) {
                    Some(issuer_key) => inline.read(issuer_key, &mut map)?,
                    None => map.next_value_seed(Refuse::Unknown {
                        key,
                        expected: &VALIDATOR_KEYS,
                    })?,
                },
            }
        }
        if listed.is_empty() {
            config.issuers = vec![named(inline.finish()?, || "default".to_owned())];
            config.listed = false;
            return Ok(config);
        }
        // `kind` may come before `issuers`, so misplaced keys are known only now.
        config.misplaced = inline.given().iter().map(|key| key.name()).collect();
        config.issuers = listed
            .into_iter()
            .enumerate()
            .map(|(index, Listed(built))| {
                let url = issuer_url(&built.config.source).map(str::to_owned);
                named(built, || url.unwrap_or_else(|| format!("issuer-{index}")))
            })
            .collect();
        Ok(config)
    }
}

/// One `[[validator.issuers]]` table.
struct Listed(Built);

impl<'de> Deserialize<'de> for Listed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(IssuerVisitor).map(Listed)
    }
}

struct IssuerVisitor;

impl<'de> Visitor<'de> for IssuerVisitor {
    type Value = Built;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an issuer table")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Built, A::Error> {
        let mut builder = IssuerBuilder::default();
        while let Some(key) = map.next_key::<String>()? {
            match IssuerKey::named(&key) {
                Some(issuer_key) => builder.read(issuer_key, &mut map)?,
                None => map.next_value_seed(Refuse::Unknown {
                    key,
                    expected: &ISSUER_KEYS,
                })?,
            }
        }
        builder.finish()
    }
}

/// The issuer, with `default` as its name when its table gave none.
fn named(built: Built, default: impl FnOnce() -> String) -> IssuerConfig {
    let mut config = built.config;
    if !built.named {
        config.name = default();
    }
    config
}

/// The `issuer` URL a source answers for, if any.
fn issuer_url(source: &Source) -> Option<&str> {
    match source {
        Source::Introspection(config) => config.issuer.as_deref(),
        Source::Jwt(config) => Some(config.issuer.as_str()).filter(|url| !url.is_empty()),
        Source::Userinfo(_) => None,
    }
}

impl ValidatorConfig {
    /// Checks the whole configuration: issuer keys misplaced beside `[[validator.issuers]]`,
    /// each issuer's keys (of another kind, missing, secret files not read yet, then its
    /// values' rules), names used twice, and the cache keys. Every problem names its key.
    pub fn validate(&self) -> Result<(), Vec<KeyError>> {
        self.check(true)
    }

    /// Like [`ValidatorConfig::validate`], for a validator beside the built-in issuer, which
    /// needs no configured issuer at all.
    pub fn validate_beside_local(&self) -> Result<(), Vec<KeyError>> {
        self.check(false)
    }

    fn check(&self, needs_issuer: bool) -> Result<(), Vec<KeyError>> {
        let mut errors = Vec::new();
        let mut push = |key: String, problem: String| errors.push(KeyError { key, problem });
        for key in &self.misplaced {
            push((*key).to_owned(), MISPLACED.to_owned());
        }
        if needs_issuer && self.issuers.is_empty() {
            push(
                "issuers".to_owned(),
                "at least one issuer is needed".to_owned(),
            );
        }
        for (index, issuer) in self.issuers.iter().enumerate() {
            for (key, problem) in issuer.problems() {
                push(self.key_path(index, key), problem);
            }
            if self.issuers[..index].iter().any(|o| o.name == issuer.name) {
                push(
                    self.key_path(index, "name"),
                    format!("issuer name {:?} is used by an earlier issuer", issuer.name),
                );
            }
        }
        if self.cache_capacity == 0 {
            push(
                "cache_capacity".to_owned(),
                "must be at least 1 (set cache_max_ttl and negative_cache_ttl to 0 to disable \
                 caching)"
                    .to_owned(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The path below `[validator]` of `key` of issuer `index`: `issuers[1].client_id`, or
    /// `client_id` for the one issuer written in `[validator]` itself.
    pub fn key_path(&self, index: usize, key: &str) -> String {
        if self.listed {
            format!("issuers[{index}].{key}")
        } else {
            key.to_owned()
        }
    }

    /// Reads the secrets that `client_secret_file` and `hmac_secret_file` name: the first
    /// line of each file, a relative path taken from `base` (the configuration file's
    /// directory). A file that cannot be read is an error naming its key, and stays unread.
    pub fn read_secret_files(&mut self, base: &Path) -> Result<(), Vec<KeyError>> {
        let mut errors = Vec::new();
        for index in 0..self.issuers.len() {
            for (key, problem) in self.issuers[index].read_secret_files(base) {
                errors.push(KeyError {
                    key: self.key_path(index, key),
                    problem,
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

impl IssuerConfig {
    /// Every problem of this issuer as (key, problem): keys of another kind, keys its kind
    /// needs, secret files not read yet; when there are none, its values' first broken rule.
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        let kind = Kind::of(&self.source).name();
        let mut problems: Vec<(&'static str, String)> = self
            .notes
            .foreign
            .iter()
            .map(|key| (*key, format!("does not apply to kind = \"{kind}\"")))
            .collect();
        for key in self.missing_keys() {
            let also = match key {
                "client_secret" => " (or client_secret_file)",
                _ => "",
            };
            problems.push((key, format!("required for kind = \"{kind}\"{also}")));
        }
        for (slot, path) in &self.notes.secret_files {
            problems.push((
                slot.keys().1.name(),
                format!(
                    "{} has not been read (ValidatorConfig::read_secret_files)",
                    path.display()
                ),
            ));
        }
        if problems.is_empty() {
            match self.check_values() {
                Ok(()) => {}
                Err(ConfigError::Invalid { key, problem }) => problems.push((key, problem)),
                Err(other) => problems.push(("", other.to_string())),
            }
        }
        problems
    }

    /// Keys the issuer's kind cannot do without, when they were left out (or empty).
    fn missing_keys(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        match &self.source {
            Source::Introspection(config) => {
                if config.introspection_url.is_empty() {
                    missing.push("introspection_url");
                }
                if config.client_id.is_empty() && config.client_auth != ClientAuth::Bearer {
                    missing.push("client_id");
                }
                let from_file = self
                    .notes
                    .secret_files
                    .iter()
                    .any(|(slot, _)| *slot == SecretSlot::Client);
                if config.client_secret.expose_secret().is_empty() && !from_file {
                    missing.push("client_secret");
                }
            }
            Source::Jwt(config) if config.issuer.is_empty() => missing.push("issuer"),
            Source::Userinfo(config) if config.url.is_empty() => missing.push("userinfo_url"),
            Source::Jwt(_) | Source::Userinfo(_) => {}
        }
        missing
    }

    /// Reads the secrets this issuer's `*_file` keys name; returns (key, problem) for each
    /// file that cannot be used.
    fn read_secret_files(&mut self, base: &Path) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        let mut unread = Vec::new();
        for (slot, file) in std::mem::take(&mut self.notes.secret_files) {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                base.join(&file)
            };
            match read_first_line(&path) {
                Ok(secret) => match (slot, &mut self.source) {
                    (SecretSlot::Client, Source::Introspection(config)) => {
                        config.client_secret = secret;
                    }
                    (SecretSlot::Hmac, Source::Jwt(config)) => config.hmac_secret = Some(secret),
                    // Files of another kind's keys are not kept (they are refused as such).
                    _ => {}
                },
                Err(problem) => {
                    problems.push((slot.keys().1.name(), problem));
                    unread.push((slot, file));
                }
            }
        }
        self.notes.secret_files = unread;
        problems
    }
}

/// The first line of a secret file.
fn read_first_line(path: &Path) -> Result<SecretString, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match text.lines().next() {
        Some(first) if !first.is_empty() => Ok(SecretString::from(first.to_owned())),
        _ => Err(format!(
            "the first line of {} is empty; it should hold the secret",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests;
