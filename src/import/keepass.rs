//! KeePass 2 XML (KeePass: File > Export > KeePass XML (2.x); KeePassXC: `keepassxc-cli
//! export --format xml`).
//!
//! `KeePassFile/Root/Group` is the database; its subgroups become a title prefix
//! (`Internet/Email/…`). In an entry, `Title`, `UserName` and `URL` are the entry's own;
//! `Password` and `Notes` become fields, and so does every custom string. Secret: the password,
//! strings marked `ProtectInMemory="True"` (KeePassXC's TOTP `otp` among them), and strings
//! whose name looks secret. Attachments (`Binary`) and old versions (`History`) are skipped and
//! counted; entries in the recycle bin are skipped.
//!
//! Values marked `Protected="True"` are encrypted with the database's inner stream key: such
//! XML comes from inside a `.kdbx`, not from an export, and is refused.

use super::{Error, Import, ImportedEntry, Kind, Position, Skip, line_column};
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use std::path::Path;

/// An all-zero UUID, which KeePass writes when there is no recycle bin.
const NO_UUID: &str = "AAAAAAAAAAAAAAAAAAAAAA==";

#[derive(Default)]
struct Group {
    uuid: String,
    name: String,
}

#[derive(Default)]
struct Entry {
    start: u64,
    strings: Vec<(String, String, bool)>,
    attachments: usize,
    history: usize,
}

#[derive(Default)]
struct StringItem {
    key: String,
    value: String,
    protected: bool,
}

struct Parser<'a> {
    file: &'a Path,
    bytes: &'a [u8],
    /// Open elements, with the byte offset each started at.
    stack: Vec<(String, u64)>,
    groups: Vec<Group>,
    entry: Option<Entry>,
    string: Option<StringItem>,
    text: String,
    recycle_bin: String,
    recycle_bin_enabled: bool,
    out: Import,
}

fn is_true(v: &str) -> bool {
    v.trim().eq_ignore_ascii_case("true")
}

impl<'a> Parser<'a> {
    fn err(&self, offset: u64, message: impl Into<String>) -> Error {
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        Error::new(self.file, line_column(self.bytes, at), message)
    }

    fn parent(&self) -> Option<&str> {
        self.stack.iter().rev().nth(1).map(|(n, _)| n.as_str())
    }

    fn in_history(&self) -> bool {
        self.stack.iter().any(|(n, _)| n == "History")
    }

