//! Offender records: what each failing address did, for `replay` and reports.
//!
//! Bounded like everything fed by attacker traffic: an LRU of `max_offenders`
//! records, each keeping at most [`MAX_USERS`] distinct user names. Evictions are
//! counted and reported, never silent.

use crate::addr::AddrKey;
use crate::attempts::{Attempt, Outcome, UNKNOWN_POSTURE};
use crate::geo::Origin;
use crate::time::Timestamp;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub const MAX_USERS: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Offender {
    pub address: IpAddr,
    pub failures: u64,
    pub first_failure: Timestamp,
    pub last_failure: Timestamp,
    pub services: Counts,
    pub mechanisms: Counts,
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "is_zero", default)]
    pub users_not_kept: u64,
    /// Failed attempts by TLS posture: `TLSv1.3 TLS_AES_256_GCM_SHA384`, `plaintext`,
    /// `TLS (cipher not logged)`, `unknown`.
    pub tls: Counts,
    /// Successful logins from this address after its first failure.
    pub logins_after_failure: u64,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub login_users: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub allowlisted: bool,
    /// Country and AS, when GeoIP databases are configured.
    #[serde(skip_serializing_if = "Origin::is_empty", default)]
    pub geo: Origin,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Counts by name (services, mechanisms, TLS postures): usually one to three entries,
/// so a sorted vector of exact size instead of a BTreeMap, whose every node reserves
/// room for eleven. Serialized as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts(Vec<(Box<str>, u64)>);

impl Counts {
    /// Where `key` is, or where it would go (the vector is kept sorted by key).
    fn position(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }
    pub fn get(&self, key: &str) -> Option<&u64> {
        self.position(key).ok().map(|i| &self.0[i].1)
    }
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (&**k, *v))
    }
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| &**k)
    }
    pub fn values(&self) -> impl Iterator<Item = &u64> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn bump(&mut self, key: &str, n: u64) {
        match self.position(key) {
            Ok(i) => self.0[i].1 += n,
            Err(i) => {
                self.0.reserve_exact(1);
                self.0.insert(i, (key.into(), n));
            }
        }
    }

    /// Moves up to `n` from `from` to `to`.
    fn shift(&mut self, from: &str, to: &str, n: u64) {
        let Ok(i) = self.position(from) else {
            return;
        };
        let moved = n.min(self.0[i].1);
        self.0[i].1 -= moved;
        if self.0[i].1 == 0 {
            self.0.remove(i);
        }
        if moved > 0 {
            self.bump(to, moved);
        }
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(&**k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, u64>::deserialize(d)?;
        Ok(Counts(m.into_iter().map(|(k, v)| (k.into(), v)).collect()))
    }
}

impl Offender {
    fn new(a: &Attempt) -> Offender {
        Offender {
            address: a.address,
            failures: 0,
            first_failure: a.time,
            last_failure: a.time,
            services: Counts::default(),
            mechanisms: Counts::default(),
            users: Vec::new(),
            users_not_kept: 0,
            tls: Counts::default(),
            logins_after_failure: 0,
            login_users: Vec::new(),
            allowlisted: false,
            geo: Origin::default(),
        }
    }

    fn add_user(&mut self, u: &str) {
        if self.users.iter().any(|x| x == u) {
            return;
        }
        if self.users.len() < MAX_USERS {
            crate::bounded::room_for_one(&mut self.users);
            self.users.push(u.to_string());
        } else {
            self.users_not_kept += 1;
        }
    }
}

pub struct Offenders {
    map: crate::bounded::Lru<AddrKey, Offender>,
}

impl Offenders {
    pub fn new(cap: usize) -> Offenders {
        Offenders {
            map: crate::bounded::Lru::new(cap),
        }
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&Offender> {
        self.map.peek(&(*addr).into())
    }

    /// Puts back a record kept in the store (the daemon at start).
    pub fn restore(&mut self, o: Offender) {
        self.map.put(o.address.into(), o);
    }

    /// Records where an offender comes from (looked up at each failure, so a
    /// reloaded database updates it).
    pub fn set_geo(&mut self, addr: &IpAddr, geo: &Origin) {
        if let Some(r) = self.map.peek_mut(&(*addr).into())
            && r.geo != *geo
        {
            r.geo = geo.clone();
        }
    }

    pub fn apply(&mut self, o: &Outcome, allowlisted: bool) {
        match o {
            Outcome::Counted(a) => {
                let r = self
                    .map
                    .get_or_insert_mut(a.address.into(), || Offender::new(a));
                let n = u64::from(a.count);
                r.failures += n;
                r.first_failure = r.first_failure.min(a.time);
                r.last_failure = r.last_failure.max(a.time);
                r.allowlisted = allowlisted;
                r.services
                    .bump(a.service.as_deref().unwrap_or("unknown"), n);
                if let Some(m) = &a.mechanism {
                    r.mechanisms.bump(m, n);
                }
                if let Some(u) = &a.user {
                    r.add_user(u);
                }
                r.tls.bump(&a.posture, n);
            }
            Outcome::Refined {
                address,
                n,
                service,
                mechanism,
                user,
            } => {
                let Some(r) = self.map.get_mut(&(*address).into()) else {
                    return;
                };
                let n = u64::from(*n);
                if let Some((from, to)) = service {
                    r.services.shift(from, to, n);
                }
                if let Some((from, to)) = mechanism {
                    if from.is_empty() {
                        r.mechanisms.bump(to, n);
                    } else {
                        r.mechanisms.shift(from, to, n);
                    }
                }
                if let Some(u) = user {
                    r.add_user(u);
                }
            }
            Outcome::Posture { address, n, label } => {
                if let Some(r) = self.map.get_mut(&(*address).into()) {
                    r.tls.shift(UNKNOWN_POSTURE, label, u64::from(*n));
                }
            }
            Outcome::Success { address, user, .. } => {
                if let Some(r) = self.map.get_mut(&(*address).into()) {
                    r.logins_after_failure += 1;
                    if let Some(u) = user
                        && !r.login_users.contains(u)
                        && r.login_users.len() < MAX_USERS
                    {
                        r.login_users.push(u.clone());
                    }
                }
            }
            Outcome::Unavailable { .. } | Outcome::Ambiguous => {}
        }
    }

    /// All records, most failures first.
    pub fn sorted(&self) -> Vec<&Offender> {
        let mut v: Vec<&Offender> = self.map.iter().map(|(_, o)| o).collect();
        v.sort_by(|a, b| b.failures.cmp(&a.failures).then(a.address.cmp(&b.address)));
        v
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn evicted(&self) -> u64 {
        self.map.evicted()
    }
}
