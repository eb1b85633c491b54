//! Bad input, generated: every `KASSETTE_*` variable (and the flag that
//! overrides it) of every subcommand that reads it, given wrong types,
//! empty, huge, unicode and injection-looking values.
//!
//! Properties:
//!
//! - in-process, through the command line (`--flag=value`) and
//!   [`kassette::configure`]: never a panic; a value is accepted or refused
//!   by a configuration error (exit 2) naming that variable (or the one it
//!   needs beside it, e.g. the password file of a CQL user); values that are
//!   certainly wrong for the variable's type are refused;
//! - as a process, through the environment, as a Job or a pod runs it:
//!   certainly-wrong values exit 2 with the variable's name on stderr, no
//!   panic, nothing written to storage and no connection to any node.
//!
//! Case counts are printed (`--nocapture`) for the closing note of issue 10.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{CommandFactory, Parser};
use kassette::cli::Cli;
use kassette::config::{ConfigError, LogConfig, vars};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// What a variable holds, which decides what is certainly wrong for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Enum,
    Bool,
    Number,
    Port,
    Duration,
    Bandwidth,
    File,
    Dir,
    Url,
    Name,
    HostPorts,
    Keyspaces,
    Tables,
    Selector,
    Listen,
    Prefix,
    /// Free text: only the general property applies.
    Free,
}

fn kind(var: &str) -> Kind {
    use Kind::*;
    match var {
        vars::LOG_FORMAT
        | vars::STORAGE_PROVIDER
        | vars::RESTORE_MODE
        | vars::CASSANDRA_CONTROL => Enum,
        vars::STORAGE_ALLOW_HTTP | vars::CLEAR_TRUNCATE_SNAPSHOTS => Bool,
        vars::CONCURRENCY | vars::RETENTION_KEEP_LAST => Number,
        vars::AGENT_PORT | vars::CQL_PORT => Port,
        vars::LOCK_TTL | vars::PROGRESS_INTERVAL | vars::RETENTION_MAX_AGE => Duration,
        vars::MAX_BANDWIDTH => Bandwidth,
        vars::STORAGE_CREDENTIALS_FILE
        | vars::STORAGE_CA_BUNDLE
        | vars::STORAGE_SSE_C_KEY_FILE
        | vars::AGENT_TOKEN_FILE
        | vars::AGENT_CA_FILE
        | vars::CQL_PASSWORD_FILE
        | vars::AGENT_TLS_CERT
        | vars::AGENT_TLS_KEY => File,
        vars::STORAGE_PATH | vars::DATA_DIRS => Dir,
        vars::STORAGE_ENDPOINT
        | vars::PUSHGATEWAY_URL
        | vars::JOLOKIA_URL
        | vars::MANAGEMENT_API_URL => Url,
        vars::STORAGE_BUCKET
        | vars::STORAGE_REGION
        | vars::STORAGE_CLASS
        | vars::CLUSTER
        | vars::DATACENTER
        | vars::NAMESPACE
        | vars::BACKUP_NAME => Name,
        vars::NODES => HostPorts,
        vars::KEYSPACES => Keyspaces,
        vars::TABLES => Tables,
        vars::POD_SELECTOR => Selector,
        vars::AGENT_LISTEN => Listen,
        vars::STORAGE_PREFIX => Prefix,
        _ => Free,
    }
}

/// Variables whose error may name another one: setting one of a pair
/// without the other, or choosing a mode whose own setting is missing.
fn companions(var: &str) -> &'static [&'static str] {
    match var {
        vars::CQL_USERNAME => &[vars::CQL_PASSWORD_FILE],
        vars::CQL_PASSWORD_FILE => &[vars::CQL_USERNAME],
        vars::AGENT_TLS_CERT => &[vars::AGENT_TLS_KEY],
        vars::AGENT_TLS_KEY => &[vars::AGENT_TLS_CERT],
        vars::CASSANDRA_CONTROL => &[vars::JOLOKIA_URL, vars::MANAGEMENT_API_URL],
        // Another provider than the baseline's local one needs its bucket
        // and refuses the local path.
        vars::STORAGE_PROVIDER => &[vars::STORAGE_BUCKET, vars::STORAGE_PATH],
        _ => &[],
    }
}

