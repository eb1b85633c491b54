//! Pure parsers for single setting values.
//!
//! Each parser takes the raw text of one variable and returns a typed value or
//! a sentence saying what is accepted. They never see the variable's name and
//! never echo a value that may be secret: the caller ([`super::Checks`]) adds
//! the name, and values are quoted only by the callers that know they are safe.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use crate::catalog::names;

/// Parses a value that must be one of a fixed set of words.
pub fn one_of<T: Copy>(raw: &str, choices: &[(&str, T)]) -> Result<T, String> {
    let wanted = raw.trim().to_ascii_lowercase();
    choices
        .iter()
        .find(|(word, _)| *word == wanted)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let words: Vec<&str> = choices.iter().map(|(w, _)| *w).collect();
            format!("{raw:?} is not one of {}", words.join(", "))
        })
}

/// Parses `true/false/yes/no/1/0/on/off`.
pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(format!("{raw:?} is not a boolean (true or false)")),
    }
}

/// Parses a positive integer no larger than `max`.
pub fn positive(raw: &str, max: u32) -> Result<NonZeroU32, String> {
    raw.trim()
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .filter(|n| n.get() <= max)
        .ok_or_else(|| format!("{raw:?} is not a whole number from 1 to {max}"))
}

/// Parses a TCP port (1–65535).
pub fn port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{raw:?} is not a TCP port (1-65535)"))
}

/// The longest duration any setting accepts (a retention age); longer ones
/// overflow timers and clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000); // 100 years of 365.25 days

/// Parses a duration such as `30d`, `12h`, `1week 2days`, of at most
/// [`MAX_DURATION`].
pub fn duration(raw: &str) -> Result<Duration, String> {
    duration_at_most(raw, MAX_DURATION)
}

/// Parses a positive duration of at most `max`.
pub fn duration_at_most(raw: &str, max: Duration) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(raw.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{raw:?} is not a positive duration (e.g. 30d, 12h, 2weeks)"))?;
    if parsed > max {
        return Err(format!(
            "{raw:?} is longer than the {} allowed",
            humantime::format_duration(max)
        ));
    }
    Ok(parsed)
}

/// The smallest bandwidth limit: the limiter counts in KiB.
pub const MIN_BANDWIDTH: u64 = 1024;

/// Parses a bandwidth such as `200MiB/s`, `1.5GB/s` or `50MiB` (per second
/// implied), returning bytes per second; at least 1 KiB/s.
pub fn bandwidth(raw: &str) -> Result<u64, String> {
    let text = raw.trim();
    let amount = text
        .strip_suffix("/s")
        .or_else(|| text.strip_suffix("ps"))
        .unwrap_or(text)
        .trim();
    amount
        .parse::<bytesize::ByteSize>()
        .ok()
        .map(|b| b.as_u64())
        .filter(|b| *b > 0)
        .ok_or_else(|| format!("{raw:?} is not a bandwidth (e.g. 200MiB/s, 1GB/s)"))
        .and_then(|b| {
            if b < MIN_BANDWIDTH {
                Err(format!("{raw:?} is below the smallest limit, 1KiB/s"))
            } else {
                Ok(b)
            }
        })
}

/// Parses an `http(s)://` URL. Credentials embedded in it are refused and
/// never echoed: they belong in a credentials file.
pub fn http_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@); use the credentials file".into());
    }
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("URL has no host".into()),
        other => Err(format!("scheme {other:?} is not http or https")),
    }
}

/// Parses a non-empty comma-separated list, trimming blanks around items.
pub fn list(raw: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if items.is_empty() {
        return Err("is an empty list".into());
    }
    Ok(items)
}

/// Parses `host:port` agent addresses; the port is required.
pub fn host_ports(raw: &str) -> Result<Vec<String>, String> {
    let items = list(raw)?;
    for item in &items {
        let (host, port_text) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("{item:?} is not host:port"))?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(format!("{item:?} has no host"));
        }
        port(port_text).map_err(|e| format!("{item:?}: {e}"))?;
    }
    Ok(items)
}

