#!/usr/bin/env python3
"""Benchmarks of the live daemon (issue 4), as root, in a network namespace this script
creates and always deletes (the machine's own ruleset is never touched):

  latency   time from writing a failure line to the ban being in the kernel set, as
            `nft monitor` reports it, over N bans (one failure bans: rule failures = 1)
  intake    failure lines per second the daemon reads, counts and stores, with the
            bytes it is behind sampled while a writer appends as fast as it can
  sustained fixed write rates (20k, 50k, 80k failures/s for 10 s each): does the lag
            stay flat
  memory    RSS of the daemon with 1,000,000 tracked addresses (ADDRESSES=N): settled,
            its peak, and its peak over its whole life (its shutdown writes the
            counter state); then the same after a restart
  aging     RSS and tracked addresses after a flood of ADDRESSES failures stamped two
            days ago, then after 300 lines of now (past every window, the flood's state
            leaves the tables, a piece per line)

  python3 bench/daemon.py [latency|intake|sustained|memory|aging|all]
"""
import json, os, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SASLGUARD=/path/to/binary measures another build (an old one, for a comparison).
BIN = os.environ.get("SASLGUARD") or os.path.join(ROOT, "target/release/saslguard")
NS = "sgdbench%d" % os.getpid()


def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000000Z"


def line(addr, ts):
    return "%s mx postfix/submission/smtpd[77]: warning: unknown[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info\n" % (ts, addr)


def v6(i):
    return "2001:db8:%x:%x::1" % (i >> 16, i & 0xFFFF)


class Daemon:
    def __init__(self, rules, limits="", again=None):
        # again: the directory of a daemon stopped with keep=True, started anew on its
        # log and store (a restart).
        self.dir = again or tempfile.mkdtemp(prefix="sgbench")
        self.log = os.path.join(self.dir, "mail.log")
        if not again:
            open(self.log, "w").close()
        self.sock = os.path.join(self.dir, "ctl.sock")
        cfg = os.path.join(self.dir, "cfg.toml")
        with open(cfg, "w") as f:
            f.write('[input]\ntimezone = "UTC"\n[sources]\nfiles = ["%s"]\njournal = false\n'
                    '[daemon]\nstate_directory = "%s/state"\ncontrol_socket = "%s"\n%s\n%s\n'
                    % (self.log, self.dir, self.sock, rules, limits))
        self.out = open(os.path.join(self.dir, "daemon.log"), "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", NS] + os.environ.get("WRAP", "").split() + [BIN, "--log-level", "error", "run", "-c", cfg],
                                     stdout=self.out, stderr=self.out)
        for _ in range(100):
            if os.path.exists(self.sock) and self.status():
                return
            time.sleep(0.1)
        raise SystemExit("daemon did not start: " + open(self.out.name).read())

    def status(self):
        r = subprocess.run([BIN, "status", "--json", "--socket", self.sock], capture_output=True, text=True)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def rss(self):
        pid = subprocess.run(["pgrep", "-f", self.dir + "/cfg.toml"], capture_output=True, text=True).stdout.split()
        fields = {}
        for l in open("/proc/%s/status" % pid[-1]):
            k, _, v = l.partition(":")
            fields[k] = v.strip()
        return fields["VmRSS"], fields["VmHWM"]

    def stop(self, keep=False):
        # With WRAP (heaptrack, perf) the process started is the wrapper: stop the
        # daemon it started too, by its id, so none outlives the run.
        pids = subprocess.run(["pgrep", "-f", self.dir + "/cfg.toml"], capture_output=True,
                              text=True).stdout.split()
        # The daemon first, alone, its high-water mark followed until it exits: the
        # peak of its whole life, writing its state at shutdown included.
        for pid in pids:
            try:
                os.kill(int(pid), 15)
            except (ProcessLookupError, ValueError):
                pass
        hwm = "?"
        while pids:
            try:
                st = open("/proc/%s/status" % pids[-1]).read()
            except OSError:
                break
            if "VmHWM" not in st:  # exited, not yet reaped
                break
            hwm = st.split("VmHWM:")[1].split("\n")[0].strip()
            time.sleep(0.002)
        self.proc.terminate()
        for pid in pids:
            try:
                os.kill(int(pid), 15)
            except (ProcessLookupError, ValueError):
                pass
        self.proc.wait()
        for _ in range(50):
            if not any(os.path.exists("/proc/%s" % p) for p in pids):
                break
            time.sleep(0.1)
        if not keep:
            subprocess.run(["rm", "-rf", self.dir])
        return hwm


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def latency(n=int(os.environ.get("N", "1000"))):
    d = Daemon('[[rule]]\nname = "one"\nfailures = 1\nwithin = "10m"\nban = "1h"\n')
    mon = subprocess.Popen(["ip", "netns", "exec", NS, "stdbuf", "-oL", "nft", "monitor", "elements"], stdout=subprocess.PIPE, text=True)
    seen = {}
    cond = threading.Condition()

    def reader():
        for l in mon.stdout:
            t = time.perf_counter()
            if "element" in l and ("add " in l or "create " in l):
                addr = l.split("{")[1].split()[0]
                with cond:
                    seen[addr] = t
                    cond.notify_all()
    threading.Thread(target=reader, daemon=True).start()
    time.sleep(0.5)
    lat = []
    with open(d.log, "a") as f:
        for i in range(1, n + 1):
            a = v6(i)
            f.write(line(a, stamp()))
            f.flush()
            t0 = time.perf_counter()
            with cond:
                if not cond.wait_for(lambda: a in seen, timeout=5):
                    raise SystemExit("no ban for %s" % a)
            lat.append((seen[a] - t0) * 1000)
    mon.terminate()
    st = d.status()
    d.stop()
    print("latency over %d bans (line written -> element in the kernel set, nft monitor): "
          "p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, max %.3f ms; bans made %s"
          % (n, pct(lat, 50), pct(lat, 90), pct(lat, 99), max(lat), st["bans"]))


