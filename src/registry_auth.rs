//! Registry credentials for pulling the job's image.
//!
//! Sources, first match wins: the job's `DOCKER_AUTH_CONFIG` variable, the settings'
//! `docker_auth_config`, then `CI_REGISTRY_USER` and `CI_REGISTRY_PASSWORD` for images on the
//! job's own registry (`CI_REGISTRY`). Credentials never appear in messages: errors name the
//! registry host and the source only.

use std::fmt;

use anyhow::bail;
use base64::Engine;
use bollard::auth::DockerCredentials;
use serde::Deserialize;

use crate::env::EnvSnapshot;

/// Host Docker uses for images without a registry part.
const DOCKER_HUB: &str = "docker.io";

/// The job variables that can carry registry credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JobRegistrySecrets {
    pub docker_auth_config: Option<String>,
    pub registry: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for JobRegistrySecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobRegistrySecrets")
            .field(
                "docker_auth_config",
                &self.docker_auth_config.as_ref().map(|_| "<redacted>"),
            )
            .field("registry", &self.registry)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl JobRegistrySecrets {
    /// Reads the job variables `DOCKER_AUTH_CONFIG`, `CI_REGISTRY`, `CI_REGISTRY_USER` and
    /// `CI_REGISTRY_PASSWORD`.
    pub fn from_env(snapshot: &EnvSnapshot) -> Self {
        let variable = |name: &str| {
            snapshot
                .job_variable(name)
                .filter(|value| !value.is_empty())
        };
        JobRegistrySecrets {
            docker_auth_config: variable("DOCKER_AUTH_CONFIG"),
            registry: variable("CI_REGISTRY"),
            user: variable("CI_REGISTRY_USER"),
            password: variable("CI_REGISTRY_PASSWORD"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthEntry(<redacted>)")
    }
}

/// Returns the credentials for pulling `image`, or `None` to pull anonymously.
pub fn credentials_for(
    image: &str,
    job: &JobRegistrySecrets,
    settings_auth: Option<&str>,
) -> anyhow::Result<Option<DockerCredentials>> {
    let host = registry_host(image);
    let configs = [
        (
            job.docker_auth_config.as_deref(),
            "the job's DOCKER_AUTH_CONFIG",
        ),
        (settings_auth, "the settings' docker_auth_config"),
    ];
    for (config, source) in configs {
        let Some(config) = config else { continue };
        if let Some(credentials) = from_auth_config(config, &host, source)? {
            return Ok(Some(credentials));
        }
    }
    let on_job_registry = job
        .registry
        .as_deref()
        .is_some_and(|registry| normalize_host(registry) == host);
    if let (true, Some(user), Some(password)) = (on_job_registry, &job.user, &job.password) {
        return Ok(Some(DockerCredentials {
            username: Some(user.clone()),
            password: Some(password.clone()),
            serveraddress: Some(host),
            ..Default::default()
        }));
    }
    Ok(None)
}

fn from_auth_config(
    config: &str,
    host: &str,
    source: &str,
) -> anyhow::Result<Option<DockerCredentials>> {
    // serde_json's messages can quote a value, which may be a password, so only the
    // position of the error is passed on.
    let parsed: AuthConfig = serde_json::from_str(config).map_err(|error| {
        anyhow::anyhow!(
            "invalid {source} at line {}, column {}; it must be the JSON of a Docker config.json",
            error.line(),
            error.column()
        )
    })?;
    let Some(entry) = parsed
        .auths
        .iter()
        .find(|(key, _)| normalize_host(key) == host)
        .map(|(_, entry)| entry)
    else {
        return Ok(None);
    };

    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some((user, password)) = decoded.as_deref().and_then(|text| text.split_once(':'))
            else {
                bail!("invalid `auth` for registry `{host}` in {source}; it must be base64 of `user:password`");
            };
            (Some(user.to_owned()), Some(password.to_owned()))
        }
        (None, username, password) => (username.clone(), password.clone()),
    };
    Ok(Some(DockerCredentials {
        username,
        password,
        identitytoken: entry.identitytoken.clone(),
        serveraddress: Some(host.to_owned()),
        ..Default::default()
    }))
}

/// Returns the registry part of an image reference, `docker.io` when it has none.
pub fn registry_host(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
            normalize_host(first)
        }
        _ => DOCKER_HUB.to_owned(),
    }
}

/// Reduces `https://index.docker.io/v1/` and similar keys to a bare host.
fn normalize_host(key: &str) -> String {
    let without_scheme = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = without_scheme.split('/').next().unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn host_of_image_references() {
        assert_eq!(registry_host("debian:12"), "docker.io");
        assert_eq!(registry_host("library/debian"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000/team/img:1"), "127.0.0.1:5000");
        assert_eq!(
            registry_host("registry.example.com/img"),
            "registry.example.com"
        );
        assert_eq!(registry_host("localhost/img"), "localhost");
    }

    #[test]
    fn job_auth_config_wins() {
        let job = JobRegistrySecrets {
            docker_auth_config: Some(format!(
                r#"{{"auths": {{"127.0.0.1:5000": {{"auth": "{}"}}}}}}"#,
                encoded("job-user:job-pass")
            )),
            ..Default::default()
        };
        let settings = r#"{"auths": {"127.0.0.1:5000": {"username": "s", "password": "p"}}}"#;
        let credentials = credentials_for("127.0.0.1:5000/x:1", &job, Some(settings))
            .unwrap()
            .unwrap();
        assert_eq!(credentials.username.as_deref(), Some("job-user"));
        assert_eq!(credentials.password.as_deref(), Some("job-pass"));
    }

    #[test]
    fn ci_registry_only_for_own_registry() {
        let job = JobRegistrySecrets {
            registry: Some("registry.example.com".into()),
            user: Some("gitlab-ci-token".into()),
            password: Some("token".into()),
            ..Default::default()
        };
        assert!(credentials_for("registry.example.com/g/p:1", &job, None)
            .unwrap()
            .is_some());
        assert!(credentials_for("other.example.com/g/p:1", &job, None)
            .unwrap()
            .is_none());
    }

    #[test]
    fn docker_hub_keys_match() {
        let settings =
            r#"{"auths": {"https://index.docker.io/v1/": {"username": "u", "password": "p"}}}"#;
        let credentials =
            credentials_for("debian:12", &JobRegistrySecrets::default(), Some(settings))
                .unwrap()
                .unwrap();
        assert_eq!(credentials.serveraddress.as_deref(), Some("docker.io"));
    }

    #[test]
    fn invalid_auth_does_not_leak() {
        let job = JobRegistrySecrets {
            docker_auth_config: Some(r#"{"auths": {"r.io": {"auth": "c2VjcmV0LXZhbHVl"}}}"#.into()),
            ..Default::default()
        };
        let error = credentials_for("r.io/x", &job, None).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("r.io"), "{message}");
        assert!(!message.contains("secret-value"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
    }

    #[test]
    fn malformed_config_does_not_leak() {
        let job = JobRegistrySecrets {
            docker_auth_config: Some(r#"{"auths": {"r.io": "user:hunter2"}}"#.into()),
            ..Default::default()
        };
        let error = credentials_for("r.io/x", &job, None).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn debug_output_redacts() {
        let secrets = JobRegistrySecrets {
            password: Some("hunter2".into()),
            docker_auth_config: Some("{}".into()),
            ..Default::default()
        };
        assert!(!format!("{secrets:?}").contains("hunter2"));
    }
}
