//! Variable expansion as gitlab-runner applies it to job variables.
//!
//! The runner expands `$NAME` and `${NAME}` references in every variable that is
//! not marked `raw`, using Go's `os.Expand` grammar. References resolve against the
//! unexpanded list (the last variable with that key wins), so expansion is one
//! level deep. `$$` becomes `$`, the other shell special parameters (`$1`, `$*`,
//! `$?`, …) become empty, and unknown names become empty.

/// Returns whether `byte` names a shell special parameter in Go's `os.Expand`.
fn is_special_parameter(byte: u8) -> bool {
    matches!(
        byte,
        b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-' | b'0'..=b'9'
    )
}

fn is_name_byte(byte: u8) -> bool {
    byte == b'_' || byte.is_ascii_alphanumeric()
}

/// The reference found after a `$`.
enum Reference<'a> {
    /// A name to look up.
    Name(&'a [u8]),
    /// Bad syntax such as `${` or `${}`: the bytes are dropped.
    Invalid,
    /// No name follows: the `$` stays as it is.
    None,
}

/// Parses the reference that starts right after a `$` and returns it with the
/// number of bytes it spans.
fn parse_reference(rest: &[u8]) -> (Reference<'_>, usize) {
    if rest[0] == b'{' {
        if rest.len() > 2 && is_special_parameter(rest[1]) && rest[2] == b'}' {
            return (Reference::Name(&rest[1..2]), 3);
        }
        return match rest.iter().skip(1).position(|&byte| byte == b'}') {
            Some(0) => (Reference::Invalid, 2),
            Some(offset) => (Reference::Name(&rest[1..offset + 1]), offset + 2),
            None => (Reference::Invalid, 1),
        };
    }
    if is_special_parameter(rest[0]) {
        return (Reference::Name(&rest[..1]), 1);
    }
    let length = rest.iter().take_while(|&&byte| is_name_byte(byte)).count();
    if length == 0 {
        (Reference::None, 0)
    } else {
        (Reference::Name(&rest[..length]), length)
    }
}

/// Expands `$NAME`, `${NAME}` and special parameters in `value`.
///
/// `lookup` receives each name and returns its value. Special parameters other
/// than `$` become the empty string without a call to `lookup`, as in the
/// runner's variable list.
pub fn expand(value: &[u8], lookup: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let mut expanded = Vec::with_capacity(value.len());
    let mut index = 0;
    while index < value.len() {
        let byte = value[index];
        if byte != b'$' || index + 1 >= value.len() {
            expanded.push(byte);
            index += 1;
            continue;
        }

        let (reference, width) = parse_reference(&value[index + 1..]);
        match reference {
            Reference::Name(b"$") => expanded.push(b'$'),
            Reference::Name(name) if name.len() == 1 && is_special_parameter(name[0]) => {}
            Reference::Name(name) => expanded.extend_from_slice(&lookup(name)),
            Reference::Invalid => {}
            Reference::None => expanded.push(b'$'),
        }
        index += 1 + width;
    }
    expanded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_with_home(value: &str) -> String {
        let lookup = |name: &[u8]| -> Vec<u8> {
            match name {
                b"HOME" => b"/root".to_vec(),
                b"A_B" => b"ab".to_vec(),
                _ => Vec::new(),
            }
        };
        String::from_utf8(expand(value.as_bytes(), &lookup)).unwrap()
    }

    #[test]
    fn expand_names_and_braces() {
        assert_eq!(expand_with_home("$HOME/x"), "/root/x");
        assert_eq!(expand_with_home("${HOME}x"), "/rootx");
        assert_eq!(expand_with_home("$A_B-$UNKNOWN."), "ab-.");
    }

    #[test]
    fn expand_special_parameters() {
        assert_eq!(expand_with_home("a$$b"), "a$b");
        assert_eq!(expand_with_home("x$1y$?z${*}"), "xyz");
    }

    #[test]
    fn expand_keeps_lone_dollar() {
        assert_eq!(expand_with_home("cost $ 5"), "cost $ 5");
        assert_eq!(expand_with_home("end$"), "end$");
        assert_eq!(expand_with_home("$'q'"), "$'q'");
    }

    #[test]
    fn expand_drops_bad_brace_syntax() {
        assert_eq!(expand_with_home("a${}b"), "ab");
        assert_eq!(expand_with_home("a${HOME"), "aHOME");
    }
}