def intake(total=int(os.environ.get("LINES", "2000000"))):
    d = Daemon('[[rule]]\nname = "never"\nfailures = 1000\nwithin = "10m"\nban = "1h"\n')
    ts = stamp()
    chunk = "".join(line(v6(i % 100000 + 1), ts) for i in range(10000))
    behind = []
    stop = False

    def sample():
        while not stop:
            s = d.status()
            if s:
                behind.append(s["sources"][0]["behind_bytes"])
            time.sleep(0.2)
    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    with open(d.log, "a") as f:
        for _ in range(total // 10000):
            f.write(chunk)
    t_written = time.perf_counter()
    while True:
        s = d.status()
        if s["stats"]["lines"] >= total:
            break
        time.sleep(0.05)
    t1 = time.perf_counter()
    # Stored: the position saved with the failures (in the same transaction) is the
    # end of the file.
    end = os.path.getsize(d.log)
    while stored_offset(d) < end:
        time.sleep(0.02)
    t2 = time.perf_counter()
    stop = True
    rss = d.rss()
    d.stop()
    print("intake: %d failure lines (100,000 addresses) appended in %.2f s, all counted after %.2f s: "
          "%.0f failures/s; all stored after %.2f s: %.0f failures/s; largest lag sampled %d bytes; "
          "RSS %s (peak %s); failures counted %d"
          % (total, t_written - t0, t1 - t0, total / (t1 - t0), t2 - t0, total / (t2 - t0),
             max(behind or [0]), rss[0], rss[1], s["stats"]["failures"]))


def stored_offset(d):
    """The offset in the log of the position the store holds (0 if none yet)."""
    import sqlite3
    try:
        db = sqlite3.connect("file:%s/state/saslguard.db?mode=ro" % d.dir, uri=True, timeout=1)
        row = db.execute("SELECT position FROM checkpoints").fetchone()
        db.close()
    except sqlite3.Error:
        return 0
    return int(row[0].split(",")[-1].split(":")[2]) if row and row[0] else 0


def sustained(rates=tuple(int(r) for r in os.environ.get("RATES", "20000,50000,80000").split(",")),
              seconds=10):
    """A writer appends at a fixed rate (in 10 ms slices); the lag (bytes written and
    not read) is sampled every 100 ms. Keeping up means the lag stays flat.
    RATES=300000 asks for another rate (the writer shares the two cores)."""
    d = Daemon('[[rule]]\nname = "never"\nfailures = 1000\nwithin = "10m"\nban = "1h"\n')
    # Lines without their stamp, made once: the writer must cost little next to the
    # daemon at high rates.
    bodies = [line(v6(i + 1), "")[:-1] for i in range(100000)]
    for rate in rates:
        per = rate // 100
        lags = []
        t0 = time.perf_counter()
        with open(d.log, "a") as f:
            k = 0
            while time.perf_counter() - t0 < seconds:
                ts = stamp()
                first = k % 100000
                part = bodies[first:first + per]
                if len(part) < per:
                    part += bodies[:per - len(part)]
                f.write(ts + ("\n" + ts).join(part) + "\n")
                f.flush()
                k += per
                if k % (per * 10) == 0:
                    s = d.status()
                    lags.append(os.path.getsize(d.log) - int(s["sources"][0]["position"].split(":")[2]))
                slot = t0 + k / rate
                pause = slot - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        written = k
        elapsed = time.perf_counter() - t0
        half = len(lags) // 2
        print("sustained %d failures/s asked, %.0f written for %.1f s: lag sampled in the first half max %d bytes, "
              "second half max %d bytes, at the end %d bytes"
              % (rate, written / elapsed, elapsed, max(lags[:half] or [0]), max(lags[half:] or [0]), lags[-1] if lags else 0))
        while int(d.status()["sources"][0]["position"].split(":")[2]) < os.path.getsize(d.log):
            time.sleep(0.1)
    d.stop()


def memory(n=int(os.environ.get("ADDRESSES", "1000000"))):
    rules = '[[rule]]\nname = "never"\nfailures = 5\nwithin = "10m"\nban = "1h"\n'
    limits = '[limits]\nmax_addresses = %d\n' % n
    d = Daemon(rules, limits)
    ts = stamp()
    with open(d.log, "a") as f:
        for start in range(1, n + 1, 10000):
            f.write("".join(line(v6(i), ts) for i in range(start, min(start + 10000, n + 1))))
    while True:
        s = d.status()
        if s["stats"]["lines"] >= n:
            break
        time.sleep(0.2)
    # Settled: the store holds everything (no batch waits in memory).
    end = os.path.getsize(d.log)
    while stored_offset(d) < end:
        time.sleep(0.1)
    # The daemon's threads give freed memory back after a quiet second.
    time.sleep(3)
    s = d.status()
    rss = d.rss()
    life = d.stop(keep=True)
    print("memory: %d tracked addresses (%d offender records, the [limits] default), RSS %s (peak %s; %s with its shutdown)"
          % (s["tracked"]["addresses"], s["offenders"], rss[0], rss[1], life))
    # A restart reads back what the store kept: the same windows, the same bound.
    d = Daemon(rules, limits, again=d.dir)
    time.sleep(3)
    s = d.status()
    rss = d.rss()
    life = d.stop()
    print("memory after a restart: %d tracked addresses (%d offender records), RSS %s (peak %s; %s with its shutdown)"
          % (s["tracked"]["addresses"], s["offenders"], rss[0], rss[1], life))


def aging(n=int(os.environ.get("ADDRESSES", "1000000"))):
    """A flood two days old, then 300 lines of now: what the daemon holds before and
    after its windows have passed (state past every window leaves its tables)."""
    rules = '[[rule]]\nname = "never"\nfailures = 5\nwithin = "10m"\nban = "1h"\n'
    limits = '[limits]\nmax_addresses = %d\n' % n
    d = Daemon(rules, limits)
    old = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 2 * 86400)) + ".000000Z"
    with open(d.log, "a") as f:
        for start in range(1, n + 1, 10000):
            f.write("".join(line(v6(i), old) for i in range(start, min(start + 10000, n + 1))))
    while d.status()["stats"]["lines"] < n:
        time.sleep(0.2)
    while stored_offset(d) < os.path.getsize(d.log):
        time.sleep(0.1)
    time.sleep(3)
    before, rss_before = d.status(), d.rss()
    # The sweep takes a piece per line (pipeline::SWEEP_MAX entries per table): 300
    # lines of now, from one address, are enough for a million.
    with open(d.log, "a") as f:
        f.write("".join(line("2001:db8:ffff:ffff::1", stamp()) for _ in range(300)))
    while d.status()["stats"]["lines"] < n + 300:
        time.sleep(0.1)
    while stored_offset(d) < os.path.getsize(d.log):
        time.sleep(0.1)
    time.sleep(3)
    after, rss_after = d.status(), d.rss()
    d.stop()
    print("aging: %d addresses failed two days ago: %d tracked, RSS %s (peak %s); after 300 lines of now: %d tracked, RSS %s"
          % (n, before["tracked"]["addresses"], rss_before[0], rss_before[1],
             after["tracked"]["addresses"], rss_after[0]))


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "saslguard"], cwd=ROOT, check=True)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        print("machine: %d cores, %s; kernel %s" % (os.cpu_count(), open("/proc/cpuinfo").read().split("model name")[1].split(":")[1].split("\n")[0].strip(), os.uname().release))
        for name, fn in [("latency", latency), ("intake", intake), ("sustained", sustained), ("memory", memory),
                         ("aging", aging)]:
            if what in (name, "all"):
                fn()
    finally:
        subprocess.run(["ip", "netns", "del", NS])


if __name__ == "__main__":
    main()
