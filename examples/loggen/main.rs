//! Generates a mixed mail log for benchmarks and examples. Deterministic for a given
//! seed.
//!
//! cargo run --release --example loggen -- --lines 1000000 --seed 1 > mail.log
//! cargo run --release --example loggen -- --profile classic --lines 1000000 > mail.log
//!
//! Profiles:
//! - `realistic` (the default): the line mix of a busy Debian mail host (Postfix with
//!   Dovecot LMTP, SASL and IMAP), RFC 3339 stamps as Debian's rsyslog writes them,
//!   lines of about 150 bytes; see `realistic.rs` for the shares.
//! - `classic`: the mix the issue 2 benchmarks used (shorter lines, more failures).
//!
//! `--mix` prints, on stderr, the share of each program tag, the average line length and
//! how many distinct addresses failed, so BENCHMARKS.md can say what was measured.

mod classic;
mod realistic;

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};

pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n
    }
    pub fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day, seconds of the day) of a Unix time.
pub fn civil_full(t: i64) -> (i64, i64, i64, i64) {
    let (y, m, d) = saslguard::time::civil_from_days(t.div_euclid(86_400));
    (y, m, d, t.rem_euclid(86_400))
}

/// (month 0-11, day, seconds of the day) of a Unix time.
pub fn civil(t: i64) -> (i64, i64, i64) {
    let (_, m, d, secs) = civil_full(t);
    (m - 1, d, secs)
}

/// The output buffer, with what `--mix` reports.
#[derive(Default)]
pub struct Out {
    pub text: String,
    pub lines: u64,
    bytes: u64,
    tags: BTreeMap<&'static str, u64>,
    failing: HashSet<String>,
    count_mix: bool,
}

impl Out {
    pub fn line(&mut self, stamp: &str, host: &str, rest: &str) {
        let before = self.text.len();
        let _ = writeln!(self.text, "{stamp} {host} {rest}");
        self.note(before, rest);
    }
    pub fn raw(&mut self, text: &str) {
        let before = self.text.len();
        let _ = writeln!(self.text, "{text}");
        self.note(before, text);
    }
    /// An address that failed to log in (for `--mix`).
    pub fn failing(&mut self, addr: &str) {
        if self.count_mix && !self.failing.contains(addr) {
            self.failing.insert(addr.to_string());
        }
    }
    fn note(&mut self, before: usize, rest: &str) {
        self.lines += 1;
        self.bytes += (self.text.len() - before) as u64;
        if self.count_mix {
            *self.tags.entry(tag_class(rest)).or_default() += 1;
        }
    }
}

/// The program-tag classes the mix is stated in.
fn tag_class(rest: &str) -> &'static str {
    let tag = rest.split(['[', ':', ' ']).next().unwrap_or("");
    match tag {
        "postfix/smtpd" => "postfix/smtpd",
        "postfix/submission/smtpd" => "postfix/submission/smtpd",
        "postfix/smtps/smtpd" => "postfix/smtps/smtpd",
        "postfix/qmgr" => "postfix/qmgr",
        "postfix/cleanup" => "postfix/cleanup",
        "postfix/lmtp" => "postfix/lmtp",
        "postfix/smtp" => "postfix/smtp",
        "dovecot" => "dovecot",
        t if t.starts_with("postfix/") => "postfix/other",
        _ => "other",
    }
}

trait Profile {
    fn step(&mut self);
    fn out(&mut self) -> &mut Out;
}

impl Profile for classic::Gen {
    fn step(&mut self) {
        classic::Gen::step(self)
    }
    fn out(&mut self) -> &mut Out {
        classic::Gen::out(self)
    }
}

impl Profile for realistic::Gen {
    fn step(&mut self) {
        realistic::Gen::step(self)
    }
    fn out(&mut self) -> &mut Out {
        realistic::Gen::out(self)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let get = |name: &str, default: u64| -> u64 {
        value(name).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    let lines = get("--lines", 1_000_000);
    let seed = get("--seed", 1).max(1);
    let start = get("--start", 1_795_305_600) as i64; // 2026-11-22T00:00:00Z
    let mix = args.iter().any(|a| a == "--mix");
    let mut generator: Box<dyn Profile> = match value("--profile").map(String::as_str) {
        None | Some("realistic") => Box::new(realistic::Gen::new(seed, start)),
        Some("classic") => Box::new(classic::Gen::new(seed, start)),
        Some(other) => {
            eprintln!("loggen: unknown profile {other:?} (realistic, classic)");
            std::process::exit(64);
        }
    };
    generator.out().count_mix = mix;
    let stdout = std::io::stdout();
    let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
    while generator.out().lines < lines {
        generator.step();
        let out = generator.out();
        if out.text.len() > 1 << 20 {
            if w.write_all(out.text.as_bytes()).is_err() {
                return;
            }
            out.text.clear();
        }
    }
    let out = generator.out();
    let _ = w.write_all(out.text.as_bytes());
    let _ = w.flush();
    if mix {
        let total = out.lines.max(1) as f64;
        eprintln!(
            "lines {}, average {:.0} bytes, {} distinct failing addresses",
            out.lines,
            out.bytes as f64 / total,
            out.failing.len()
        );
        let mut tags: Vec<_> = out.tags.iter().collect();
        tags.sort_by(|a, b| b.1.cmp(a.1));
        for (tag, n) in tags {
            eprintln!("{:>5.1}%  {tag}", *n as f64 * 100.0 / total);
        }
    }
}
