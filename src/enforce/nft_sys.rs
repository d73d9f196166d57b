//! The only unsafe code in saslguard: what nftnl's safe API does not cover, through
//! nftnl-sys. Named sets with `flags timeout` (and `interval`), set elements carrying
//! their own timeout or the interval-end flag, and reading a set's elements back with
//! their remaining time. Every block states why it is sound; the rest of the crate sees
//! only the safe functions below.

use nftnl::set::{Set, SetKey};
use nftnl_sys as sys;
use std::ffi::{CStr, c_void};
use std::io;
use std::ptr::NonNull;

// libmnl's callback results (libmnl.h).
const MNL_CB_ERROR: libc::c_int = -1;
const MNL_CB_OK: libc::c_int = 1;

/// A TCP/UDP port as a set key (`inet_service`, 2 bytes, network order).
pub struct Port(pub u16);

impl SetKey for Port {
    const TYPE: u32 = 13;
    const LEN: u32 = 2;
    fn data(&self) -> Box<[u8]> {
        Box::new(self.0.to_be_bytes())
    }
}

/// Sets `flags timeout` (and `interval`) on a set before it is added to a batch.
pub fn set_flags<K>(set: &Set<'_, K>, timeout: bool, interval: bool) {
    let mut flags = 0u32;
    if timeout {
        flags |= libc::NFT_SET_TIMEOUT as u32;
    }
    if interval {
        flags |= libc::NFT_SET_INTERVAL as u32;
    }
    // SAFETY: `set.as_ptr()` is the live nftnl_set owned by `set` (freed only on its
    // Drop); nftnl_set_set_u32 copies the value and keeps no pointer to our stack.
    unsafe { sys::nftnl_set_set_u32(set.as_ptr().as_ptr(), sys::NFTNL_SET_FLAGS as u16, flags) };
}

/// Adds an element to the set's in-memory list (sent with `set.elems_iter()`):
/// `key` in network order, an optional timeout, and the interval-end flag.
pub fn add_elem<K>(set: &mut Set<'_, K>, key: &[u8], timeout_ms: Option<u64>, interval_end: bool) {
    // SAFETY: nftnl_set_elem_alloc returns a fresh element or null (checked). The key is
    // copied by nftnl_set_elem_set (libnftnl memcpy's `len` bytes from `key`, which is
    // valid for that length). nftnl_set_elem_add hands ownership of the element to the
    // set, which frees it with itself; we keep no pointer to it afterwards.
    unsafe {
        let elem = sys::nftnl_set_elem_alloc();
        let Some(elem) = NonNull::new(elem) else {
            std::process::abort()
        };
        let e = elem.as_ptr();
        sys::nftnl_set_elem_set(
            e,
            sys::NFTNL_SET_ELEM_KEY as u16,
            key.as_ptr() as *const c_void,
            key.len() as u32,
        );
        if let Some(t) = timeout_ms {
            sys::nftnl_set_elem_set_u64(e, sys::NFTNL_SET_ELEM_TIMEOUT as u16, t);
        }
        if interval_end {
            sys::nftnl_set_elem_set_u32(
                e,
                sys::NFTNL_SET_ELEM_FLAGS as u16,
                libc::NFT_SET_ELEM_INTERVAL_END as u32,
            );
        }
        sys::nftnl_set_elem_add(set.as_ptr().as_ptr(), e);
    }
}

/// An element as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawElem {
    pub key: Vec<u8>,
    pub interval_end: bool,
    /// Milliseconds left before the kernel removes it (0: no timeout).
    pub expires_ms: u64,
}

/// Owns an nftnl_set used only to build a request or receive a dump.
struct OwnedSet(NonNull<sys::nftnl_set>);

impl OwnedSet {
    fn new(family: u32, table: &CStr, name: &CStr) -> OwnedSet {
        // SAFETY: a fresh allocation (null checked); the string setters copy the strings.
        unsafe {
            let Some(s) = NonNull::new(sys::nftnl_set_alloc()) else {
                std::process::abort()
            };
            sys::nftnl_set_set_u32(s.as_ptr(), sys::NFTNL_SET_FAMILY as u16, family);
            sys::nftnl_set_set_str(s.as_ptr(), sys::NFTNL_SET_TABLE as u16, table.as_ptr());
            sys::nftnl_set_set_str(s.as_ptr(), sys::NFTNL_SET_NAME as u16, name.as_ptr());
            OwnedSet(s)
        }
    }
}

impl Drop for OwnedSet {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_set_alloc in `new`, freed exactly once here.
        unsafe { sys::nftnl_set_free(self.0.as_ptr()) };
    }
}

