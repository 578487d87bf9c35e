//! Host load figures for heartbeats, read from Linux's `/proc/stat` and
//! `/proc/meminfo`. On a host without them every figure is 0.

use tracing::debug;

/// CPU and memory use of the host at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostLoad {
    /// Share of all cores in use since the previous sample, 0.0 to 100.0.
    pub cpu_usage: f32,
    /// Bytes in use: total minus available.
    pub memory_used: u64,
    /// Bytes.
    pub memory_total: u64,
}

/// Cumulative CPU time counters of the `cpu` line of `/proc/stat`, in clock
/// ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CpuTimes {
    total: u64,
    idle: u64,
}

/// Samples host load. CPU use is a difference of two readings, so the
/// sampler keeps the previous one; the first sample covers the time since boot.
#[derive(Debug, Default)]
pub struct HostSampler {
    previous: Option<CpuTimes>,
    last_cpu_usage: f32,
}

impl HostSampler {
    pub fn new() -> HostSampler {
        HostSampler::default()
    }

    /// Reads the current figures. A file that cannot be read or parsed gives 0
    /// for its figures, because a heartbeat must go out regardless.
    pub fn sample(&mut self) -> HostLoad {
        let (memory_used, memory_total) = read_proc("/proc/meminfo")
            .and_then(|text| parse_meminfo(&text))
            .unwrap_or((0, 0));
        let cpu_usage = match read_proc("/proc/stat").and_then(|text| parse_cpu_times(&text)) {
            Some(now) => self.cpu_usage_since_previous(now),
            None => 0.0,
        };
        HostLoad {
            cpu_usage,
            memory_used,
            memory_total,
        }
    }

    fn cpu_usage_since_previous(&mut self, now: CpuTimes) -> f32 {
        let previous = self
            .previous
            .replace(now)
            .unwrap_or(CpuTimes { total: 0, idle: 0 });
        let total = now.total.saturating_sub(previous.total);
        let idle = now.idle.saturating_sub(previous.idle);
        // Two samples within one clock tick show no change; repeat the last figure.
        if total > 0 {
            let busy = total.saturating_sub(idle);
            self.last_cpu_usage = (busy as f64 * 100.0 / total as f64) as f32;
        }
        self.last_cpu_usage
    }
}

fn read_proc(path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(error) => {
            debug!(path, %error, "host figures unavailable");
            None
        }
    }
}

/// Parses the aggregate `cpu` line: user, nice, system, idle, iowait, irq,
/// softirq, steal. Guest time is already counted in user and nice, so the
/// later columns are left out. Idle time includes iowait.
fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let counters: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if counters.len() < 4 {
        return None;
    }
    let idle = counters[3] + counters.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        total: counters.iter().sum(),
        idle,
    })
}

/// Returns (used, total) bytes. Available memory is `MemAvailable`, or on
/// kernels older than 3.14 `MemFree + Buffers + Cached`.
fn parse_meminfo(meminfo: &str) -> Option<(u64, u64)> {
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|line| line.starts_with(name))?;
        let kib = line[name.len()..]
            .trim_start_matches(':')
            .split_ascii_whitespace()
            .next()?;
        kib.parse::<u64>().ok()?.checked_mul(1024)
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:").or_else(|| {
        Some(field("MemFree:")? + field("Buffers:").unwrap_or(0) + field("Cached:").unwrap_or(0))
    })?;
    Some((total.saturating_sub(available), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_line_sums_first_eight_counters() {
        let stat = "cpu  100 5 50 800 20 3 2 1 40 0\ncpu0 50 2 25 400 10 1 1 0 20 0\n";
        let times = parse_cpu_times(stat).unwrap();
        assert_eq!(times.total, 981);
        assert_eq!(times.idle, 820);
    }

    #[test]
    fn cpu_usage_is_busy_share_between_samples() {
        let mut sampler = HostSampler::new();
        sampler.cpu_usage_since_previous(CpuTimes {
            total: 1000,
            idle: 900,
        });
        let usage = sampler.cpu_usage_since_previous(CpuTimes {
            total: 1200,
            idle: 1050,
        });
        assert_eq!(usage, 25.0);
    }

    #[test]
    fn cpu_usage_repeats_when_counters_do_not_move() {
        let mut sampler = HostSampler::new();
        let first = sampler.cpu_usage_since_previous(CpuTimes {
            total: 400,
            idle: 100,
        });
        let second = sampler.cpu_usage_since_previous(CpuTimes {
            total: 400,
            idle: 100,
        });
        assert_eq!(first, 75.0);
        assert_eq!(second, 75.0);
    }

    #[test]
    fn meminfo_uses_mem_available() {
        let meminfo = "MemTotal:       16000 kB\nMemFree:  1000 kB\nMemAvailable:   6000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((10000 * 1024, 16000 * 1024)));
    }

    #[test]
    fn meminfo_without_mem_available_adds_free_and_caches() {
        let meminfo = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 250 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some((600 * 1024, 1000 * 1024)));
    }

    #[test]
    fn garbage_gives_no_figures() {
        assert_eq!(parse_cpu_times("cpu  a b c d"), None);
        assert_eq!(parse_meminfo("MemTotal: lots"), None);
    }

    #[test]
    fn sample_reads_this_host() {
        let load = HostSampler::new().sample();
        if std::path::Path::new("/proc/meminfo").exists() {
            assert!(load.memory_total > 0);
            assert!(load.memory_used <= load.memory_total);
        }
        assert!((0.0..=100.0).contains(&load.cpu_usage));
    }
}
