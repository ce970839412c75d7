//! CSV with a header line, mapped to entries by `--map TARGET=COLUMN,...`.
//!
//! Targets `title`, `url`, `username` and `folder` (a title prefix) are the entry's own; any
//! other target names a field (`password=pass` puts column "pass" into field "password").
//! Targets not mapped are found by common header names (`name`, `login_uri`, `login_username`,
//! `login_password`, `grouping`, ... as Bitwarden, LastPass, KeePassXC and browsers write them).
//! Every other column becomes a field named by its header, so nothing is left behind. A field
//! is secret when its name looks secret (`password`, `totp`, `api key`, ...).
//!
//! Rows must have as many columns as the header: a row with more or fewer is an error naming
//! its line and the first extra or missing column, as is a `--map` naming a column the header
//! does not have (line 1).

use super::{Error, Import, ImportedEntry, Position};
use std::path::Path;

/// Targets that are not fields, and the headers that fill them when not mapped.
const ENTRY_TARGETS: &[(&str, &[&str])] = &[
    (
        "title",
        &["title", "name", "account", "entry", "item", "service"],
    ),
    (
        "url",
        &[
            "url",
            "uri",
            "login_uri",
            "login uri",
            "website",
            "web site",
            "site",
        ],
    ),
    (
        "username",
        &[
            "username",
            "user name",
            "login_username",
            "login name",
            "login",
            "user",
            "email",
            "e-mail",
        ],
    ),
    ("folder", &["folder", "group", "grouping", "path"]),
];

/// Field targets found by header when not mapped (the field gets the target's name).
const FIELD_TARGETS: &[(&str, &[&str])] = &[
    ("password", &["password", "login_password", "pass", "pwd"]),
    ("totp", &["totp", "login_totp", "otp", "otpauth"]),
    ("notes", &["notes", "note", "extra", "comments"]),
];

/// `--map TARGET=COLUMN,...` as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapping(Vec<(String, String)>);

impl Mapping {
    /// Parses `title=name,password=pass,...`; an empty spec maps nothing.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (target, column) = part
                .split_once('=')
                .map(|(t, c)| (t.trim(), c.trim()))
                .filter(|(t, c)| !t.is_empty() && !c.is_empty())
                .ok_or_else(|| {
                    format!("--map {part:?}: expected TARGET=COLUMN, e.g. title=name,password=pass")
                })?;
            if pairs.iter().any(|(t, _)| t.eq_ignore_ascii_case(target)) {
                return Err(format!("--map names {target:?} twice"));
            }
            pairs.push((target.to_lowercase(), column.to_owned()));
        }
        Ok(Self(pairs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What each column becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Title,
    Url,
    Username,
    Folder,
    Field(String),
}

fn find(headers: &[String], name: &str) -> Option<usize> {
    headers.iter().position(|h| h == name).or_else(|| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name.trim()))
    })
}

/// Assigns a role to every column: the mapping first, then common header names, then the
/// header itself as a field name.
fn roles(file: &Path, headers: &[String], mapping: &Mapping) -> Result<Vec<Role>, Error> {
    let mut roles: Vec<Option<Role>> = vec![None; headers.len()];
    let role_of = |target: &str| match target {
        "title" => Role::Title,
        "url" => Role::Url,
        "username" => Role::Username,
        "folder" => Role::Folder,
        other => Role::Field(other.to_owned()),
    };
    for (target, column) in &mapping.0 {
        let Some(i) = find(headers, column) else {
            return Err(Error::new(
                file,
                Position::Line(1),
                format!(
                    "--map {target}={column}: the header has no column {column:?} (its columns: {})",
                    headers
                        .iter()
                        .map(|h| format!("{h:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        if let Some(r) = &roles[i] {
            return Err(Error::new(
                file,
                Position::Line(1),
                format!("--map: column {column:?} is mapped twice (already as {r:?})"),
            ));
        }
        roles[i] = Some(role_of(target));
    }
    for (target, candidates) in ENTRY_TARGETS.iter().chain(FIELD_TARGETS) {
        let role = role_of(target);
        if roles.contains(&Some(role.clone())) {
            continue;
        }
        let free = candidates
            .iter()
            .find_map(|c| find(headers, c).filter(|i| roles[*i].is_none()));
        if let Some(i) = free {
            roles[i] = Some(role);
        }
    }
    Ok(roles
        .into_iter()
        .zip(headers)
        .map(|(r, h)| r.unwrap_or_else(|| Role::Field(h.trim().to_owned())))
        .collect())
}

/// A CSV error at its line and, where one is to blame, its column (counted in CSV columns: the
/// first extra or missing one, or the one that is not UTF-8).
fn csv_error(file: &Path, e: &::csv::Error) -> Error {
    let line = e.position().map(::csv::Position::line);
    let (column, message) = match e.kind() {
        ::csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => (
            Some(u64::min(*len, *expected_len) + 1),
            format!("this row has {len} columns, but the header has {expected_len}"),
        ),
        ::csv::ErrorKind::Utf8 { err, .. } => (
            Some(err.field() as u64 + 1),
            "not UTF-8 text; save the CSV as UTF-8".to_owned(),
        ),
        _ => (None, format!("not valid CSV: {e}")),
    };
    let position = match (line, column) {
        (Some(line), Some(column)) => Position::At { line, column },
        (Some(line), None) => Position::Line(line),
        (None, _) => Position::File,
    };
    Error::new(file, position, message)
}

pub fn parse(file: &Path, bytes: &[u8], mapping: &Mapping) -> Result<Import, Error> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(file, &e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(Error::file(
            file,
            "no header line: a CSV import needs a first line naming the columns",
        ));
    }
    let roles = roles(file, &headers, mapping)?;
    let mut out = Import::default();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(file, &e))?;
        let line = record.position().map_or(0, ::csv::Position::line);
        let mut e = ImportedEntry::new(Position::Line(line), "");
        for (value, role) in record.iter().zip(&roles) {
            match role {
                Role::Title => e.title = value.to_owned(),
                Role::Url => e.set_url(Some(value)),
                Role::Username => e.set_username(Some(value)),
                Role::Folder => {
                    e.folder = value
                        .split(['/', '\\'])
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                Role::Field(name) => e.push_named(name, Some(value), false),
            }
        }
        out.keep(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(h: &[&str]) -> Vec<String> {
        h.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn mapping_then_common_names_then_headers() {
        let h = headers(&["Account", "pass", "login_uri", "email", "username", "Extra"]);
        let m = Mapping::parse("password=pass").unwrap();
        let r = roles(Path::new("f"), &h, &m).unwrap();
        assert_eq!(
            r,
            [
                Role::Title,
                Role::Field("password".into()),
                Role::Url,
                Role::Field("email".into()),
                Role::Username,
                Role::Field("notes".into()),
            ]
        );
    }

    #[test]
    fn bad_mappings_are_refused() {
        assert!(Mapping::parse("title").is_err());
        assert!(Mapping::parse("title=a,TITLE=b").is_err());
        let err = roles(
            Path::new("f.csv"),
            &headers(&["a", "b"]),
            &Mapping::parse("password=pass").unwrap(),
        )
        .unwrap_err();
        assert_eq!(err.position, Position::Line(1));
        assert!(err.to_string().contains("\"pass\""), "{err}");
    }
}
