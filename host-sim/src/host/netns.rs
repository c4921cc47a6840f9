//! Linux network namespaces for the real peers: a namespace the tool
//! creates and removes, code run inside it (sockets created there stay
//! there), and `ip` commands against it.

use std::io;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name (under `/var/run/netns`).
    pub name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `ip` (Debian package iproute2): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())))
    }
}

/// Deletes the namespaces of runs that were killed before they could
/// (named `ptnet-…-<pid>-<n>` for a process that is gone).
fn remove_orphans() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else { return };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.rsplitn(3, '-');
        let (_, pid, prefix) = (parts.next(), parts.next(), parts.next());
        let gone = pid
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if gone && prefix.is_some_and(|p| p.starts_with("ptnet-")) {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

impl Netns {
    /// Creates a fresh namespace named after `prefix`, with loopback up.
    pub fn create(prefix: &str) -> io::Result<Self> {
        remove_orphans();
        let name = format!("{prefix}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        // Addresses are usable at once: no duplicate address detection
        // (link-local addresses would stay tentative for a second or two,
        // and IPv6 routing with them).
        ns.sysctl("net/ipv6/conf/all/accept_dad", "0")?;
        ns.sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        Ok(ns)
    }

    /// Sets `/proc/sys/<key>` inside the namespace (`/proc/sys/net` is the
    /// opening thread's namespace's).
    pub fn sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{key}");
        let value = value.to_owned();
        self.run(move || std::fs::write(path, value))?
    }

    /// Runs an `ip` command inside the namespace.
    pub fn ip(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs a command (`sysctl`, `ethtool`) inside the namespace.
    pub fn exec(&self, args: &[&str]) -> io::Result<()> {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// Runs `f` on a thread that has entered the namespace; sockets and
    /// devices it creates belong to the namespace.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        Self::enter(&self.name, f)
    }

    /// [`Netns::run`] by namespace name, for threads that do not hold the
    /// [`Netns`].
    pub fn enter<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let path = format!("/var/run/netns/{name}");
        std::thread::spawn(move || -> io::Result<T> {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on a valid namespace fd affects only this
            // thread, which exits when `f` returns.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}