/// Parses a socket address to listen on, e.g. `0.0.0.0:7300`.
pub fn listen_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.trim()
        .parse::<SocketAddr>()
        .map_err(|_| format!("{raw:?} is not an address to listen on (e.g. 0.0.0.0:7300)"))
}

/// Parses `KASSETTE_KEYSPACES`: keyspace names.
pub fn keyspaces(raw: &str) -> Result<Vec<String>, String> {
    let items = list(raw)?;
    match items.iter().find_map(|k| names::check_keyspace(k).err()) {
        Some(bad) => Err(bad.to_string()),
        None => Ok(items),
    }
}

/// Parses `KASSETTE_TABLES`: `keyspace.table` names.
pub fn tables(raw: &str) -> Result<Vec<(String, String)>, String> {
    list(raw)?
        .into_iter()
        .map(|item| match item.split_once('.') {
            Some((ks, table)) => {
                names::check_keyspace(ks).map_err(|e| e.to_string())?;
                names::check_table(table).map_err(|e| e.to_string())?;
                Ok((ks.to_string(), table.to_string()))
            }
            None => Err(format!("{item:?} is not keyspace.table")),
        })
        .collect()
}

/// Parses a backup name: 1–128 characters of letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit. Names become storage keys, so nothing
/// that could form a path (`/`, `..`) is accepted.
pub fn backup_name(raw: &str) -> Result<String, String> {
    // ASCII whitespace only: `trim` would also drop a no-break space and
    // accept a name the user did not type.
    let name = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if is_safe_name(name, 128) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{raw:?} is not a backup name (1-128 of letters, digits, '.', '_', '-', starting with a letter or digit)"
        ))
    }
}

/// Whether `name` can be a key segment or a directory name as it is (the
/// rule is the catalog's: [`names::is_safe_name`]).
pub fn is_safe_name(name: &str, max_len: usize) -> bool {
    names::is_safe_name(name, max_len)
}

/// Parses a DNS name a TLS certificate is issued for, e.g.
/// `kassette-agent` or `kassette-agent.cassandra.svc`: dot-separated labels
/// of 1–63 letters, digits and `-`, not starting or ending with `-`; 253
/// characters at most. Lower-cased, as certificate names compare.
pub fn dns_name(raw: &str) -> Result<String, String> {
    let name = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        Ok(name)
    } else {
        Err(format!(
            "{raw:?} is not a DNS name (dot-separated labels of letters, digits, '-')"
        ))
    }
}

/// Parses a Kubernetes label selector of `key=value`, `key!=value` and bare
/// `key` terms (the subset cass-operator selectors use).
pub fn label_selector(raw: &str) -> Result<String, String> {
    let terms = list(raw)?;
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    };
    for term in &terms {
        let (key, value) = match term.split_once("!=").or_else(|| term.split_once('=')) {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_start_matches('='))),
            None => (term.trim_start_matches('!'), None),
        };
        let value_ok = value.is_none_or(|v| v.is_empty() || label_ok(v));
        if !label_ok(key) || !value_ok {
            return Err(format!("{term:?} is not a label selector term (key=value)"));
        }
    }
    Ok(terms.join(","))
}

/// Checks that a file exists and can be read, without returning (or ever
/// printing) its contents.
pub fn readable_file(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    match std::fs::File::open(&path) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => Ok(path),
            Ok(_) => Err(format!("{} is not a regular file", path.display())),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        },
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// The most kassette reads of a secret or key file (a token, a password, a
/// credentials file, an SSE-C key).
pub const MAX_SECRET_FILE: u64 = 1 << 20;
/// The most kassette reads of a PEM certificate or CA bundle.
pub const MAX_PEM_FILE: u64 = 16 << 20;

