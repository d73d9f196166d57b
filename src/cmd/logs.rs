//! `saslguard tls` and `saslguard trace`: the whole mail log, merged by time.

use super::*;

/// Feeds every line of `files` to the scanner, merged by time as `replay` does (so
/// `mail.log mail.log.1` and side-by-side Postfix and Dovecot logs read as one log);
/// `after` runs after each line. With reader threads each file's lines are parsed on
/// a thread of its own ([`saslguard::report::scan::ScanLine`]); the scanner sees them
/// in the same order.
pub(crate) fn scan_logs(
    files: &[PathBuf],
    time: &TimeArgs,
    threads: saslguard::source::merge::Threads,
    sc: &mut saslguard::report::scan::Scanner,
    mut after: impl FnMut(&mut saslguard::report::scan::Scanner),
) -> Result<(), ExitCode> {
    use saslguard::report::scan::ScanLine;
    let cfg = Config::default();
    let ts = time_settings(time, &cfg)?;
    let mut merge = Merge::open(files, cfg.max_line_bytes, ts).map_err(|e| no_input(&e))?;
    merge
        .run(threads, ScanLine::of, |m| {
            if sc.feed_line(m.value) {
                after(sc);
            }
            Ok::<_, saslguard::source::file::SourceError>(())
        })
        .map_err(|e| no_input(&e))
}

/// `saslguard tls`.
pub(crate) fn tls(
    internal: &[ipnet::IpNet],
    json: bool,
    time: &TimeArgs,
    threads: saslguard::source::merge::Threads,
    files: &[PathBuf],
) -> Result<ExitCode> {
    let mut nets: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse()?, "::1/128".parse()?];
    nets.extend_from_slice(internal);
    let mut sc = saslguard::report::scan::Scanner::default();
    let mut agg = saslguard::report::tls::TlsAggregate::new(nets);
    if let Err(code) = scan_logs(files, time, threads, &mut sc, |sc| agg.absorb(sc)) {
        return Ok(code);
    }
    let r = agg.finish(&mut sc);
    emit(json, &r, saslguard::report::tls::render_tls)?;
    Ok(ExitCode::SUCCESS)
}

/// `saslguard trace`: exit 1 when nothing matched.
pub(crate) fn trace(
    filter: saslguard::report::trace::Filter,
    json: bool,
    time: &TimeArgs,
    threads: saslguard::source::merge::Threads,
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
    let mut sc = saslguard::report::scan::Scanner::default();
    sc.for_trace = true;
    let mut tracer = saslguard::report::trace::Tracer::new(filter);
    if let Err(code) = scan_logs(files, time, threads, &mut sc, |sc| tracer.absorb(sc)) {
        return Ok(code);
    }
    let t = tracer.finish(&mut sc);
    emit(json, &t, saslguard::report::trace::render_trace)?;
    let found = !(t.sessions.is_empty() && t.messages.is_empty() && t.logins.is_empty());
    Ok(if found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