/// Reads every element of set `name` in `table` (family `family`).
pub fn dump_elems(
    socket: &mnl::Socket,
    family: u32,
    table: &CStr,
    name: &CStr,
) -> io::Result<Vec<RawElem>> {
    let seq = 1u32;
    let request = OwnedSet::new(family, table, name);
    let mut buf = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    // SAFETY: `buf` has room for the largest nf_tables message (nft_nlmsg_maxsize), which
    // bounds what nftnl_nlmsg_build_hdr plus the set-elements payload of a set with no
    // elements can write; the header pointer returned points into `buf`.
    let len = unsafe {
        let nlh = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr() as *mut std::os::raw::c_char,
            libc::NFT_MSG_GETSETELEM as u16,
            family as u16,
            (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
            seq,
        );
        sys::nftnl_set_elems_nlmsg_build_payload(nlh, request.0.as_ptr());
        (*nlh).nlmsg_len as usize
    };
    exchange(socket, &buf[..len], seq, parse_elems)
}

fn parse_elems(nlh: &libc::nlmsghdr, out: &mut Vec<RawElem>) -> libc::c_int {
    // SAFETY: `nlh` is a validated netlink message from mnl_cb_run; nftnl parses it into
    // a set we allocate and free here. Element pointers from the iterator belong to that
    // set and are read (keys copied out) before the set is freed.
    unsafe {
        let Some(set) = NonNull::new(sys::nftnl_set_alloc()) else {
            return MNL_CB_ERROR;
        };
        let set = OwnedSetPtr(set);
        if sys::nftnl_set_elems_nlmsg_parse(
            nlh as *const libc::nlmsghdr as *const _,
            set.0.as_ptr(),
        ) < 0
        {
            return MNL_CB_ERROR;
        }
        let iter = sys::nftnl_set_elems_iter_create(set.0.as_ptr());
        if iter.is_null() {
            return MNL_CB_ERROR;
        }
        let mut e = sys::nftnl_set_elems_iter_next(iter);
        while !e.is_null() {
            let mut len = 0u32;
            let key =
                sys::nftnl_set_elem_get(e, sys::NFTNL_SET_ELEM_KEY as u16, &mut len) as *const u8;
            let key = if key.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(key, len as usize).to_vec()
            };
            let flags = if sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_FLAGS as u16) {
                sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16)
            } else {
                0
            };
            let expires_ms = if sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_EXPIRATION as u16)
            {
                sys::nftnl_set_elem_get_u64(e, sys::NFTNL_SET_ELEM_EXPIRATION as u16)
            } else {
                0
            };
            out.push(RawElem {
                key,
                interval_end: flags & libc::NFT_SET_ELEM_INTERVAL_END as u32 != 0,
                expires_ms,
            });
            e = sys::nftnl_set_elems_iter_next(iter);
        }
        sys::nftnl_set_elems_iter_destroy(iter);
    }
    MNL_CB_OK
}

struct OwnedSetPtr(NonNull<sys::nftnl_set>);

impl Drop for OwnedSetPtr {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_set_alloc in parse_elems, freed once here.
        unsafe { sys::nftnl_set_free(self.0.as_ptr()) };
    }
}

/// A `DELSETELEM` message with no elements: flushes the named set.
pub struct FlushSet {
    set: OwnedSet,
    family: u16,
}

impl FlushSet {
    pub fn new(family: u32, table: &CStr, name: &CStr) -> FlushSet {
        FlushSet {
            set: OwnedSet::new(family, table, name),
            family: family as u16,
        }
    }
}

// SAFETY: `write` builds one header and a set-elements payload for a set without elements,
// far below nft_nlmsg_maxsize(), which is what Batch guarantees `buf` can hold.
unsafe impl nftnl::NlMsg for FlushSet {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _msg_type: nftnl::MsgType) {
        // SAFETY: see the impl: `buf` is large enough; the set pointer is live (owned).
        unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                buf as *mut std::os::raw::c_char,
                libc::NFT_MSG_DELSETELEM as u16,
                self.family,
                libc::NLM_F_ACK as u16,
                seq,
            );
            sys::nftnl_set_elems_nlmsg_build_payload(nlh, self.set.0.as_ptr());
        }
    }
}

/// Views a u32 buffer (aligned for netlink headers) as bytes.
pub fn bytemuck_bytes(buf: &mut [u32]) -> &mut [u8] {
    // SAFETY: same allocation, byte length = 4 × element count; u8 has no alignment or
    // validity requirements, and the borrow of `buf` is carried over to the result.
    unsafe {
        std::slice::from_raw_parts_mut(buf.as_mut_ptr() as *mut u8, std::mem::size_of_val(buf))
    }
}

/// Makes the socket's buffers large enough for one batch of `send` bytes and its
/// answers, as nft does: a netlink message must fit in the send buffer whole.
/// SO_*BUFFORCE need CAP_NET_ADMIN, which any nftables change needs anyway.
pub fn size_buffers(socket: &mnl::Socket, send: usize, recv: usize) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    for (opt, size) in [(libc::SO_SNDBUFFORCE, send), (libc::SO_RCVBUFFORCE, recv)] {
        let v: libc::c_int = size.min(libc::c_int::MAX as usize / 2) as libc::c_int;
        // SAFETY: a valid socket descriptor owned by `socket`, a pointer to a c_int that
        // lives across the call, and its exact size.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &v as *const libc::c_int as *const c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One rule of a chain as the kernel reports it: the set its first lookup reads (the
/// source address set) and its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    pub set: Option<String>,
    pub packets: u64,
    pub bytes: u64,
}

