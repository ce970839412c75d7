//! The signed head as text: one line a person can copy out of `clavitor audit head` and keep
//! elsewhere (a ticket, the SIEM, another machine), and give back to `clavitor audit verify
//! --head`.
//!
//! `clavitor-audit-head:v1:SEQ:HASH:ANCHOR_SEQ:ANCHOR_PREV:MAC` (hashes and MAC in hex). The
//! MAC covers everything but itself (`store::audit::Head::mac_message`).

use super::{hex, unhex};
use crate::store::audit::{Head, SignedHead};

const PREFIX: &str = "clavitor-audit-head";
const VERSION: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error(
        "not a signed audit head: expected clavitor-audit-head:v1:SEQ:HASH:ANCHOR_SEQ:ANCHOR_PREV:MAC, as `clavitor audit head` prints it"
    )]
    Format,
    #[error("a signed audit head of version {0:?}, which this clavitor does not know; upgrade it")]
    Version(String),
}

pub fn head_text(s: &SignedHead) -> String {
    format!(
        "{PREFIX}:{VERSION}:{}:{}:{}:{}:{}",
        s.head.seq,
        hex(&s.head.hash),
        s.head.anchor_seq,
        hex(&s.head.anchor_prev),
        hex(&s.mac)
    )
}

pub fn parse_head(text: &str) -> Result<SignedHead, HeadError> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let [prefix, version, seq, hash, anchor_seq, anchor_prev, mac] = parts[..] else {
        return Err(HeadError::Format);
    };
    if prefix != PREFIX {
        return Err(HeadError::Format);
    }
    if version != VERSION {
        return Err(HeadError::Version(version.chars().take(16).collect()));
    }
    let hash32 = |t: &str| -> Result<[u8; 32], HeadError> {
        unhex(t)
            .and_then(|b| b.try_into().ok())
            .ok_or(HeadError::Format)
    };
    let number = |t: &str| {
        t.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or(HeadError::Format)
    };
    let mac = unhex(mac)
        .filter(|m| m.len() == 32)
        .ok_or(HeadError::Format)?;
    Ok(SignedHead {
        head: Head {
            anchor_seq: number(anchor_seq)?,
            anchor_prev: hash32(anchor_prev)?,
            seq: number(seq)?,
            hash: hash32(hash)?,
        },
        time: 0,
        mac,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_refuses_garbage() {
        let s = SignedHead {
            head: Head {
                anchor_seq: 3,
                anchor_prev: [1; 32],
                seq: 42,
                hash: [0xab; 32],
            },
            time: 0,
            mac: vec![7; 32],
        };
        let text = head_text(&s);
        assert!(text.starts_with("clavitor-audit-head:v1:42:abab"));
        assert_eq!(parse_head(&format!(" {text}\n")).unwrap(), s);
        for bad in [
            "",
            "clavitor-audit-head:v1:42",
            &text.replace(":42:", ":-1:"),
            &text.replace("abab", "zzab"),
            &format!("{text}:x"),
        ] {
            assert!(matches!(parse_head(bad), Err(HeadError::Format)), "{bad}");
        }
        assert!(matches!(
            parse_head(&text.replace(":v1:", ":v9:")),
            Err(HeadError::Version(v)) if v == "v9"
        ));
    }
}
