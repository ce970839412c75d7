//! `clavitor://ENTRY/FIELD` references, and `{{ clavitor://ENTRY/FIELD }}` placeholders in text
//! (the proxy's headers and body, `clavitor inject` templates).

use super::{Invalid, invalid};

pub const SCHEME: &str = "clavitor://";

/// `ENTRY` (an id or an exact title, which may itself contain '/') and `FIELD` (never '/').
pub fn parse_reference(r: &str) -> Result<(&str, &str), Invalid> {
    let rest = r.strip_prefix(SCHEME).ok_or_else(|| {
        invalid(format!(
            "{r:?} is not a reference; expected clavitor://ENTRY/FIELD"
        ))
    })?;
    match rest.rsplit_once('/') {
        Some((e, f)) if !e.is_empty() && !f.is_empty() => Ok((e, f)),
        _ => Err(invalid(format!("{r:?}: expected clavitor://ENTRY/FIELD"))),
    }
}

/// A placeholder found in a text: its byte range (braces included) and the reference inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub start: usize,
    pub end: usize,
    pub reference: String,
}

/// Every `{{ clavitor://ENTRY/FIELD }}` in `text` (spaces inside the braces optional). Other
/// `{{...}}` text is left alone; a placeholder that is not a valid reference is an error.
pub fn placeholders(text: &str) -> Result<Vec<Placeholder>, Invalid> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(open) = text[from..].find("{{").map(|i| from + i) {
        let inner_start = open + 2;
        let trimmed = text[inner_start..].trim_start_matches([' ', '\t']);
        if !trimmed.starts_with(SCHEME) {
            from = inner_start;
            continue;
        }
        let Some(close) = text[inner_start..].find("}}").map(|i| inner_start + i) else {
            return Err(invalid(format!(
                "a placeholder opened at byte {open} is not closed with }}}}"
            )));
        };
        let reference = text[inner_start..close].trim_matches([' ', '\t']);
        parse_reference(reference)?;
        out.push(Placeholder {
            start: open,
            end: close + 2,
            reference: reference.to_owned(),
        });
        from = close + 2;
    }
    Ok(out)
}

/// `text` with each placeholder replaced by `value(reference)`.
pub fn fill(text: &str, found: &[Placeholder], mut value: impl FnMut(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for p in found {
        out.push_str(&text[last..p.start]);
        out.push_str(&value(&p.reference));
        last = p.end;
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        let t = "Bearer {{clavitor://Prod DB/api_key}} and {{ clavitor://a/b/c }} {{other}}";
        let found = placeholders(t).unwrap();
        let refs: Vec<&str> = found.iter().map(|p| p.reference.as_str()).collect();
        assert_eq!(refs, ["clavitor://Prod DB/api_key", "clavitor://a/b/c"]);
        let filled = fill(t, &found, |r| {
            format!("<{}>", parse_reference(r).unwrap().1)
        });
        assert_eq!(filled, "Bearer <api_key> and <c> {{other}}");
        assert!(placeholders("{{ clavitor://nofield }}").is_err());
        assert!(placeholders("{{clavitor://a/b").is_err());
        assert_eq!(parse_reference("clavitor://a/b/c").unwrap(), ("a/b", "c"));
    }
}
