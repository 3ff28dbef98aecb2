//! Robustness without a fuzzer: thousands of pseudo-random and mutated inputs must never make
//! the parser or decoder panic (the fuzz targets under /fuzz do the same, longer).

use batchgate_format::delimited::{decode, encode};
use batchgate_format::text::{is_text_encodable, parse, write_family};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const SEEDS: &[&[u8]] = &[
    b"# HELP a_total Help \\\\ \\n.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3 1700000000000\n",
    b"# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 4\ns{l=\"x\",quantile=\"0.9\"} 7\n",
    b"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n",
    b"# TYPE gh gauge_histogram\ngh{a=\"1\"} 1\nu 1\nv{a=\"b\",} NaN\nx{} -Inf\n",
];
const ALPHABET: &[u8] = b"{}\",=\\\n \t#\r.eE+-0123456789abxyz_:HELPTYPE\xff\xc3\xa9";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..=rng.below(4) {
        let pos = rng.below(b.len() + 1);
        match rng.below(5) {
            0 if !b.is_empty() => {
                b.remove(pos.min(b.len() - 1));
            }
            1 => b.insert(pos, ALPHABET[rng.below(ALPHABET.len())]),
            2 if !b.is_empty() => {
                let i = pos.min(b.len() - 1);
                b[i] = rng.next() as u8;
            }
            3 => b.truncate(pos),
            _ => {
                let other = SEEDS[rng.below(SEEDS.len())];
                let start = rng.below(other.len());
                let end = (start + rng.below(40)).min(other.len());
                b.splice(pos..pos, other[start..end].iter().copied());
            }
        }
    }
    b
}

fn exercise_text(input: &[u8]) {
    if let Ok(families) = parse(input) {
        let mut out = Vec::new();
        for f in &families {
            write_family(&mut out, f);
            let _ = is_text_encodable(f);
        }
        let _ = parse(&out);
        for f in &families {
            encode(f, &mut out);
        }
    }
}

#[test]
fn text_parser_survives_random_and_mutated_input() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(120);
        let random: Vec<u8> = (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect();
        exercise_text(&random);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise_text(&raw);
        let seed = SEEDS[rng.below(SEEDS.len())];
        let mutated = mutate(&mut rng, seed);
        exercise_text(&mutated);
    }
}

#[test]
fn delimited_decoder_survives_random_and_mutated_input() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut valid = Vec::new();
    for seed in SEEDS {
        for f in parse(seed).expect("seed parses") {
            encode(&f, &mut valid);
        }
    }
    for _ in 0..3000 {
        let len = rng.below(200);
        let raw: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = decode(&raw);
        let mut mutated = valid.clone();
        for _ in 0..=rng.below(4) {
            let i = rng.below(mutated.len());
            match rng.below(3) {
                0 => mutated[i] = rng.next() as u8,
                1 => mutated.truncate(i),
                _ => mutated.insert(i, rng.next() as u8),
            }
            if mutated.is_empty() {
                break;
            }
        }
        if let Ok(families) = decode(&mutated) {
            let mut out = Vec::new();
            for f in &families {
                write_family(&mut out, f);
            }
        }
    }
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // 5-byte prefix announcing ~32 GiB, followed by a few bytes.
    assert!(decode(b"\xff\xff\xff\xff\x7f\x0a\x01x").is_err());
}

#[test]
fn many_labels_on_one_line_parse_in_linear_time() {
    let mut line = b"x{".to_vec();
    for i in 0..20_000 {
        line.extend_from_slice(format!("l{i}=\"v\",").as_bytes());
    }
    line.extend_from_slice(b"} 1\n");
    let f = parse(&line).expect("parses");
    assert_eq!(f[0].metric[0].label.len(), 20_000);
}
