//! The shared bearer token, read and compared the same way on both sides:
//! the coordinator reads the token file with [`token_from_file`] and sends
//! `Authorization: Bearer <token>`; the agent reads the same file with the
//! same function and accepts a request only when [`is_authorized`] says its
//! header carries that token. One function each, so the two sides cannot
//! disagree about whitespace, encoding or the scheme's case.

use subtle::ConstantTimeEq;

/// Why a token file cannot be used. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("holds no token (it is empty or only whitespace)")]
    Empty,
    #[error("holds characters a bearer token cannot carry (only visible ASCII, no spaces inside)")]
    NotVisibleAscii,
}

/// The token in a token file's bytes: surrounding ASCII whitespace (a
/// trailing newline, CR LF) removed; what remains must be visible ASCII,
/// which is what an HTTP header can carry unchanged.
pub fn token_from_file(bytes: &[u8]) -> Result<String, TokenError> {
    let token = bytes.trim_ascii();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err(TokenError::NotVisibleAscii);
    }
    // Visible ASCII is UTF-8.
    String::from_utf8(token.to_vec()).map_err(|_| TokenError::NotVisibleAscii)
}

/// The token of an `Authorization` header value: scheme `Bearer` in any
/// case (RFC 9110 auth schemes are case-insensitive), one or more spaces,
/// the token, surrounding whitespace ignored.
pub fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    let header = header.trim_ascii();
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Whether `header` (the raw `Authorization` value, if any) carries
/// `expected`; compared in constant time.
pub fn is_authorized(header: Option<&[u8]>, expected: &str) -> bool {
    let presented = header.and_then(bearer_token).unwrap_or_default();
    !expected.is_empty()
        && !presented.is_empty()
        && bool::from(presented.ct_eq(expected.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_are_trimmed_of_ascii_whitespace_only() {
        assert_eq!(token_from_file(b"tok-1\n").unwrap(), "tok-1");
        assert_eq!(token_from_file(b"  tok-1\r\n").unwrap(), "tok-1");
        assert_eq!(token_from_file(b" \n\t"), Err(TokenError::Empty));
        assert_eq!(
            token_from_file("tok\u{a0}".as_bytes()),
            Err(TokenError::NotVisibleAscii)
        );
        assert_eq!(token_from_file(b"to k"), Err(TokenError::NotVisibleAscii));
        assert_eq!(
            token_from_file(b"tok\xff"),
            Err(TokenError::NotVisibleAscii)
        );
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in [
            "Bearer tok",
            "bearer tok",
            "BEARER tok",
            "Bearer   tok ",
            " Bearer tok",
        ] {
            assert!(is_authorized(Some(header.as_bytes()), "tok"), "{header:?}");
        }
        for header in [
            "",
            "Bearer",
            "Bearer ",
            "Basic tok",
            "Bearertok",
            "Bearer tok2",
            "Bearer to",
            "tok",
        ] {
            assert!(!is_authorized(Some(header.as_bytes()), "tok"), "{header:?}");
        }
        assert!(!is_authorized(None, "tok"));
        assert!(!is_authorized(Some(b"Bearer "), ""));
    }
}
