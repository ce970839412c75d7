//! Human (non `--json`) output of text the server supplies: titles, names, ids, messages.
//!
//! Such text is whatever someone with write access (or a hostile server) chose. Printed raw, a
//! U+202E RIGHT-TO-LEFT OVERRIDE makes `txt.exe` read as `exe.txt`, a U+2028 LINE SEPARATOR or
//! a newline forges a table row, and an ESC starts a terminal control sequence. So every
//! control character (Unicode Cc: C0, DEL, C1), the bidi controls (Bidi_Control: U+061C,
//! U+200E, U+200F, U+202A..U+202E, U+2066..U+2069) and the line and paragraph separators
//! (U+2028, U+2029) print as escapes: `\n`, `\r`, `\t`, else `\u{XXXX}`. Everything else,
//! including non-Latin scripts and emoji, prints as it is. `--json` output is JSON-escaped by
//! serde instead, and `read` prints a value as data, byte for byte.

use std::borrow::Cow;

/// True for a character that must not reach a terminal raw.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `s` with control, bidi and separator characters escaped; borrowed when there are none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:04X}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// [`escape`], cut to at most `max` characters of the original (long server text is shortened
/// in error messages, never in tables).
pub fn escape_short(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", escape(&s[..at])),
        None => escape(s).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_untouched_and_borrowed() {
        for s in [
            "Prod DB",
            "",
            "Zürich – 東京 🔑",
            "back\\slash",
            "a\u{200D}b",
            "עברית",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(x) if x == s), "{s:?}");
        }
    }

    #[test]
    fn controls_bidi_and_separators_are_escaped() {
        for (raw, shown) in [
            ("invoice\u{202E}fdp.exe", "invoice\\u{202E}fdp.exe"),
            ("a\u{2028}b\u{2029}c", "a\\u{2028}b\\u{2029}c"),
            ("row\nforged", "row\\nforged"),
            ("\r\t", "\\r\\t"),
            ("\u{1b}[31mred", "\\u{001B}[31mred"),
            ("nul\0", "nul\\u{0000}"),
            ("del\u{7f}c1\u{85}", "del\\u{007F}c1\\u{0085}"),
            ("\u{061C}\u{200E}\u{200F}", "\\u{061C}\\u{200E}\\u{200F}"),
            (
                "\u{202A}\u{202B}\u{202C}\u{202D}",
                "\\u{202A}\\u{202B}\\u{202C}\\u{202D}",
            ),
            (
                "\u{2066}\u{2067}\u{2068}\u{2069}",
                "\\u{2066}\\u{2067}\\u{2068}\\u{2069}",
            ),
        ] {
            assert_eq!(escape(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn short_escapes_cut_on_a_character_boundary() {
        assert_eq!(escape_short("héllo wörld", 5), "héllo...");
        assert_eq!(escape_short("ab\ncd", 3), "ab\\n...");
        assert_eq!(escape_short("abc", 3), "abc");
        assert_eq!(escape_short("", 0), "");
    }
}
