//! Word-at-a-time byte scanning shared by the JSON decoder and encoder: finding the next
//! byte a JSON string must escape, and comparing short strings by words.

/// Which escape each byte needs, as `serde_json` writes strings: 0 none, `u` for `\u00XX`.
pub(super) static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit of each byte) the bytes of `w` that are a control character, `"` or `\`.
///
/// Each of the three tests is exact for its lowest marked byte (a false mark can only
/// follow a true one), so the lowest marked byte of the union is the first byte that needs
/// escaping (`w` is read little-endian).
#[inline]
pub(super) fn escape_mask(w: u64) -> u64 {
    let zero_bytes = |v: u64| v.wrapping_sub(LO) & !v & HI;
    let control = w.wrapping_sub(LO * 0x20) & !w & HI;
    control | zero_bytes(w ^ (LO * b'"' as u64)) | zero_bytes(w ^ (LO * b'\\' as u64))
}

/// The index of the first byte at or after `from` that needs escaping.
#[inline]
pub(super) fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(word) = load8(bytes, i) {
        let mask = escape_mask(word);
        if mask != 0 {
            return Some(i + (mask.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if ESCAPE[b as usize] != 0 {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The 8 bytes at `at` as a little-endian word, if there are 8.
#[inline]
pub(super) fn load8(bytes: &[u8], at: usize) -> Option<u64> {
    let chunk = bytes.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes)
}

/// The 4 bytes at `at` as a little-endian word, if there are 4.
#[inline]
pub(super) fn load4(bytes: &[u8], at: usize) -> Option<u32> {
    let chunk = bytes.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(chunk).ok().map(u32::from_le_bytes)
}