/// Reads a small file whole, refusing one larger than `max` bytes (a
/// mistaken path to a disk image must not be loaded into memory). The
/// error names the file, never its contents.
pub fn read_small_file(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "{} is larger than {} bytes; is it the right file?",
            path.display(),
            max
        ));
    }
    Ok(bytes)
}

/// Checks that a directory exists.
pub fn existing_dir(raw: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(raw.trim());
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{} is not an existing directory", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_names_the_choices() {
        let choices = [("s3", 1), ("gcs", 2), ("local", 3)];
        assert_eq!(one_of("GCS", &choices), Ok(2));
        assert_eq!(
            one_of("s4", &choices).unwrap_err(),
            "\"s4\" is not one of s3, gcs, local"
        );
    }

    #[test]
    fn bandwidth_accepts_common_spellings() {
        assert_eq!(bandwidth("200MiB/s"), Ok(200 * 1024 * 1024));
        assert_eq!(bandwidth("1GB/s"), Ok(1_000_000_000));
        assert_eq!(bandwidth("50 MiB"), Ok(50 * 1024 * 1024));
        assert!(bandwidth("fast").is_err());
        assert!(bandwidth("0B/s").is_err());
        assert_eq!(bandwidth("16KiB/s"), Ok(16 * 1024));
        assert!(bandwidth("100B/s").unwrap_err().contains("1KiB/s"));
    }

    #[test]
    fn durations_must_be_positive() {
        assert_eq!(duration("2days"), Ok(Duration::from_secs(172_800)));
        assert!(duration("0s").is_err());
        assert!(duration("soon").is_err());
        assert!(duration("100years").is_ok());
        for huge in ["500000000000y", "101y", "18446744073709551615s"] {
            assert!(duration(huge).is_err(), "{huge} accepted");
        }
        assert!(duration_at_most("2h", Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn urls_refuse_embedded_credentials_without_echoing_them() {
        assert!(http_url("https://s3.example.com").is_ok());
        let err = http_url("https://key:hunter2@s3.example.com").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(http_url("ftp://example.com").is_err());
        assert!(http_url("not a url").is_err());
    }

    #[test]
    fn host_ports_need_a_port() {
        assert_eq!(
            host_ports("a:1, b:2").unwrap(),
            vec!["a:1".to_string(), "b:2".to_string()]
        );
        assert!(host_ports("a").is_err());
        assert!(host_ports("a:0").is_err());
        assert!(host_ports(" , ").is_err());
    }

    #[test]
    fn backup_names_cannot_form_paths() {
        assert!(backup_name("2026-11-25T02-00-00Z").is_ok());
        assert!(backup_name("nightly.1").is_ok());
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "a b",
            "\u{a0}a",
            &"x".repeat(129),
        ] {
            assert!(backup_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tables_are_keyspace_dot_table() {
        assert_eq!(
            tables("shop.orders").unwrap(),
            vec![("shop".to_string(), "orders".to_string())]
        );
        assert!(tables("orders").is_err());
        assert!(tables("shop.or-ders").is_err());
        assert!(keyspaces("shop, ledger").is_ok());
        assert!(keyspaces("sh op").is_err());
    }

    #[test]
    fn dns_names() {
        assert_eq!(dns_name("kassette-agent").unwrap(), "kassette-agent");
        assert_eq!(
            dns_name("Kassette-Agent.cassandra.svc.").unwrap(),
            "kassette-agent.cassandra.svc"
        );
        for bad in [
            "",
            "a b",
            "-agent",
            "agent-",
            "a..b",
            "https://agent",
            "a:7300",
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn label_selectors_allow_equality_terms() {
        assert!(label_selector("app=cassandra,cassandra.datastax.com/datacenter=dc1").is_ok());
        assert!(label_selector("tier!=batch,canary").is_ok());
        assert!(label_selector("app in (a,b)").is_err());
    }
}