    fn start(&mut self, e: &BytesStart<'_>, at: u64) -> Result<(), Error> {
        let name = e.name().as_ref().to_owned();
        if self.stack.is_empty() && name != "KeePassFile" {
            return Err(self.err(
                at,
                format!("not a KeePass 2 XML export: the document is <{name}>, not <KeePassFile>"),
            ));
        }
        self.stack.push((name, at));
        self.text.clear();
        let name = self
            .stack
            .last()
            .map(|(n, _)| n.as_str())
            .unwrap_or_default();
        match (name, self.parent()) {
            ("Group", Some("Root" | "Group")) => self.groups.push(Group::default()),
            ("Entry", Some("Group")) => {
                self.entry = Some(Entry {
                    start: at,
                    ..Entry::default()
                });
            }
            ("Entry", Some("History")) => {
                if let Some(entry) = &mut self.entry {
                    entry.history += 1;
                }
            }
            ("String", Some("Entry")) if !self.in_history() => {
                self.string = Some(StringItem::default());
            }
            ("Value", Some("String")) if !self.in_history() => {
                let attr = |key: &str| {
                    e.try_get_attribute(key)
                        .ok()
                        .flatten()
                        .is_some_and(|a| is_true(&a.value))
                };
                if attr("Protected") {
                    return Err(self.err(
                        at,
                        "this value is encrypted (Protected=\"True\"): the XML comes from inside a .kdbx database, not from an export. Fix: in KeePass use File > Export > KeePass XML (2.x), or `keepassxc-cli export --format xml`",
                    ));
                }
                if let Some(s) = &mut self.string {
                    s.protected = attr("ProtectInMemory");
                }
            }
            ("Binary", Some("Entry")) if !self.in_history() => {
                if let Some(entry) = &mut self.entry {
                    entry.attachments += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self) {
        let Some((name, _)) = self.stack.pop() else {
            return;
        };
        let parent = self.stack.last().map(|(n, _)| n.as_str());
        let text = std::mem::take(&mut self.text);
        let in_history = self.in_history();
        match (name.as_str(), parent) {
            ("RecycleBinUUID", Some("Meta")) => self.recycle_bin = text.trim().to_owned(),
            ("RecycleBinEnabled", Some("Meta")) => self.recycle_bin_enabled = is_true(&text),
            ("UUID", Some("Group")) => {
                if let Some(g) = self.groups.last_mut() {
                    g.uuid = text.trim().to_owned();
                }
            }
            ("Name", Some("Group")) => {
                if let Some(g) = self.groups.last_mut() {
                    g.name = text;
                }
            }
            ("Key", Some("String")) if !in_history => {
                if let Some(s) = &mut self.string {
                    s.key = text;
                }
            }
            ("Value", Some("String")) if !in_history => {
                if let Some(s) = &mut self.string {
                    s.value = text;
                }
            }
            ("String", Some("Entry")) if !in_history => {
                if let (Some(s), Some(entry)) = (self.string.take(), &mut self.entry) {
                    entry.strings.push((s.key, s.value, s.protected));
                }
            }
            ("Entry", Some("Group")) => {
                if let Some(entry) = self.entry.take() {
                    self.finish_entry(entry);
                }
            }
            ("Group", Some("Root" | "Group")) => {
                self.groups.pop();
            }
            _ => {}
        }
    }

    fn in_recycle_bin(&self) -> bool {
        let bin = self.recycle_bin.as_str();
        !bin.is_empty()
            && bin != NO_UUID
            && self.recycle_bin_enabled
            && self.groups.iter().any(|g| g.uuid == bin)
    }

    fn finish_entry(&mut self, entry: Entry) {
        self.out.skipped.add(Skip::Attachment, entry.attachments);
        if self.in_recycle_bin() {
            self.out.skipped.add(Skip::Trashed, 1);
            return;
        }
        self.out.skipped.add(Skip::PasswordHistory, entry.history);
        let title = entry
            .strings
            .iter()
            .find(|(k, _, _)| k == "Title")
            .map(|(_, v, _)| v.clone())
            .unwrap_or_default();
        let origin = match line_column(self.bytes, usize::try_from(entry.start).unwrap_or(0)) {
            Position::At { line, .. } => Position::Item(format!("entry {title:?} at line {line}")),
            other => other,
        };
        let mut e = ImportedEntry::new(origin, title);
        // The first group is the database itself; the ones below it are folders.
        e.folder = self.groups.iter().skip(1).map(|g| g.name.clone()).collect();
        for (key, value, protected) in &entry.strings {
            match key.as_str() {
                "Title" => {}
                "UserName" => e.set_username(Some(value)),
                "URL" => e.set_url(Some(value)),
                "Password" => e.push("password", Some(value), Kind::Secret),
                "Notes" => e.push("notes", Some(value), Kind::Plain),
                _ => e.push_named(key, Some(value), *protected),
            }
        }
        self.out.keep(e);
    }
}

pub fn parse(file: &Path, bytes: &[u8]) -> Result<Import, Error> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            file,
            line_column(bytes, e.valid_up_to()),
            "not UTF-8 text; KeePass writes its XML export in UTF-8",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let offset = (bytes.len() - text.len()) as u64;
    if !text.trim_start().starts_with('<') {
        let first = (bytes.len() - text.trim_start().len()).min(bytes.len());
        return Err(Error::new(
            file,
            line_column(bytes, first),
            "not XML: a KeePass 2 XML export starts with <?xml or <KeePassFile>",
        ));
    }
    let mut reader = Reader::from_str(text);
    let mut p = Parser {
        file,
        bytes,
        stack: Vec::new(),
        groups: Vec::new(),
        entry: None,
        string: None,
        text: String::new(),
        recycle_bin: String::new(),
        recycle_bin_enabled: true,
        out: Import::default(),
    };
    loop {
        let at = reader.buffer_position() + offset;
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => {
                return Err(p.err(
                    reader.error_position() + offset,
                    format!("not well-formed XML: {e}"),
                ));
            }
        };
        match event {
            Event::Start(e) => p.start(&e, at)?,
            Event::Empty(e) => {
                p.start(&e, at)?;
                p.end();
            }
            Event::End(_) => p.end(),
            Event::Text(t) => p.text.push_str(&t.xml10_content()),
            Event::CData(c) => p.text.push_str(&c.xml10_content()),
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => match resolve_predefined_entity(&r) {
                        Some(s) => s.to_owned(),
                        None => {
                            return Err(p.err(at, format!("unknown entity &{};", &*r)));
                        }
                    },
                    Err(e) => return Err(p.err(at, format!("bad character reference: {e}"))),
                };
                p.text.push_str(&resolved);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some((name, at)) = p.stack.last() {
        let opened = line_column(bytes, usize::try_from(*at).unwrap_or(0));
        return Err(p.err(
            bytes.len() as u64,
            format!("the XML ends inside <{name}> (opened at {opened}): the file is cut short"),
        ));
    }
    if p.stack.is_empty() && p.out.entries.is_empty() && !text.contains("<KeePassFile") {
        return Err(Error::file(
            file,
            "not a KeePass 2 XML export: no <KeePassFile> in it",
        ));
    }
    Ok(p.out)
}
