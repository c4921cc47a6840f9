//! `ptnet-sim chaos-sweep`: `tcp --chaos` and `pktgen --chaos` over a
//! range of seeds, each in its own process (a hang or a crash is a
//! failure, not the end of the sweep), under extra CPU load (busy threads
//! that take the cores from the guests and the host at random moments,
//! which is when timing-dependent faults show). The record of every
//! failing run is kept for `--chaos-replay`; those of passing runs are
//! deleted.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to sweep.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// Seeds `[first, first + count)`.
    pub first: u64,
    /// How many seeds.
    pub count: u64,
    /// `tcp`, `pktgen` or both.
    pub kinds: Vec<String>,
    /// Busy threads.
    pub load: usize,
    /// Seconds of traffic per run.
    pub duration: f64,
    /// Extra arguments for every run (e.g. `--mode thread`).
    pub extra: Vec<String>,
    /// Where the records of failing runs go.
    pub out: PathBuf,
    /// A run still going after this is killed (and fails).
    pub timeout: Duration,
}

/// A run that failed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SweepFailure {
    /// `tcp` or `pktgen`.
    pub kind: String,
    /// The seed.
    pub seed: u64,
    /// The replay file.
    pub record: PathBuf,
    /// Exit status (`None`: killed after the timeout).
    pub status: Option<i32>,
    /// The run's last lines.
    pub tail: String,
}

/// What the sweep saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SweepReport {
    /// Runs.
    pub runs: u64,
    /// Failed runs.
    pub failures: Vec<SweepFailure>,
    /// Seconds.
    pub seconds: f64,
}

/// Runs one child to completion or `timeout`: its exit code (`None` if
/// killed) and output.
fn run_child(exe: &Path, args: &[String], timeout: Duration) -> (Option<i32>, String) {
    let Ok(mut child) = Command::new(exe).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn() else {
        return (Some(-1), "cannot start".into());
    };
    // Output is read on threads: a chatty child must never block on a
    // full pipe while we wait for it.
    let mut readers = Vec::new();
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut s = stream;
            let mut v = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut v);
            v
        }));
    }
    let end = Instant::now() + timeout;
    let mut status = None;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            status = Some(st.code().unwrap_or(-1));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out: Vec<u8> = readers.into_iter().flat_map(|r| r.join().unwrap_or_default()).collect();
    (status, String::from_utf8_lossy(&out).into_owned())
}

/// The sweep; prints a line per failure as it goes.
pub fn run(cfg: &SweepConfig) -> Result<SweepReport, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| format!("{}: {e}", cfg.out.display()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..cfg.load)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut report = SweepReport::default();
    for seed in cfg.first..cfg.first + cfg.count {
        for kind in &cfg.kinds {
            let record = cfg.out.join(format!("{kind}-{seed}.json"));
            let mut args = vec![
                kind.clone(),
                "--chaos".into(),
                seed.to_string(),
                "-d".into(),
                cfg.duration.to_string(),
                "--chaos-record".into(),
                record.display().to_string(),
                "--json".into(),
            ];
            args.extend(cfg.extra.iter().cloned());
            let (status, out) = run_child(&exe, &args, cfg.timeout);
            report.runs += 1;
            if status == Some(0) {
                let _ = std::fs::remove_file(&record);
                continue;
            }
            let tail: String =
                out.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            eprintln!(
                "chaos-sweep: {kind} seed {seed} failed ({status:?}); replay with --chaos-replay {}\n{tail}",
                record.display()
            );
            report.failures.push(SweepFailure { kind: kind.clone(), seed, record, status, tail });
        }
        // A long sweep says how far it got, so that one cut short still
        // tells something.
        if (seed - cfg.first + 1).is_multiple_of(50) {
            eprintln!(
                "chaos-sweep: seeds {}..={seed}: {} runs, {} failed, {:.0} s",
                cfg.first,
                report.runs,
                report.failures.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.join();
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
