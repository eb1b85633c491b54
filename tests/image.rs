//! The container image `make image` builds (scripts/image.sh): its config
//! read from the OCI layout, its one layer's contents, and the binary run
//! from the unpacked root filesystem alone — in a fresh mount namespace,
//! chrooted, with an empty environment but the image's own, as user 65532 —
//! so nothing from the host can help it (no loader, no library, no CA
//! bundle, no passwd).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{run, setting, unique};
use serde_json::Value;

const BINARY: &str = "/usr/local/bin/kassette";

fn oci() -> PathBuf {
    PathBuf::from(setting("KASSETTE_TEST_IMAGE_OCI"))
}

fn rootfs() -> PathBuf {
    PathBuf::from(setting("KASSETTE_TEST_IMAGE_ROOTFS"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn blob(digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    oci().join("blobs/sha256").join(hex)
}

/// The manifest the image's tag (`KASSETTE_TEST_IMAGE_REF`) points at.
fn manifest() -> Value {
    let reference = setting("KASSETTE_TEST_IMAGE_REF");
    let (_, tag) = reference.rsplit_once(':').expect("name:tag");
    let index = read_json(&oci().join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .expect("index manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {index}"))
        .clone();
    read_json(&blob(entry["digest"].as_str().expect("digest")))
}

fn image_config() -> Value {
    read_json(&blob(
        manifest()["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ))
}

#[test]
fn the_image_config_names_entrypoint_user_and_labels() {
    let config = image_config();
    assert_eq!(config["os"], "linux");
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!([BINARY]));
    assert_eq!(c["User"], "65532:65532");
    assert!(c["Cmd"].is_null(), "no command, so no shell: {c}");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.contains(&"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"),
        "{env:?}"
    );
    let labels = &c["Labels"];
    let label = |name: &str| {
        labels[format!("org.opencontainers.image.{name}")]
            .as_str()
            .unwrap_or_else(|| panic!("label {name} missing: {labels}"))
            .to_string()
    };
    assert_eq!(label("title"), "kassette");
    assert_eq!(label("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(label("licenses"), env!("CARGO_PKG_LICENSE"));
    assert_eq!(label("source"), env!("CARGO_PKG_REPOSITORY"));
    let revision = label("revision");
    assert!(
        revision.len() >= 40 && revision[..40].chars().all(|c| c.is_ascii_hexdigit()),
        "revision {revision:?} is not a commit"
    );
    assert!(!label("created").is_empty());
    assert_eq!(
        setting("KASSETTE_TEST_IMAGE_REF"),
        format!("kassette:{}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_one_layer_holds_the_binary_certificates_and_users_and_nothing_else() {
    let manifest = manifest();
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let listing = run(
        "tar",
        &[
            "-tzf",
            blob(layers[0]["digest"].as_str().expect("digest"))
                .to_str()
                .expect("utf-8 path"),
        ],
    );
    let files: BTreeSet<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./").trim_start_matches('/'))
        .filter(|l| !l.is_empty() && *l != "." && !l.ends_with('/'))
        .collect();
    let mut expected: BTreeSet<&str> = [
        "etc/group",
        "etc/hosts",
        "etc/nsswitch.conf",
        "etc/passwd",
        "etc/resolv.conf",
        "etc/ssl/certs/ca-certificates.crt",
        "usr/local/bin/kassette",
    ]
    .into();
    // `make test` packs the debug binary with exactly the shared libraries
    // it needs (scripts/image.sh, KASSETTE_IMAGE_BUILD=test): those, and
    // the loader, are the only other files allowed.
    let config = image_config();
    let test_build = config["config"]["Labels"]["org.kassette.image.build"] == "test";
    let needed = if test_build {
        needed_libraries(&rootfs().join("usr/local/bin/kassette"))
    } else {
        Vec::new()
    };
    for lib in &needed {
        expected.insert(lib.trim_start_matches('/'));
    }
    if test_build {
        assert!(
            needed.iter().any(|l| l.contains("libc.so")),
            "a dynamic binary needs libc: {needed:?}"
        );
    }
    assert_eq!(
        files, expected,
        "no shell, nothing but what the binary needs"
    );

    let root = rootfs();
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).expect("passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:"))
    );
    let group = std::fs::read_to_string(root.join("etc/group")).expect("group");
    assert!(group.lines().any(|l| l.starts_with("nonroot:x:65532:")));
    let bundle =
        std::fs::read_to_string(root.join("etc/ssl/certs/ca-certificates.crt")).expect("CA");
    let certificates = bundle.matches("BEGIN CERTIFICATE").count();
    assert!(certificates > 50, "only {certificates} CA certificates");
    // The empty mount point the charts' read-only root filesystem gets a
    // volume on, if anything needs one.
    assert!(root.join("tmp").is_dir());
}

/// Runs `args` in the image: a fresh mount namespace (`mounts` bind-mounted
/// from the host, read-only, as a runtime mounts volumes), chrooted into the
/// root filesystem as 65532:65532, with the image's environment plus `env`
/// and nothing from the host's.
fn in_image(args: &[&str], env: &[(&str, &str)], mounts: &[(&Path, &str)]) -> Output {
    let root = rootfs();
    let root = root.to_str().expect("utf-8 path");
    let mut environment: Vec<String> = image_config()["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .map(|e| e.as_str().expect("NAME=value").to_string())
        .collect();
    environment.extend(env.iter().map(|(name, value)| format!("{name}={value}")));
    // mount and chroot run with the host's PATH; `env -i` then gives the
    // binary the image's environment alone.
    let mut script = String::from("set -e\n");
    for (source, target) in mounts {
        let target = format!("{root}{target}");
        script.push_str(&format!(
            "mount --bind {} {}\nmount -o remount,bind,ro {}\n",
            quote(&source.to_string_lossy()),
            quote(&target),
            quote(&target)
        ));
    }
    script.push_str("chroot=$(command -v chroot)\nexec env -i");
    for entry in &environment {
        script.push_str(&format!(" {}", quote(entry)));
    }
    script.push_str(&format!(
        " \"$chroot\" --userspec=65532:65532 {} {BINARY} \"$@\"\n",
        quote(root)
    ));
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(script)
        .arg("sh")
        .args(args)
        .output()
        .expect("run unshare")
}

/// `text` as one single-quoted shell word.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_binary_runs_from_the_root_filesystem_alone() {
    let out = in_image(&["--version"], &[], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("kassette {}", env!("CARGO_PKG_VERSION"))
    );
    // And a configuration error is still reported by name, exit 2.
    let out = in_image(&["list"], &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KASSETTE_STORAGE_PROVIDER"),
        "{}",
        text(&out)
    );
}

/// A MinIO of this test's own serving HTTPS for `localhost` and 127.0.0.1
/// with a certificate of a fresh private CA.
struct TlsMinio {
    child: std::process::Child,
    port: u16,
    certs: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl TlsMinio {
    fn start() -> Self {
        let certs = tempfile::tempdir().expect("tempdir");
        common::tls::issue(certs.path(), &["localhost", "127.0.0.1"]);
        let data = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(setting("KASSETTE_TEST_MINIO_BIN"))
            .args(["server", "--quiet", "--address"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--console-address", "127.0.0.1:0", "--certs-dir"])
            .arg(certs.path())
            .arg(data.path())
            .env("MINIO_ROOT_USER", setting("KASSETTE_TEST_S3_ACCESS_KEY"))
            .env(
                "MINIO_ROOT_PASSWORD",
                setting("KASSETTE_TEST_S3_SECRET_KEY"),
            )
            .env("MINIO_UPDATE", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start minio");
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self {
                    child,
                    port,
                    certs,
                    _data: data,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("minio did not start on port {port}");
    }
}

impl Drop for TlsMinio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn create_bucket(minio: &TlsMinio, bucket: &str) {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
    let pem = std::fs::read(minio.certs.path().join("ca.pem")).expect("CA");
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(pem))
        .build()
        .expect("TLS context");
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(context)
        .build_https();
    let endpoint = format!("https://127.0.0.1:{}", minio.port);
    common::s3_client(&endpoint, Some(http))
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .expect("create bucket");
}

#[tokio::test]
async fn the_binary_in_the_image_resolves_names_and_talks_tls() {
    let minio = TlsMinio::start();
    let bucket = unique("image-");
    create_bucket(&minio, &bucket).await;
    // The CA travels like a mounted Secret: a read-only directory (made
    // readable for 65532) bind-mounted on the image's /tmp mount point.
    let secret = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        minio.certs.path().join("ca.pem"),
        secret.path().join("ca.pem"),
    )
    .expect("copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        secret.path().join("ca.pem"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");

    // `localhost`: the name resolves through the image's own /etc/hosts
    // (statically linked glibc, nsswitch `files`).
    let endpoint = format!("https://localhost:{}", minio.port);
    let access_key = setting("KASSETTE_TEST_S3_ACCESS_KEY");
    let secret_key = setting("KASSETTE_TEST_S3_SECRET_KEY");
    let region = setting("KASSETTE_TEST_S3_REGION");
    let mut env = vec![
        ("KASSETTE_STORAGE_PROVIDER", "s3"),
        ("KASSETTE_STORAGE_BUCKET", bucket.as_str()),
        ("KASSETTE_STORAGE_ENDPOINT", endpoint.as_str()),
        ("KASSETTE_STORAGE_REGION", region.as_str()),
        ("KASSETTE_CLUSTER", "image"),
        ("KASSETTE_DATACENTER", "dc1"),
        ("AWS_ACCESS_KEY_ID", access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret_key.as_str()),
    ];
    let mounts = [(secret.path(), "/tmp")];

    // Without the private CA the image's roots reject the server.
    let out = in_image(&["list"], &env, &mounts);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        stderr.contains("certificate") || stderr.contains("unknownissuer"),
        "{}",
        text(&out)
    );

    // With it, the whole request goes through: an empty catalog is listed.
    env.push(("KASSETTE_STORAGE_CA_BUNDLE", "/tmp/ca.pem"));
    let out = in_image(&["list"], &env, &mounts);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("NAME"),
        "{}",
        text(&out)
    );
}

/// The loader and shared libraries `bin` needs, as `ldd` resolves them on
/// this host (absolute paths), for an image built with
/// `KASSETTE_IMAGE_BUILD=test`.
fn needed_libraries(bin: &Path) -> Vec<String> {
    let out = run("ldd", &[bin.to_str().expect("utf-8 path")]);
    let mut libs: Vec<String> = out
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_, "=>", path, ..] if path.starts_with('/') => Some(path.to_string()),
                [path, ..] if path.starts_with('/') => Some(path.to_string()),
                _ => None,
            }
        })
        .collect();
    libs.sort();
    libs.dedup();
    libs
}
