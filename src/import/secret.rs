//! Which fields look secret, by name, when the source format does not say (CSV columns,
//! plain custom fields). Formats that mark secrets (Bitwarden hidden fields, KeePass protected
//! strings, 1Password concealed values) use their mark as well.
//!
//! A false positive costs little (the value is readable by tokens granting the import scope,
//! the owner included); a false negative leaves a secret readable with `master.key` alone, so
//! the rule leans towards secret.

/// Name fragments that mark a secret wherever they appear in the name, once lowercased and
/// stripped of everything but letters and digits ("API Key" -> "apikey").
const FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "signingkey",
    "recoverycode",
    "backupcode",
    "securitycode",
    "cardnumber",
    "seedphrase",
    "mnemonic",
    "otpauth",
    "credential",
];

/// Whole words (split at anything but letters and digits, and at lower-to-upper case changes)
/// that mark a secret; too short to match inside other words ("pin" is in "shipping").
const WORDS: &[&str] = &[
    "pass", "pwd", "pw", "pin", "otp", "totp", "hotp", "mfa", "2fa", "cvv", "cvc", "cvv2", "cvn",
    "ssn", "key", "seed", "puk",
];

/// Whether a field called `name` should be treated as a secret.
pub fn looks_secret(name: &str) -> bool {
    let compact: String = name
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if FRAGMENTS.iter().any(|f| compact.contains(f)) {
        return true;
    }
    words(name).any(|w| WORDS.contains(&w.as_str()))
}

/// Lowercased words of `name`: split at non-alphanumerics and at camelCase boundaries.
fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
}

#[cfg(test)]
mod tests {
    use super::looks_secret;

    #[test]
    fn secret_names() {
        for n in [
            "password",
            "Password",
            "login_password",
            "DB Password",
            "api_key",
            "API Key",
            "apiKey",
            "AWS secret access key",
            "GitHub token",
            "TOTP",
            "otp",
            "PIN",
            "card PIN",
            "CVV",
            "Security code",
            "recovery codes",
            "SSH private key",
            "seed",
            "pass",
            "otpauth",
        ] {
            assert!(looks_secret(n), "{n:?} should look secret");
        }
    }

    #[test]
    fn plain_names() {
        for n in [
            "username",
            "email",
            "url",
            "notes",
            "shipping address",
            "Spinner",
            "title",
            "folder",
            "expiry",
            "cardholder name",
            "company",
            "passenger",
            "keyboard layout",
        ] {
            assert!(!looks_secret(n), "{n:?} should not look secret");
        }
    }
}
