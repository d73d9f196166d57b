//! Offender records: what each failing address did, for `replay` and reports.
//!
//! Bounded like everything fed by attacker traffic: an LRU of `max_offenders`
//! records, each keeping at most [`MAX_USERS`] distinct user names. Evictions are
//! counted and reported, never silent.

use crate::count::{Attempt, Outcome, UNKNOWN_POSTURE};
use crate::time::Timestamp;
use lru::LruCache;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;

pub const MAX_USERS: usize = 50;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Offender {
    pub address: IpAddr,
    pub failures: u64,
    pub first_failure: Timestamp,
    pub last_failure: Timestamp,
    pub services: BTreeMap<String, u64>,
    pub mechanisms: BTreeMap<String, u64>,
    pub users: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub users_not_kept: u64,
    /// Failed attempts by TLS posture: `TLSv1.3 TLS_AES_256_GCM_SHA384`, `plaintext`,
    /// `TLS (cipher not logged)`, `unknown`.
    pub tls: BTreeMap<String, u64>,
    /// Successful logins from this address after its first failure.
    pub logins_after_failure: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub login_users: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allowlisted: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
    match map.get_mut(key) {
        Some(v) => *v += n,
        None => {
            map.insert(key.to_string(), n);
        }
    }
}

fn shift(map: &mut BTreeMap<String, u64>, from: &str, to: &str, n: u64) {
    if let Some(v) = map.get_mut(from) {
        let moved = n.min(*v);
        *v -= moved;
        if *v == 0 {
            map.remove(from);
        }
        if moved > 0 {
            bump(map, to, moved);
        }
    }
}

impl Offender {
    fn new(a: &Attempt) -> Offender {
        Offender {
            address: a.address,
            failures: 0,
            first_failure: a.time,
            last_failure: a.time,
            services: BTreeMap::new(),
            mechanisms: BTreeMap::new(),
            users: Vec::new(),
            users_not_kept: 0,
            tls: BTreeMap::new(),
            logins_after_failure: 0,
            login_users: Vec::new(),
            allowlisted: false,
        }
    }

    fn add_user(&mut self, u: &str) {
        if self.users.iter().any(|x| x == u) {
            return;
        }
        if self.users.len() < MAX_USERS {
            self.users.push(u.to_string());
        } else {
            self.users_not_kept += 1;
        }
    }
}

pub struct Offenders {
    map: LruCache<IpAddr, Offender>,
    evicted: u64,
}

impl Offenders {
    pub fn new(cap: usize) -> Offenders {
        Offenders {
            map: LruCache::new(NonZeroUsize::new(cap.max(1)).expect("nonzero")),
            evicted: 0,
        }
    }

    pub fn get(&self, addr: &IpAddr) -> Option<&Offender> {
        self.map.peek(addr)
    }

    pub fn apply(&mut self, o: &Outcome, allowlisted: bool) {
        match o {
            Outcome::Counted(a) => {
                if !self.map.contains(&a.address) && self.map.len() == self.map.cap().get() {
                    self.evicted += 1;
                }
                let r = self.map.get_or_insert_mut(a.address, || Offender::new(a));
                let n = u64::from(a.count);
                r.failures += n;
                r.first_failure = r.first_failure.min(a.time);
                r.last_failure = r.last_failure.max(a.time);
                r.allowlisted = allowlisted;
                bump(
                    &mut r.services,
                    a.service.as_deref().unwrap_or("unknown"),
                    n,
                );
                if let Some(m) = &a.mechanism {
                    bump(&mut r.mechanisms, m, n);
                }
                if let Some(u) = &a.user {
                    r.add_user(u);
                }
                bump(&mut r.tls, &a.posture, n);
            }
            Outcome::Refined {
                address,
                n,
                service,
                mechanism,
                user,
            } => {
                let Some(r) = self.map.get_mut(address) else {
                    return;
                };
                let n = u64::from(*n);
                if let Some((from, to)) = service {
                    shift(&mut r.services, from, to, n);
                }
                if let Some((from, to)) = mechanism {
                    if from.is_empty() {
                        bump(&mut r.mechanisms, to, n);
                    } else {
                        shift(&mut r.mechanisms, from, to, n);
                    }
                }
                if let Some(u) = user {
                    r.add_user(u);
                }
            }
            Outcome::Posture { address, n, label } => {
                if let Some(r) = self.map.get_mut(address) {
                    shift(&mut r.tls, UNKNOWN_POSTURE, label, u64::from(*n));
                }
            }
            Outcome::Success { address, user, .. } => {
                if let Some(r) = self.map.get_mut(address) {
                    r.logins_after_failure += 1;
                    if let Some(u) = user {
                        if !r.login_users.contains(u) && r.login_users.len() < MAX_USERS {
                            r.login_users.push(u.clone());
                        }
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
        self.evicted
    }
}
