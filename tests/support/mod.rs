//! Test harness for real daemons in network namespaces: a server namespace and a
//! client namespace joined by a veth pair, with documentation-range addresses; a
//! private Postfix and Dovecot instance started inside the server namespace from a
//! temporary directory. Everything is torn down on drop, also when the test fails:
//! daemons stopped, namespaces (and with them the veth pair) deleted. Nothing touches
//! the machine's own network namespace.

#![allow(dead_code)]

pub mod mmdb;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const SERVER_V4: &str = "192.0.2.1";
pub const SERVER_V6: &str = "2001:db8::1";

/// A test that cannot run here. Under CI (`CI` set, as root with everything installed)
/// that is a failure: the test panics with the reason. Elsewhere the skip is written
/// to the terminal past the test runner's capture (a passing test's prints are hidden)
/// and added to `target/saslguard-skipped.txt`, which `.ci/run` counts.
/// One raw line stamped and parsed as the pipeline does: its time, its parse and
/// whether it had invalid UTF-8, or why it was skipped.
#[allow(dead_code)]
pub fn prepare(
    raw: &[u8],
    resolver: &mut saslguard::time::YearResolver,
) -> Result<(saslguard::time::Timestamp, saslguard::parse::Parsed, bool), saslguard::source::Skip> {
    let mut lossy = String::new();
    let line = saslguard::source::stamp(raw, resolver, &mut lossy);
    let (t, prefix) = line.stamp?;
    Ok((t, saslguard::parse::parse_prefixed(&prefix), line.lossy))
}

pub fn skip(test: &str, reason: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test} cannot run under CI: {reason}");
    }
    use std::io::Write;
    let line = format!("SKIPPED {test}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/saslguard-skipped.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The one bless mechanism of the suite: with `SASLGUARD_BLESS` set, a test that
/// compares against a committed expectation file writes what it got to
/// `target/bless/<the file's path in the repository>` for review (`diff -u FILE
/// target/bless/FILE`, then copy it over by hand). The test still compares and still
/// fails on a difference: blessing never makes a test pass.
pub fn bless(path: &Path, got: &str) {
    if std::env::var_os("SASLGUARD_BLESS").is_none() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = path.strip_prefix(root).unwrap_or(path);
    let out = root.join("target/bless").join(rel);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, got).unwrap();
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "blessed: review with `diff -u {} {}`",
        rel.display(),
        out.display()
    );
}

/// True when `test` can run (root and `tools`); otherwise skips it (see [`skip`]).
pub fn can_run(test: &str, tools: &[&str]) -> bool {
    match skip_reason(tools) {
        None => true,
        Some(why) => {
            skip(test, &why);
            false
        }
    }
}

/// True when `tools` are installed (no root needed); otherwise skips `test`.
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    match missing_tool(tools) {
        None => true,
        Some(why) => {
            skip(test, &why);
            false
        }
    }
}

/// The first of `tools` that is not installed, as a reason to skip.
pub fn missing_tool(tools: &[&str]) -> Option<String> {
    tools.iter().find_map(|t| {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {t}"))
            .output()
            .is_ok_and(|o| o.status.success());
        (!found).then(|| format!("{t} is not installed (bash .ci/deps installs it)"))
    })
}

/// Why a privileged test cannot run here, or None when it can.
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    // The effective uid, from /proc: no libc call, no unsafe code.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        return Some("needs root (network namespaces, daemons)".into());
    }
    missing_tool(tools)
}

/// Appends `text` to the file at `path` (created if missing), as a logger would.
pub fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// `n` Postfix SASL failure lines from `addr`, stamped now.
pub fn failures(addr: &str, n: usize) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    (0..n)
        .map(|i| {
            format!(
                "{now} mx postfix/submission/smtpd[{}]: warning: unknown[{addr}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=user{i}\n",
                4000 + i
            )
        })
        .collect()
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

