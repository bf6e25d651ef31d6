//! What `/proc` says about a process: memory, children, liveness.

use std::time::Duration;

/// A `/proc/PID/status` field in KiB, such as `VmRSS:`.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Direct children of `pid` that are alive, from /proc.
pub fn children_of(pid: u32) -> Vec<u32> {
    children_in_state(pid, |state| state != "Z")
}

/// Direct children of `pid` that exited but were not reaped.
pub fn zombies_of(pid: u32) -> Vec<u32> {
    children_in_state(pid, |state| state == "Z")
}

fn children_in_state(pid: u32, wanted: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) && wanted(fields[0]) {
            found.push(child);
        }
    }
    found
}

/// Waits up to 10 s for `pid` to be gone; children go asynchronously.
pub fn wait_until_gone(pid: u32) -> bool {
    let start = std::time::Instant::now();
    while is_running(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    !is_running(pid)
}

pub fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `pid`'s open TCP sockets as `(local port, remote port, state)`, the
/// state named as in `ss`. Tells a leak's sockets apart when a count grows.
pub fn tcp_sockets_of(pid: u32) -> Vec<(u16, u16, &'static str)> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || !inodes.contains(fields[9]) {
                continue;
            }
            let port = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                    .unwrap_or(0)
            };
            sockets.push((port(fields[1]), port(fields[2]), tcp_state(fields[3])));
        }
    }
    sockets
}

fn tcp_state(hex: &str) -> &'static str {
    match hex {
        "01" => "ESTAB",
        "02" => "SYN-SENT",
        "03" => "SYN-RECV",
        "04" => "FIN-WAIT-1",
        "05" => "FIN-WAIT-2",
        "06" => "TIME-WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE-WAIT",
        "09" => "LAST-ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}
