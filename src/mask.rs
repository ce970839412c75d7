//! Masking secret values in text that goes back to an agent or a terminal: the proxy's answers
//! (`service::proxy`), `clavitor run`'s child output and the MCP tools' results (`cli`).
//!
//! Each value is masked in the forms a program is likely to print it in: as it is, JSON-escaped
//! (also with non-ASCII as `\uXXXX`), URL-encoded (upper- and lower-case hex, and form encoding
//! with `+`), hex (both cases), and base64 (standard and URL-safe alphabets, at each of the
//! three alignments it can take inside a longer base64 text). This is best effort: a program
//! that wants to leak a value can always transform it some other way (reverse it, encrypt it);
//! masking stops accidents, not a hostile program.
//!
//! Values shorter than [`MIN_LEN`] bytes are not masked (they would mask ordinary text), nor are
//! encoded forms shorter than that.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use std::sync::Arc;

/// What a masked value is replaced with.
pub const MARKER: &str = "<concealed by clavitor>";
/// The shortest value, and the shortest encoded form, that is masked.
pub const MIN_LEN: usize = 4;

/// Finds and replaces every form of a set of values.
#[derive(Clone)]
pub struct Masker {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    finder: AhoCorasick,
    patterns: Vec<Vec<u8>>,
    /// Whether a byte starts some pattern (for the stream's hold-back).
    starts: [bool; 256],
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Masker(<redacted>)")
    }
}

impl Masker {
    /// A masker for `values` (raw bytes; text values as UTF-8).
    pub fn new<V: AsRef<[u8]>>(values: impl IntoIterator<Item = V>) -> Self {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for v in values {
            for form in forms(v.as_ref()) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        if patterns.is_empty() {
            return Self { inner: None };
        }
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("a few literal patterns always build");
        let mut starts = [false; 256];
        for p in &patterns {
            starts[usize::from(p[0])] = true;
        }
        Self {
            inner: Some(Arc::new(Inner {
                finder,
                patterns,
                starts,
            })),
        }
    }

    /// A masker that masks nothing (`--no-masking`, or no values).
    pub fn none() -> Self {
        Self { inner: None }
    }

    /// `data` with every form of every value replaced by [`MARKER`].
    pub fn mask(&self, data: &[u8]) -> Vec<u8> {
        match &self.inner {
            None => data.to_vec(),
            Some(i) => i
                .finder
                .replace_all_bytes(data, &vec![MARKER.as_bytes(); i.patterns.len()]),
        }
    }

    /// [`Self::mask`] for text. Patterns are whole UTF-8 values or ASCII encodings, so
    /// replacing them keeps the text valid.
    pub fn mask_str(&self, text: &str) -> String {
        String::from_utf8(self.mask(text.as_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Whether any form of any value occurs in `data`.
    pub fn finds(&self, data: &[u8]) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.finder.find(data).is_some())
    }

    /// Every pattern this masker looks for (tests search outputs for each).
    pub fn patterns(&self) -> Vec<Vec<u8>> {
        self.inner
            .as_ref()
            .map(|i| i.patterns.clone())
            .unwrap_or_default()
    }
}

/// Masks a stream written in pieces: a value split across two writes is still found, because
/// the end of a piece that could be the start of a value is held back until the next piece
/// (or [`StreamMasker::finish`]) shows whether it is one.
pub struct StreamMasker {
    masker: Masker,
    pending: Vec<u8>,
}

impl StreamMasker {
    pub fn new(masker: Masker) -> Self {
        Self {
            masker,
            pending: Vec::new(),
        }
    }

    /// Masks from now on with `masker` (e.g. after a value changed; keep the old values in it).
    pub fn set_masker(&mut self, masker: Masker) {
        self.masker = masker;
    }

    /// Takes the next piece; returns what can be written out now.
    pub fn push(&mut self, piece: &[u8]) -> Vec<u8> {
        let Some(inner) = self.masker.inner.clone() else {
            let mut out = std::mem::take(&mut self.pending);
            out.extend_from_slice(piece);
            return out;
        };
        self.pending.extend_from_slice(piece);
        let buf = std::mem::take(&mut self.pending);
        let mut out = Vec::with_capacity(buf.len());
        let mut last = 0;
        for m in inner.finder.find_iter(&buf) {
            out.extend_from_slice(&buf[last..m.start()]);
            out.extend_from_slice(MARKER.as_bytes());
            last = m.end();
        }
        let hold = hold_from(&inner, &buf, last);
        out.extend_from_slice(&buf[last..hold]);
        self.pending = buf[hold..].to_vec();
        out
    }

    /// The end of the stream: whatever was held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.masker.mask(&rest)
    }
}

/// Where the longest tail of `buf` (after `from`) that is the start of some pattern begins
/// (`buf.len()` when there is none).
fn hold_from(inner: &Inner, buf: &[u8], from: usize) -> usize {
    let longest = inner.patterns.iter().map(Vec::len).max().unwrap_or(0);
    let first = from.max(buf.len().saturating_sub(longest.saturating_sub(1)));
    (first..buf.len())
        .find(|&p| {
            inner.starts[usize::from(buf[p])]
                && inner
                    .patterns
                    .iter()
                    .any(|pat| pat.len() > buf.len() - p && pat.starts_with(&buf[p..]))
        })
        .unwrap_or(buf.len())
}

/// Every form of `value` that is masked.
pub fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    if value.len() < MIN_LEN {
        return Vec::new();
    }
    let mut out = vec![value.to_vec()];
    if let Ok(text) = std::str::from_utf8(value) {
        let json = serde_json::to_string(text).expect("a string serialises");
        out.push(json.as_bytes()[1..json.len() - 1].to_vec());
        out.push(json_ascii(text).into_bytes());
        for upper in [true, false] {
            for form in [false, true] {
                for strict in [false, true] {
                    out.push(url_encode(value, upper, form, strict).into_bytes());
                }
            }
        }
    }
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    out.push(hex.to_ascii_uppercase().into_bytes());
    out.push(hex.into_bytes());
    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(value);
            let text = engine.encode(&shifted);
            // Only the characters made of the value's bits alone: the ones around them depend
            // on whatever surrounds the value in the encoded text.
            let start = (8 * offset).div_ceil(6);
            let end = (8 * (offset + value.len())) / 6;
            if end > start {
                out.push(text.as_bytes()[start..end].to_vec());
            }
        }
    }
    out.retain(|f| f.len() >= MIN_LEN);
    out.sort();
    out.dedup();
    out
}

