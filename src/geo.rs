//! GeoIP: country and autonomous system of an address, from the MaxMind-format
//! databases admins already have (GeoLite2/GeoIP2 Country or City, GeoLite2/GeoIP2 ASN,
//! DB-IP lite country and ASN, which use the same field names).
//!
//! Owns the open readers and swaps one when its file changes on disk (geoipupdate
//! replaces the file weekly by rename): [`Geo::refresh`] compares the file's identity
//! and modification time and reopens; a file that cannot be read keeps the old reader.
//! Lookups are pure reads of the loaded bytes. This module never decides anything.

use ipnet::IpNet;
use maxminddb::Reader;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// MaxMind-format databases; None: not used (`= ""`).
#[derive(Debug, Clone, PartialEq)]
pub struct GeoConfig {
    pub country_database: Option<std::path::PathBuf>,
    pub asn_database: Option<std::path::PathBuf>,
    /// A path other than the default was configured (a missing default file is only
    /// worth a note to `replay`).
    pub explicit: bool,
}

/// Where an address comes from, as far as the databases know.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// ISO 3166-1 alpha-2 code of the country (or, lacking one, of the country where
    /// the network is registered). None for anycast and continent-only records.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub country: Option<String>,
    /// Continent code (`EU`, `AS`, ...) when the record has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub continent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub as_org: Option<String>,
}

impl Origin {
    pub fn is_empty(&self) -> bool {
        self == &Origin::default()
    }

    /// `DE AS3320 Deutsche Telekom AG`, `-- (EU)`, `AS13335`: for log lines.
    pub fn label(&self) -> String {
        let mut s = match (&self.country, &self.continent) {
            (Some(c), _) => c.clone(),
            (None, Some(k)) => format!("-- ({k})"),
            (None, None) => "--".to_string(),
        };
        if let Some(a) = self.asn {
            s.push_str(&format!(" AS{a}"));
            if let Some(o) = &self.as_org {
                s.push(' ');
                s.push_str(o);
            }
        }
        s
    }
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    country: Option<Named<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<Named<'a>>,
    #[serde(borrow, default)]
    continent: Option<Continent<'a>>,
}

#[derive(Deserialize)]
struct Named<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct Continent<'a> {
    #[serde(borrow, default)]
    code: Option<&'a str>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

/// Identity of a file on disk: a replaced file has a new inode or a new mtime.
type Stamp = (u64, u64, i64, i64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// One database file and its reader.
struct Db {
    kind: &'static str,
    path: PathBuf,
    reader: Option<Reader<Vec<u8>>>,
    stamp: Option<Stamp>,
    /// The last problem reported, so a file that stays bad is not reported again.
    problem: Option<String>,
}

impl Db {
    fn new(kind: &'static str, path: PathBuf) -> Db {
        Db {
            kind,
            path,
            reader: None,
            stamp: None,
            problem: None,
        }
    }

    /// Opens the file if it is new or changed. Returns a message when something
    /// happened that the admin should know (loaded, replaced, missing, unreadable).
    fn refresh(&mut self) -> Option<String> {
        let now = stamp(&self.path);
        if now.is_some() && now == self.stamp {
            return None;
        }
        let what = self.kind;
        let path = self.path.display();
        let problem: Option<String> = match now {
            None => Some(format!(
                "{what} database {path}: missing{}",
                if self.reader.is_some() {
                    "; keeping the copy loaded before"
                } else {
                    ""
                }
            )),
            Some(_) => match Reader::open_readfile(&self.path) {
                Ok(r) => {
                    let db_type = r.metadata().database_type.clone();
                    let was = self.reader.replace(r).is_some();
                    self.stamp = now;
                    self.problem = None;
                    return Some(format!(
                        "{what} database {path} ({db_type}) {}",
                        if was { "reloaded" } else { "loaded" }
                    ));
                }
                Err(e) => Some(format!(
                    "{what} database {path}: unreadable ({e}){}",
                    if self.reader.is_some() {
                        "; keeping the copy loaded before"
                    } else {
                        ""
                    }
                )),
            },
        };
        match problem {
            Some(msg) if self.problem.as_deref() != Some(msg.as_str()) => {
                self.problem = Some(msg.clone());
                Some(msg)
            }
            _ => None,
        }
    }
}

/// A database the policy needs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// What is missing, and each file's problem.
    #[error("{}", .0.join("; "))]
    Needed(Vec<String>),
    /// The database's tree could not be walked (a damaged file).
    #[error("{path}: {message}")]
    Walk { path: String, message: String },
}

