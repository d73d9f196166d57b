//! The default profile: what a busy Debian mail host logs (Postfix receiving on 25,
//! submission on 587 and 465, delivering through Dovecot LMTP and to the Internet;
//! Dovecot serving IMAP/POP3 with `auth_verbose = yes`), with the guessing that hits
//! such a host every day. Stamps are RFC 3339 with microseconds, as Debian's rsyslog
//! writes them.
//!
//! Share of lines by program (issue 17; `--mix` prints the generated shares): about 31%
//! postfix/smtpd, 18% Dovecot (session ids, auth-process lines with user names, LMTP),
//! 15% qmgr, 11% submission, 8% lmtp, 8% cleanup, 6% smtps, 4% outbound smtp, and a few
//! other lines; about 150 bytes a line.
//!
//! Guessers: a botnet over a pool of 45,000 IPv6 addresses (2001:db8::/32) and the
//! documentation IPv4 ranges, each address trying once to a few times per visit, over
//! 25, 587, 465, IMAP and POP3; a few persistent IPv4 guessers; benign users who mistype.

use super::{Out, Rng, civil_full};

const USERS: [&str; 12] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "oscar",
];
const TRIED: [&str; 16] = [
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
    "contact",
    "marketing",
    "noreply",
    "scanner",
    "backup",
    "hr",
];
const SENDERS: [&str; 8] = [
    "mail-db8eur05on2101.outbound.protection.example.net",
    "o1.ptr2741.mailgun.example.com",
    "mail-yw1-x1136.google.example.com",
    "smtp-out-7.newsletter.example.net",
    "mx2.lists.example.org",
    "unknown",
    "bounce.shop.example.com",
    "mta-12-34.sparkpost.example.net",
];
const REMOTE_MX: [(&str, &str); 4] = [
    ("gmail-smtp-in.l.google.example", "2001:db8:4860::1b"),
    ("mx1.mail.example.com", "192.0.2.25"),
    ("example-org.mail.protection.example.net", "2001:db8:a0::5"),
    ("mx.friends.example.net", "198.51.100.25"),
];
/// Inbound TLS as Postfix 3.7 writes it with `smtpd_tls_loglevel = 1`: protocol,
/// cipher, bits and the key exchange and signature.
const CIPHERS: [&str; 6] = [
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256",
    "TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
    "TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)",
    "TLSv1 with cipher ECDHE-RSA-AES256-SHA (256/256 bits)",
];
const BOTNET: u64 = 45_000;
const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub struct Gen {
    rng: Rng,
    /// Microseconds since the epoch of the last line.
    us: i64,
    pid: u32,
    qid: u64,
    out: Out,
    stamp: String,
}

