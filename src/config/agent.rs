//! Agent settings: where it listens, how it authenticates callers, where the
//! node's data lives and how it controls Cassandra.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use url::Url;

use super::coordinator::agent_token_file;
use super::{ConfigError, StorageConfig, optional, parse, required, unused, vars};
use crate::cli::AgentArgs;

/// Listen address when `KASSETTE_AGENT_LISTEN` is unset.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7300";
/// Cassandra's data directory in the official image and cass-operator pods.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cassandra/data";

/// How the agent drives Cassandra (flush, snapshot, import).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CassandraControl {
    /// Run the `nodetool` command.
    Nodetool { command: String },
    /// HTTP to the Jolokia JVM agent's JMX bridge.
    Jolokia { url: Url },
    /// HTTP to the Management API for Apache Cassandra (cass-operator pods).
    ManagementApi { url: Url },
}

/// Everything `kassette agent` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    pub listen: SocketAddr,
    pub token_file: PathBuf,
    /// Certificate and key, when the API is served over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub data_dirs: Vec<PathBuf>,
    /// The agent's own files (digest cache); created if missing.
    pub state_dir: PathBuf,
    pub control: CassandraControl,
    pub storage: StorageConfig,
}

#[derive(Debug, Clone, Copy)]
enum Method {
    Nodetool,
    Jolokia,
    ManagementApi,
}

/// A readable PEM file with at least one `kind` block (`CERTIFICATE`, or
/// any `… PRIVATE KEY`). The contents are never echoed.
fn pem_file(raw: &str, kind: &str) -> Result<PathBuf, String> {
    let path = parse::readable_file(raw)?;
    let bytes = parse::read_small_file(&path, parse::MAX_PEM_FILE)?;
    let text = String::from_utf8_lossy(&bytes);
    let has_block = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{kind}-----")));
    if has_block {
        Ok(path)
    } else {
        Err(format!("{} holds no PEM {kind}", path.display()))
    }
}

impl AgentConfig {
    pub fn from_args(args: &AgentArgs) -> Result<Self, ConfigError> {
        let listen = optional(
            vars::AGENT_LISTEN,
            args.listen.as_deref(),
            parse::listen_addr,
        )?;
        let listen = match listen {
            Some(addr) => addr,
            None => parse::listen_addr(DEFAULT_LISTEN)
                .map_err(|problem| ConfigError::new(vars::AGENT_LISTEN, problem))?,
        };
        let token_file = required(
            vars::AGENT_TOKEN_FILE,
            args.agent_token_file.as_deref(),
            "a file holding the token callers must present",
            agent_token_file,
        )?;
        let cert = optional(vars::AGENT_TLS_CERT, args.tls_cert.as_deref(), |raw| {
            pem_file(raw, "CERTIFICATE")
        })?;
        let key = optional(vars::AGENT_TLS_KEY, args.tls_key.as_deref(), |raw| {
            pem_file(raw, "PRIVATE KEY")
        })?;
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    vars::AGENT_TLS_KEY,
                    format!("is required when {} is set", vars::AGENT_TLS_CERT),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    vars::AGENT_TLS_CERT,
                    format!("is required when {} is set", vars::AGENT_TLS_KEY),
                ));
            }
        };
        // The default is checked like a given value: an agent without its
        // data volume mounted is misconfigured, not merely idle.
        let data_dirs = required(
            vars::DATA_DIRS,
            Some(args.data_dirs.as_deref().unwrap_or(DEFAULT_DATA_DIR)),
            "Cassandra's data directories",
            |raw| {
                parse::list(raw)?
                    .iter()
                    .map(|dir| parse::existing_dir(dir))
                    .collect::<Result<Vec<_>, _>>()
            },
        )?;
        let state_dir = match args.state_dir.as_deref().map(str::trim) {
            Some("") => return Err(ConfigError::new(vars::AGENT_STATE_DIR, "is empty")),
            Some(dir) => PathBuf::from(dir),
            // Beside the first data directory, on the same volume.
            None => data_dirs
                .first()
                .and_then(|dir| dir.parent())
                .unwrap_or(Path::new("."))
                .join(".kassette"),
        };
        Ok(Self {
            listen,
            token_file,
            tls,
            data_dirs,
            state_dir,
            control: control(args)?,
            storage: StorageConfig::from_args(&args.storage)?,
        })
    }
}

