//! The binary's public surface: help, exit codes, configuration errors that
//! name their variable, and secrets that never reach the output.

use std::process::{Command, Output};

use kassette::config::vars;

/// Runs `kassette` with only the given environment (plus PATH).
fn kassette(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kassette"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run kassette")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn token_file(dir: &tempfile::TempDir, secret: &str) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, secret).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn help_describes_every_variable() {
    let mut help = String::new();
    for sub in [
        "backup",
        "restore",
        "agent",
        "list",
        "status",
        "verify",
        "purge",
        "pin-tokens",
    ] {
        let out = kassette(&[sub, "--help"], &[]);
        assert!(out.status.success(), "{sub} --help: {}", text(&out));
        help.push_str(&text(&out));
    }
    // Help wraps lines; compare with runs of whitespace folded to one space.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for var in vars::ALL {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from --help"
        );
    }
}

#[test]
fn no_subcommand_is_a_usage_error() {
    let out = kassette(&[], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("Usage"), "{}", text(&out));
}

#[test]
fn a_bad_provider_is_named_with_the_choices() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "t");
    let out = kassette(
        &["backup"],
        &[
            (vars::STORAGE_PROVIDER, "s4"),
            (vars::AGENT_TOKEN_FILE, &token),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out)
            .contains(r#"KASSETTE_STORAGE_PROVIDER: "s4" is not one of s3, gcs, azure, local"#),
        "{}",
        text(&out)
    );
}