/// Values that are certainly wrong for a variable of `kind` (in the
/// baseline context below).
fn certainly_bad(kind: Kind) -> BoxedStrategy<String> {
    use Kind::*;
    let huge_digits = "[1-9][0-9]{20,40}";
    match kind {
        Enum | Bool => prop_oneof![
            "[0-9!%]{1,5}z",
            "\\PC{0,3}[^\\x00-\\x7f]\\PC{0,3}",
            "x{300,500}"
        ]
        .boxed(),
        Number => prop_oneof![
            "[a-z]{1,8}",
            "-[0-9]{1,5}",
            huge_digits,
            Just("0".to_string())
        ]
        .boxed(),
        Port => prop_oneof![
            "[a-z]{1,8}",
            "-[0-9]{1,5}",
            "6553[6-9]",
            "[7-9][0-9]{4}",
            huge_digits,
            Just("0".to_string())
        ]
        .boxed(),
        Duration => prop_oneof![
            "[0-9]{1,5}(parsecs|zz|%)",
            "[1-9][0-9]{12,18}y",
            "[1-9][0-9]{4,8}years",
            Just("0s".to_string()),
            Just("-1s".to_string()),
            "[a-z]{1,8}"
        ]
        .boxed(),
        Bandwidth => prop_oneof![
            "[a-z]{3,8}",
            "[1-9][0-9]{0,2}B/s",
            Just("0".to_string()),
            "-[0-9]{1,4}MiB/s"
        ]
        .boxed(),
        File | Dir => "/nonexistent-kassette-[a-z]{1,10}(/[a-z]{1,5}){0,3}".boxed(),
        Url => prop_oneof![
            "ftp://[a-z]{1,8}\\.example",
            "[a-z]{1,8}",
            "https://[a-z]{1,4}:[a-z]{1,4}@[a-z]{1,8}\\.example",
            "http:// [a-z]{1,5}"
        ]
        .boxed(),
        // The bad characters sit inside the name: ASCII whitespace at
        // either end is trimmed (a Secret's trailing newline), by design.
        Name => prop_oneof![
            "[a-z]{1,5}[/ :;$@\\\\*?<>|]{1,3}[a-z]{1,5}",
            "[/:;$@\\\\*?<>|]{1,3}",
            "\\.\\./[a-z]{1,5}",
            "x{300,400}",
            "[a-z]{0,3}[^\\x00-\\x7f][a-z]{0,3}"
        ]
        .boxed(),
        HostPorts => prop_oneof![
            "[a-z]{1,10}",
            "[a-z]{1,5}:0",
            "[a-z]{1,5}:[1-9][0-9]{5}",
            ":[0-9]{1,4}"
        ]
        .boxed(),
        Keyspaces => prop_oneof![
            "\\.\\./[a-z]{1,5}",
            "[a-z]{49,60}",
            "[a-z]{1,5}[-/.;]{1,3}[a-z]{0,3}",
            "[ ,]{0,5}"
        ]
        .boxed(),
        Tables => prop_oneof![
            "[a-z]{1,5}",
            "[a-z]{1,5}\\.\\./[a-z]{1,5}",
            "[a-z]{1,5}\\.[a-z]{223,230}",
            "[a-z]{49,60}\\.[a-z]{1,5}",
            "/[a-z]{1,5}\\.[a-z]{1,5}"
        ]
        .boxed(),
        Selector => prop_oneof!["[a-z]{1,5} in \\([a-z]{1,3}\\)", "[a-z]{1,5}= ?[$;]{1,3}"].boxed(),
        Listen => prop_oneof!["[a-z]{1,10}", "1\\.2\\.3\\.4:[1-9][0-9]{5}", ":::"].boxed(),
        Prefix => prop_oneof![
            "[a-z]{1,5}/\\.\\./[a-z]{1,5}",
            "[a-z]{1,5}//[a-z]{1,5}",
            "[a-z]{513,700}",
            "[a-z]{1,3}/\\./[a-z]{1,3}"
        ]
        .boxed(),
        Free => Just(String::new()).boxed(),
    }
}