fn control(args: &AgentArgs) -> Result<CassandraControl, ConfigError> {
    let method = optional(
        vars::CASSANDRA_CONTROL,
        args.cassandra_control.as_deref(),
        |raw| {
            parse::one_of(
                raw,
                &[
                    ("nodetool", Method::Nodetool),
                    ("jolokia", Method::Jolokia),
                    ("management-api", Method::ManagementApi),
                ],
            )
        },
    )?
    .unwrap_or(Method::Nodetool);
    let nodetool = args.nodetool.as_deref();
    let jolokia = args.jolokia_url.as_deref();
    let management = args.management_api_url.as_deref();
    match method {
        Method::Nodetool => {
            let why = "with nodetool control";
            unused(vars::JOLOKIA_URL, jolokia, why)?;
            unused(vars::MANAGEMENT_API_URL, management, why)?;
            let command = nodetool.map(str::trim).unwrap_or("nodetool");
            if command.is_empty() {
                return Err(ConfigError::new(vars::NODETOOL, "is empty"));
            }
            Ok(CassandraControl::Nodetool {
                command: command.to_string(),
            })
        }
        Method::Jolokia => {
            let why = "with jolokia control";
            unused(vars::NODETOOL, nodetool, why)?;
            unused(vars::MANAGEMENT_API_URL, management, why)?;
            let url = required(
                vars::JOLOKIA_URL,
                jolokia,
                "the Jolokia URL",
                parse::http_url,
            )?;
            Ok(CassandraControl::Jolokia { url })
        }
        Method::ManagementApi => {
            let why = "with management-api control";
            unused(vars::NODETOOL, nodetool, why)?;
            unused(vars::JOLOKIA_URL, jolokia, why)?;
            let url = required(
                vars::MANAGEMENT_API_URL,
                management,
                "the Management API URL",
                parse::http_url,
            )?;
            Ok(CassandraControl::ManagementApi { url })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::StorageArgs;

    fn args(dir: &tempfile::TempDir) -> AgentArgs {
        let token = dir.path().join("token");
        std::fs::write(&token, "t").unwrap();
        AgentArgs {
            listen: None,
            agent_token_file: Some(token.to_string_lossy().into_owned()),
            tls_cert: None,
            tls_key: None,
            data_dirs: Some(dir.path().to_string_lossy().into_owned()),
            state_dir: None,
            cassandra_control: None,
            nodetool: None,
            jolokia_url: None,
            management_api_url: None,
            storage: StorageArgs {
                storage_provider: Some("local".into()),
                storage_path: Some(dir.path().to_string_lossy().into_owned()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn defaults_to_nodetool_on_port_7300() {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig::from_args(&args(&dir)).unwrap();
        assert_eq!(config.listen.port(), 7300);
        assert_eq!(
            config.control,
            CassandraControl::Nodetool {
                command: "nodetool".into()
            }
        );
    }

    #[test]
    fn jolokia_needs_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(&dir);
        a.cassandra_control = Some("jolokia".into());
        assert_eq!(
            AgentConfig::from_args(&a).unwrap_err().var,
            vars::JOLOKIA_URL
        );
        a.jolokia_url = Some("http://127.0.0.1:8778/jolokia".into());
        assert!(matches!(
            AgentConfig::from_args(&a).unwrap().control,
            CassandraControl::Jolokia { .. }
        ));
    }

    #[test]
    fn data_dirs_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(&dir);
        a.data_dirs = Some(format!("{},/no/such/dir", dir.path().display()));
        assert_eq!(AgentConfig::from_args(&a).unwrap_err().var, vars::DATA_DIRS);
    }
}