#[test]
fn a_missing_required_variable_is_named() {
    let out = kassette(&["list"], &[(vars::STORAGE_PROVIDER, "s3")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("KASSETTE_STORAGE_BUCKET: is required"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_flag_overrides_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let env = [
        (vars::STORAGE_PROVIDER, "s4"),
        (vars::STORAGE_PATH, root),
        (vars::CLUSTER, "prod"),
        (vars::DATACENTER, "dc1"),
    ];
    let out = kassette(&["list", "--storage-provider", "local"], &env);
    // The flag wins: a valid local catalog, empty.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("NAME"), "{}", text(&out));
}

#[test]
fn secrets_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "token-SECRET-1");
    let creds = dir.path().join("credentials");
    std::fs::write(&creds, "[default]\naws_secret_access_key = SECRET-2\n").unwrap();

    // A URL with embedded credentials is refused without echoing them.
    let out = kassette(
        &["--log", "trace", "backup"],
        &[
            (vars::STORAGE_PROVIDER, "s3"),
            (vars::STORAGE_BUCKET, "backups"),
            (
                vars::STORAGE_ENDPOINT,
                "https://AKIA:SECRET-3@s3.example.com",
            ),
            (vars::AGENT_TOKEN_FILE, &token),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(vars::STORAGE_ENDPOINT),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("SECRET"), "{}", text(&out));

    // A malformed credentials file is named, its contents are not shown.
    let out = kassette(
        &["--log", "trace", "list"],
        &[
            (vars::STORAGE_PROVIDER, "s3"),
            (vars::STORAGE_BUCKET, "backups"),
            (vars::STORAGE_CREDENTIALS_FILE, creds.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(vars::STORAGE_CREDENTIALS_FILE),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("SECRET"), "{}", text(&out));

    // A valid configuration, logged at the most verbose level while the
    // pass calls an agent (which is not there), shows no token.
    let out = kassette(
        &["--log", "trace", "backup"],
        &[
            (vars::STORAGE_PROVIDER, "local"),
            (vars::STORAGE_PATH, dir.path().to_str().unwrap()),
            (vars::CLUSTER, "prod"),
            (vars::DATACENTER, "dc1"),
            (vars::NODES, "127.0.0.1:7300"),
            (vars::AGENT_TOKEN_FILE, &token),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("node 127.0.0.1:7300: agent 127.0.0.1:7300: unreachable"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("SECRET"), "{}", text(&out));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = kassette(
        &["status", "nightly"],
        &[(vars::LOG_FORMAT, "json"), (vars::STORAGE_PROVIDER, "gcs")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0]["level"], "ERROR");
    assert!(
        lines[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("KASSETTE_STORAGE_BUCKET")
    );
}

#[test]
fn a_bad_log_format_is_named() {
    let out = kassette(&["list"], &[(vars::LOG_FORMAT, "xml")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains(r#"KASSETTE_LOG_FORMAT: "xml" is not one of text, json"#),
        "{}",
        text(&out)
    );
}

#[test]
fn catalog_roles_on_an_empty_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let token = token_file(&dir, "t");
    let env = [
        (vars::STORAGE_PROVIDER, "local"),
        (vars::STORAGE_PATH, root),
        (vars::CLUSTER, "prod"),
        (vars::DATACENTER, "dc1"),
        (vars::NODES, "127.0.0.1:7300"),
        (vars::AGENT_TOKEN_FILE, token.as_str()),
        (vars::BACKUP_NAME, "latest"),
    ];
    let list = kassette(&["list", "--json"], &env);
    assert!(list.status.success(), "{}", text(&list));
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
    for role in ["status", "verify"] {
        let out = kassette(&[role], &env);
        assert_eq!(out.status.code(), Some(1), "{role}: {}", text(&out));
        assert!(
            text(&out).contains("there is no complete backup yet"),
            "{role}: {}",
            text(&out)
        );
    }
    let purge = kassette(&["purge", "--dry-run"], &env);
    assert!(purge.status.success(), "{}", text(&purge));
    assert!(
        text(&purge).contains("would delete 0 expired"),
        "{}",
        text(&purge)
    );
    let restore = kassette(&["restore"], &env);
    assert_eq!(restore.status.code(), Some(1), "{}", text(&restore));
    assert!(
        text(&restore).contains("there is no complete backup yet"),
        "{}",
        text(&restore)
    );
}

#[test]
fn the_agent_serves_its_api_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let root = data.to_str().unwrap();
    let token = token_file(&dir, "agent-token-123");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_kassette"))
        .arg("agent")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs([
            (vars::STORAGE_PROVIDER, "local"),
            (vars::STORAGE_PATH, root),
            (vars::AGENT_TOKEN_FILE, token.as_str()),
            (vars::DATA_DIRS, root),
            (vars::AGENT_LISTEN, listen.as_str()),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start agent");
    let get = |auth: Option<&str>| -> Option<u16> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let auth = auth
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /v1/node HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer.split_whitespace().nth(1)?.parse().ok()
    };
    let mut status = None;
    for _ in 0..100 {
        status = get(Some("agent-token-123"));
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, Some(200), "agent did not answer");
    assert_eq!(get(None), Some(401));
    // Kubernetes stops a pod with SIGTERM.
    let killed = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = agent.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "agent exit after SIGTERM");
    // The state directory was created beside the data directory.
    assert!(dir.path().join(".kassette").is_dir());
}

#[test]
fn agent_tls_files_must_be_pem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let token = token_file(&dir, "t");
    let not_pem = dir.path().join("cert.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = not_pem.to_str().unwrap();
    let out = kassette(
        &["agent"],
        &[
            (vars::STORAGE_PROVIDER, "local"),
            (vars::STORAGE_PATH, root),
            (vars::AGENT_TOKEN_FILE, &token),
            (vars::DATA_DIRS, root),
            (vars::AGENT_TLS_CERT, not_pem),
            (vars::AGENT_TLS_KEY, not_pem),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("KASSETTE_AGENT_TLS_CERT") && text(&out).contains("no PEM CERTIFICATE"),
        "{}",
        text(&out)
    );
}

#[test]
fn pin_tokens_names_a_missing_or_bad_setting() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("cassandra.yaml");
    std::fs::write(&yaml, "num_tokens: 16\n").unwrap();
    let yaml = yaml.to_str().unwrap();
    let base = [
        (vars::STORAGE_PROVIDER, "local"),
        (vars::STORAGE_PATH, dir.path().to_str().unwrap()),
        (vars::CLUSTER, "prod"),
        (vars::DATACENTER, "dc1"),
        (vars::BACKUP_NAME, "b1"),
        (vars::CASSANDRA_YAML, yaml),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut env = base.to_vec();
        env.extend_from_slice(extra);
        kassette(&["pin-tokens"], &env)
    };
    for (extra, var) in [
        (vec![], vars::RACK),
        (vec![(vars::RACK, "r1")], vars::NODE_ORDINAL),
        (vec![(vars::POD_NAME, "cassandra-0")], vars::POD_NAME),
        (
            vec![(vars::RACK, "r1"), (vars::NODE_ORDINAL, "x")],
            vars::NODE_ORDINAL,
        ),
        (
            vec![
                (vars::RACK, "r1"),
                (vars::NODE_ORDINAL, "0"),
                (vars::PIN_IF_BOOTSTRAPPED, "maybe"),
            ],
            vars::PIN_IF_BOOTSTRAPPED,
        ),
    ] {
        let out = with(&extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{var}:")),
            "{extra:?} should name {var}: {}",
            text(&out)
        );
    }
    // Valid settings, but no such backup in storage: a failure (1), and
    // the file is untouched.
    let out = with(&[(vars::RACK, "r1"), (vars::NODE_ORDINAL, "0")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cassandra.yaml")).unwrap(),
        "num_tokens: 16\n"
    );
}

#[test]
fn restore_names_a_bad_dry_run_or_repair_setting() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(&dir, "t");
    for var in [vars::DRY_RUN, vars::REPAIR_AFTER_RESTORE] {
        let out = kassette(
            &["restore"],
            &[
                (vars::STORAGE_PROVIDER, "local"),
                (vars::STORAGE_PATH, dir.path().to_str().unwrap()),
                (vars::CLUSTER, "prod"),
                (vars::DATACENTER, "dc1"),
                (vars::BACKUP_NAME, "latest"),
                (vars::NODES, "127.0.0.1:7300"),
                (vars::AGENT_TOKEN_FILE, &token),
                (var, "perhaps"),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(&format!("{var}:")), "{}", text(&out));
    }
}
