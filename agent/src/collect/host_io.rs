//! `host_network` and `host_disk_io` from /proc/net/dev and /proc/diskstats
//! (Linux). Counters are cumulative since boot; rates are computed against
//! the previous sample of the same interface or device (absent on the
//! first sample and after a counter went backwards, e.g. a re-created
//! interface). Devices are kept as the kernel lists them (disks and their
//! partitions alike), except `loop*` and `ram*`, which are noise.

use std::collections::HashMap;
use std::time::Instant;

use lasect_proto::v1::{DiskDevice, HostDiskIo, HostNetwork, NetInterface};

/// Sector size of /proc/diskstats, whatever the device's own.
const SECTOR_BYTES: u64 = 512;

/// Parses /proc/net/dev; malformed lines are skipped.
pub fn parse_net_dev(text: &str) -> Vec<NetInterface> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if n.len() < 16 {
                return None;
            }
            Some(NetInterface {
                name: name.trim().to_owned(),
                rx_bytes: n[0],
                rx_packets: n[1],
                rx_errors: n[2],
                rx_drops: n[3],
                tx_bytes: n[8],
                tx_packets: n[9],
                tx_errors: n[10],
                tx_drops: n[11],
                rx_bytes_per_sec: None,
                tx_bytes_per_sec: None,
            })
        })
        .filter(|i| !i.name.is_empty())
        .collect()
}

/// Parses /proc/diskstats; malformed lines are skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskDevice> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let name = f[2];
            if name.starts_with("loop") || name.starts_with("ram") {
                return None;
            }
            let n = |i: usize| f[i].parse::<u64>().ok();
            Some(DiskDevice {
                name: name.to_owned(),
                reads: n(3)?,
                read_bytes: n(5)?.saturating_mul(SECTOR_BYTES),
                writes: n(7)?,
                write_bytes: n(9)?.saturating_mul(SECTOR_BYTES),
                io_time_ms: n(12)?,
                read_bytes_per_sec: None,
                write_bytes_per_sec: None,
                util_percent: None,
            })
        })
        .collect()
}

fn rate(now: u64, before: u64, secs: f64) -> Option<f64> {
    // Lossy only above 2^53 bytes: far beyond any interval's traffic.
    (now >= before && secs > 0.0).then(|| (now - before) as f64 / secs)
}

/// Keeps the previous counters to turn them into rates.
#[derive(Debug, Default)]
pub struct HostIo {
    net: HashMap<String, (Instant, u64, u64)>,
    disk: HashMap<String, (Instant, u64, u64, u64)>,
}

impl HostIo {
    pub fn network(&mut self, mut interfaces: Vec<NetInterface>, at: Instant) -> HostNetwork {
        for i in &mut interfaces {
            if let Some((then, rx, tx)) = self.net.get(&i.name) {
                let secs = at.duration_since(*then).as_secs_f64();
                i.rx_bytes_per_sec = rate(i.rx_bytes, *rx, secs);
                i.tx_bytes_per_sec = rate(i.tx_bytes, *tx, secs);
            }
        }
        self.net = interfaces
            .iter()
            .map(|i| (i.name.clone(), (at, i.rx_bytes, i.tx_bytes)))
            .collect();
        HostNetwork { interfaces }
    }

    pub fn disks(&mut self, mut devices: Vec<DiskDevice>, at: Instant) -> HostDiskIo {
        for d in &mut devices {
            if let Some((then, read, written, busy)) = self.disk.get(&d.name) {
                let secs = at.duration_since(*then).as_secs_f64();
                d.read_bytes_per_sec = rate(d.read_bytes, *read, secs);
                d.write_bytes_per_sec = rate(d.write_bytes, *written, secs);
                d.util_percent = rate(d.io_time_ms, *busy, secs)
                    .map(|ms_per_sec| (ms_per_sec / 10.0).min(100.0));
            }
        }
        self.disk = devices
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    (at, d.read_bytes, d.write_bytes, d.io_time_ms),
                )
            })
            .collect();
        HostDiskIo { devices }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 5000      50    1    2    0     0          0         0     7000      70    3    4    0     0       0          0
garbage line
  bad: 1 2 x
";

    const DISKSTATS: &str = "   8       0 sda 100 0 200 50 300 0 400 60 0 1000 110 0 0 0 0
   7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0
   8       1 sda1 10 0 20 5 30 0 40 6 0 100 11
 short line
";

    #[test]
    fn parses_net_dev_and_skips_garbage() {
        let i = parse_net_dev(NET_DEV);
        assert_eq!(i.len(), 2);
        let eth = &i[1];
        assert_eq!(eth.name, "eth0");
        assert_eq!((eth.rx_bytes, eth.tx_bytes), (5000, 7000));
        assert_eq!(
            (eth.rx_errors, eth.rx_drops, eth.tx_errors, eth.tx_drops),
            (1, 2, 3, 4)
        );
    }

    #[test]
    fn parses_diskstats_without_loop_devices() {
        let d = parse_diskstats(DISKSTATS);
        let names: Vec<&str> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["sda", "sda1"]);
        assert_eq!(d[0].read_bytes, 200 * 512);
        assert_eq!(d[0].write_bytes, 400 * 512);
        assert_eq!(d[0].io_time_ms, 1000);
    }

    #[test]
    fn rates_need_a_previous_sample_and_rising_counters() {
        let mut io = HostIo::default();
        let t0 = Instant::now();
        let first = io.disks(parse_diskstats(DISKSTATS), t0);
        assert_eq!(first.devices[0].read_bytes_per_sec, None);
        let mut later = parse_diskstats(DISKSTATS);
        later[0].read_bytes += 1024;
        later[0].io_time_ms += 500;
        later[1].write_bytes = 0; // went backwards: no rate
        let second = io.disks(later, t0 + Duration::from_secs(2));
        assert_eq!(second.devices[0].read_bytes_per_sec, Some(512.0));
        assert_eq!(second.devices[0].util_percent, Some(25.0));
        assert_eq!(second.devices[1].write_bytes_per_sec, None);

        let mut io = HostIo::default();
        io.network(parse_net_dev(NET_DEV), t0);
        let mut later = parse_net_dev(NET_DEV);
        later[1].tx_bytes += 4000;
        let n = io.network(later, t0 + Duration::from_secs(4));
        assert_eq!(n.interfaces[1].tx_bytes_per_sec, Some(1000.0));
        assert_eq!(n.interfaces[1].rx_bytes_per_sec, Some(0.0));
    }
}
