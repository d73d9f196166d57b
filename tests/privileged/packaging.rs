//! Packaging: `cargo deb` builds a Debian package whose contents are checked, then
//! unpacked into a throwaway root and run from there; the systemd unit is checked by
//! systemd-analyze and for the hardening the README promises.
//!
//! Needs cargo-deb (`bash .ci/deps` installs it) and dpkg-deb. The package is made from
//! the dev-profile binary the test run already built (see the test).

use crate::support;
use crate::support::run_ok;
use std::path::Path;
use std::process::Command;

#[test]
fn cargo_deb_builds_a_package_that_installs_and_runs() {
    let have_deb = Command::new(env!("CARGO"))
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_deb {
        support::skip(
            "cargo_deb_builds_a_package_that_installs_and_runs",
            "cargo-deb is not installed (bash .ci/deps installs it)",
        );
        return;
    }
    if !support::have_tools(
        "cargo_deb_builds_a_package_that_installs_and_runs",
        &["dpkg-deb"],
    ) {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let deb = out.path().join("saslguard.deb");
    // The package of the binary `cargo test` already built (the dev profile): the same
    // layout, metadata, unit and scripts as the release package, without a second,
    // optimised build of the whole tree inside the test suite.
    run_ok(
        Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "deb",
                "--locked",
                "--no-build",
                "--profile",
                "dev",
                "--no-strip",
                "--no-separate-debug-symbols",
                "--fast",
                "--output",
            ])
            .arg(&deb),
    );

    let list =
        String::from_utf8(run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout).unwrap();
    for f in [
        "./usr/bin/saslguard",
        "./usr/lib/systemd/system/saslguard.service",
        "./etc/saslguard/saslguard.toml",
        "./usr/share/doc/saslguard/README.md",
        "./usr/share/doc/saslguard/postfix/main.cf.saslguard",
    ] {
        assert!(list.contains(f), "{f} missing from the package:\n{list}");
    }
    let info =
        String::from_utf8(run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb)).stdout).unwrap();
    assert!(info.contains("libnftnl"), "depends on libnftnl: {info}");
    let package = run_ok(
        Command::new("dpkg-deb")
            .args(["-f"])
            .arg(&deb)
            .arg("Package"),
    )
    .stdout;
    assert_eq!(String::from_utf8_lossy(&package).trim(), "saslguard");
    let ctrl = out.path().join("control");
    run_ok(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&ctrl));
    assert_eq!(
        std::fs::read_to_string(ctrl.join("conffiles"))
            .unwrap()
            .trim(),
        "/etc/saslguard/saslguard.toml",
        "the configuration survives upgrades"
    );
    let postinst = std::fs::read_to_string(ctrl.join("postinst")).unwrap();
    assert!(
        postinst.contains("deb-systemd-helper enable saslguard.service"),
        "{postinst}"
    );

    // Unpacked into a throwaway root: the binary runs and accepts the shipped
    // configuration, which is the documented defaults.
    let root = out.path().join("root");
    run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let bin = root.join("usr/bin/saslguard");
    let conf = root.join("etc/saslguard/saslguard.toml");
    let check = run_ok(Command::new(&bin).arg("check-config").arg(&conf));
    assert!(String::from_utf8_lossy(&check.stdout).contains("OK"));
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/saslguard.toml")).unwrap()
    );

    // The unit: valid for systemd, and hardened as the README says.
    let unit_path = root.join("usr/lib/systemd/system/saslguard.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    if support::have_tools(
        "cargo_deb_builds_a_package_that_installs_and_runs (systemd-analyze verify)",
        &["systemd-analyze"],
    ) {
        let v = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path)
            .output()
            .unwrap();
        let complaints: Vec<String> = String::from_utf8_lossy(&v.stderr)
            .lines()
            // Not installed on this machine / no systemd running here: not the unit's fault.
            .filter(|l| !l.contains("is not executable") && !l.contains("not found"))
            .map(String::from)
            .collect();
        assert!(
            complaints.is_empty(),
            "systemd-analyze verify: {complaints:#?}"
        );
    }
    let directives: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    for want in [
        "Type=notify",
        "LimitNOFILE=65536",
        "ExecStartPre=/usr/bin/saslguard check-config /etc/saslguard/saslguard.toml",
        "ExecReload=/usr/bin/saslguard check-config /etc/saslguard/saslguard.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=CAP_NET_ADMIN",
        "AmbientCapabilities=CAP_NET_ADMIN",
        "ProtectSystem=strict",
        "StateDirectory=saslguard",
        "RuntimeDirectory=saslguard",
        "NoNewPrivileges=yes",
    ] {
        assert!(directives.contains(&want), "the unit lacks {want:?}");
    }
    assert!(
        !directives.iter().any(|l| l.starts_with("PrivateNetwork")),
        "bans must land in the host's network namespace"
    );
    // The paths the unit gives are the defaults the daemon uses.
    let cfg = saslguard::config::load(&conf).unwrap();
    assert_eq!(cfg.daemon.state_directory, Path::new("/var/lib/saslguard"));
    assert!(cfg.daemon.control_socket.starts_with("/run/saslguard"));
}
