//! Parse cost per byte of pathological lines, from 100 B to 16 KB: every parser path
//! must stay linear in the line length, so the ns/byte column must stay flat as lines
//! grow. `cargo run --release --example parse_cost`; results in BENCHMARKS.md.

use saslguard::parse::parse_prefixed;
use saslguard::source::stamp;
use saslguard::time::{YearResolver, Zone};
use std::time::Instant;

/// A line of about `len` bytes: `head`, then `unit` repeated, then `end`.
fn line(head: &str, unit: &str, end: &str, len: usize) -> String {
    let n = len.saturating_sub(head.len() + end.len()) / unit.len().max(1);
    format!("{head}{}{end}", unit.repeat(n.max(1)))
}

fn main() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "normal auth line",
            "Nov 22 08:01:00 mx dovecot: auth: passwd-file(",
            "a",
            ",203.0.113.66): Password mismatch",
        ),
        (
            "`)<` repeated",
            "Nov 22 08:01:00 mx dovecot: auth(",
            ")<",
            ",203.0.113.66,sasl:plain)<x>: passwd-file: Password mismatch",
        ),
        (
            "fake anchors + `x): unknown user`",
            "Nov 22 08:01:00 mx dovecot: auth: passwd-file(: a(: b(: c(: d(: e(: f(: g(: h(: i(: j(: k(: l(: m(: n(: o(: p(",
            "x): unknown user,192.0.2.1): unknown user",
            ",203.0.113.66): Password mismatch",
        ),
        (
            "deep `: a(` nesting",
            "Nov 22 08:01:00 mx dovecot: auth: passwd-file(",
            ": a(",
            ",203.0.113.66): Password mismatch",
        ),
        (
            "login line, fake fields",
            "Nov 22 08:01:00 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<",
            ">, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2",
            ">, method=PLAIN, rip=203.0.113.66, lip=192.0.2.2, TLS, session=<x>",
        ),
        (
            "login line, `(` markers",
            "Nov 22 08:01:00 mx dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<",
            "((auth",
            ">, method=PLAIN, rip=203.0.113.66, lip=192.0.2.2, session=<x>",
        ),
        (
            "pam_unix rhost=",
            "Nov 22 08:01:00 mx auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 tty=dovecot ruser=",
            " rhost=192.0.2.1",
            " rhost=203.0.113.66  user=x",
        ),
        (
            "postfix sasl_username",
            "Nov 22 08:01:00 mx postfix/submission/smtpd[1]: warning: unknown[203.0.113.66]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=",
            "unknown[192.0.2.1]: ",
            "x",
        ),
    ];
    let sizes = [100, 1_000, 4_000, 16_000];
    print!("{:<36}", "line");
    for s in sizes {
        print!(" {:>12}", format!("{s} B ns/B"));
    }
    println!();
    let mut resolver = YearResolver::with_year(Zone::utc(), 2026);
    for (name, head, unit, end) in cases {
        print!("{name:<36}");
        for len in sizes {
            let l = line(head, unit, end, len);
            // Enough repetitions for about 64 MB of input per cell.
            let reps = (64_000_000 / l.len()).max(1);
            let mut events = 0usize;
            let mut lossy = String::new();
            let t = Instant::now();
            for _ in 0..reps {
                let line = stamp(
                    std::hint::black_box(l.as_bytes()),
                    &mut resolver,
                    &mut lossy,
                );
                if let Ok((_, prefix)) = &line.stamp {
                    events += parse_prefixed(prefix).event.is_some() as usize;
                }
            }
            let ns = t.elapsed().as_nanos() as f64 / (reps * l.len()) as f64;
            std::hint::black_box(events);
            print!(" {ns:>12.2}");
        }
        println!();
    }
}