/// The country and ASN databases, both optional.
pub struct Geo {
    country: Option<Db>,
    asn: Option<Db>,
}

/// What [`Geo::refresh`] found: informational messages and problems.
#[derive(Debug, Default)]
pub struct GeoNews {
    pub loaded: Vec<String>,
    pub problems: Vec<String>,
}

impl Geo {
    pub fn new(country: Option<PathBuf>, asn: Option<PathBuf>) -> Geo {
        Geo {
            country: country.map(|p| Db::new("country", p)),
            asn: asn.map(|p| Db::new("ASN", p)),
        }
    }

    /// No database configured: lookups return nothing.
    pub fn none() -> Geo {
        Geo::new(None, None)
    }

    /// (Re)opens databases whose files are new or changed.
    pub fn refresh(&mut self) -> GeoNews {
        let mut news = GeoNews::default();
        for db in [&mut self.country, &mut self.asn].into_iter().flatten() {
            if let Some(msg) = db.refresh() {
                if db.problem.is_some() {
                    news.problems.push(msg);
                } else {
                    news.loaded.push(msg);
                }
            }
        }
        news
    }

    /// Opens the configured databases, logging what was loaded and what is missing.
    /// `needs` (country, ASN): what the policy needs; a needed database that cannot be
    /// read is an error. A missing database at its default path that nothing needs
    /// is only worth a debug line when `quiet_defaults` (replay on a machine without
    /// GeoIP).
    pub fn open(
        cfg: &GeoConfig,
        needs: (bool, bool),
        quiet_defaults: bool,
    ) -> Result<Geo, GeoError> {
        let mut g = Geo::new(cfg.country_database.clone(), cfg.asn_database.clone());
        let news = g.refresh();
        for m in &news.loaded {
            tracing::info!("{m}");
        }
        let mut errors = Vec::new();
        for (need, has, what) in [
            (needs.0, g.has_country(), "country"),
            (needs.1, g.has_asn(), "ASN"),
        ] {
            if need && !has {
                errors.push(format!(
                    "an [[origin]] matches by {what}, but no {what} database could be read{}",
                    match what {
                        "country" => " (geoip.country_database)",
                        _ => " (geoip.asn_database)",
                    }
                ));
            }
        }
        for m in &news.problems {
            if !errors.is_empty() {
                errors.push(m.clone());
            } else if quiet_defaults && !cfg.explicit {
                tracing::debug!("{m}");
            } else {
                tracing::warn!("{m}; lookups of country and AS are off until it appears");
            }
        }
        if errors.is_empty() {
            Ok(g)
        } else {
            Err(GeoError::Needed(errors))
        }
    }

    /// Picks up databases replaced on disk (the daemon calls this every 5 seconds: two stat calls).
    /// Returns true when a database was loaded anew (what was computed from the old one,
    /// such as a block's networks, is out of date).
    pub fn reload_changed(&mut self) -> bool {
        let news = self.refresh();
        let changed = !news.loaded.is_empty();
        for m in news.loaded {
            tracing::info!("{m}");
        }
        for m in news.problems {
            tracing::warn!("{m}");
        }
        changed
    }

    pub fn has_country(&self) -> bool {
        self.country.as_ref().is_some_and(|d| d.reader.is_some())
    }

    pub fn has_asn(&self) -> bool {
        self.asn.as_ref().is_some_and(|d| d.reader.is_some())
    }

