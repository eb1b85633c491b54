//! Test certificates: a fresh private CA and a server certificate it
//! issued, made with the `openssl` command.

use std::path::{Path, PathBuf};

/// Files of a test CA and one server certificate.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes into `dir` a CA (`ca.pem`, `ca.key`) and a server certificate
/// (`public.crt`, `private.key`, the names MinIO expects) for `ips`: IP
/// addresses, or DNS names (anything that does not parse as an address).
pub fn issue(dir: &Path, ips: &[&str]) -> TestCerts {
    let sans: Vec<String> = ips
        .iter()
        .map(|name| match name.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{name}"),
            Err(_) => format!("DNS:{name}"),
        })
        .collect();
    issue_for(dir, ips[0], &sans)
}

/// Like [`issue`], for the DNS name `name` only (no IP address), as the
/// kassette-agent chart issues one certificate for every agent pod.
pub fn issue_for_dns_name(dir: &Path, name: &str) -> TestCerts {
    issue_for(dir, name, &[format!("DNS:{name}")])
}

/// A CA and a server certificate with common name `cn` and the subject
/// alternative names `sans` (`IP:…`, `DNS:…`).
fn issue_for(dir: &Path, cn: &str, sans: &[String]) -> TestCerts {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        super::run("openssl", args);
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kassette-test-ca",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &path("private.key"),
        "-out",
        &path("server.csr"),
    ]);
    std::fs::write(
        path("server.ext"),
        format!(
            "subjectAltName={}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
            sans.join(",")
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &path("server.ext"),
        "-out",
        &path("public.crt"),
    ]);
    TestCerts {
        ca: dir.join("ca.pem"),
        cert: dir.join("public.crt"),
        key: dir.join("private.key"),
    }
}
