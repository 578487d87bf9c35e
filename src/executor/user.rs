//! Account lookup for `run_as`, through the C library's reentrant passwd
//! calls, so every name service the host configures (files, LDAP, ...) applies.

use std::ffi::{CStr, CString, OsStr, OsString, c_char};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// Largest buffer offered to `getpw*_r`, which return `ERANGE` when the buffer
/// is too small.
const MAX_PASSWD_BUFFER: usize = 1 << 20;

/// Largest supplementary group list accepted from `getgrouplist`.
const MAX_GROUPS: usize = 65536;

/// The identity a run switches to.
#[derive(Clone, Debug)]
pub(crate) struct Account {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
    /// Supplementary groups, including the primary group.
    pub groups: Vec<libc::gid_t>,
    pub home: OsString,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("run_as user {0:?} not found")]
    NotFound(String),
    #[error("invalid run_as user name {0:?}: it contains a NUL byte")]
    InvalidName(String),
    #[error("failed to look up run_as user {name:?}: {source}")]
    Failed { name: String, source: io::Error },
}

/// Looks up an account by user name, with its supplementary groups.
///
/// This may block on a remote name service, so async callers run it on a
/// blocking thread.
pub(crate) fn lookup_by_name(name: &str) -> Result<Account, LookupError> {
    let c_name = CString::new(name).map_err(|_| LookupError::InvalidName(name.to_owned()))?;
    let failed = |source| LookupError::Failed {
        name: name.to_owned(),
        source,
    };

    let entry = read_passwd(|pwd, buf, len, result| {
        // SAFETY: every pointer is valid for the call, and `buf` has `len` bytes.
        unsafe { libc::getpwnam_r(c_name.as_ptr(), pwd, buf, len, result) }
    })
    .map_err(failed)?
    .ok_or_else(|| LookupError::NotFound(name.to_owned()))?;

    let groups = group_list(&c_name, entry.gid).map_err(failed)?;
    Ok(Account {
        name: name.to_owned(),
        uid: entry.uid,
        gid: entry.gid,
        groups,
        home: entry.home,
    })
}

/// Returns the name of the effective user of this process, or `None` if it
/// has no passwd entry (common for arbitrary uids in containers).
pub(crate) fn effective_user_name() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let entry = read_passwd(|pwd, buf, len, result| {
        // SAFETY: every pointer is valid for the call, and `buf` has `len` bytes.
        unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
    })
    .ok()??;
    Some(entry.name)
}

/// Returns whether this process runs with an effective uid of 0.
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

struct PasswdEntry {
    name: String,
    uid: libc::uid_t,
    gid: libc::gid_t,
    home: OsString,
}

/// Runs a `getpw*_r` call, growing its buffer on `ERANGE`, and copies the
/// entry out. Returns `Ok(None)` when no entry matches.
fn read_passwd(
    call: impl Fn(*mut libc::passwd, *mut c_char, usize, *mut *mut libc::passwd) -> libc::c_int,
) -> io::Result<Option<PasswdEntry>> {
    let mut buffer_len = 1024;
    loop {
        let mut buffer: Vec<c_char> = vec![0; buffer_len];
        // SAFETY: passwd is a plain C struct of integers and pointers, for
        // which all zeroes is a valid value.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();

        let rc = call(&mut pwd, buffer.as_mut_ptr(), buffer.len(), &mut result);
        if rc == libc::ERANGE && buffer_len < MAX_PASSWD_BUFFER {
            buffer_len *= 2;
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Ok(None);
        }

        // SAFETY: on success the string fields point to NUL-terminated
        // strings inside `buffer`, which is still alive here.
        let (name, home) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        return Ok(Some(PasswdEntry {
            name: String::from_utf8_lossy(name.to_bytes()).into_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
            home: OsStr::from_bytes(home.to_bytes()).to_owned(),
        }));
    }
}

/// Returns the supplementary groups of a user, with `gid` among them.
fn group_list(name: &CStr, gid: libc::gid_t) -> io::Result<Vec<libc::gid_t>> {
    let mut capacity: usize = 32;
    loop {
        let mut groups: Vec<libc::gid_t> = vec![0; capacity];
        let mut count = capacity as libc::c_int;
        // SAFETY: `groups` has room for `count` entries, and glibc writes at
        // most that many, storing the number needed in `count` when short.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count.max(0) as usize);
            return Ok(groups);
        }

        let needed = (count.max(0) as usize).max(capacity * 2);
        if needed > MAX_GROUPS {
            return Err(io::Error::other(format!(
                "user is in more than {MAX_GROUPS} groups"
            )));
        }
        capacity = needed;
    }
}