/// Any value at all: empty, blank, huge, unicode, injection-looking.
fn any_value() -> BoxedStrategy<String> {
    prop_oneof![
        Just(String::new()),
        "[ \\t]{1,5}",
        "\\PC{0,40}",
        ".{0,20}",
        "[a-zA-Z0-9._:/=,@-]{0,40}",
        "[a-z]{10000,20000}",
        prop::sample::select(vec![
            "$(touch /tmp/kassette-pwned)",
            "`id`",
            "; rm -rf /",
            "' OR '1'='1",
            "\"; DROP KEYSPACE system; --",
            "../../../../etc/passwd",
            "%2e%2e%2f%2e%2e%2f",
            "${jndi:ldap://127.0.0.1/x}",
            "{{7*7}}",
            "\u{202e}gnp.exe",
            "a\u{0}b",
            "line\nbreak",
            "\r\n\r\nGET / HTTP/1.1",
            "０１２３",
            "💥",
            "-h",
            "--help",
            "true; false",
            "1e309",
            "NaN",
            "-0",
            "18446744073709551616",
        ])
        .prop_map(String::from),
    ]
    .boxed()
}

/// The storage provider of a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Local,
    S3,
    Gcs,
}

/// Temporary files every baseline names.
struct Fixture {
    dir: tempfile::TempDir,
    store: PathBuf,
    data: PathBuf,
    token: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "bad-input-token\n").unwrap();
        Self {
            dir,
            store,
            data,
            token,
        }
    }

    /// Valid settings of `sub` on `provider`, by variable.
    fn baseline(
        &self,
        sub: &str,
        provider: Provider,
        agent: &str,
    ) -> BTreeMap<&'static str, String> {
        let mut settings = BTreeMap::new();
        let mut set = |var: &'static str, value: &str| {
            settings.insert(var, value.to_string());
        };
        match provider {
            Provider::Local => {
                set(vars::STORAGE_PROVIDER, "local");
                set(vars::STORAGE_PATH, self.store.to_str().unwrap());
            }
            // Configuration never contacts the store: these need not exist.
            Provider::S3 => {
                set(vars::STORAGE_PROVIDER, "s3");
                set(vars::STORAGE_BUCKET, "backups");
                set(vars::STORAGE_ENDPOINT, "https://s3.example.com");
            }
            Provider::Gcs => {
                set(vars::STORAGE_PROVIDER, "gcs");
                set(vars::STORAGE_BUCKET, "backups");
                set(vars::STORAGE_ENDPOINT, "https://gcs.example.com");
            }
        }
        match sub {
            "agent" => {
                set(vars::AGENT_TOKEN_FILE, self.token.to_str().unwrap());
                set(vars::DATA_DIRS, self.data.to_str().unwrap());
                set(vars::AGENT_LISTEN, "127.0.0.1:0");
                set(
                    vars::AGENT_STATE_DIR,
                    self.dir.path().join("state").to_str().unwrap(),
                );
            }
            _ => {
                set(vars::CLUSTER, "prod");
                set(vars::DATACENTER, "dc1");
            }
        }
        if matches!(sub, "backup" | "restore") {
            // The two are set together or not at all: with both in the
            // baseline, a bad value of either is named as itself.
            set(vars::POD_NAME, "kassette-backup-x1");
            set(vars::POD_NAMESPACE, "default");
            set(vars::NODES, agent);
            set(vars::AGENT_TOKEN_FILE, self.token.to_str().unwrap());
        }
        if matches!(sub, "restore" | "status" | "verify" | "pin-tokens") {
            set(vars::BACKUP_NAME, "latest");
        }
        if sub == "pin-tokens" {
            let yaml = self.dir.path().join("cassandra.yaml");
            std::fs::write(&yaml, "cluster_name: prod\n").unwrap();
            set(vars::CASSANDRA_YAML, yaml.to_str().unwrap());
            set(vars::DATA_DIRS, self.data.to_str().unwrap());
            set(vars::POD_NAME, "prod-dc1-r1-sts-0");
        }
        settings
    }
}

/// The subcommands that read `var`, each with its flag (`None`: the
/// positional backup name).
fn readers(var: &str) -> Vec<(String, Option<String>)> {
    let cli = Cli::command();
    let mut found = Vec::new();
    for sub in cli.get_subcommands() {
        let mut commands = vec![sub];
        while let Some(command) = commands.pop() {
            for arg in command.get_arguments() {
                if arg.get_env().is_some_and(|env| env == var) {
                    found.push((sub.get_name().to_string(), arg.get_long().map(String::from)));
                }
            }
            commands.extend(command.get_subcommands());
        }
    }
    found
}