/// Owns an nftnl_rule used to build a request or receive a dump.
struct OwnedRule(NonNull<sys::nftnl_rule>);

impl Drop for OwnedRule {
    fn drop(&mut self) {
        // SAFETY: allocated by nftnl_rule_alloc, freed exactly once here.
        unsafe { sys::nftnl_rule_free(self.0.as_ptr()) };
    }
}

fn rule_alloc() -> OwnedRule {
    // SAFETY: a fresh allocation, null checked.
    match NonNull::new(unsafe { sys::nftnl_rule_alloc() }) {
        Some(r) => OwnedRule(r),
        None => std::process::abort(),
    }
}

/// Reads the counters of every rule of `chain` in `table`.
pub fn dump_rule_counters(
    socket: &mnl::Socket,
    family: u32,
    table: &CStr,
    chain: &CStr,
) -> io::Result<Vec<RuleCounter>> {
    let seq = 2u32;
    let request = rule_alloc();
    let mut buf = vec![0u8; nftnl::nft_nlmsg_maxsize() as usize];
    // SAFETY: the setters copy the strings; `buf` has room for the largest nf_tables
    // message, which bounds the header plus a rule's table and chain names; the header
    // pointer returned points into `buf`.
    let len = unsafe {
        let r = request.0.as_ptr();
        sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, family);
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, table.as_ptr());
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, chain.as_ptr());
        let nlh = sys::nftnl_nlmsg_build_hdr(
            buf.as_mut_ptr() as *mut std::os::raw::c_char,
            libc::NFT_MSG_GETRULE as u16,
            family as u16,
            (libc::NLM_F_DUMP | libc::NLM_F_ACK) as u16,
            seq,
        );
        sys::nftnl_rule_nlmsg_build_payload(nlh, r);
        (*nlh).nlmsg_len as usize
    };
    exchange(socket, &buf[..len], seq, parse_rule)
}

/// Sends one dump request and collects what `parse` makes of each message of the
/// answer, until the kernel says the dump is done.
fn exchange<T>(
    socket: &mnl::Socket,
    request: &[u8],
    seq: u32,
    parse: fn(&libc::nlmsghdr, &mut Vec<T>) -> libc::c_int,
) -> io::Result<Vec<T>> {
    socket.send(request)?;
    let portid = socket.portid();
    let mut out = Vec::new();
    // nlmsghdr-aligned receive buffer.
    let mut rbuf = vec![0u32; nftnl::nft_nlmsg_maxsize() as usize / 4 + 1];
    loop {
        let bytes = bytemuck_bytes(&mut rbuf);
        let n = socket.recv_raw(bytes)?;
        if n == 0 {
            break;
        }
        match mnl::cb_run2(&bytes[..n], seq, portid, parse, &mut out)? {
            mnl::CbResult::Stop => break,
            mnl::CbResult::Ok => continue,
        }
    }
    Ok(out)
}

fn parse_rule(nlh: &libc::nlmsghdr, out: &mut Vec<RuleCounter>) -> libc::c_int {
    let rule = rule_alloc();
    // SAFETY: `nlh` is a validated netlink message from mnl_cb_run; nftnl parses it into
    // a rule we own. Expression pointers from the iterator belong to that rule and are
    // read (names and numbers copied out) before it is freed; the strings nftnl returns
    // are NUL-terminated and live as long as the expression.
    unsafe {
        if sys::nftnl_rule_nlmsg_parse(nlh as *const libc::nlmsghdr as *const _, rule.0.as_ptr())
            < 0
        {
            return MNL_CB_ERROR;
        }
        let iter = sys::nftnl_expr_iter_create(rule.0.as_ptr());
        if iter.is_null() {
            return MNL_CB_ERROR;
        }
        let mut found = RuleCounter {
            set: None,
            packets: 0,
            bytes: 0,
        };
        let text = |p: *const std::os::raw::c_char| {
            (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
        };
        let mut e = sys::nftnl_expr_iter_next(iter);
        while !e.is_null() {
            match text(sys::nftnl_expr_get_str(e, sys::NFTNL_EXPR_NAME as u16)).as_deref() {
                Some("lookup") if found.set.is_none() => {
                    found.set = text(sys::nftnl_expr_get_str(
                        e,
                        sys::NFTNL_EXPR_LOOKUP_SET as u16,
                    ));
                }
                Some("counter") => {
                    found.packets = sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_PACKETS as u16);
                    found.bytes = sys::nftnl_expr_get_u64(e, sys::NFTNL_EXPR_CTR_BYTES as u16);
                }
                _ => {}
            }
            e = sys::nftnl_expr_iter_next(iter);
        }
        sys::nftnl_expr_iter_destroy(iter);
        out.push(found);
    }
    MNL_CB_OK
}
