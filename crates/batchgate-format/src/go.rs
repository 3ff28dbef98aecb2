//! Go standard-library behaviour the text format depends on: `%q` quoting, `ParseFloat` as
//! expfmt uses it, `FormatFloat(f, 'g', -1, 64)` and the amd64 float-to-uint64 conversion.

use std::fmt::Write as _;

/// Go's `%q` of a string (`strconv.Quote`): invalid UTF-8 bytes become `\xHH`.
pub(crate) fn quote(s: impl AsRef<[u8]>) -> String {
    let mut out = String::from("\"");
    for chunk in s.as_ref().utf8_chunks() {
        for c in chunk.valid().chars() {
            escape_char(&mut out, c, '"');
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of a byte: a character literal of the code point U+00XX.
pub(crate) fn quote_byte(b: u8) -> String {
    let mut out = String::from("'");
    escape_char(&mut out, char::from(b), '\'');
    out.push('\'');
    out
}

fn escape_char(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    let _ = match c {
        '\x07' => write!(out, "\\a"),
        '\x08' => write!(out, "\\b"),
        '\x0c' => write!(out, "\\f"),
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        '\x0b' => write!(out, "\\v"),
        c if c < ' ' || c == '\x7f' => write!(out, "\\x{:02x}", c as u32),
        c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32),
        c => write!(out, "\\U{:08x}", c as u32),
    };
}

/// Go's `strconv.IsPrint` (Unicode 13): letters, marks, numbers, punctuation, symbols and the
/// ASCII space. Approximated without tables: controls, non-ASCII spaces, format characters,
/// private use and noncharacters are not printable; unassigned code points count as printable.
fn is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    let format_or_private = matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x8e2 | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0x110bd | 0x110cd | 0x13430..=0x13438 | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xe000..=0xf8ff | 0xf0000.. | 0xfdd0..=0xfdef);
    !(c.is_control() || c.is_whitespace() || format_or_private || u & 0xfffe == 0xfffe)
}

/// expfmt's `parseFloat`: Go's `strconv.ParseFloat(s, 64)`, except that anything containing
/// `p`, `P` or `_` is refused (which rules out every hex float, as those need a `p` exponent).
/// Out-of-range values are errors (Go's `ErrRange`); underflow to zero is not.
pub(crate) fn parse_float(s: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(s).ok()?;
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN); // unsigned only
    }
    // Decimal syntax: digits with at most one '.', at least one digit, optional exponent.
    let b = unsigned.as_bytes();
    let (mut i, mut digits, mut dot) = (0, 0, false);
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => digits += 1,
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if digits == 0 {
        return None;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Go's `uint64(f)` on amd64 (the reference platform): values below 2^63 go through a signed
/// truncating conversion (out of range or NaN gives 2^63; negatives wrap), larger ones are
/// converted after subtracting 2^63 and OR-ed with the top bit.
pub(crate) fn f64_to_u64(f: f64) -> u64 {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let cvt = |x: f64| {
        if (-TWO_63..TWO_63).contains(&x) {
            x as i64 as u64
        } else {
            1 << 63
        }
    };
    if f < TWO_63 { cvt(f) } else { cvt(f - TWO_63) | 1 << 63 }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)` with `+Inf`, `-Inf`, `NaN`.
pub(crate) fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` also yields the shortest digits that round-trip (`d.ddde<exp>`), but where
    // two candidates are equally close it rounds the tie up while Go rounds it to even. Exact
    // formatting with the same digit count rounds ties to even; keep it when it round-trips.
    let shortest = format!("{:e}", value.abs());
    let precision = shortest.split_once('e').map_or(0, |(m, _)| m.len().saturating_sub(2));
    let even = format!("{:.*e}", precision, value.abs());
    let sci = if even.parse() == Ok(value.abs()) {
        even
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or_default();
    let digits = mantissa.replace('.', "");
    let mut out = String::with_capacity(24);
    if value.is_sign_negative() {
        out.push('-');
    }
    // With the shortest precision Go switches to %e when exp < -4 || exp >= 6.
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            let (int, frac) = digits.split_at(int_len);
            let _ = write!(out, "{int}.{frac}");
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(&digits);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(quote(b"1\r"), r#""1\r""#);
        assert_eq!(quote(b"a\xffb"), r#""a\xffb""#);
        assert_eq!(
            quote("é\u{a0}\u{ad}\u{7f}\0\u{1F600}\u{e000}"),
            "\"é\\u00a0\\u00ad\\x7f\\x00\u{1F600}\\ue000\""
        );
        assert_eq!(quote(r#"q"\"#), r#""q\"\\""#);
        assert_eq!(quote_byte(b'}'), "'}'");
        assert_eq!(quote_byte(b'\''), r"'\''");
        assert_eq!(quote_byte(b'"'), r#"'"'"#);
        assert_eq!(quote_byte(b'\n'), r"'\n'");
        assert_eq!(quote_byte(0x85), r"'\u0085'");
        assert_eq!(quote_byte(0xff), "'ÿ'");
    }

    #[test]
    fn float_syntax_matches_go() {
        for ok in [
            "1",
            "-1",
            "+1",
            ".5",
            "5.",
            "1e3",
            "1E+3",
            "1.e3",
            "00.5e-0",
            "Inf",
            "+inf",
            "-Infinity",
            "NaN",
            "nan",
            "1e-400",
        ] {
            assert!(parse_float(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "", ".", "+", "1e", "1e+", "+.e1", "1.5.5", "0x10", "0x1P3", "1_000", "1p3", "-nan", "+nan", "infin",
            "1e400", "-1e400", "++1", " 1", "1\r",
        ] {
            assert!(parse_float(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn float_to_u64_matches_go_amd64() {
        // Observed on Pushgateway 1.5.1 (amd64) through `s_count <value>`.
        let two63 = 1u64 << 63;
        for (f, want) in [
            (-1.0, u64::MAX),
            (1e30, two63),
            (f64::NAN, two63),
            (1.5, 1),
            (18446744073709551616.0, two63),
            (f64::INFINITY, two63),
            (f64::NEG_INFINITY, two63),
            (9223372036854775808.0, two63),
            (9.3e18, 9_300_000_000_000_000_000),
            (-1e30, two63),
            (-0.5, 0),
            (-9.3e18, two63),
            (1.844674407370955e19, 18_446_744_073_709_549_568),
        ] {
            assert_eq!(f64_to_u64(f), want, "{f}");
        }
    }
}
