//! The first profile (`--profile classic`): the mix of issue 2's benchmarks, kept so
//! old and new numbers stay comparable. Inbound MX traffic with and without TLS,
//! submission with Dovecot SASL, outbound delivery, IMAP/POP3 logins, users who mistype,
//! fast and slow guessers over SMTP and IMAP, an IPv6 guesser rotating inside one /64, a
//! password that gets guessed, and a sprinkle of garbage lines. Classic syslog stamps.

use super::{MONTHS, Out, Rng, civil};

const USERS: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];
const TRIED: [&str; 10] = [
    "admin",
    "info",
    "test",
    "root",
    "support",
    "sales",
    "office",
    "webmaster",
    "user",
    "postmaster",
];
const CIPHERS: [(&str, &str, u32); 5] = [
    ("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256),
    ("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128),
    ("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", 256),
    ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256", 128),
    ("TLSv1", "ECDHE-RSA-AES256-SHA", 256),
];

pub struct Gen {
    rng: Rng,
    t: i64,
    pid: u32,
    qid: u64,
    sid: u64,
    out: Out,
    slow: Vec<String>,
    slow_next: Vec<i64>,
}

impl Gen {
    fn stamp(&self, dt: i64) -> String {
        let (mon, d, secs) = civil(self.t + dt);
        format!(
            "{} {:>2} {:02}:{:02}:{:02}",
            MONTHS[mon as usize],
            d,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
    fn line(&mut self, dt: i64, rest: &str) {
        let s = self.stamp(dt);
        self.out.line(&s, "mx", rest);
    }
    fn pid(&mut self) -> u32 {
        self.pid = 1000 + (self.pid + 7) % 60_000;
        self.pid
    }
    fn qid(&mut self) -> String {
        self.qid += 1;
        format!("4X{:010X}", self.qid)
    }
    fn sid(&mut self) -> String {
        self.sid += 1;
        format!("S{:012x}", self.sid.wrapping_mul(0x9E37_79B9))
    }
    fn ext_v4(&mut self) -> String {
        // Benign clients live in 192.0.2.0/24 and 2001:db8:1::/48, guessers elsewhere:
        // a prefix rule must not find benign and hostile traffic in one /24.
        if self.rng.chance(20) {
            format!(
                "2001:db8:1:{:x}::{:x}",
                self.rng.below(4096),
                1 + self.rng.below(200)
            )
        } else {
            format!("192.0.2.{}", 1 + self.rng.below(190))
        }
    }
    fn tls(&mut self) -> (String, String) {
        let span = if self.rng.chance(5) { 5 } else { 4 };
        let (p, c, b) = CIPHERS[self.rng.below(span) as usize];
        (format!("{p} with cipher {c} ({b}/{b} bits)"), p.to_string())
    }

    fn inbound_mx(&mut self) {
        let ip = self.ext_v4();
        let pid = self.pid();
        let name = if self.rng.chance(60) {
            format!("mail{}.example.net", self.rng.below(90))
        } else {
            "unknown".into()
        };
        let svc = "postfix/smtpd";
        self.line(0, &format!("{svc}[{pid}]: connect from {name}[{ip}]"));
        let tls = self.rng.chance(80);
        if tls {
            let (desc, _) = self.tls();
            self.line(
                0,
                &format!(
                    "{svc}[{pid}]: Anonymous TLS connection established from {name}[{ip}]: {desc}"
                ),
            );
        }
        if self.rng.chance(25) {
            self.line(1, &format!("{svc}[{pid}]: NOQUEUE: reject: RCPT from {name}[{ip}]: 554 5.7.1 <x@example.com>: Relay access denied; from=<spam@example.net> to=<x@example.com> proto=ESMTP helo=<{name}>"));
            self.line(1, &format!("{svc}[{pid}]: disconnect from {name}[{ip}] ehlo=1{} mail=1 rcpt=0/1 quit=1 commands=3/4", if tls { " starttls=1" } else { "" }));
            return;
        }
        let q = self.qid();
        self.line(1, &format!("{svc}[{pid}]: {q}: client={name}[{ip}]"));
        self.line(
            1,
            &format!(
                "postfix/cleanup[{}]: {q}: message-id=<{}@{name}>",
                pid + 1,
                self.qid
            ),
        );
        let user = self.rng.pick(&USERS);
        let size = 2000 + self.rng.below(50_000);
        self.line(1, &format!("postfix/qmgr[900]: {q}: from=<news@example.net>, size={size}, nrcpt=1 (queue active)"));
        self.line(1, &format!("{svc}[{pid}]: disconnect from {name}[{ip}] ehlo=1{} mail=1 rcpt=1 data=1 quit=1 commands=5", if tls { " starttls=1" } else { "" }));
        self.line(2, &format!("postfix/local[{}]: {q}: to=<{user}@example.org>, relay=local, delay=0.2, delays=0.1/0/0/0.1, dsn=2.0.0, status=sent (delivered to mailbox)", pid + 2));
        self.line(2, &format!("postfix/qmgr[900]: {q}: removed"));
    }

    fn submission(&mut self, typo: bool) {
        let ip = self.ext_v4();
        let pid = self.pid();
        let user = format!("{}@example.org", self.rng.pick(&USERS));
        let svc = if self.rng.chance(50) {
            "postfix/submission/smtpd"
        } else {
            "postfix/smtps/smtpd"
        };
        self.line(0, &format!("{svc}[{pid}]: connect from unknown[{ip}]"));
        let (desc, _) = self.tls();
        self.line(
            0,
            &format!(
                "{svc}[{pid}]: Anonymous TLS connection established from unknown[{ip}]: {desc}"
            ),
        );
        let mut auth = "auth=1".to_string();
        if typo {
            self.line(
                1,
                &format!("dovecot: auth: passwd-file({user},{ip}): Password mismatch"),
            );
            self.line(2, &format!("{svc}[{pid}]: warning: unknown[{ip}]: SASL PLAIN authentication failed: authentication failure"));
            auth = "auth=1/2".into();
        }
        let q = self.qid();
        self.line(
            3,
            &format!(
                "{svc}[{pid}]: {q}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}"
            ),
        );
        self.line(
            3,
            &format!("postfix/qmgr[900]: {q}: from=<{user}>, size=3100, nrcpt=1 (queue active)"),
        );
        self.line(4, &format!("{svc}[{pid}]: disconnect from unknown[{ip}] ehlo=2 starttls=1 {auth} mail=1 rcpt=1 data=1 quit=1 commands=8"));
        let (desc, _) = self.tls();
        self.line(5, &format!("postfix/smtp[{}]: Untrusted TLS connection established to mx.example.com[192.0.2.25]:25: {desc}", pid + 3));
        self.line(5, &format!("postfix/smtp[{}]: {q}: to=<friend@example.com>, relay=mx.example.com[192.0.2.25]:25, delay=1.1, delays=0.1/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)", pid + 3));
        self.line(5, &format!("postfix/qmgr[900]: {q}: removed"));
    }

    fn imap_login(&mut self) {
        let ip = self.ext_v4();
        let user = format!("{}@example.org", self.rng.pick(&USERS));
        let sid = self.sid();
        let proto = if self.rng.chance(80) { "imap" } else { "pop3" };
        self.line(0, &format!("dovecot: {proto}-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, mpid={}, TLS, session=<{sid}>", self.pid));
        self.line(
            30,
            &format!(
                "dovecot: {proto}({user})<{}><{sid}>: Disconnected: Logged out in=120 out=3456",
                self.pid
            ),
        );
    }

    fn smtp_guesser(&mut self, ip: &str, n: u64) {
        self.out.failing(ip);
        let pid = self.pid();
        let svc = if self.rng.chance(70) {
            "postfix/submission/smtpd"
        } else {
            "postfix/smtpd"
        };
        self.line(0, &format!("{svc}[{pid}]: connect from unknown[{ip}]"));
        let tls = self.rng.chance(70);
        if tls {
            let (desc, _) = self.tls();
            self.line(
                0,
                &format!(
                    "{svc}[{pid}]: Anonymous TLS connection established from unknown[{ip}]: {desc}"
                ),
            );
        }
        for i in 0..n {
            let u = self.rng.pick(&TRIED);
            let dt = 1 + i as i64 * 2;
            self.line(
                dt,
                &format!("dovecot: auth: passwd-file({u}@example.org,{ip}): unknown user"),
            );
            self.line(dt, &format!("{svc}[{pid}]: warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"));
        }
        self.line(2 * n as i64 + 1, &format!("{svc}[{pid}]: disconnect from unknown[{ip}] ehlo=1{} auth=0/{n} quit=1 commands={}/{}", if tls { " starttls=1" } else { "" }, 2 + u64::from(tls), 2 + n + u64::from(tls)));
    }

    fn imap_guesser(&mut self, ip: &str) {
        self.out.failing(ip);
        let sid = self.sid();
        let n = 1 + self.rng.below(3);
        for i in 0..n {
            let u = self.rng.pick(&TRIED);
            self.line(
                i as i64 * 2,
                &format!("dovecot: auth: passwd-file({u},{ip},<{sid}>): unknown user"),
            );
        }
        let proto = if self.rng.chance(70) { "imap" } else { "pop3" };
        let tls = if self.rng.chance(50) { ", TLS" } else { "" };
        let last = self.rng.pick(&TRIED);
        self.line(n as i64 * 2 + 1, &format!("dovecot: {proto}-login: Disconnected (auth failed, {n} attempts in {} secs): user=<{last}>, method=PLAIN, rip={ip}, lip=192.0.2.1{tls}, session=<{sid}>", n * 2 + 1));
    }

    pub fn step(&mut self) {
        self.t += self.rng.below(3) as i64;
        let r = self.rng.below(1000);
        match r {
            0..=549 => self.inbound_mx(),
            550..=699 => self.submission(false),
            700..=719 => self.submission(true),
            720..=819 => self.imap_login(),
            820..=889 => {
                let ip = format!("203.0.113.{}", 200 + self.rng.below(20));
                let n = 1 + self.rng.below(4);
                self.smtp_guesser(&ip, n);
            }
            890..=939 => {
                let ip = format!("198.51.100.{}", 200 + self.rng.below(20));
                self.imap_guesser(&ip);
            }
            940..=969 => {
                let ip = format!(
                    "2001:db8:bad:1:{:x}:{:x}::1",
                    self.rng.below(65_536),
                    self.rng.below(65_536)
                );
                self.smtp_guesser(&ip, 1);
            }
            970..=989 => {
                // Slow guessers: one attempt each every ~5 minutes.
                let i = self.rng.below(self.slow.len() as u64) as usize;
                if self.t >= self.slow_next[i] {
                    self.slow_next[i] = self.t + 280 + self.rng.below(40) as i64;
                    let ip = self.slow[i].clone();
                    self.smtp_guesser(&ip, 1);
                }
            }
            990..=995 => {
                // A password that gets guessed: failures, then a login that sends mail.
                let ip = "198.51.100.66".to_string();
                self.smtp_guesser(&ip, 2);
                let pid = self.pid();
                let q = self.qid();
                self.line(
                    9,
                    &format!("postfix/submission/smtpd[{pid}]: connect from unknown[{ip}]"),
                );
                self.line(9, &format!("postfix/submission/smtpd[{pid}]: {q}: client=unknown[{ip}], sasl_method=LOGIN, sasl_username=office@example.org"));
                self.line(10, &format!("postfix/submission/smtpd[{pid}]: disconnect from unknown[{ip}] ehlo=1 auth=1 mail=1 rcpt=50 data=1 quit=1 commands=55"));
            }
            _ => {
                let junk = [
                    "-- MARK --",
                    "kernel: [12345.678] eth0: link up",
                    "\u{1}\u{2}garbage\u{7f}",
                    "Nov 22 99:99:99 broken line",
                    "postfix/smtpd[1]: warning: unknown[203.0.113.5",
                ];
                let j = self.rng.pick(&junk);
                self.out.raw(j);
            }
        }
    }
}

impl Gen {
    pub fn new(seed: u64, start: i64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            t: start,
            pid: 0,
            qid: 0,
            sid: 0,
            out: Out::default(),
            slow: (0..6).map(|i| format!("198.51.100.{}", 230 + i)).collect(),
            slow_next: vec![0; 6],
        }
    }
    pub fn out(&mut self) -> &mut Out {
        &mut self.out
    }
}
