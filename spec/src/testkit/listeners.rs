//! Listening sockets bound by the test and handed to nginx already bound, through nginx's own
//! socket inheritance (the `NGINX` environment variable of its binary upgrade). The port is the
//! test's from `bind` to use: no other test or process can take it in between, as could happen
//! when a "free" port was picked, released, and bound by nginx a moment later (two servers of one
//! nginx.conf were once handed the same port that way).

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Sockets listening on `127.0.0.1:<kernel's choice>`, for one nginx.
pub struct Listeners {
    sockets: Vec<Socket>,
}

/// How one listener is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// A plain listener (nginx.conf: `listen 127.0.0.1:PORT;`).
    Alone,
    /// `SO_REUSEPORT`, so that nginx's per-worker copies (`listen … reuseport;`) join it.
    ReusePort,
}

impl Listeners {
    /// Binds one listener per entry of `shares`, each on its own port.
    pub fn bind(shares: &[Share]) -> Result<Listeners> {
        let sockets = shares
            .iter()
            .map(|share| listen(*share))
            .collect::<Result<Vec<_>>>()?;
        Ok(Listeners { sockets })
    }

    /// The port of listener `i`.
    pub fn port(&self, i: usize) -> Result<u16> {
        let socket = self.sockets.get(i).context("no such listener")?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .context("listener has no IP address")?;
        Ok(addr.port())
    }

    /// Makes `cmd` (an nginx) inherit the listeners: `NGINX=fd;fd;` names them, and the child
    /// keeps them open across `exec` (they are close-on-exec in this process, so no other child
    /// inherits them). nginx adopts each one whose address a `listen` directive names.
    pub fn hand_to(&self, cmd: &mut Command) {
        let fds: Vec<RawFd> = self.sockets.iter().map(AsRawFd::as_raw_fd).collect();
        let names: String = fds.iter().map(|fd| format!("{fd};")).collect();
        cmd.env("NGINX", names);
        // SAFETY: runs in the forked child before exec; fcntl is async-signal-safe and touches
        // only the child's own descriptor table.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &fds {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
}

fn listen(share: Share) -> Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    // nginx sets both on the sockets it opens itself; an inherited socket keeps ours.
    socket.set_reuse_address(true)?;
    if share == Share::ReusePort {
        socket.set_reuse_port(true)?;
    }
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .context("binding a listener on 127.0.0.1")?;
    socket.listen(511)?;
    Ok(socket)
}

/// A port on 127.0.0.1 where connections are refused, for as long as this lives: bound but never
/// listening, so no other socket can take the port meanwhile (a port bound and released at once
/// could be handed to another test's server before the connection that should be refused).
pub struct ClosedPort {
    _socket: Socket,
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
}

impl ClosedPort {
    /// Binds one.
    pub fn new() -> Result<ClosedPort> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .context("binding a closed port on 127.0.0.1")?;
        let addr = socket
            .local_addr()?
            .as_socket()
            .context("closed port has no IP address")?;
        Ok(ClosedPort {
            _socket: socket,
            addr,
        })
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