impl Gen {
    pub fn new(seed: u64, start: i64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            us: start * 1_000_000,
            pid: 0,
            qid: 0,
            out: Out::default(),
            stamp: String::new(),
        }
    }
    pub fn out(&mut self) -> &mut Out {
        &mut self.out
    }

    /// One line, up to `gap_ms` milliseconds after the previous one.
    fn line(&mut self, gap_ms: u64, rest: &str) {
        self.us += (self.rng.below(gap_ms.max(1) * 1000) + 1) as i64;
        let t = self.us.div_euclid(1_000_000);
        let (y, m, d, secs) = civil_full(t);
        self.stamp.clear();
        use std::fmt::Write as _;
        let _ = write!(
            self.stamp,
            "{y}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}+00:00",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            self.us.rem_euclid(1_000_000)
        );
        let stamp = std::mem::take(&mut self.stamp);
        self.out.line(&stamp, "mail01", rest);
        self.stamp = stamp;
    }
    fn pid(&mut self) -> u32 {
        self.pid = 1000 + (self.pid + 7919) % 4_000_000;
        self.pid
    }
    fn qid(&mut self) -> String {
        // Postfix long queue ids (`enable_long_queue_ids = yes`), 14 characters.
        self.qid += 1;
        let mut s = String::from("4");
        let mut n = self.qid.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for _ in 0..13 {
            s.push(B64[(n % 52) as usize] as char);
            n /= 52;
        }
        s
    }
    fn session(&mut self) -> String {
        // Dovecot session ids: 16 characters of base64.
        let mut n = self.rng.u64();
        let mut m = self.rng.u64();
        (0..16)
            .map(|i| {
                let v = if i < 10 { &mut n } else { &mut m };
                let c = B64[(*v % 64) as usize] as char;
                *v /= 64;
                c
            })
            .collect()
    }
    /// A benign client: an office or home address.
    fn client(&mut self) -> String {
        if self.rng.chance(35) {
            format!(
                "2001:db8:1:{:x}:{:x}:{:x}:{:x}:{:x}",
                self.rng.below(4096),
                self.rng.below(65536),
                self.rng.below(65536),
                self.rng.below(65536),
                1 + self.rng.below(65535)
            )
        } else {
            format!("192.0.2.{}", 1 + self.rng.below(190))
        }
    }
    /// A guessing address: mostly the botnet's wide IPv6 pool, some persistent IPv4.
    fn guesser(&mut self) -> String {
        let r = self.rng.below(100);
        let ip = if r < 80 {
            let k = self.rng.below(BOTNET);
            let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
            format!(
                "2001:db8:{:x}:{:x}:{:x}::{:x}",
                0x100 + (h & 0xfff),
                (h >> 12) & 0xffff,
                (h >> 28) & 0xffff,
                1 + (k % 250)
            )
        } else if r < 95 {
            format!(
                "{}.{}",
                ["198.51.100", "203.0.113"][self.rng.below(2) as usize],
                1 + self.rng.below(254)
            )
        } else {
            format!("203.0.113.{}", 240 + self.rng.below(6))
        };
        self.out.failing(&ip);
        ip
    }
    fn sender(&mut self) -> &'static str {
        self.rng.pick(&SENDERS)
    }
    fn user(&mut self) -> String {
        format!("{}@example.org", self.rng.pick(&USERS))
    }
    fn cipher(&mut self) -> &'static str {
        self.rng.pick(&CIPHERS)
    }

    /// Port 25: a message from another mail system, delivered to Dovecot over LMTP.
    fn mx_accept(&mut self) {
        let ip = self.client();
        let host = self.sender();
        let pid = self.pid();
        let q = self.qid();
        let tls = self.rng.chance(85);
        let smtpd = "postfix/smtpd";
        self.line(5, &format!("{smtpd}[{pid}]: connect from {host}[{ip}]"));
        if tls {
            let c = self.cipher();
            self.line(
                40,
                &format!(
                    "{smtpd}[{pid}]: Anonymous TLS connection established from {host}[{ip}]: {c}"
                ),
            );
        }
        self.line(40, &format!("{smtpd}[{pid}]: {q}: client={host}[{ip}]"));
        let mid = format!(
            "{:x}.{:x}@{}",
            self.rng.u64() >> 20,
            self.qid,
            if host == "unknown" {
                "mail.example.net"
            } else {
                host
            }
        );
        self.line(
            5,
            &format!("postfix/cleanup[{}]: {q}: message-id=<{mid}>", pid + 1),
        );
        let size = 2000 + self.rng.below(80_000);
        let rcpts = 1 + u64::from(self.rng.chance(25));
        self.line(5, &format!("postfix/qmgr[1187]: {q}: from=<bounces+{}@{}>, size={size}, nrcpt={rcpts} (queue active)", self.qid % 9973, "lists.example.net"));
        let st = if tls { " starttls=1" } else { "" };
        self.line(20, &format!("{smtpd}[{pid}]: disconnect from {host}[{ip}] ehlo=2{st} mail=1 rcpt={rcpts} data=1 quit=1 commands={}", 5 + rcpts));
        for _ in 0..rcpts {
            let user = self.user();
            let lpid = pid + 2;
            let sid = self.session();
            self.line(
                10,
                &format!(
                    "dovecot: lmtp({user})<{lpid}><{sid}>: msgid=<{mid}>: saved mail to INBOX"
                ),
            );
            self.line(5, &format!("postfix/lmtp[{lpid}]: {q}: to=<{user}>, relay=mail01.example.org[private/dovecot-lmtp], delay=0.41, delays=0.22/0.01/0.02/0.16, dsn=2.0.0, status=sent (250 2.0.0 <{user}> {sid} Saved)"));
        }
        self.line(5, &format!("postfix/qmgr[1187]: {q}: removed"));
    }

    /// Port 25: spam refused before queueing, or a scanner.
    fn mx_reject(&mut self) {
        let ip = self.client();
        let pid = self.pid();
        let smtpd = "postfix/smtpd";
        let host = if self.rng.chance(50) {
            "unknown"
        } else {
            "dsl-187-4.dynamic.example.net"
        };
        self.line(5, &format!("{smtpd}[{pid}]: connect from {host}[{ip}]"));
        match self.rng.below(3) {
            0 => {
                let to = self.user();
                self.line(30, &format!("{smtpd}[{pid}]: NOQUEUE: reject: RCPT from {host}[{ip}]: 554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.example; from=<promo@deals.example.com> to=<{to}> proto=ESMTP helo=<{host}>"));
                self.line(20, &format!("{smtpd}[{pid}]: disconnect from {host}[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"));
            }
            1 => {
                self.line(
                    30,
                    &format!("{smtpd}[{pid}]: lost connection after EHLO from {host}[{ip}]"),
                );
                self.line(
                    5,
                    &format!("{smtpd}[{pid}]: disconnect from {host}[{ip}] ehlo=1 commands=1"),
                );
            }
            _ => {
                self.line(30, &format!("{smtpd}[{pid}]: warning: hostname {host} does not resolve to address {ip}: Name or service not known"));
                let to = self.user();
                self.line(30, &format!("{smtpd}[{pid}]: NOQUEUE: reject: RCPT from {host}[{ip}]: 450 4.7.1 Client host rejected: cannot find your reverse hostname, [{ip}]; from=<a@b.example> to=<{to}> proto=ESMTP helo=<ylmf-pc>"));
                self.line(20, &format!("{smtpd}[{pid}]: disconnect from {host}[{ip}] ehlo=1 mail=1 rcpt=0/1 rset=1 quit=1 commands=4/5"));
            }
        }
    }

    /// A guesser on an SMTP port: Dovecot's auth process and Postfix each write every
    /// failed guess.
    fn smtp_guess(&mut self, svc: &str, ip: &str, n: u64, tls: bool) {
        let pid = self.pid();
        self.line(5, &format!("{svc}[{pid}]: connect from unknown[{ip}]"));
        if tls {
            let c = self.cipher();
            self.line(
                40,
                &format!(
                    "{svc}[{pid}]: Anonymous TLS connection established from unknown[{ip}]: {c}"
                ),
            );
        }
        for _ in 0..n {
            let u = self.rng.pick(&TRIED);
            let dom = if self.rng.chance(60) {
                "@example.org"
            } else {
                ""
            };
            if self.rng.chance(70) {
                self.line(
                    900,
                    &format!("dovecot: auth: passwd-file({u}{dom},{ip}): unknown user"),
                );
            } else {
                self.line(
                    900,
                    &format!(
                        "dovecot: auth-worker({}): sql({u}{dom},{ip}): Password mismatch",
                        3100 + pid % 4
                    ),
                );
            }
            let mech = if self.rng.chance(50) {
                "LOGIN"
            } else {
                "PLAIN"
            };
            let what = if mech == "LOGIN" {
                "UGFzc3dvcmQ6"
            } else {
                "authentication failure"
            };
            self.line(5, &format!("{svc}[{pid}]: warning: unknown[{ip}]: SASL {mech} authentication failed: {what}, sasl_username={u}{dom}"));
        }
        let st = if tls { " starttls=1" } else { "" };
        self.line(30, &format!("{svc}[{pid}]: disconnect from unknown[{ip}] ehlo=1{st} auth=0/{n} quit=1 commands={}/{}", 2 + u64::from(tls), 2 + n + u64::from(tls)));
    }

    /// A user sending mail through 587 or 465; most goes out to the Internet.
    fn submit(&mut self, svc: &str, typo: bool) {
        let ip = self.client();
        let pid = self.pid();
        let user = self.user();
        let q = self.qid();
        self.line(5, &format!("{svc}[{pid}]: connect from unknown[{ip}]"));
        let c = self.cipher();
        self.line(
            40,
            &format!("{svc}[{pid}]: Anonymous TLS connection established from unknown[{ip}]: {c}"),
        );
        let mut auth = "auth=1";
        if typo {
            self.line(
                900,
                &format!("dovecot: auth: passwd-file({user},{ip}): Password mismatch"),
            );
            self.line(5, &format!("{svc}[{pid}]: warning: unknown[{ip}]: SASL PLAIN authentication failed: authentication failure, sasl_username={user}"));
            auth = "auth=1/2";
        }
        self.line(
            40,
            &format!(
                "{svc}[{pid}]: {q}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}"
            ),
        );
        let mid = self.rng.u64();
        self.line(
            5,
            &format!(
                "postfix/cleanup[{}]: {q}: message-id=<{mid:x}@mail01.example.org>",
                pid + 1
            ),
        );
        let size = 1500 + self.rng.below(200_000);
        self.line(
            5,
            &format!("postfix/qmgr[1187]: {q}: from=<{user}>, size={size}, nrcpt=1 (queue active)"),
        );
        let st = if svc.contains("submission") {
            " starttls=1"
        } else {
            ""
        };
        self.line(20, &format!("{svc}[{pid}]: disconnect from unknown[{ip}] ehlo=2{st} {auth} mail=1 rcpt=1 data=1 quit=1 commands=8"));
        if self.rng.chance(90) {
            let (mx, mxip) = REMOTE_MX[self.rng.below(4) as usize];
            let spid = pid + 3;
            let c = self.cipher();
            self.line(60, &format!("postfix/smtp[{spid}]: Verified TLS connection established to {mx}[{mxip}]:25: {c}"));
            self.line(300, &format!("postfix/smtp[{spid}]: {q}: to=<friend@{}>, relay={mx}[{mxip}]:25, delay=0.9, delays=0.1/0/0.3/0.5, dsn=2.0.0, status=sent (250 2.0.0 OK  1795305600 a640c23a62f3a-9b2f1c7e1si{} - gsmtp)", &mx[mx.find('.').unwrap_or(0) + 1..], self.qid % 997));
        } else {
            let to = self.user();
            let lpid = pid + 2;
            let sid = self.session();
            self.line(10, &format!("dovecot: lmtp({to})<{lpid}><{sid}>: msgid=<{:x}@mail01.example.org>: saved mail to INBOX", self.qid));
            self.line(5, &format!("postfix/lmtp[{lpid}]: {q}: to=<{to}>, relay=mail01.example.org[private/dovecot-lmtp], delay=0.12, delays=0.05/0.01/0.01/0.05, dsn=2.0.0, status=sent (250 2.0.0 <{to}> {sid} Saved)"));
        }
        self.line(5, &format!("postfix/qmgr[1187]: {q}: removed"));
    }

    /// An IMAP or POP3 session: login and logout.
    fn imap(&mut self) {
        let ip = self.client();
        let user = self.user();
        let sid = self.session();
        let pid = self.pid();
        let proto = if self.rng.chance(85) { "imap" } else { "pop3" };
        self.line(30, &format!("dovecot: {proto}-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=2001:db8::25, mpid={pid}, TLS, session=<{sid}>"));
        let (i, o) = (100 + self.rng.below(9000), 500 + self.rng.below(900_000));
        self.line(30, &format!("dovecot: {proto}({user})<{pid}><{sid}>: Disconnected: Logged out in={i} out={o} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0"));
    }

    /// An IMAP or POP3 guesser: auth-process lines with the session id, then the login
    /// process's summary.
    fn imap_guess(&mut self, ip: &str) {
        let sid = self.session();
        let n = 1 + self.rng.below(3);
        let mut last = "";
        for _ in 0..n {
            last = self.rng.pick(&TRIED);
            self.line(
                900,
                &format!("dovecot: auth: passwd-file({last},{ip},<{sid}>): unknown user"),
            );
        }
        let proto = if self.rng.chance(70) { "imap" } else { "pop3" };
        let tls = if self.rng.chance(50) { ", TLS" } else { "" };
        self.line(30, &format!("dovecot: {proto}-login: Disconnected: Connection closed (auth failed, {n} attempts in {} secs): user=<{last}>, method=PLAIN, rip={ip}, lip=2001:db8::25{tls}, session=<{sid}>", n * 2 + 1));
    }

    pub fn step(&mut self) {
        match self.rng.below(1000) {
            0..=369 => self.mx_accept(),
            370..=509 => self.mx_reject(),
            510..=559 => {
                let ip = self.guesser();
                let n = 1 + self.rng.below(2);
                let tls = self.rng.chance(40);
                self.smtp_guess("postfix/smtpd", &ip, n, tls);
            }
            560..=659 => {
                let typo = self.rng.chance(3);
                self.submit("postfix/submission/smtpd", typo)
            }
            660..=719 => {
                let typo = self.rng.chance(3);
                self.submit("postfix/smtps/smtpd", typo)
            }
            720..=774 => {
                let ip = self.guesser();
                let n = 1 + self.rng.below(3);
                self.smtp_guess("postfix/submission/smtpd", &ip, n, true);
            }
            775..=799 => {
                let ip = self.guesser();
                let n = 1 + self.rng.below(3);
                self.smtp_guess("postfix/smtps/smtpd", &ip, n, true);
            }
            800..=939 => self.imap(),
            940..=989 => {
                let ip = self.guesser();
                self.imap_guess(&ip);
            }
            _ => {
                let other = [
                    "kernel: [812345.678901] nft drop: IN=eth0 OUT= SRC=203.0.113.9 DST=192.0.2.1 PROTO=TCP DPT=23",
                    "CRON[4711]: (root) CMD (command -v debian-sa1 > /dev/null && debian-sa1 1 1)",
                    "opendkim[812]: 4ZkQp1Lm9xT2vR: DKIM verification successful",
                    "postfix/anvil[1190]: statistics: max connection rate 12/60s for (smtp:203.0.113.9) at Nov 22 00:00:00",
                    "postfix/smtpd[1]: warning: unknown[203.0.113.5",
                ];
                let j = self.rng.pick(&other);
                self.line(100, j);
            }
        }
    }
}
