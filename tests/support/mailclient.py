"""Mail client for saslguard's tests: runs the actions given as JSON on the command line
against the test server, each from its own source address, and prints one result line
per action. Used inside the client network namespace only."""
import base64, imaplib, json, poplib, smtplib, socket, ssl, sys

SERVER = sys.argv[1]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def bound(cls, src):
    class Bound(cls):
        def _create_socket(self, timeout):
            return socket.create_connection((self.host, self.port), timeout, source_address=(src, 0))
    return Bound


def smtp_connect(a):
    """An SMTP connection from the action's source address: implicit TLS on 465."""
    port, src = a["port"], a["from"]
    host = a.get("server", SERVER)
    if port == 465:
        return smtplib.SMTP_SSL(host, port, timeout=40, source_address=(src, 0), context=ctx)
    return smtplib.SMTP(host, port, timeout=40, source_address=(src, 0))


def smtp(a):
    s = smtp_connect(a)
    s.ehlo("client.example.net")
    if a.get("starttls"):
        s.starttls(context=ctx)
        s.ehlo("client.example.net")
    # Exactly one AUTH command per action (smtplib's login() would fall back to a
    # second mechanism after a failure, which is a second guess).
    s.user, s.password = a["user"], a["password"]
    mech = a.get("mech", "PLAIN")
    try:
        s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
        if a.get("send"):
            s.sendmail(a["user"] + "@example.org", ["friend@example.com"], "Subject: hi\r\n\r\nhello\r\n")
        result = "ok"
    except smtplib.SMTPException as e:
        result = "fail %s" % (getattr(e, "smtp_code", ""),)
    try:
        s.quit()
    except Exception:
        pass
    return result


def smtp_auth(a):
    """The reply codes to EHLO, STARTTLS (if asked) and AUTH PLAIN, as the server gives
    them: a refused client sees its refusal, not an exception."""
    try:
        s = smtp_connect(a)
    except smtplib.SMTPConnectError as e:
        return "greeting=%d" % e.smtp_code
    codes = ["greeting=220"]
    code, _ = s.ehlo("client.example.net")
    codes.append("ehlo=%d" % code)
    if a.get("starttls"):
        code, _ = s.docmd("STARTTLS")
        codes.append("starttls=%d" % code)
        if code == 220:
            s.sock = ctx.wrap_socket(s.sock, server_hostname=SERVER)
            s.file = None
            s.ehlo("client.example.net")
    token = base64.b64encode(("\0%s\0%s" % (a["user"], a["password"])).encode()).decode()
    code, _ = s.docmd("AUTH", "PLAIN " + token)
    codes.append("auth=%d" % code)
    if code == 235 and a.get("send"):
        try:
            s.sendmail(a["user"] + "@example.org", ["friend@example.com"], "Subject: hi\r\n\r\nhello\r\n")
            codes.append("sent")
        except smtplib.SMTPRecipientsRefused as e:
            codes.append("rcpt=%s" % ",".join(str(c) for c, _ in e.recipients.values()))
        except smtplib.SMTPException as e:
            codes.append("send=%s" % getattr(e, "smtp_code", "?"))
    try:
        s.quit()
    except Exception:
        pass
    return " ".join(codes)


def imap(a):
    c = bound(imaplib.IMAP4, a["from"])(SERVER, 143, timeout=40)
    if a.get("starttls"):
        c.starttls(ssl_context=ctx)
    results = []
    for user, pw in a["logins"]:
        try:
            c.login(user, pw)
            results.append("ok")
            break
        except imaplib.IMAP4.error:
            results.append("fail")
    try:
        c.logout()
    except Exception:
        pass
    return " ".join(results)


def pop3(a):
    c = bound(poplib.POP3, a["from"])(SERVER, 110, timeout=40)
    if a.get("starttls"):
        c.stls(context=ctx)
    try:
        c.user(a["user"])
        c.pass_(a["password"])
        result = "ok"
    except poplib.error_proto:
        result = "fail"
    try:
        c.quit()
    except Exception:
        pass
    return result


def run(action):
    try:
        r = {"smtp": smtp, "smtp_auth": smtp_auth, "imap": imap, "pop3": pop3}[action["kind"]](action)
    except Exception as e:  # a refused or dropped connection is a result too
        r = "error %s" % type(e).__name__
    return "%s %s %s" % (action["kind"], action["from"], r)


actions = json.loads(sys.argv[2])
if len(sys.argv) > 3 and sys.argv[3] == "parallel":
    # Each source address's actions in order, the addresses side by side (Dovecot's
    # per-address delays then overlap); results printed in the order given.
    import threading
    results = [None] * len(actions)
    def client(src):
        for i, a in enumerate(actions):
            if a["from"] == src:
                results[i] = run(a)
    threads = [threading.Thread(target=client, args=(s,)) for s in dict.fromkeys(a["from"] for a in actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        print(r, flush=True)
else:
    for action in actions:
        print(run(action), flush=True)
