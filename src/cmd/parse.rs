//! `saslguard parse`: how each line is understood, like fail2ban-regex.

use super::*;

/// Why the merge stopped: a log file (exit 66), or the output.
enum Stop {
    Input(saslguard::source::file::SourceError),
    Output(anyhow::Error),
}

impl From<saslguard::source::file::SourceError> for Stop {
    fn from(e: saslguard::source::file::SourceError) -> Stop {
        Stop::Input(e)
    }
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        Stop::Output(e.into())
    }
}

impl From<serde_json::Error> for Stop {
    fn from(e: serde_json::Error) -> Stop {
        Stop::Output(e.into())
    }
}

/// What `parse` needs of a line, made from the stamped line by the merge.
enum Line {
    /// No time: why, and what to show of it.
    Skipped {
        why: saslguard::source::Skip,
        shown: String,
    },
    Read {
        time: saslguard::time::Timestamp,
        event: Option<Box<saslguard::parse::Event>>,
    },
}

impl Line {
    fn of(l: &saslguard::source::Stamped) -> Line {
        match &l.stamp {
            Err(why) => Line::Skipped {
                why: *why,
                shown: match why {
                    saslguard::source::Skip::TooLong => format!("{} bytes", l.len),
                    _ => l.text.chars().take(120).collect(),
                },
            },
            Ok((time, prefix)) => Line::Read {
                time: *time,
                event: saslguard::parse::parse_prefixed(prefix).event,
            },
        }
    }
}

pub(crate) fn parse_files(
    files: &[PathBuf],
    json: bool,
    verbose: bool,
    ts: TimeSettings,
    max_line: usize,
) -> Result<ExitCode> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let (mut lines, mut events, mut skipped) = (0u64, 0u64, 0u64);
    let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
    let many = files.len() > 1;
    let mut merge = match Merge::open(files, max_line, ts) {
        Ok(m) => m,
        Err(e) => return Ok(no_input(&e)),
    };
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let read = merge.run(
        saslguard::source::merge::Threads::One,
        Line::of,
        |m| -> Result<(), Stop> {
            lines += 1;
            let n = m.line_no;
            let where_ = if many {
                format!("{}:{}", names[m.source], n)
            } else {
                n.to_string()
            };
            let (t, event) = match m.value {
                Line::Skipped { why, shown } => {
                    skipped += 1;
                    if verbose && !json {
                        writeln!(
                            out,
                            "{where_}: skipped ({why:?}): {}",
                            saslguard::escape::escape(&shown)
                        )?;
                    }
                    return Ok(());
                }
                Line::Read { time, event } => (time, event),
            };
            let Some(ev) = event else {
                if verbose && !json {
                    writeln!(out, "{where_}: no event")?;
                }
                return Ok(());
            };
            events += 1;
            *by_kind.entry(ev.kind.as_str()).or_insert(0) += 1;
            if json {
                let mut v = serde_json::to_value(&ev)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("line".into(), n.into());
                    if many {
                        o.insert("file".into(), names[m.source].clone().into());
                    }
                    o.insert("time".into(), t.rfc3339().into());
                }
                serde_json::to_writer(&mut out, &v)?;
                writeln!(out)?;
            } else {
                writeln!(
                    out,
                    "{where_}: {}",
                    saslguard::escape::escape(&describe(&ev))
                )?;
            }
            Ok(())
        },
    );
    match read {
        Ok(()) => {}
        Err(Stop::Input(e)) => return Ok(no_input(&e)),
        Err(Stop::Output(e)) => return Err(e),
    }
    if !json {
        let kinds: Vec<String> = by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "\nlines: {lines}, with an event: {events}, skipped: {skipped}"
        )?;
        if !kinds.is_empty() {
            writeln!(out, "events: {}", kinds.join(", "))?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn describe(ev: &saslguard::parse::Event) -> String {
    let mut s = ev.kind.as_str().to_string();
    if ev.ambiguous {
        s.push_str(" AMBIGUOUS-ADDRESS (not counted)");
    }
    if let Some(a) = ev.address {
        s.push_str(&format!(" address={a}"));
    }
    for (k, v) in [
        ("service", ev.service.as_deref()),
        ("mechanism", ev.mechanism.as_deref()),
        ("user", ev.user.as_deref()),
        ("session", ev.session.as_deref()),
        ("queue_id", ev.queue_id.as_deref()),
        ("reason", ev.reason.as_deref()),
    ] {
        if let Some(v) = v {
            s.push_str(&format!(" {k}={v:?}"));
        }
    }
    if let Some(n) = ev.attempts {
        s.push_str(&format!(" attempts={n}"));
    }
    if let Some(t) = &ev.tls {
        s.push_str(&format!(" tls={:?}", t.label()));
    } else if ev.plaintext {
        s.push_str(" tls=plaintext");
    }
    if let Some(t) = &ev.tally {
        s.push_str(&format!(
            " auth={}/{}{}",
            t.auth_ok,
            t.auth_total,
            if t.starttls { " starttls" } else { "" }
        ));
    }
    s
}

/// `saslguard parse`.
pub(crate) fn parse(
    json: bool,
    verbose: bool,
    time: &TimeArgs,
    files: &[PathBuf],
) -> Result<ExitCode> {
    let cfg = Config::default();
    let ts = match time_settings(time, &cfg) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    parse_files(files, json, verbose, ts, cfg.max_line_bytes)
}
