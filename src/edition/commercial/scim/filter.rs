//! The SCIM filter grammar this server needs (RFC 7644 §3.4.2.2, a subset): `ATTR eq "VALUE"`
//! joined by `and`, e.g. `userName eq "alice@example.com"`, and the value path of PATCH,
//! `members[value eq "ID"]`.

/// One `ATTR eq "VALUE"` comparison; the attribute name is compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eq {
    pub attr: String,
    pub value: String,
}

/// Parses `A eq "x" and B eq "y"`. Anything else is refused with what is supported.
pub fn parse(text: &str) -> Result<Vec<Eq>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    loop {
        let (attr, after) = rest
            .split_once(char::is_whitespace)
            .ok_or_else(|| unsupported(text))?;
        let after = after.trim_start();
        let (op, after) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| unsupported(text))?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(format!(
                "filter operator {op:?} is not supported; this server supports `eq` joined by `and`"
            ));
        }
        let (value, after) = quoted(after.trim_start()).ok_or_else(|| unsupported(text))?;
        out.push(Eq {
            attr: attr.to_owned(),
            value,
        });
        let after = after.trim_start();
        if after.is_empty() {
            return Ok(out);
        }
        let (and, after) = after
            .split_once(char::is_whitespace)
            .ok_or_else(|| unsupported(text))?;
        if !and.eq_ignore_ascii_case("and") {
            return Err(unsupported(text));
        }
        rest = after.trim_start();
    }
}

fn unsupported(text: &str) -> String {
    format!("cannot parse filter {text:?}; this server supports ATTR eq \"VALUE\" joined by and")
}

/// A JSON string literal at the start of `s`, and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    if !s.starts_with('"') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => {
                let value: String = serde_json::from_str(&s[..=i]).ok()?;
                return Some((value, &s[i + 1..]));
            }
            _ => i += 1,
        }
    }
    None
}

/// A PATCH path: `attr`, or `attr[filter]` (with an optional `.sub` after it).
#[derive(Debug, PartialEq, Eq)]
pub struct Path {
    pub attr: String,
    pub filter: Vec<Eq>,
    pub sub: Option<String>,
}

pub fn parse_path(text: &str) -> Result<Path, String> {
    let text = text.trim();
    match text.split_once('[') {
        None => {
            let (attr, sub) = match text.split_once('.') {
                // A schema URN prefix (e.g. the enterprise extension) is not a sub-attribute.
                Some((a, s)) if !a.contains(':') => (a.to_owned(), Some(s.to_owned())),
                _ => (text.to_owned(), None),
            };
            Ok(Path {
                attr,
                filter: Vec::new(),
                sub,
            })
        }
        Some((attr, rest)) => {
            let (inner, after) = rest
                .rsplit_once(']')
                .ok_or_else(|| format!("path {text:?} has no closing ]"))?;
            let sub = after.strip_prefix('.').map(str::to_owned);
            Ok(Path {
                attr: attr.to_owned(),
                filter: parse(inner)?,
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eq_and_value_paths_parse() {
        assert_eq!(
            parse(r#"userName eq "a@b.c""#).unwrap(),
            [Eq {
                attr: "userName".into(),
                value: "a@b.c".into()
            }]
        );
        let two = parse(r#"userName Eq "x \"y\"" AND externalId eq "e1""#).unwrap();
        assert_eq!(two[0].value, "x \"y\"");
        assert_eq!(two[1].attr, "externalId");
        assert!(parse(r#"userName co "a""#).is_err());
        assert!(parse(r#"userName eq a"#).is_err());
        assert!(parse(r#"userName eq "a" or x eq "b""#).is_err());
        let p = parse_path(r#"members[value eq "2819c223"]"#).unwrap();
        assert_eq!(p.attr, "members");
        assert_eq!(p.filter[0].value, "2819c223");
        let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(
            parse_path("name.givenName").unwrap().sub.as_deref(),
            Some("givenName")
        );
    }
}
