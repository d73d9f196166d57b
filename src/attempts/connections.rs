//! Postfix connections, joined by (host, program, pid): which client a process is
//! serving, whether the session is encrypted and with what, and how many of its AUTH
//! commands are already accounted for by a warning line.
//!
//! An smtpd process serves one connection at a time and many in its life, so a
//! `connect from` starts a fresh record and `disconnect from` ends it. The table is an
//! LRU with a fixed capacity: a flood of connections whose disconnect is never logged
//! cannot grow it.

use crate::parse::{Name, ProcessKey, Tls};
use lru::LruCache;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Conn {
    pub address: IpAddr,
    pub service: Option<Name>,
    pub tls: Option<Tls>,
    /// AUTH commands already explained by a line of their own (failure warning,
    /// `Connection lost to authentication server`, invalid mechanism).
    pub explained: u32,
    /// Failures counted in this connection whose TLS posture is not known yet (no TLS
    /// line seen so far; settled at disconnect from the `starttls=` tally).
    pub posture_pending: u32,
    pub success_seen: bool,
}

impl Conn {
    fn new(address: IpAddr, service: Option<Name>) -> Conn {
        Conn {
            address,
            service,
            tls: None,
            explained: 0,
            posture_pending: 0,
            success_seen: false,
        }
    }

    /// The posture label of this connection as known now, or None when it can only be
    /// told at disconnect.
    pub fn posture(&self) -> Option<String> {
        if let Some(t) = &self.tls {
            return Some(t.label());
        }
        // smtps is TLS from the first byte; without `smtpd_tls_loglevel >= 1` Postfix
        // does not say which protocol and cipher.
        if self.service.as_deref() == Some("smtps") {
            return Some(Tls::unknown_cipher().label());
        }
        None
    }
}

/// An open Postfix connection as a restart keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConnSnapshot {
    pub key: ProcessKey,
    pub address: IpAddr,
    pub service: Option<String>,
    pub explained: u32,
    pub success_seen: bool,
}

pub struct Sessions {
    conns: LruCache<ProcessKey, Conn>,
}

impl Sessions {
    pub fn new(capacity: usize) -> Sessions {
        Sessions {
            conns: crate::bounded::lru(capacity),
        }
    }

    /// `connect from`: a new connection on this process.
    pub fn connect(&mut self, key: ProcessKey, address: IpAddr, service: Option<Name>) {
        self.conns.put(key, Conn::new(address, service));
    }

    /// The connection a line of this process belongs to, created if its `connect`
    /// line was not seen (log started mid-session) or named another client.
    pub fn get(&mut self, key: &ProcessKey, address: IpAddr, service: Option<&Name>) -> &mut Conn {
        // One lookup: made the most recent, or made (the least recent pushed out when
        // the table is full), as `put` would.
        let c = self
            .conns
            .get_or_insert_mut(*key, || Conn::new(address, service.cloned()));
        if c.address != address {
            *c = Conn::new(address, service.cloned());
        }
        c
    }

    /// What a restart must remember of each open connection: how many of its AUTH
    /// commands were already counted, so the tally at its disconnect counts no attempt
    /// twice. Least recently used first.
    pub fn snapshot(&self) -> Vec<ConnSnapshot> {
        self.conns
            .iter()
            .rev()
            .map(|(k, c)| ConnSnapshot {
                key: *k,
                address: c.address,
                service: c.service.as_deref().map(str::to_string),
                explained: c.explained,
                success_seen: c.success_seen,
            })
            .collect()
    }

    /// Puts back what [`Sessions::snapshot`] kept.
    pub fn restore(&mut self, snap: &[ConnSnapshot]) {
        for c in snap {
            let mut conn = Conn::new(c.address, c.service.clone().map(Name::Owned));
            conn.explained = c.explained;
            conn.success_seen = c.success_seen;
            self.conns.put(c.key, conn);
        }
    }

    pub fn remove(&mut self, key: &ProcessKey) -> Option<Conn> {
        self.conns.pop(key)
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }
}
