//! QMP client (QEMU Machine Protocol) over the VM's unix socket.
//!
//! Owns the connection to one QEMU process: capability negotiation and the
//! handful of commands the driver needs (`query-status`, `system_powerdown`,
//! `quit`, and `hostfwd_add` / `hostfwd_remove` / `info usernet`, which QMP
//! only has as human-monitor commands). Built on the `qapi` crate (typed
//! commands generated from QEMU's schema, tokio transport).

use std::path::Path;
use std::time::Duration;

use qapi::futures::{QapiService, QmpStreamTokio};

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to the QMP socket {path}: {source} (is the VM running?)")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("QMP {command}: {reason}")]
    Command { command: String, reason: String },
    #[error("QMP {command}: no answer within {secs} s")]
    Timeout { command: String, secs: u64 },
}

type Writer = QmpStreamTokio<tokio::io::WriteHalf<tokio::net::UnixStream>>;

/// A negotiated QMP session. Dropping it closes the connection.
pub struct Qmp {
    service: QapiService<Writer>,
    task: tokio::task::JoinHandle<()>,
    timeout: Duration,
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What `query-status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStatus {
    pub running: bool,
    /// QEMU's RunState name, e.g. `running`, `paused`, `shutdown`.
    pub status: String,
}

impl Qmp {
    /// Connects to `socket` and negotiates capabilities.
    pub async fn connect(socket: &Path) -> Result<Qmp, QmpError> {
        let conn_err = |source| QmpError::Connect {
            path: socket.display().to_string(),
            source,
        };
        let timeout = Duration::from_secs(10);
        let fut = async {
            let stream = QmpStreamTokio::open_uds(socket).await?;
            stream.negotiate().await
        };
        let stream = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| {
                conn_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no QMP greeting within 10 s",
                ))
            })?
            .map_err(conn_err)?;
        let (service, task) = stream.spawn_tokio();
        Ok(Qmp {
            service,
            task,
            timeout,
        })
    }

    async fn run<C: qapi::qmp::QmpCommand + 'static>(
        &self,
        name: &str,
        cmd: C,
    ) -> Result<C::Ok, QmpError> {
        match tokio::time::timeout(self.timeout, self.service.execute(cmd)).await {
            Err(_) => Err(QmpError::Timeout {
                command: name.to_string(),
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(QmpError::Command {
                command: name.to_string(),
                reason: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// `query-status`.
    pub async fn status(&self) -> Result<RunStatus, QmpError> {
        let s = self.run("query-status", qapi::qmp::query_status {}).await?;
        let status = serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        Ok(RunStatus {
            running: s.running,
            status,
        })
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.run("system_powerdown", qapi::qmp::system_powerdown {})
            .await?;
        Ok(())
    }

    /// `quit`: QEMU exits at once (the guest is not asked).
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.run("quit", qapi::qmp::quit {}).await {
            Ok(_) => Ok(()),
            // QEMU may close the socket before answering.
            Err(QmpError::Command { reason, .. })
                if reason.contains("closed")
                    || reason.contains("EOF")
                    || reason.contains("reset")
                    || reason.contains("broken pipe") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// A human-monitor command; returns its output.
    pub async fn hmp(&self, command_line: &str) -> Result<String, QmpError> {
        self.run(
            "human-monitor-command",
            qapi::qmp::human_monitor_command {
                command_line: command_line.to_string(),
                cpu_index: None,
            },
        )
        .await
    }

    /// Forwards 127.0.0.1:`host_port` to the guest's `guest_port` (TCP) on
    /// the user-mode network `netdev`.
    pub async fn hostfwd_add(
        &self,
        netdev: &str,
        host_port: u16,
        guest_port: u16,
    ) -> Result<(), QmpError> {
        let cmd = format!("hostfwd_add {netdev} tcp:127.0.0.1:{host_port}-:{guest_port}");
        let out = self.hmp(&cmd).await?;
        if out.trim().is_empty() {
            Ok(())
        } else {
            Err(QmpError::Command {
                command: cmd,
                reason: out.trim().to_string(),
            })
        }
    }

    /// Removes the forward of 127.0.0.1:`host_port`.
    pub async fn hostfwd_remove(&self, netdev: &str, host_port: u16) -> Result<(), QmpError> {
        let cmd = format!("hostfwd_remove {netdev} tcp:127.0.0.1:{host_port}");
        let out = self.hmp(&cmd).await?;
        if out.trim().is_empty() || out.contains("removed") {
            Ok(())
        } else {
            Err(QmpError::Command {
                command: cmd,
                reason: out.trim().to_string(),
            })
        }
    }

    /// The TCP forwards QEMU has for `netdev`, as (host port, guest port),
    /// parsed from `info usernet`.
    pub async fn hostfwds(&self) -> Result<Vec<(u16, u16)>, QmpError> {
        Ok(parse_usernet(&self.hmp("info usernet").await?))
    }
}

/// Parses `info usernet` lines such as
/// `  TCP[HOST_FORWARD]  12       127.0.0.1 41235       10.0.2.15    22     0     0`.
fn parse_usernet(text: &str) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"TCP[HOST_FORWARD]") && f.len() >= 6 {
            if let (Ok(h), Ok(g)) = (f[3].parse::<u16>(), f[5].parse::<u16>()) {
                out.push((h, g));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_info_usernet() {
        let text = "Hub -1 (n0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  13       127.0.0.1 18080       10.0.2.15    80     0     0\r\n  TCP[HOST_FORWARD]  12       127.0.0.1 41235       10.0.2.15    22     0     0\r\n  UDP[236 sec]       27       10.0.2.15 68     10.0.2.2  67     0     0\r\n";
        assert_eq!(super::parse_usernet(text), vec![(18080, 80), (41235, 22)]);
    }
}
