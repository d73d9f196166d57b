//! `saslguard tls` and `saslguard trace`: the whole mail log, merged by time.

use super::*;

/// The next line of `src` that has a syslog time, with that time.
pub(crate) fn next_timed(src: &mut FileSource) -> Result<Option<(Timestamp, String)>, ExitCode> {
    use saslguard::parse::syslog;
    loop {
        let raw = match src.next_raw() {
            Ok(Some(Line::Ok(b))) => String::from_utf8_lossy(b).into_owned(),
            Ok(Some(Line::TooLong(_))) => continue,
            Ok(None) => return Ok(None),
            Err(e) => {
                eprintln!("saslguard: {e}");
                return Err(ExitCode::from(EX_NOINPUT));
            }
        };
        let Some(prefix) = syslog::parse(raw.trim_end_matches('\r')) else {
            continue;
        };
        let Some(t) = src.resolver().resolve(prefix.time) else {
            continue;
        };
        return Ok(Some((t, raw)));
    }
}

/// Feeds every line of `files` to the scanner, merged by time as `replay` does (so
/// `mail.log mail.log.1` and side-by-side Postfix and Dovecot logs read as one log);
/// `after` runs after each line.
pub(crate) fn scan_logs(
    files: &[PathBuf],
    time: &TimeArgs,
    sc: &mut saslguard::maillog::Scanner,
    mut after: impl FnMut(&mut saslguard::maillog::Scanner),
) -> Result<(), ExitCode> {
    use saslguard::parse::syslog;
    use std::cmp::Reverse;
    let cfg = Config::default();
    let ts = time_settings(time, &cfg)?;
    let mut sources = Vec::with_capacity(files.len());
    for path in files {
        sources.push(FileSource::open(path, cfg.max_line_bytes, ts).map_err(|e| {
            eprintln!("saslguard: {e}");
            ExitCode::from(EX_NOINPUT)
        })?);
    }
    let mut heads: Vec<Option<String>> = Vec::with_capacity(sources.len());
    let mut heap = std::collections::BinaryHeap::new();
    for (i, src) in sources.iter_mut().enumerate() {
        let head = next_timed(src)?;
        if let Some((t, _)) = &head {
            heap.push(Reverse((*t, i)));
        }
        heads.push(head.map(|(_, raw)| raw));
    }
    while let Some(Reverse((t, i))) = heap.pop() {
        let raw = heads[i].take().expect("a head for every heap entry");
        if let Some((t2, next)) = next_timed(&mut sources[i])? {
            heads[i] = Some(next);
            heap.push(Reverse((t2, i)));
        }
        let line = raw.trim_end_matches('\r');
        let Some(prefix) = syslog::parse(line) else {
            continue;
        };
        let Some((program, pid, msg)) = syslog::tag(prefix.rest) else {
            continue;
        };
        let parsed = saslguard::parse::parse_line(line).ok();
        let event = parsed.as_ref().and_then(|p| p.event.as_deref());
        sc.feed(&saslguard::maillog::LogLine {
            time: t,
            host: prefix.host.unwrap_or(""),
            program,
            pid,
            msg,
            raw: line,
            event,
        });
        after(sc);
    }
    Ok(())
}

/// `saslguard tls`.
pub(crate) fn tls(
    internal: &[String],
    json: bool,
    time: &TimeArgs,
    files: &[PathBuf],
) -> Result<ExitCode> {
    let mut nets: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
    for n in internal {
        match config::validate::parse_network(n) {
            Ok(n) => nets.push(n),
            Err(e) => {
                eprintln!("saslguard tls: --internal {n:?}: {e}");
                return Ok(ExitCode::from(EX_USAGE));
            }
        }
    }
    let mut sc = saslguard::maillog::Scanner::default();
    let mut agg = saslguard::maillog::TlsAggregate::new(nets);
    if let Err(code) = scan_logs(files, time, &mut sc, |sc| agg.absorb(sc)) {
        return Ok(code);
    }
    let r = agg.finish(&mut sc);
    emit(json, &r, saslguard::maillog::render_tls)?;
    Ok(ExitCode::SUCCESS)
}

/// `saslguard trace`: exit 1 when nothing matched.
pub(crate) fn trace(
    filter: saslguard::maillog::Filter,
    json: bool,
    time: &TimeArgs,
    files: &[PathBuf],
) -> Result<ExitCode> {
    if filter.queue_id.is_none()
        && filter.client.is_none()
        && filter.cipher.is_none()
        && filter.user.is_none()
    {
        eprintln!("saslguard trace: give --queue-id, --client, --cipher or --user");
        return Ok(ExitCode::from(EX_USAGE));
    }
    let mut sc = saslguard::maillog::Scanner::default();
    sc.keep_lines = true;
    let mut tracer = saslguard::maillog::Tracer::new(filter);
    if let Err(code) = scan_logs(files, time, &mut sc, |sc| tracer.absorb(sc)) {
        return Ok(code);
    }
    let t = tracer.finish(&mut sc);
    emit(json, &t, saslguard::maillog::render_trace)?;
    let found = !(t.sessions.is_empty() && t.messages.is_empty() && t.logins.is_empty());
    Ok(if found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
