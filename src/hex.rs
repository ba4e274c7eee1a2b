//! Lowercase hexadecimal text of bytes, as binfmt_misc entries, image digests and the
//! driver's cache files use it.

/// Returns `bytes` as lowercase hexadecimal text, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Returns the bytes of hexadecimal text, or `None` when the text has an odd length or a
/// character that is not a hexadecimal digit.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x7f, 0x45, 0xff];
        assert_eq!(encode(&bytes), "007f45ff");
        assert_eq!(decode("007f45FF"), Some(bytes.to_vec()));
    }

    #[test]
    fn invalid_hex_is_none() {
        assert_eq!(decode("7f4"), None);
        assert_eq!(decode("7fzz"), None);
        assert_eq!(decode("éé"), None);
    }
}
