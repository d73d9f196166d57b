//! `saslguard report`: banned hosts of a period, from the store or the logs.

use super::*;

pub(crate) use crate::cli::ReportArgs;

/// `--since`/`--until`: RFC 3339, or a duration back from `from`.
pub(crate) fn point_in_time(s: &str, from: Timestamp) -> Option<Timestamp> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(Timestamp(t.timestamp_millis()));
    }
    config::validate::parse_duration(s)
        .ok()
        .map(|ms| from.add_ms(-ms))
}

pub(crate) fn report(a: ReportArgs) -> Result<ExitCode> {
    let format = a.format();
    use saslguard::ban::BanRow;
    use saslguard::report::bans as report;
    use saslguard::store::Store;
    let usage = |m: String| {
        eprintln!("saslguard report: {m}");
        Ok(ExitCode::from(EX_USAGE))
    };
    let wall = Timestamp(chrono::Utc::now().timestamp_millis());
    let mut blocks_from: Option<Store> = None;
    let (source, rows, offenders, now): (
        String,
        Vec<BanRow>,
        Vec<saslguard::offender::Offender>,
        Timestamp,
    ) = if a.from_logs {
        let cfg = if a.config.exists() {
            match load_config(Some(&a.config)) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            }
        } else {
            Config::default()
        };
        let ts = match time_settings(&a.time, &cfg) {
            Ok(t) => t,
            Err(code) => return Ok(code),
        };
        let mut r = match saslguard::replay::replay(&cfg, &a.files, ts, a.read.threads()) {
            Ok(r) => r,
            Err(e) => return Ok(replay_failed(e)),
        };
        r.pipeline.end_of_input();
        let rows: Vec<BanRow> = r.bans.iter().map(|d| BanRow::of(d, "policy")).collect();
        // The report reads the records of banned addresses only: those, not every
        // offender's (47,913 records on a realistic 10M-line log).
        let mut seen = std::collections::HashSet::new();
        let offenders = rows
            .iter()
            .filter(|b| b.target.prefix_len() == b.target.max_prefix_len())
            .filter(|b| seen.insert(b.target.addr()))
            .filter_map(|b| r.pipeline.offenders().get(&b.target.addr()))
            .collect();
        let names: Vec<String> = a.files.iter().map(|f| f.display().to_string()).collect();
        (
            format!("logs {}", names.join(" ")),
            rows,
            offenders,
            r.pipeline.now(),
        )
    } else {
        let path = match a.store {
            Some(p) => p,
            None => match config::load(&a.config) {
                Ok(c) => c.daemon.state_directory.join("saslguard.db"),
                Err(e) => return usage(format!("{e} (or give --store FILE)")),
            },
        };
        let store = match Store::open_read_only(&path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("saslguard report: {e}");
                return Ok(ExitCode::from(EX_NOINPUT));
            }
        };
        let rows = store.bans(None)?;
        let offenders = store.offenders(usize::MAX >> 1)?;
        blocks_from = Some(store);
        (format!("store {}", path.display()), rows, offenders, wall)
    };
    let until = match a.until.as_deref().map(|s| point_in_time(s, wall)) {
        None => now,
        Some(Some(t)) => t,
        Some(None) => return usage("--until: expected RFC 3339 or a duration like 1d".into()),
    };
    let since = match a.since.as_deref().map(|s| point_in_time(s, until)) {
        None if a.from_logs => rows.iter().map(|b| b.at).min().unwrap_or(until),
        None => until.add_ms(-7 * 86_400_000),
        Some(Some(t)) => t,
        Some(None) => return usage("--since: expected RFC 3339 or a duration like 7d".into()),
    };
    let by_addr: std::collections::HashMap<std::net::IpAddr, &saslguard::offender::Offender> =
        offenders.iter().map(|o| (o.address, o)).collect();
    let mut rep = report::build(
        source,
        &rows,
        |t| {
            (t.prefix_len() == t.max_prefix_len())
                .then(|| by_addr.get(&t.addr()).map(|o| (*o).clone()))
                .flatten()
        },
        since,
        until,
        now,
        a.top,
    );
    if a.fleet {
        match super::cluster::fleet_tally(&a.config, since, until)? {
            Ok(t) => rep.fleet = Some(t),
            Err(code) => return Ok(code),
        }
    }
    if let Some(store) = &blocks_from {
        rep.blocks = store
            .block_refused(since, until)?
            .into_iter()
            .map(|(name, refused_packets)| report::BlockTally {
                name,
                refused_packets,
            })
            .collect();
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    match format {
        "json" => {
            serde_json::to_writer_pretty(&mut out, &rep)?;
            writeln!(out)?;
        }
        "csv" => write!(out, "{}", report::render_csv(&rep))?,
        "html" => write!(out, "{}", report::render_html(&rep))?,
        _ => write!(
            out,
            "{}",
            saslguard::escape::terminal(&report::render_text(&rep))
        )?,
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
