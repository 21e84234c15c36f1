//! The engine bench's upstream: a plain nginx answering `200 ok` to everything (no wasm block),
//! on loopback. It is the engine's own nginx binary run without wasm unless another is given, so
//! that nothing needs installing; one worker, no access log.

use anyhow::{bail, Context, Result};
use cloudrun_spec::testkit::listeners::{Listeners, Share};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running upstream nginx; stopped and its directory removed when dropped.
pub struct PlainNginx {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

fn conf(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let root = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\n{root}pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\nevents {{ worker_connections 1024; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/tmp;\n    proxy_temp_path {d}/tmp;\n    \
         fastcgi_temp_path {d}/tmp;\n    uwsgi_temp_path {d}/tmp;\n    scgi_temp_path {d}/tmp;\n    \
         keepalive_requests 1000000;\n    server {{\n        listen 127.0.0.1:{port};\n        \
         location / {{ return 200 'ok'; }}\n    }}\n}}\n"
    )
}

impl PlainNginx {
    /// Starts `nginx` in a fresh directory under `parent` and waits until it answers.
    pub fn start(nginx: &Path, parent: &Path) -> Result<PlainNginx> {
        let dir = parent.join(format!("upstream-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp"))?;
        // Bound here and inherited by nginx: the port is ours from bind to use.
        let listener = Listeners::bind(&[Share::Alone])?;
        let port = listener.port(0)?;
        std::fs::write(dir.join("nginx.conf"), conf(&dir, port))?;
        let mut command = Command::new(nginx);
        listener.hand_to(&mut command);
        let child = command
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawn {}", nginx.display()))?;
        let mut upstream = PlainNginx {
            child,
            dir,
            addr: format!("127.0.0.1:{port}"),
        };
        upstream.wait_ready()?;
        Ok(upstream)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                bail!("upstream nginx exited with {status}:\n{log}");
            }
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("upstream nginx did not listen on {} within 20 s", self.addr);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for PlainNginx {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid (the wrapper execs nginx: it is the master).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
