//! Invite codes: `ABC-DEF-GHI`, nine letters from an alphabet without look-alikes,
//! drawn from the operating system's CSPRNG. Only an HMAC of the normalised code under
//! `INVITE_CODE_SECRET` is stored, so a database dump can't be brute-forced offline.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Letters only, without I and O (they read as 1 and 0).
pub const ALPHABET: &[u8; 24] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LETTERS: usize = 9;

/// A well-formed invite code (normalised: nine upper-case letters of [`ALPHABET`]).
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode([u8; LETTERS]);

impl InviteCode {
    /// A new random code.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut code = [0u8; LETTERS];
        let mut filled = 0;
        while filled < LETTERS {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)?;
            // 240 = 10 × 24: rejecting the rest keeps every letter equally likely.
            for b in bytes.into_iter().filter(|b| *b < 240) {
                if filled < LETTERS {
                    code[filled] = ALPHABET[usize::from(b) % ALPHABET.len()];
                    filled += 1;
                }
            }
        }
        Ok(InviteCode(code))
    }

    /// Reads what a person typed: any case, spaces and dashes ignored.
    pub fn parse(input: &str) -> Option<Self> {
        let mut code = [0u8; LETTERS];
        let mut n = 0;
        for c in input.chars().filter(|c| !c.is_whitespace() && *c != '-') {
            let c = u8::try_from(c.to_ascii_uppercase())
                .ok()
                .filter(|c| ALPHABET.contains(c))?;
            *code.get_mut(n)? = c;
            n += 1;
        }
        (n == LETTERS).then_some(InviteCode(code))
    }

    /// The HMAC-SHA256 of the normalised code under the server secret: what is stored.
    pub fn hmac(&self, secret: &SecretString) -> Vec<u8> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&self.0);
        mac.finalize().into_bytes().to_vec()
    }
}

impl std::fmt::Display for InviteCode {
    /// `ABC-DEF-GHI`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |r: std::ops::Range<usize>| {
            std::str::from_utf8(&self.0[r])
                .unwrap_or_default()
                .to_owned()
        };
        write!(f, "{}-{}-{}", s(0..3), s(3..6), s(6..9))
    }
}

impl std::fmt::Debug for InviteCode {
    /// Never printed: a code is a key to a family.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteCode(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ten_thousand_codes_are_well_formed_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let code = InviteCode::generate().expect("entropy").to_string();
            let bytes = code.as_bytes();
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!((bytes[3], bytes[7]), (b'-', b'-'), "{code}");
            assert!(
                code.bytes()
                    .filter(|b| *b != b'-')
                    .all(|b| ALPHABET.contains(&b)),
                "{code}"
            );
            assert!(!code.contains('I') && !code.contains('O'), "{code}");
            assert!(seen.insert(code), "duplicate");
        }
    }

    #[test]
    fn what_people_type_is_normalised() {
        let code = InviteCode::parse("ABC-DEF-GHJ").expect("canonical");
        for typed in [
            "abc-def-ghj",
            "abcdefghj",
            " abc def ghj ",
            "AbC-dEf-GhJ",
            "a-b-c-d-e-f-g-h-j",
        ] {
            assert_eq!(InviteCode::parse(typed).as_ref(), Some(&code), "{typed}");
        }
        for bad in [
            "",
            "ABC-DEF-GH",
            "ABC-DEF-GHJK",
            "ABC-DEF-GH1",
            "ABO-DEF-GHJ",
            "ÁBC-DEF-GHJ",
        ] {
            assert!(InviteCode::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_hmac_depends_on_the_secret_and_the_code_is_never_debug_printed() {
        let code = InviteCode::parse("ABC-DEF-GHJ").expect("code");
        let (a, b) = (SecretString::from("one"), SecretString::from("two"));
        assert_ne!(code.hmac(&a), code.hmac(&b));
        assert_eq!(
            code.hmac(&a),
            InviteCode::parse("abcdefghj").expect("code").hmac(&a)
        );
        assert!(!format!("{code:?}").contains("ABC"));
    }
}
