//! Network faults for a test's namespace, honestly made: nftables rules on the namespace's
//! loopback (this kernel has no netem) to drop packets (all, or a random share) and to count
//! them, and a flood of TCP connections from many loopback addresses.
//!
//! Every packet between two programs in the namespace leaves through `lo`'s output hook once,
//! so a rule in the `out` chain acts once per packet and in both directions.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use anyhow::{Context, Result, bail};

use super::netns::NetNs;

const TABLE: &str = "huis_fault";

/// Our nftables table in a namespace, with one `out` chain (output hook). Removed on drop.
pub struct Nft {
    ns: NetNs,
}

impl Nft {
    pub fn new(ns: &NetNs) -> Result<Nft> {
        if !ns.is_isolated() {
            bail!("nftables faults need a private network namespace (run the tests as root)");
        }
        let nft = Nft { ns: ns.clone() };
        nft.run(&format!("add table inet {TABLE}"))?;
        nft.run(&format!("add chain inet {TABLE} out {{ type filter hook output priority 0; policy accept; }}"))?;
        Ok(nft)
    }

    fn run(&self, cmd: &str) -> Result<String> {
        let out = self.ns.cmd("nft").arg(cmd).output().context("run nft (Debian package nftables)")?;
        if !out.status.success() {
            bail!("nft {cmd}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Appends `rule` (nft syntax, e.g. `udp dport 4000 drop`) to the `out` chain.
    pub fn rule(&self, rule: &str) -> Result<()> {
        self.run(&format!("add rule inet {TABLE} out {rule}")).map(|_| ())
    }

    /// A counter of the packets `matching` (nft syntax), read by [`Nft::count`] under `name`.
    pub fn counter(&self, name: &str, matching: &str) -> Result<()> {
        self.rule(&format!("{matching} counter comment \"{name}\""))
    }

    /// Packets counted so far by the counter `name`.
    pub fn count(&self, name: &str) -> Result<u64> {
        let text = self.run(&format!("list chain inet {TABLE} out"))?;
        let line = text
            .lines()
            .find(|l| l.contains(&format!("comment \"{name}\"")))
            .with_context(|| format!("no counter {name} in\n{text}"))?;
        let n = line
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .with_context(|| format!("no packet count in {line}"))?;
        Ok(n.parse()?)
    }

    /// Every packet in the namespace is dropped until [`Nft::heal`] (a cut link).
    pub fn cut(&self) -> Result<()> {
        self.rule("drop comment \"cut\"")
    }

    /// Removes the rules named `name` (the cut: `"cut"`).
    pub fn remove(&self, name: &str) -> Result<()> {
        let out = self.ns.cmd("nft").arg("-a").arg(format!("list chain inet {TABLE} out")).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for l in text.lines().filter(|l| l.contains(&format!("comment \"{name}\""))) {
            let handle = l.rsplit("# handle ").next().unwrap_or("").trim();
            self.run(&format!("delete rule inet {TABLE} out handle {handle}"))?;
        }
        Ok(())
    }

    pub fn heal(&self) -> Result<()> {
        self.remove("cut")
    }

    /// The rules as nft lists them (for failure messages).
    pub fn listing(&self) -> String {
        self.run(&format!("list table inet {TABLE}")).unwrap_or_else(|e| e.to_string())
    }
}

impl Drop for Nft {
    fn drop(&mut self) {
        let _ = self.run(&format!("delete table inet {TABLE}"));
    }
}

/// Opens `per_address` TCP connections to `to` from each of `from` (loopback addresses of
/// `ns`); each sends `hello` first when given. The connections are returned open: the caller
/// holds them as long as the flood should last. A connection the far end accepts and closes
/// at once still counts as opened here (the kernel completes the handshake before the accept).
pub fn tcp_flood(
    ns: &NetNs,
    to: SocketAddr,
    from: &[Ipv4Addr],
    per_address: usize,
    hello: Option<&[u8]>,
) -> Result<Vec<TcpStream>> {
    let from = from.to_vec();
    let hello = hello.map(<[u8]>::to_vec);
    ns.enter(move || -> Result<Vec<TcpStream>> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            use tokio::io::AsyncWriteExt;
            let mut open = Vec::new();
            for ip in &from {
                for _ in 0..per_address {
                    let s = tokio::net::TcpSocket::new_v4()?;
                    s.bind(SocketAddr::from((*ip, 0)))?;
                    let mut c = s.connect(to).await.with_context(|| format!("connect {ip} → {to}"))?;
                    if let Some(h) = &hello {
                        // The far end may have closed it already (over a cap): that is the point.
                        let _ = c.write_all(h).await;
                    }
                    open.push(c.into_std()?);
                }
            }
            Ok(open)
        })
    })?
}

/// How many file descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}
