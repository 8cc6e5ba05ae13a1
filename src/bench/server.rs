//! The server under test: `omo serve` as a child process of the bench (so that client and
//! server are separate processes, as in production), stopped by a guard on every way out; and
//! the sampler of its resident set size.

use std::{
    fs::File,
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use tokio::{sync::oneshot, task::JoinHandle, time::Instant};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::{BenchError, RssReport};

/// How long the child may take to answer its health check SERVING.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the child may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// A running `omo serve` child. Dropping it stops the child (SIGTERM, then SIGKILL).
#[derive(Debug)]
pub struct ServerProcess {
    child: Option<Child>,
    endpoint: String,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts `omo serve` (this executable) over `database_url` on a free port and waits until
    /// it is SERVING.
    pub async fn spawn(database_url: &str) -> Result<ServerProcess, BenchError> {
        Self::spawn_program(&std::env::current_exe()?, database_url, &[]).await
    }

    /// Starts `program serve` (an `omo` binary; tests pass theirs) over `database_url` on a
    /// free port, with `env` added, and waits until it is SERVING.
    pub async fn spawn_program(
        program: &std::path::Path,
        database_url: &str,
        env: &[(&str, &str)],
    ) -> Result<ServerProcess, BenchError> {
        let port = free_port()?;
        let log_path = std::env::temp_dir().join(format!("omo-server-{port}.log"));
        let child = Command::new(program)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .env("OMO_SWEEP_INTERVAL_MS", "1000")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log_path)?)
            .spawn()?;
        let mut server = ServerProcess {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            log_path,
        };
        server.wait_serving().await?;
        Ok(server)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What the child has written to stderr so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    async fn wait_serving(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                return Err(self.failure(&format!("exited at start ({})", status?)));
            }
            if self.serving().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(self.failure("did not answer its health check SERVING in time"))
    }

    async fn serving(&self) -> bool {
        let Ok(endpoint) = tonic::transport::Endpoint::from_shared(self.endpoint.clone()) else {
            return false;
        };
        let Ok(channel) = endpoint.connect().await else {
            return false;
        };
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let request = HealthCheckRequest {
            service: String::new(),
        };
        health
            .check(request)
            .await
            .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
    }

    fn failure(&self, what: &str) -> BenchError {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        BenchError::Server(format!(
            "omo serve {what}; its log ({}) ends:\n{}",
            self.log_path.display(),
            tail.join("\n")
        ))
    }

    /// Stops the child (SIGTERM, waiting for a clean exit) and reports how it ended; the
    /// server's log is kept only when it did not exit cleanly.
    pub fn stop(mut self) -> Result<ExitStatus, BenchError> {
        let child = self.child.take().expect("stopped once");
        let status = stop_child(child)?;
        if status.success() {
            let _ = std::fs::remove_file(&self.log_path);
        } else {
            eprintln!(
                "omo bench: the server exited with {status}; its log is {}",
                self.log_path.display()
            );
        }
        Ok(status)
    }
}

impl ServerProcess {
    /// SIGKILL: the process dies at once, mid-batch or mid-commit (crash tests).
    pub fn kill(mut self) -> Result<ExitStatus, BenchError> {
        let mut child = self.child.take().expect("stopped once");
        // Already dead (kill fails) or killed now: either way it is reaped below.
        let killed = child.kill();
        let status = child.wait()?;
        killed?;
        let _ = std::fs::remove_file(&self.log_path);
        Ok(status)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop_child(child);
        }
    }
}

/// SIGTERM (through `kill`: the bench has no libc binding), then SIGKILL after a grace time.
fn stop_child(mut child: Child) -> Result<ExitStatus, BenchError> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    Ok(child.wait()?)
}

/// A port nobody listens on now (the child binds it a moment later).
fn free_port() -> Result<u16, BenchError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// VmRSS and VmHWM of a process, in KiB.
fn read_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn sample_rss(pid: u32, report: &mut RssReport) {
    if let Some((rss_kib, hwm_kib)) = read_rss_kib(pid) {
        report.peak_kib = report.peak_kib.max(rss_kib);
        report.end_kib = rss_kib;
        // The kernel updates VmHWM lazily: it can lag a VmRSS just read.
        report.lifetime_peak_kib = hwm_kib.max(report.peak_kib);
        report.samples += 1;
    }
}

/// Samples a process's RSS every 200 ms until stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<RssReport>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut report = RssReport {
                peak_kib: 0,
                end_kib: 0,
                lifetime_peak_kib: 0,
                samples: 0,
            };
            let mut ticks = tokio::time::interval(RSS_SAMPLE_INTERVAL);
            loop {
                tokio::select! {
                    _ = ticks.tick() => sample_rss(pid, &mut report),
                    _ = &mut stopped => {
                        sample_rss(pid, &mut report);
                        return report;
                    }
                }
            }
        });
        RssSampler { stop, task }
    }

    /// Takes a last sample and returns what was seen.
    pub async fn stop(self) -> Result<RssReport, BenchError> {
        let _ = self.stop.send(());
        Ok(self.task.await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_rss() {
        let (rss_kib, hwm_kib) = read_rss_kib(std::process::id()).expect("/proc is readable");
        assert!(rss_kib > 0 && hwm_kib >= rss_kib);
    }
}