    /// Every network of the country database whose country (or, without one, its
    /// registered country; `--` for a record with neither) passes `keep`, with the database's build time (Unix
    /// seconds). None without a country database.
    pub fn country_networks(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Option<(Vec<IpNet>, u64)>, GeoError> {
        walk(self.country.as_ref(), |res| {
            let Some(rec) = res.decode::<CountryRecord>()? else {
                return Ok(false);
            };
            let code = rec
                .country
                .and_then(|n| n.iso_code)
                .or_else(|| rec.registered_country.and_then(|n| n.iso_code));
            // "--": a record with no country (anycast, continent only), as in rules.
            Ok(keep(code.unwrap_or("--")))
        })
    }

    /// Every network of the ASN database whose AS number passes `keep`, with the
    /// database's build time. None without an ASN database.
    pub fn asn_networks(
        &self,
        keep: impl Fn(u32) -> bool,
    ) -> Result<Option<(Vec<IpNet>, u64)>, GeoError> {
        walk(self.asn.as_ref(), |res| {
            Ok(res
                .decode::<AsnRecord>()?
                .and_then(|r| r.autonomous_system_number)
                .is_some_and(&keep))
        })
    }

    pub fn lookup(&self, addr: IpAddr) -> Origin {
        let mut o = Origin::default();
        if let Some(r) = self.country.as_ref().and_then(|d| d.reader.as_ref())
            && let Ok(res) = r.lookup(addr)
            && let Ok(Some(rec)) = res.decode::<CountryRecord>()
        {
            let code = |n: Option<Named>| n.and_then(|n| n.iso_code).map(str::to_string);
            o.country = code(rec.country).or_else(|| code(rec.registered_country));
            o.continent = rec.continent.and_then(|c| c.code).map(str::to_string);
        }
        if let Some(r) = self.asn.as_ref().and_then(|d| d.reader.as_ref())
            && let Ok(res) = r.lookup(addr)
            && let Ok(Some(rec)) = res.decode::<AsnRecord>()
        {
            o.asn = rec.autonomous_system_number;
            o.as_org = rec.autonomous_system_organization.map(str::to_string);
        }
        o
    }
}

/// Walks a database's whole tree (IPv4 networks come out as IPv4, the aliases of the
/// IPv4 space in IPv6 are skipped), keeping the networks `keep` says yes to.
fn walk(
    db: Option<&Db>,
    keep: impl Fn(&maxminddb::LookupResult<'_, Vec<u8>>) -> Result<bool, maxminddb::MaxMindDbError>,
) -> Result<Option<(Vec<IpNet>, u64)>, GeoError> {
    let Some((db, r)) = db.and_then(|d| d.reader.as_ref().map(|r| (d, r))) else {
        return Ok(None);
    };
    let fail = |e: maxminddb::MaxMindDbError| GeoError::Walk {
        path: db.path.display().to_string(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    for res in r.networks(Default::default()).map_err(fail)? {
        let res = res.map_err(fail)?;
        if keep(&res).map_err(fail)? {
            let n = res.network().map_err(fail)?;
            if let Ok(net) = IpNet::new(n.ip(), n.prefix()) {
                out.push(crate::addr::canonical_net(net));
            }
        }
    }
    Ok(Some((out, r.metadata().build_epoch)))
}

/// ISO 3166-1 alpha-2 codes officially assigned, plus `XK` (Kosovo, used by MaxMind
/// and DB-IP). `check-config` refuses anything else, so a typo never silently
/// matches nothing.
pub const COUNTRY_CODES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

pub fn is_country_code(s: &str) -> bool {
    s.len() == 2 && COUNTRY_CODES.split(' ').any(|c| c == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_codes_are_checked() {
        assert_eq!(COUNTRY_CODES.split(' ').count(), 250);
        assert!(is_country_code("DE") && is_country_code("XK"));
        assert!(!is_country_code("de") && !is_country_code("UK") && !is_country_code("EU"));
    }

    #[test]
    fn missing_files_are_reported_once_and_lookups_are_empty() {
        let mut g = Geo::new(Some("/nonexistent/c.mmdb".into()), None);
        let news = g.refresh();
        assert_eq!(news.problems.len(), 1, "{news:?}");
        assert!(news.problems[0].contains("/nonexistent/c.mmdb: missing"));
        assert!(g.refresh().problems.is_empty());
        assert!(g.lookup("192.0.2.1".parse().unwrap()).is_empty());
        let junk = std::env::temp_dir().join(format!("sg-geo-junk-{}", std::process::id()));
        std::fs::write(&junk, b"not a database").unwrap();
        let mut g = Geo::new(None, Some(junk.clone()));
        let news = g.refresh();
        assert!(news.problems[0].contains("unreadable"), "{news:?}");
        std::fs::remove_file(junk).unwrap();
    }
}
