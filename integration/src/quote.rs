//! Shell quoting in the two styles that gitlab-runner's bash writer uses.
//!
//! `ansi_c_quote` follows `helpers.ShellEscape` (gitlab-runner 19.4): a string of
//! only "literal" bytes stays bare, anything else is wrapped in bash ANSI-C quotes
//! `$'…'`. Inside those quotes the usual C escapes are used, and every byte outside
//! printable ASCII becomes `\xNN`, so arbitrary bytes (including invalid UTF-8)
//! survive one round of bash parsing unchanged.
//!
//! `go_quote` follows Go's `strconv.Quote` (the `%q` verb), which the runner uses
//! for paths in `printf`, `mkdir` and `export` lines and for the hostname banner.

/// Treatment of one byte by `ansi_c_quote`.
enum ByteClass {
    /// Needs no quoting at all.
    Literal,
    /// Is kept as is, but forces the `$'…'` form.
    NeedsQuotes,
    /// Is written as the given escape sequence.
    Escape(&'static str),
    /// Is written as `\xNN`.
    Hex,
}

fn classify_byte(byte: u8) -> ByteClass {
    match byte {
        b'\x07' => ByteClass::Escape("\\a"),
        b'\x08' => ByteClass::Escape("\\b"),
        b'\t' => ByteClass::Escape("\\t"),
        b'\n' => ByteClass::Escape("\\n"),
        b'\x0b' => ByteClass::Escape("\\v"),
        b'\x0c' => ByteClass::Escape("\\f"),
        b'\r' => ByteClass::Escape("\\r"),
        b'\'' => ByteClass::Escape("\\'"),
        b'\\' => ByteClass::Escape("\\\\"),
        b',' | b'-' | b'.' | b'/' | b'@' | b'_' => ByteClass::Literal,
        b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => ByteClass::Literal,
        b' ' | b'!' | b'"' | b'#' | b'$' | b'%' | b'&' | b'(' | b')' | b'*' | b'+' | b':'
        | b';' | b'<' | b'=' | b'>' | b'?' | b'[' | b']' | b'^' | b'`' | b'{' | b'|' | b'}'
        | b'~' => ByteClass::NeedsQuotes,
        _ => ByteClass::Hex,
    }
}

/// Quotes `input` for bash the way gitlab-runner's `ShellEscape` does.
///
/// The empty string becomes `''`. Bash turns the result back into exactly
/// `input`, whatever bytes it contains, except NUL, which no shell word can hold.
pub fn ansi_c_quote(input: &[u8]) -> Vec<u8> {
    if input.is_empty() {
        return b"''".to_vec();
    }

    let mut quoted = Vec::with_capacity(input.len() * 2 + 3);
    let mut needs_quotes = false;
    for &byte in input {
        match classify_byte(byte) {
            ByteClass::Literal => quoted.push(byte),
            ByteClass::NeedsQuotes => {
                quoted.push(byte);
                needs_quotes = true;
            }
            ByteClass::Escape(sequence) => {
                quoted.extend_from_slice(sequence.as_bytes());
                needs_quotes = true;
            }
            ByteClass::Hex => {
                quoted.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
                needs_quotes = true;
            }
        }
    }

    if !needs_quotes {
        return quoted;
    }
    let mut wrapped = Vec::with_capacity(quoted.len() + 3);
    wrapped.extend_from_slice(b"$'");
    wrapped.extend_from_slice(&quoted);
    wrapped.push(b'\'');
    wrapped
}

/// Quotes `input` as a Go double-quoted string literal, like `strconv.Quote`.
///
/// Bash reads the result inside double quotes, so it still expands `$(…)` and
/// `$VAR` in `input`. The runner relies on that for `Running on $(hostname)...`.
// NOTE: Go also escapes non-printable Unicode code points, for example U+00A0 as
// `\u00a0`. This version passes every non-ASCII character through unchanged.
// Like Go, it writes invalid UTF-8 bytes as `\xNN`.
pub fn go_quote(input: &[u8]) -> Vec<u8> {
    let mut quoted = Vec::with_capacity(input.len() + 2);
    quoted.push(b'"');
    for chunk in input.utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '"' => quoted.extend_from_slice(b"\\\""),
                '\\' => quoted.extend_from_slice(b"\\\\"),
                '\x07' => quoted.extend_from_slice(b"\\a"),
                '\x08' => quoted.extend_from_slice(b"\\b"),
                '\x0c' => quoted.extend_from_slice(b"\\f"),
                '\n' => quoted.extend_from_slice(b"\\n"),
                '\r' => quoted.extend_from_slice(b"\\r"),
                '\t' => quoted.extend_from_slice(b"\\t"),
                '\x0b' => quoted.extend_from_slice(b"\\v"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    quoted.extend_from_slice(format!("\\x{:02x}", c as u32).as_bytes());
                }
                c => {
                    let mut buffer = [0u8; 4];
                    quoted.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                }
            }
        }
        for &byte in chunk.invalid() {
            quoted.extend_from_slice(format!("\\x{byte:02x}").as_bytes());
        }
    }
    quoted.push(b'"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ansi(input: &str) -> String {
        String::from_utf8(ansi_c_quote(input.as_bytes())).unwrap()
    }

    #[test]
    fn ansi_c_quote_leaves_literals_bare() {
        assert_eq!(ansi("abc-1.2/x_y@z,"), "abc-1.2/x_y@z,");
    }

    #[test]
    fn ansi_c_quote_empty_string() {
        assert_eq!(ansi(""), "''");
    }

    #[test]
    fn ansi_c_quote_escapes_specials() {
        assert_eq!(ansi("a b"), "$'a b'");
        assert_eq!(ansi("it's"), "$'it\\'s'");
        assert_eq!(ansi("back\\slash"), "$'back\\\\slash'");
        assert_eq!(ansi("line1\nline2"), "$'line1\\nline2'");
        assert_eq!(ansi("$HOME `id`"), "$'$HOME `id`'");
    }

    #[test]
    fn ansi_c_quote_hex_for_non_ascii() {
        assert_eq!(ansi("é"), "$'\\xc3\\xa9'");
        assert_eq!(
            String::from_utf8(ansi_c_quote(&[0xff, b'a'])).unwrap(),
            "$'\\xffa'"
        );
        assert_eq!(ansi("\x1b[0m"), "$'\\x1b[0m'");
    }

    #[test]
    fn go_quote_escapes_quotes_and_controls() {
        let quoted = go_quote(b"a\"b\\c\nd\x01");
        assert_eq!(
            String::from_utf8(quoted).unwrap(),
            "\"a\\\"b\\\\c\\nd\\x01\""
        );
    }

    #[test]
    fn go_quote_keeps_unicode_and_hexes_invalid_bytes() {
        let quoted = go_quote(&[b'x', 0xc3, 0xa9, 0xff]);
        assert_eq!(String::from_utf8(quoted).unwrap(), "\"xé\\xff\"");
    }
}