/// JSON string content with every non-ASCII character as `\uXXXX` (as e.g. Python writes it).
fn json_ascii(text: &str) -> String {
    let json = serde_json::to_string(text).expect("a string serialises");
    let mut out = String::with_capacity(json.len());
    for c in json[1..json.len() - 1].chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// Percent-encoding of everything but the unreserved characters (RFC 3986), or with `strict`
/// of everything but letters and digits (as some encoders do); `form` writes a space as `+`
/// (HTML forms).
fn url_encode(value: &[u8], upper: bool, form: bool, strict: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value {
        if b.is_ascii_alphanumeric() || (!strict && matches!(b, b'-' | b'.' | b'_' | b'~')) {
            out.push(char::from(b));
        } else if form && b == b' ' {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};

    const SECRET: &str = "s3cr€t/value+with spaces?&=";

    fn encodings(prefix: &str) -> Vec<String> {
        let embedded = format!("{prefix}{SECRET}");
        vec![
            SECRET.to_owned(),
            serde_json::to_string(SECRET).unwrap(),
            format!("x{}y", STANDARD.encode(embedded.as_bytes())),
            URL_SAFE.encode(embedded.as_bytes()),
            SECRET.bytes().map(|b| format!("{b:02x}")).collect(),
            SECRET.bytes().map(|b| format!("{b:02X}")).collect(),
            url_encode(SECRET.as_bytes(), true, false, false),
            url_encode(SECRET.as_bytes(), false, true, false),
            url_encode(SECRET.as_bytes(), true, false, true),
        ]
    }

    #[test]
    fn every_form_is_masked_in_every_alignment() {
        let m = Masker::new([SECRET]);
        for prefix in ["", "a", "ab", "abc"] {
            for text in encodings(prefix) {
                let masked = m.mask_str(&format!("before {text} after"));
                assert!(masked.contains(MARKER), "{prefix:?} {text:?}: {masked}");
                assert!(!masked.contains(SECRET), "{masked}");
                assert!(!m.finds(masked.as_bytes()), "{masked}");
            }
        }
        let masked = m.mask_str(r#"{"k":"\u00e9"}"#);
        assert_eq!(masked, r#"{"k":"\u00e9"}"#, "ordinary text untouched");
    }

    #[test]
    fn a_value_split_across_writes_is_masked() {
        let m = Masker::new(["hunter2-secret"]);
        let text = b"login hunter2-secret ok, and hunter2-secret";
        for split in 1..text.len() {
            let mut s = StreamMasker::new(m.clone());
            let mut out = s.push(&text[..split]);
            out.extend(s.push(&text[split..]));
            out.extend(s.finish());
            let out = String::from_utf8(out).unwrap();
            assert_eq!(
                out,
                format!("login {MARKER} ok, and {MARKER}"),
                "split at {split}"
            );
        }
        // Text that cannot start a value is not held back.
        let mut s = StreamMasker::new(m);
        assert_eq!(s.push(b"plain line\n"), b"plain line\n");
    }

    #[test]
    fn short_values_are_not_masked() {
        let m = Masker::new(["abc"]);
        assert_eq!(m.mask_str("abc abc"), "abc abc");
    }
}