/// The flag of `var` in `sub` (or a global one: the log settings).
fn flag_of(sub: &str, var: &str) -> Option<String> {
    let global = Cli::command()
        .get_arguments()
        .find(|arg| arg.get_env().is_some_and(|env| env == var))
        .and_then(|arg| arg.get_long().map(String::from));
    global.or_else(|| {
        readers(var)
            .into_iter()
            .find(|(s, _)| s == sub)
            .and_then(|(_, flag)| flag)
    })
}

/// `kassette <sub>` with the baseline and `var` set to `value`, as flags.
fn command_line(fixture: &Fixture, (sub, var, provider): &Pair, value: &str) -> Vec<OsString> {
    let mut settings = fixture.baseline(sub, *provider, "127.0.0.1:9");
    settings.remove(var);
    let mut args: Vec<OsString> = vec!["kassette".into(), sub.as_str().into()];
    let mut positional = None;
    for (name, setting) in &settings {
        match flag_of(sub, name) {
            Some(flag) => args.push(format!("--{flag}={setting}").into()),
            None => positional = Some(setting.clone()),
        }
    }
    match flag_of(sub, var) {
        Some(flag) => args.push(format!("--{flag}={value}").into()),
        None => positional = Some(value.to_string()),
    }
    if let Some(name) = positional {
        args.push("--".into());
        args.push(name.into());
    }
    args
}

/// What configuring `var = value` in `sub` gave: `None` accepted, else the
/// error.
fn configure(fixture: &Fixture, pair: &Pair, value: &str) -> Option<ConfigError> {
    let (sub, var, _) = pair;
    let args = command_line(fixture, pair, value);
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("clap refused {args:?}: {e}"));
    if matches!(*var, vars::LOG | vars::LOG_FORMAT) {
        return LogConfig::from_args(&cli.log).err();
    }
    match kassette::configure(cli.command) {
        Ok(_) => None,
        Err(kassette::Error::Config(err)) => Some(err),
        Err(other) => panic!("{var}={value:?} in {sub}: not a configuration error: {other}"),
    }
}

fn named(err: &ConfigError, var: &str) -> bool {
    err.var == var || companions(var).contains(&err.var)
}

/// A subcommand, a variable it reads, and the provider of the baseline.
type Pair = (String, &'static str, Provider);

/// Every (subcommand, variable) pair on local storage, the global log
/// settings under `list`, and every variable of `list` on S3 and GCS too.
fn pairs() -> Vec<Pair> {
    let mut pairs = Vec::new();
    for var in vars::ALL {
        if matches!(*var, vars::LOG | vars::LOG_FORMAT) {
            pairs.push(("list".to_string(), *var, Provider::Local));
            continue;
        }
        let subs = readers(var);
        assert!(!subs.is_empty(), "{var} is read by no subcommand");
        for (sub, _) in subs {
            // A node that never started may have no data directory yet:
            // pin-tokens takes a missing one as "not bootstrapped" (unit
            // tests in src/pin), so any path is a valid value there.
            if sub == "pin-tokens" && *var == vars::DATA_DIRS {
                continue;
            }
            if sub == "list" {
                pairs.push((sub.clone(), *var, Provider::S3));
                pairs.push((sub.clone(), *var, Provider::Gcs));
            }
            pairs.push((sub, *var, Provider::Local));
        }
    }
    pairs
}

const CASES: u32 = 4096;

#[test]
fn every_variable_refuses_bad_values_by_name_and_never_panics() {
    let fixture = Fixture::new();
    let pairs = pairs();
    let tried = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0..pairs.len(), any::<bool>()).prop_flat_map(|(index, bad)| {
        let kind = kind(pairs[index].1);
        let certain = bad && kind != Kind::Free;
        let values = if certain {
            certainly_bad(kind)
        } else {
            any_value()
        };
        (Just(index), Just(certain), values)
    });
    runner
        .run(&strategy, |(index, certain, value)| {
            let pair = &pairs[index];
            let (sub, var, provider) = pair;
            tried.fetch_add(1, Ordering::Relaxed);
            match configure(&fixture, pair, &value) {
                Some(err) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    prop_assert!(
                        named(&err, var),
                        "{var}={value:?} in {sub} ({provider:?}): the error names {} ({err})",
                        err.var
                    );
                    prop_assert!(
                        err.to_string().starts_with(err.var),
                        "{err} does not start with its variable"
                    );
                }
                None => prop_assert!(
                    !certain,
                    "{var}={value:?} in {sub} ({provider:?}) was accepted"
                ),
            }
            Ok(())
        })
        .unwrap();
    println!(
        "bad input (in process): {} values over {} subcommand/variable pairs, {} refused by name, the rest accepted",
        tried.load(Ordering::Relaxed),
        pairs.len(),
        refused.load(Ordering::Relaxed)
    );
}

