//! Certificates made at test time with `openssl` (Debian package `openssl`): a CA and server
//! certificates it signs, X.509 v3 with subjectAltName (rustls refuses v1), EC P-256 keys so
//! they are quick to make. Nothing is read from the machine: every file lives in a temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").current_dir(dir).args(args).output().context("run openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A certificate and its key, as PEM files; `both` holds the two (baresip wants that).
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub both: PathBuf,
}

/// A certificate authority in `dir`.
pub struct Ca {
    dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    /// A new CA called `name` (its files are `name-ca.pem`, `name-ca.key` in `dir`).
    pub fn new(dir: &Path, name: &str) -> Result<Ca> {
        let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "3",
                "-subj",
                &format!("/CN={name} test CA"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &key,
                "-out",
                &cert,
            ],
        )?;
        Ok(Ca { dir: dir.to_owned(), cert: dir.join(cert), key: dir.join(key) })
    }

    /// A server certificate for `names` (`DNS:pbx.test`, `IP:127.0.0.1`), valid two days.
    pub fn issue(&self, file: &str, names: &[&str]) -> Result<Issued> {
        let (cert, key, csr) = (format!("{file}.pem"), format!("{file}.key"), format!("{file}.csr"));
        let cn = names.first().map(|n| n.split_once(':').map(|x| x.1).unwrap_or(n)).unwrap_or("server");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        )?;
        let ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={}\n",
            names.join(",")
        );
        let ext_file = format!("{file}.ext");
        std::fs::write(self.dir.join(&ext_file), ext)?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &self.cert.display().to_string(),
                "-CAkey",
                &self.key.display().to_string(),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext_file,
                "-out",
                &cert,
            ],
        )?;
        let both = self.dir.join(format!("{file}-both.pem"));
        let text = std::fs::read_to_string(self.dir.join(&cert))? + &std::fs::read_to_string(self.dir.join(&key))?;
        std::fs::write(&both, text)?;
        Ok(Issued { cert: self.dir.join(cert), key: self.dir.join(key), both })
    }
}