/// Starts a daemon that forks into the background: its output goes to `log`, so the
/// test does not wait on pipes the daemon keeps open.
pub fn start_daemon(cmd: &mut Command, log: &Path) {
    let f = std::fs::File::create(log).unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .status()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        status.success(),
        "{cmd:?} failed: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd`, which must succeed, and reads its standard output as JSON.
pub fn json_ok(cmd: &mut Command) -> serde_json::Value {
    let out = run_ok(cmd);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: not JSON: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The longest any one command a test runs in a namespace may take.
pub const EXEC_LIMIT: &str = "300";

/// `timeout -k 5 300 ip netns exec NS`.
fn in_ns(ns: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", EXEC_LIMIT, "ip", "netns", "exec", ns]);
    c
}

/// Two namespaces joined by a veth pair. Server: 192.0.2.1/24, 2001:db8::1/64.
/// Client: the addresses given (each /24 or /64 of the same networks).
pub struct Netns {
    pub server: String,
    pub client: String,
    /// The veth ends: in the server namespace and in the client namespace.
    pub server_dev: String,
    pub client_dev: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    pub fn new(client_addrs: &[&str]) -> Netns {
        let id = format!(
            "{}{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let (vs, vc) = (format!("sg{id}a"), format!("sg{id}b"));
        let ns = Netns {
            server: format!("sg{id}s"),
            client: format!("sg{id}c"),
            server_dev: vs.clone(),
            client_dev: vc.clone(),
        };
        run_ok(Command::new("ip").args(["netns", "add", &ns.server]));
        run_ok(Command::new("ip").args(["netns", "add", &ns.client]));
        run_ok(Command::new("ip").args([
            "link", "add", &vs, "netns", &ns.server, "type", "veth", "peer", "name", &vc, "netns",
            &ns.client,
        ]));
        for (n, dev, addrs) in [
            (
                &ns.server,
                &vs,
                vec![format!("{SERVER_V4}/24"), format!("{SERVER_V6}/64")],
            ),
            (
                &ns.client,
                &vc,
                client_addrs
                    .iter()
                    .map(|a| {
                        if a.contains(':') {
                            format!("{a}/64")
                        } else {
                            format!("{a}/24")
                        }
                    })
                    .collect(),
            ),
        ] {
            ns.exec_ok(n, &["ip", "link", "set", "lo", "up"]);
            ns.exec_ok(n, &["ip", "link", "set", dev, "up"]);
            for a in addrs {
                ns.exec_ok(n, &["ip", "addr", "add", &a, "dev", dev, "nodad"]);
            }
        }
        ns
    }

    /// Runs `args` in namespace `ns`, killed after [`EXEC_LIMIT`] so that nothing a test
    /// runs can hang the suite (`timeout` exits 124 then, which fails `exec_ok`).
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        run(in_ns(ns).args(args))
    }

    pub fn exec_ok(&self, ns: &str, args: &[&str]) -> Output {
        run_ok(in_ns(ns).args(args))
    }

    /// A command in the client namespace.
    pub fn client(&self, args: &[&str]) -> Output {
        self.exec(&self.client.clone(), args)
    }

    /// Runs tests/support/mailclient.py in the client namespace against `server` with
    /// `actions`; returns its result lines (printed, with its stderr, for failures).
    pub fn mail_clients(&self, server: &str, actions: &[serde_json::Value]) -> String {
        self.mail_clients_with(server, actions, "sequential")
    }

    /// As [`Netns::mail_clients`], each source address's actions in order but the
    /// addresses side by side.
    pub fn mail_clients_parallel(&self, server: &str, actions: &[serde_json::Value]) -> String {
        self.mail_clients_with(server, actions, "parallel")
    }

    fn mail_clients_with(&self, server: &str, actions: &[serde_json::Value], mode: &str) -> String {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/mailclient.py");
        let out = self.client(&[
            "python3",
            script,
            server,
            &serde_json::to_string(actions).unwrap(),
            mode,
        ]);
        let results = String::from_utf8_lossy(&out.stdout).into_owned();
        println!(
            "client results:\n{results}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        results
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// A private Postfix and Dovecot in the server namespace, logging to files: the host's
/// (Debian 12), or Debian 13's from a root filesystem ([`debian13_root`]) run with
/// `chroot` inside the same namespace.
pub struct MailServer {
    pub dir: tempfile::TempDir,
    pub ns: String,
    /// The root filesystem the daemons run from; None: the host's.
    root: Option<PathBuf>,
    postfix_started: bool,
    dovecot_started: bool,
}

/// Where the Debian 13 root filesystem is kept between test runs.
const DEBIAN13_ROOT: &str = "/var/cache/saslguard-test/trixie";

/// A Debian 13 (trixie) root filesystem with Postfix, Dovecot and OpenSSL, built once
/// with debootstrap from the Debian mirror apt already uses and kept for later runs.
/// Built beside its final name and renamed, so a failed build leaves nothing half-made.
pub fn debian13_root() -> PathBuf {
    let root = PathBuf::from(DEBIAN13_ROOT);
    if root.join("usr/sbin/postfix").exists() && root.join("usr/sbin/dovecot").exists() {
        return root;
    }
    let tmp = PathBuf::from(format!("{DEBIAN13_ROOT}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.parent().unwrap()).unwrap();
    let mirror = debian_mirror();
    let out = run(Command::new("timeout").args(["-k", "10", "900"]).args([
        "debootstrap",
        "--variant=minbase",
        "--include=postfix,dovecot-core,dovecot-imapd,dovecot-pop3d,openssl",
        "trixie",
        tmp.to_str().unwrap(),
        &mirror,
    ]));
    assert!(
        out.status.success(),
        "debootstrap trixie from {mirror} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have finished first.
    if std::fs::rename(&tmp, &root).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    root
}

/// The Debian mirror this machine's apt uses (deb822 `URIs:` or a `deb` line).
fn debian_mirror() -> String {
    let mut texts = vec![std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            texts.push(std::fs::read_to_string(e.path()).unwrap_or_default());
        }
    }
    texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("URIs:").map(str::trim).or_else(|| {
                l.strip_prefix("deb ")
                    .and_then(|r| r.split_whitespace().find(|w| w.starts_with("http")))
            })
        })
        .find(|u| u.ends_with("/debian") || u.ends_with("/debian/"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_string()
}

pub const PASSWORD: &str = "correct horse";

impl MailServer {
    /// Where Postfix looks for `unix:private/saslguard`.
    pub fn policy_socket(&self) -> PathBuf {
        self.dir.path().join("postfix/queue/private/saslguard")
    }

    pub fn postfix_log(&self) -> PathBuf {
        self.dir.path().join("postfix.log")
    }
    pub fn dovecot_log(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }

    /// Starts Dovecot (IMAP 143/993, POP3 110/995, SASL for Postfix) and Postfix (25,
    /// 587 with STARTTLS, 465 with implicit TLS) with users alice and bob.
    pub fn start(netns: &Netns) -> MailServer {
        MailServer::start_with(netns, None)
    }

    /// As [`MailServer::start`], with saslguard's access map `map` (`cidr:/path`), or
    /// with [`POLICY`] its policy service (the socket at `postfix/queue/private/
    /// saslguard`), wired in exactly as config/postfix/*.saslguard* documents it.
    pub fn start_with(netns: &Netns, map: Option<&str>) -> MailServer {
        MailServer::start_full(netns, map, false, None)
    }

    /// As [`MailServer::start`], for `saslguard probe`: Dovecot also offers CRAM-MD5 and
    /// still accepts TLS 1.0 (as an old server would); Postfix keeps OpenSSL's defaults.
    pub fn start_for_probe(netns: &Netns) -> MailServer {
        MailServer::start_full(netns, None, true, None)
    }

    /// As [`MailServer::start`], with Debian 13's Postfix 3.10 and Dovecot 2.4 from
    /// `root` (see [`debian13_root`]), in Dovecot 2.4's configuration syntax.
    pub fn start_debian13(netns: &Netns, root: &Path) -> MailServer {
        MailServer::start_full(netns, None, false, Some(root))
    }

    /// A command run in the server namespace, inside the root filesystem if any.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = in_ns(&self.ns);
        if let Some(root) = &self.root {
            c.arg("chroot").arg(root);
        }
        c.args(args);
        c
    }

    fn start_full(
        netns: &Netns,
        map: Option<&str>,
        probe: bool,
        root: Option<&Path>,
    ) -> MailServer {
        let mut builder = tempfile::Builder::new();
        builder.prefix("saslguard-mail");
        let dir = match root {
            Some(r) => {
                std::fs::create_dir_all(r.join("tmp")).unwrap();
                builder.tempdir_in(r.join("tmp")).unwrap()
            }
            None => builder.tempdir().unwrap(),
        };
        let d = dir.path().to_path_buf();
        let d = d.as_path();
        // Login processes run as dovenull and Postfix as postfix: they must traverse.
        run_ok(Command::new("chmod").arg("0755").arg(d));
        let mut srv = MailServer {
            dir,
            ns: netns.server.clone(),
            root: root.map(Path::to_path_buf),
            postfix_started: false,
            dovecot_started: false,
        };
        // Paths as the daemons see them: inside the root filesystem, if any.
        let inner = |s: &str| match root {
            Some(r) => Path::new("/").join(d.join(s).strip_prefix(r).unwrap()),
            None => d.join(s),
        };
        let p = |s: &str| inner(s).display().to_string();
        let host = |s: &str| d.join(s).display().to_string();
        run_ok(Command::new("openssl").args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mx.example.org",
            "-keyout",
            &host("key.pem"),
            "-out",
            &host("cert.pem"),
        ]));
        run_ok(Command::new("chmod").args(["0644", &host("key.pem")]));
        std::fs::write(
            d.join("users"),
            format!(
                "alice:{{PLAIN}}{PASSWORD}\nbob:{{PLAIN}}{PASSWORD}\ncarol:{{PLAIN}}{PASSWORD}\ndave:{{PLAIN}}{PASSWORD}\n"
            ),
        )
        .unwrap();
        for sub in ["mail", "run", "state"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        run_ok(Command::new("chmod").args(["0777", &host("mail")]));
        let dovecot_conf = if root.is_some() {
            // Dovecot 2.4: versioned configuration, passdb/userdb blocks named by
            // driver, `auth_allow_cleartext` for `disable_plaintext_auth`, TLS files by
            // path, `mail_driver`/`mail_path` for `mail_location`.
            format!(
                r#"dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap pop3
listen = {SERVER_V4}, {SERVER_V6}
ssl = yes
ssl_server_cert_file = {cert}
ssl_server_key_file = {key}
auth_allow_cleartext = yes
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
mail_driver = maildir
mail_home = {mail}/%{{user}}
mail_path = ~/Maildir
default_internal_user = dovecot
default_login_user = dovenull
passdb passwd-file {{
  passwd_file_path = {users}
}}
userdb static {{
  fields {{
    uid = nobody
    gid = nogroup
    home = {mail}/%{{user}}
  }}
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"#,
                run = p("run"),
                state = p("state"),
                log = p("dovecot.log"),
                cert = p("cert.pem"),
                key = p("key.pem"),
                mail = p("mail"),
                users = p("users"),
            )
        } else {
            format!(
                r#"base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap pop3
listen = {SERVER_V4}, {SERVER_V6}
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login{dovecot_probe}
auth_verbose = yes
auth_failure_delay = 0
mail_location = maildir:{mail}/%u
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/%u
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
"#,
                run = p("run"),
                state = p("state"),
                log = p("dovecot.log"),
                cert = p("cert.pem"),
                key = p("key.pem"),
                mail = p("mail"),
                users = p("users"),
                dovecot_probe = if probe {
                    " cram-md5\nssl_min_protocol = TLSv1\nssl_cipher_list = ALL:@SECLEVEL=0"
                } else {
                    ""
                },
            )
        };
        std::fs::write(d.join("dovecot.conf"), dovecot_conf).unwrap();
        start_daemon(
            &mut srv.cmd(&["dovecot", "-c", &p("dovecot.conf")]),
            &d.join("dovecot.start"),
        );
        srv.dovecot_started = true;
        // Postfix: a private instance; queue and data under the temporary directory.
        let pf = d.join("postfix");
        // Postfix creates the queue's subdirectories, not the queue directory itself.
        std::fs::create_dir_all(pf.join("queue")).unwrap();
        std::fs::create_dir_all(pf.join("data")).unwrap();
        // The postfix user of the system that runs Postfix (the root filesystem's own).
        run_ok(&mut srv.cmd(&["chown", "postfix", &p("postfix/data")]));
        std::fs::write(
            pf.join("main.cf"),
            format!(
                r#"compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {log}
maillog_file_prefixes = {dir}
myhostname = mx.example.org
mydomain = example.org
mydestination =
inet_interfaces = {SERVER_V4}, [{SERVER_V6}]
inet_protocols = all
mynetworks =
alias_maps =
alias_database =
smtputf8_enable = no
smtpd_banner = $myhostname ESMTP
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
smtpd_tls_auth_only = no
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {run}/auth-postfix
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
{access_main}
{postfix_probe}
default_transport = discard
relay_transport = discard
"#,
                queue = p("postfix/queue"),
                data = p("postfix/data"),
                log = p("postfix.log"),
                dir = inner("").display(),
                cert = p("cert.pem"),
                key = p("key.pem"),
                run = p("run"),
                access_main = match map {
                    Some(POLICY) => policy_main_cf(),
                    Some(m) => access_main_cf(m),
                    None => String::new(),
                },
                postfix_probe = if probe {
                    "smtpd_tls_protocols = >=TLSv1.2\nsmtpd_tls_mandatory_protocols = >=TLSv1.2"
                } else {
                    ""
                },
            ),
        )
        .unwrap();
        let (sub_opts, smtps_opts) = match map {
            Some(_) => (
                access_master_options("submission"),
                access_master_options("smtps"),
            ),
            None => (String::new(), String::new()),
        };
        std::fs::write(
            pf.join("master.cf"),
            format!(
                "smtp       inet  n  -  n  -  -  smtpd\n\
             submission inet  n  -  n  -  -  smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt {sub_opts}\n\
             smtps      inet  n  -  n  -  -  smtpd -o syslog_name=postfix/smtps -o smtpd_tls_wrappermode=yes {smtps_opts}\n\
             pickup     unix  n  -  n  60 1  pickup\n\
             cleanup    unix  n  -  n  -  0  cleanup\n\
             qmgr       unix  n  -  n  300 1 qmgr\n\
             tlsmgr     unix  -  -  n  1000? 1 tlsmgr\n\
             rewrite    unix  -  -  n  -  -  trivial-rewrite\n\
             bounce     unix  -  -  n  -  0  bounce\n\
             defer      unix  -  -  n  -  0  bounce\n\
             trace      unix  -  -  n  -  0  bounce\n\
             verify     unix  -  -  n  -  1  verify\n\
             flush      unix  n  -  n  1000? 0 flush\n\
             proxymap   unix  -  -  n  -  -  proxymap\n\
             smtp       unix  -  -  n  -  -  smtp\n\
             showq      unix  n  -  n  -  -  showq\n\
             error      unix  -  -  n  -  -  error\n\
             retry      unix  -  -  n  -  -  error\n\
             discard    unix  -  -  n  -  -  discard\n\
             anvil      unix  -  -  n  -  1  anvil\n\
             scache     unix  -  -  n  -  1  scache\n\
             postlog    unix-dgram n - n - 1 postlogd\n"
            ),
        )
        .unwrap();
        let conf = p("postfix");
        start_daemon(
            &mut srv.cmd(&["postfix", "-c", &conf, "start"]),
            &d.join("postfix.start"),
        );
        srv.postfix_started = true;
        srv.wait_for_port(netns, 587);
        srv.wait_for_port(netns, 143);
        srv
    }

    fn wait_for_port(&self, netns: &Netns, port: u16) {
        for _ in 0..100 {
            let o = netns.exec(&self.ns, &["ss", "-ltn", &format!("sport = :{port}")]);
            if String::from_utf8_lossy(&o.stdout).lines().count() > 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("nothing listens on port {port} in {}", self.ns);
    }

    /// Stops both daemons (flushing their logs).
    pub fn stop(&mut self) {
        let d = self.dir.path();
        if self.postfix_started {
            let conf = match &self.root {
                Some(r) => Path::new("/").join(d.join("postfix").strip_prefix(r).unwrap()),
                None => d.join("postfix"),
            };
            let _ = self
                .cmd(&["postfix", "-c", conf.to_str().unwrap(), "stop"])
                .output();
            self.postfix_started = false;
        }
        if self.dovecot_started {
            // The master we started, by the pid it wrote; it stops its children.
            if let Ok(pid) = std::fs::read_to_string(d.join("run/master.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
            self.dovecot_started = false;
        }
        // Give postlogd and Dovecot's log process a moment to write their last lines.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    pub fn log_text(&self, path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }
}

/// `start_with`'s map argument for saslguard's policy service instead of a map.
pub const POLICY: &str = "policy:";

/// The settings of the main.cf snippet `config/postfix/NAME` (its comments dropped),
/// each line passed through `edit`.
fn main_cf_snippet(name: &str, edit: impl Fn(&str) -> String) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/postfix")
        .join(name);
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| edit(l) + "\n")
        .collect()
}

/// config/postfix/main.cf.saslguard-policy's settings.
fn policy_main_cf() -> String {
    main_cf_snippet("main.cf.saslguard-policy", str::to_string)
}

/// config/postfix/main.cf.saslguard's settings, with the map path replaced.
fn access_main_cf(map: &str) -> String {
    main_cf_snippet("main.cf.saslguard", |l| {
        l.replace("cidr:/etc/postfix/saslguard_access", map)
    })
}

/// The `-o` options config/postfix/master.cf.saslguard gives `service`, as one line.
fn access_master_options(service: &str) -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/postfix/master.cf.saslguard"
    ))
    .unwrap();
    let mut current = "";
    let mut opts = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if !line.starts_with(' ') {
            current = line.split_whitespace().next().unwrap_or("");
        } else if current == service {
            opts.push(line.trim().to_string());
        }
    }
    assert!(
        !opts.is_empty(),
        "master.cf.saslguard has no options for {service}"
    );
    opts.join(" ")
}

impl Drop for MailServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `saslguard run` started by a test, in a network namespace (or, made with
/// [`Daemon::prepare_with`] and no namespace, in the test's own), with its
/// configuration, state and control socket in a temporary directory. Stopped (by its
/// own pid) on drop.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    /// Empty: no namespace of its own (only a daemon without nftables runs so).
    pub ns: String,
    /// The binary run: the test build's, or another build of the same source.
    bin: PathBuf,
    child: Option<std::process::Child>,
    starts: u32,
}

impl Daemon {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("saslguard.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("daemon{n}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Writes a configuration (`extra` is appended: sources, rules, enforcers) and
    /// starts the daemon in namespace `ns`.
    pub fn start(ns: &str, extra: &str) -> Daemon {
        let mut daemon = Daemon::prepare(ns, extra);
        daemon.restart();
        daemon
    }

    /// As [`Daemon::start`], without starting it (`restart` does).
    pub fn prepare(ns: &str, extra: &str) -> Daemon {
        Daemon::prepare_with(Path::new(env!("CARGO_BIN_EXE_saslguard")), Some(ns), extra)
    }

    /// As [`Daemon::prepare`], for the binary `bin`, in namespace `ns` or, without one,
    /// in the test's own (its configuration must then leave nftables off).
    pub fn prepare_with(bin: &Path, ns: Option<&str>, extra: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("saslguard-daemon")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("saslguard.toml"),
            format!(
                "[input]\ntimezone = \"UTC\"\n[daemon]\nstate_directory = \"{}\"\ncontrol_socket = \"{}\"\n{extra}",
                d.join("state").display(),
                d.join("control.sock").display()
            ),
        )
        .unwrap();
        Daemon {
            dir,
            ns: ns.unwrap_or_default().to_string(),
            bin: bin.to_path_buf(),
            child: None,
            starts: 0,
        }
    }

    /// Starts the daemon (again) and waits until its control socket answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("daemon{}.log", self.starts)))
            .unwrap();
        let mut cmd = if self.ns.is_empty() {
            Command::new(&self.bin)
        } else {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.ns]).arg(&self.bin);
            c
        };
        let child = cmd
            .args(["--log-level", "info", "run", "-c"])
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..100 {
            if self.ctl(&["status"]).status.success() {
                return;
            }
            if let Some(c) = &mut self.child
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("saslguard run exited with {st}:\n{}", self.log());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("saslguard did not answer on its socket:\n{}", self.log());
    }

    /// Waits for a daemon killed by the test to be gone (a deadline of 10 s).
    pub fn reap(&mut self) {
        let mut c = self.child.take().expect("running");
        assert!(
            wait_until(&mut c, std::time::Duration::from_secs(10)).is_some(),
            "the daemon did not exit"
        );
    }

    /// The daemon's process id (`ip netns exec` runs it in its own place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as systemd stops it; waits for the exit and returns its status. A
    /// daemon that has not exited after 10 s is killed and the test fails: systemd's
    /// stop timeout is longer, but nothing saslguard does at stop takes that long.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        run(Command::new("kill").args(["-TERM", &c.id().to_string()]));
        match wait_until(&mut c, std::time::Duration::from_secs(10)) {
            Some(st) => st,
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "saslguard did not stop within 10 s of SIGTERM:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Runs `saslguard ARGS --socket SOCKET`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_saslguard"))
            .args(args)
            .arg("--socket")
            .arg(self.socket()))
    }

    /// A control command's `--json` answer.
    pub fn json(&self, cmd: &str) -> serde_json::Value {
        let out = self.ctl(&[cmd, "--json"]);
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Active ban targets.
    pub fn banned(&self) -> Vec<String> {
        self.json("bans")["bans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["target"].as_str().unwrap().to_string())
            .collect()
    }

    /// Waits up to `secs` for `cond` on the status answer; panics with the log if not.
    pub fn wait_status(
        &self,
        secs: u64,
        what: &str,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let s = self.json("status");
            if cond(&s) {
                return s;
            }
            if std::time::Instant::now() > end {
                panic!(
                    "timed out waiting for {what}; status: {s:#}\nlog:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Waits until every file source has been read once since the start and is at the
    /// end of its file: what a restart would read again has been read by then.
    pub fn wait_caught_up(&self, secs: u64) -> serde_json::Value {
        self.wait_status(secs, "every file source read to its end", |s| {
            s["sources"].as_array().is_some_and(|l| {
                l.iter()
                    .filter(|src| src["name"].as_str().is_some_and(|n| n.starts_with("file:")))
                    .all(|src| !src["file"].is_null() && src["behind_bytes"] == 0)
            })
        })
    }

    /// Waits up to `secs` until `target` is (or is no longer) banned.
    pub fn wait_banned(&self, target: &str, banned: bool, secs: u64) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while self.banned().iter().any(|t| t == target) != banned {
            if std::time::Instant::now() > end {
                panic!(
                    "{target} banned={} after {secs} s; bans: {:?}\nlog:\n{}",
                    !banned,
                    self.banned(),
                    self.log()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    /// The elements of one of the daemon's nftables sets, as `nft` lists them.
    pub fn kernel_set(&self, set: &str) -> String {
        let o = run(Command::new("ip").args([
            "netns",
            "exec",
            &self.ns,
            "nft",
            "list",
            "set",
            "inet",
            "saslguard",
            set,
        ]));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// Waits for `child` to exit for at most `limit`.
pub fn wait_until(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let end = std::time::Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if wait_until(&mut c, std::time::Duration::from_secs(10)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A real PostgreSQL for the fleet tests: initdb in a temporary directory as the
/// `postgres` user, a server on a unix socket only (no TCP), stopped with `pg_ctl -m
/// fast stop` on drop. Its socket directory is reachable from every network namespace.
#[allow(dead_code)]
pub struct Postgres {
    pub dir: PathBuf,
    pub socket_dir: PathBuf,
    bin: PathBuf,
    /// Also on 127.0.0.1 at this port (TLS only).
    tcp: std::cell::Cell<Option<u16>>,
    _keep: tempfile::TempDir,
}

#[allow(dead_code)]
impl Postgres {
    /// The directory of Debian's PostgreSQL programs (initdb, pg_ctl, postgres).
    pub fn bin() -> Option<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    }

    pub fn start() -> Postgres {
        let bin = Postgres::bin().expect("PostgreSQL's programs in /usr/lib/postgresql");
        let keep = tempfile::Builder::new()
            .prefix("saslguard-pg")
            .tempdir()
            .unwrap();
        let dir = keep.path().join("data");
        let socket_dir = keep.path().join("sock");
        std::fs::create_dir_all(&socket_dir).unwrap();
        run_ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(keep.path()),
        );
        run_ok(Command::new("chmod").args(["755"]).arg(keep.path()));
        let pg = Postgres {
            dir,
            socket_dir,
            bin,
            tcp: std::cell::Cell::new(None),
            _keep: keep,
        };
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg.bin.join("initdb"))
                .args(["--auth=trust", "-U", "postgres", "-D"])
                .arg(&pg.dir),
        );
        pg.up();
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-q", "-h"])
                .arg(&pg.socket_dir)
                .args(["-U", "postgres", "-c", "CREATE DATABASE saslguard"]),
        );
        pg
    }

    /// As [`Postgres::start`], and also on 127.0.0.1:`port` with TLS only (a
    /// certificate for 127.0.0.1 signed by itself, returned as `cert`): any TCP
    /// connection without TLS is refused by pg_hba.conf.
    pub fn start_tls(port: u16) -> (Postgres, PathBuf) {
        let pg = Postgres::start();
        pg.down();
        let cert = pg.dir.join("server.crt");
        let key = pg.dir.join("server.key");
        run_ok(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args([
                    "-subj",
                    "/CN=127.0.0.1",
                    "-addext",
                    "subjectAltName=IP:127.0.0.1",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        run_ok(
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cert)
                .arg(&key),
        );
        run_ok(Command::new("chmod").args(["600"]).arg(&key));
        let conf = pg.dir.join("postgresql.conf");
        let mut c = std::fs::read_to_string(&conf).unwrap();
        c.push_str(&format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nlisten_addresses = '127.0.0.1'\nport = {port}\n",
            cert.display(),
            key.display()
        ));
        std::fs::write(&conf, c).unwrap();
        std::fs::write(
            pg.dir.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        pg.tcp.set(Some(port));
        pg.up();
        let copy = pg._keep.path().join("ca.crt");
        std::fs::copy(&cert, &copy).unwrap();
        (pg, copy)
    }

    /// Starts the server (again) and waits for its socket.
    pub fn up(&self) {
        let listen = match self.tcp.get() {
            Some(_) => "127.0.0.1",
            None => "",
        };
        let opts = format!(
            "-k {} -c listen_addresses={listen}",
            self.socket_dir.display()
        );
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"))
                .args(["-w", "-t", "30", "-l"])
                .arg(self.dir.join("log"))
                .args(["-o", &opts, "-D"])
                .arg(&self.dir)
                .arg("start"),
        );
    }

    /// Stops the server (`pg_ctl -m fast stop`).
    pub fn down(&self) {
        let _ = run(Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-w", "-m", "fast", "-D"])
            .arg(&self.dir)
            .arg("stop"));
    }

    /// The connection string of the fleet database.
    pub fn url(&self) -> String {
        format!(
            "host={} dbname=saslguard user=postgres",
            self.socket_dir.display()
        )
    }

    /// Runs SQL in the fleet database.
    pub fn sql(&self, sql: &str) -> String {
        let o = run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-qAt", "-h"])
                .arg(&self.socket_dir)
                .args(["-U", "postgres", "-d", "saslguard", "-c", sql]),
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.down();
    }
}