/// The value as the process would see it in its environment: no NUL.
fn env_safe(value: &str) -> bool {
    !value.contains('\0') && !value.is_empty()
}

#[test]
fn as_a_process_bad_values_exit_2_naming_the_variable_with_no_side_effect() {
    let fixture = Fixture::new();
    // Stands in for every agent: a pass that got past its configuration
    // would connect here first.
    let agent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    agent.set_nonblocking(true).unwrap();
    let agent_address = agent.local_addr().unwrap().to_string();
    let pairs: Vec<Pair> = pairs()
        .into_iter()
        .filter(|(_, var, _)| kind(var) != Kind::Free)
        .collect();
    // No shrinking: a failing case may have left objects behind, which
    // would make every simpler case fail too; the first one is the one.
    let mut runner = TestRunner::new(Config {
        cases: 192,
        failure_persistence: None,
        max_shrink_iters: 0,
        ..Config::default()
    });
    let tried = AtomicU64::new(0);
    let strategy = (0..pairs.len()).prop_flat_map(|i| (Just(i), certainly_bad(kind(pairs[i].1))));
    runner
        .run(&strategy, |(index, value)| {
            let (sub, var, provider) = &pairs[index];
            if !env_safe(&value) {
                return Ok(());
            }
            tried.fetch_add(1, Ordering::Relaxed);
            let mut settings = fixture.baseline(sub, *provider, &agent_address);
            settings.insert(var, value.clone());
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kassette"));
            command
                .arg(sub)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .envs(settings.iter().map(|(k, v)| (*k, v.as_str())));
            let out = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            prop_assert_eq!(
                out.status.code(),
                Some(2),
                "{}={:?} in {}: {}",
                var,
                value,
                sub,
                stderr
            );
            prop_assert!(!stderr.contains("panicked"), "{}", stderr);
            let names = std::iter::once(*var).chain(companions(var).iter().copied());
            let mut names = names;
            prop_assert!(
                names.any(|v| stderr.contains(v)),
                "{var}={value:?} in {sub}: {stderr}"
            );
            let written: Vec<_> = walkdir(&fixture.store);
            prop_assert!(
                written.is_empty(),
                "{var}={value:?} in {sub} wrote to storage: {written:?}"
            );
            prop_assert!(
                agent.accept().is_err(),
                "{var}={value:?} in {sub} connected to an agent"
            );
            prop_assert!(
                !fixture.dir.path().join("state").exists(),
                "agent state written"
            );
            Ok(())
        })
        .unwrap();
    println!(
        "bad input (processes): {} runs of the binary, every one exit 2 naming its variable",
        tried.load(Ordering::Relaxed)
    );
}

/// Everything under `dir`.
fn walkdir(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}

#[test]
fn invalid_utf8_in_any_variable_is_named() {
    use std::os::unix::ffi::OsStringExt;
    let fixture = Fixture::new();
    let mut tried = 0;
    for (sub, var, provider) in pairs() {
        let mut settings = fixture.baseline(&sub, provider, "127.0.0.1:9");
        settings.remove(var);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kassette"))
            .arg(&sub)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
            .env(var, OsString::from_vec(b"caf\xe9".to_vec()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{var} in {sub}: {stderr}");
        assert!(
            stderr.contains(&format!("{var}: is not valid UTF-8")),
            "{var} in {sub}: {stderr}"
        );
        tried += 1;
    }
    assert_eq!(std::fs::read_dir(&fixture.store).unwrap().count(), 0);
    println!("invalid UTF-8: {tried} subcommand/variable pairs, each named");
}

#[test]
fn huge_durations_are_refused_before_any_timer() {
    let fixture = Fixture::new();
    for (sub, var) in [
        ("backup", vars::PROGRESS_INTERVAL),
        ("backup", vars::LOCK_TTL),
        ("restore", vars::PROGRESS_INTERVAL),
        ("purge", vars::RETENTION_MAX_AGE),
    ] {
        let pair = (sub.to_string(), var, Provider::Local);
        let err = configure(&fixture, &pair, "500000000000y").expect("accepted");
        assert_eq!(err.var, var);
        assert!(err.problem.contains("longer than"), "{err}");
    }
}
