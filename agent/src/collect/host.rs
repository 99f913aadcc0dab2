//! `host_cpu` and `host_memory` of the machine the agent runs on, via
//! sysinfo, and `host_network` / `host_disk_io` from /proc (see `host_io`;
//! left out where /proc is not there to read).

use lasect_proto::v1::sample::Family;
use lasect_proto::v1::{HostCpu, HostMemory, Sample};
use sysinfo::System;
use tokio::time::Instant;

use super::host_io::{HostIo, parse_diskstats, parse_net_dev};
use super::now_unix_micros;

/// Keeps the previous CPU counters, so usage covers the time since the
/// previous sample (the collection interval), not since boot.
pub struct HostCollector {
    system: System,
    last_cpu_refresh: Instant,
    io: HostIo,
    /// /proc files already reported unreadable (warned once each).
    unreadable: Vec<&'static str>,
}

impl HostCollector {
    pub fn new() -> Result<Self, sysinfo::Error> {
        let mut system = System::new()?;
        // Prime the counters: the first sample then measures from here.
        system.refresh_cpu_usage();
        Ok(Self {
            system,
            last_cpu_refresh: Instant::now(),
            io: HostIo::default(),
            unreadable: Vec::new(),
        })
    }

    /// A `host_cpu` and a `host_memory` sample, taken now.
    pub async fn collect(&mut self) -> Vec<Sample> {
        // sysinfo ignores refreshes closer than this to the previous one, which
        // would report 0 % on the first tick; wait out the remainder instead.
        let ready_at = self.last_cpu_refresh + sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
        tokio::time::sleep_until(ready_at).await;
        self.system.refresh_cpu_usage();
        self.last_cpu_refresh = Instant::now();
        self.system.refresh_memory();
        let time_unix_micros = now_unix_micros();
        let load = System::load_average().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "load average unavailable");
            sysinfo::LoadAvg {
                one: 0.0,
                five: 0.0,
                fifteen: 0.0,
            }
        });
        let cpu = HostCpu {
            cpu_count: u32::try_from(self.system.cpus().len()).unwrap_or(u32::MAX),
            usage_percent: f64::from(self.system.global_cpu_usage()).clamp(0.0, 100.0),
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
        };
        let s = &self.system;
        let memory = HostMemory {
            total_bytes: s.total_memory(),
            used_bytes: s.used_memory(),
            available_bytes: s.available_memory(),
            free_bytes: s.free_memory(),
            swap_total_bytes: s.total_swap(),
            swap_used_bytes: s.used_swap(),
        };
        let mut samples = vec![
            host_sample(time_unix_micros, Family::HostCpu(cpu)),
            host_sample(time_unix_micros, Family::HostMemory(memory)),
        ];
        let at = std::time::Instant::now();
        if let Some(text) = self.read_proc("/proc/net/dev").await {
            let net = self.io.network(parse_net_dev(&text), at);
            samples.push(host_sample(time_unix_micros, Family::HostNetwork(net)));
        }
        if let Some(text) = self.read_proc("/proc/diskstats").await {
            let disks = self.io.disks(parse_diskstats(&text), at);
            samples.push(host_sample(time_unix_micros, Family::HostDiskIo(disks)));
        }
        samples
    }

    async fn read_proc(&mut self, path: &'static str) -> Option<String> {
        match tokio::fs::read_to_string(path).await {
            Ok(text) => Some(text),
            Err(e) => {
                if !self.unreadable.contains(&path) {
                    tracing::warn!(path, error = %e, "cannot read host I/O statistics");
                    self.unreadable.push(path);
                }
                None
            }
        }
    }
}

fn host_sample(time_unix_micros: i64, family: Family) -> Sample {
    Sample {
        // Host families belong to the agent's host, not to an instance.
        instance: String::new(),
        time_unix_micros,
        family: Some(family),
    }
}
