//! `saslguard probe`: a mail server as a client sees it.

use super::*;

pub(crate) use crate::cli::ProbeArgs;

pub(crate) fn probe(a: ProbeArgs) -> Result<ExitCode> {
    use saslguard::probe::{self, Credentials, Service};
    let usage = |m: String| {
        eprintln!("saslguard probe: {m}");
        Ok(ExitCode::from(EX_USAGE))
    };
    let (timeout, mechanism) = (a.timeout, a.mechanism);
    let creds = match (a.user, a.password_file) {
        (Some(user), Some(file)) => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin().read_line(&mut s)?;
                s
            } else {
                match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => return usage(format!("{}: {e}", file.display())),
                }
            };
            let password = text.lines().next().unwrap_or("").to_string();
            Some(Credentials {
                user,
                password,
                mechanism,
            })
        }
        _ => None,
    };
    let targets: Vec<(u16, Service)> = if a.all {
        Service::ALL.iter().map(|s| (s.port(), *s)).collect()
    } else {
        let service = a.service.unwrap_or_else(|| {
            a.port
                .and_then(Service::from_port)
                .unwrap_or(Service::Submission)
        });
        vec![(a.port.unwrap_or(service.port()), service)]
    };
    let reports: Vec<probe::Report> = targets
        .iter()
        .map(|(port, s)| probe::probe(&a.host, *port, *s, creds.as_ref(), timeout))
        .collect();
    if a.json {
        let doc = if a.all {
            serde_json::to_string_pretty(&reports)?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        println!("{doc}");
    } else {
        for r in &reports {
            print!("{}", probe::render(r));
        }
        if a.all {
            let open: Vec<String> = reports
                .iter()
                .filter(|r| !r.blocked() && r.verdict == probe::Verdict::Open)
                .map(|r| r.port.to_string())
                .collect();
            let exposed: Vec<String> = reports
                .iter()
                .filter(|r| r.plaintext_auth_exposed)
                .map(|r| r.port.to_string())
                .collect();
            let weak: Vec<String> = reports
                .iter()
                .filter(|r| !r.weak_protocols.is_empty())
                .map(|r| r.port.to_string())
                .collect();
            println!(
                "summary: open {}; login before TLS on {}; TLS 1.0/1.1 accepted on {}",
                if open.is_empty() {
                    "none".into()
                } else {
                    open.join(", ")
                },
                if exposed.is_empty() {
                    "none".into()
                } else {
                    exposed.join(", ")
                },
                if weak.is_empty() {
                    "none".into()
                } else {
                    weak.join(", ")
                },
            );
        }
    }
    if reports.iter().all(|r| r.blocked()) {
        return Ok(ExitCode::from(3));
    }
    if reports
        .iter()
        .any(|r| r.login.as_ref().is_some_and(|l| !l.success))
    {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
