//! The config stage's JSON output and the directories the runner derives from it.

use serde_json::{Map, Value};

use crate::job::Job;

/// `driver` in the config output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverInfo {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// The config stage's stdout, parsed the way gitlab-runner 19.x parses it.
///
/// Every field is optional: `None` (key absent or `null`) leaves the runner's
/// setting unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOutput {
    pub builds_dir: Option<String>,
    pub cache_dir: Option<String>,
    pub builds_dir_is_shared: Option<bool>,
    pub hostname: Option<String>,
    pub driver: Option<DriverInfo>,
    /// `job_env` pairs in key order. They reach prepare, run and cleanup unprefixed.
    pub job_env: Option<Vec<(String, String)>>,
    pub shell: Option<String>,
}

/// Parses the config stage's stdout.
///
/// Empty output means "no overrides". Otherwise the output must be one JSON
/// value: an object (unknown keys ignored), or `null`. Field types are checked
/// strictly, as Go's `encoding/json` does, and key names match case-insensitively
/// like Go's. The error text starts with the runner's
/// `error while parsing JSON output:`.
// NOTE: Go replaces invalid UTF-8 inside JSON strings with U+FFFD, but serde_json
// rejects the document. When one object has two keys that differ only in case,
// Go keeps the later one in document order. Here the winner follows serde_json's
// sorted key order instead.
pub fn parse_config_output(stdout: &[u8]) -> Result<ConfigOutput, String> {
    if stdout.is_empty() {
        return Ok(ConfigOutput::default());
    }

    let document: Value = serde_json::from_slice(stdout)
        .map_err(|error| format!("error while parsing JSON output: {error}"))?;
    let object = match document {
        Value::Null => return Ok(ConfigOutput::default()),
        Value::Object(object) => object,
        other => {
            return Err(format!(
                "error while parsing JSON output: json: cannot unmarshal {} into Go value of type custom.ConfigExecOutput",
                json_type_name(&other)
            ))
        }
    };

    let mut output = ConfigOutput::default();
    for (key, value) in &object {
        let field = key.to_ascii_lowercase();
        match field.as_str() {
            "builds_dir" => output.builds_dir = optional_string(key, value)?,
            "cache_dir" => output.cache_dir = optional_string(key, value)?,
            "hostname" => output.hostname = optional_string(key, value)?,
            "shell" => output.shell = optional_string(key, value)?,
            "builds_dir_is_shared" => {
                output.builds_dir_is_shared = match value {
                    Value::Null => None,
                    Value::Bool(flag) => Some(*flag),
                    other => return Err(type_error(key, other, "bool")),
                }
            }
            "driver" => output.driver = parse_driver(key, value)?,
            "job_env" => output.job_env = parse_job_env(key, value)?,
            _ => {}
        }
    }
    Ok(output)
}

fn parse_driver(key: &str, value: &Value) -> Result<Option<DriverInfo>, String> {
    let object = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        other => return Err(type_error(key, other, "api.DriverInfo")),
    };
    let mut driver = DriverInfo::default();
    for (field, value) in object {
        match field.to_ascii_lowercase().as_str() {
            "name" => driver.name = optional_string(field, value)?,
            "version" => driver.version = optional_string(field, value)?,
            _ => {}
        }
    }
    Ok(Some(driver))
}

fn parse_job_env(key: &str, value: &Value) -> Result<Option<Vec<(String, String)>>, String> {
    let object: &Map<String, Value> = match value {
        Value::Null => return Ok(None),
        Value::Object(object) => object,
        other => return Err(type_error(key, other, "map[string]string")),
    };
    let mut pairs = Vec::with_capacity(object.len());
    for (name, value) in object {
        // Go stores the zero value for a `null` map element.
        let text = match value {
            Value::Null => String::new(),
            Value::String(text) => text.clone(),
            other => return Err(type_error(&format!("{key}.{name}"), other, "string")),
        };
        pairs.push((name.clone(), text));
    }
    Ok(Some(pairs))
}

fn optional_string(key: &str, value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        other => Err(type_error(key, other, "string")),
    }
}

fn type_error(key: &str, value: &Value, go_type: &str) -> String {
    format!(
        "error while parsing JSON output: json: cannot unmarshal {} into Go struct field ConfigExecOutput.{key} of type {go_type}",
        json_type_name(value)
    )
}

fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The directories the runner computes after the config stage, as the job
/// scripts and the `CI_*` variables see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildDirs {
    /// `CI_BUILDS_DIR`.
    pub builds_dir: String,
    /// `CI_PROJECT_DIR`.
    pub project_dir: String,
    /// `cache_dir/<namespace>/<project>`, the cache directory the scripts use.
    pub cache_dir: String,
}

impl BuildDirs {
    /// Computes the directories from the effective settings, or returns the
    /// runner's configuration error, which is never retried.
    // NOTE: the `-empty` suffix that the runner adds for `GIT_STRATEGY=empty` is
    // not modelled.
    pub fn compute(
        builds_dir: &str,
        cache_dir: &str,
        builds_dir_is_shared: bool,
        job: &Job,
    ) -> Result<BuildDirs, String> {
        if builds_dir.is_empty() {
            return Err("the builds_dir is not configured".to_string());
        }
        if cache_dir.is_empty() {
            return Err("the cache_dir is not configured".to_string());
        }
        if job.variables.iter().any(|v| v.key == "GIT_CLONE_PATH") {
            return Err(
                "setting GIT_CLONE_PATH is not allowed, enable `custom_build_dir` feature"
                    .to_string(),
            );
        }

        let project_slug = format!("/{}", job.project_path);
        let project_unique_dir = if builds_dir_is_shared {
            go_path_join(&[
                &job.runner_short_token,
                &job.concurrent_project_id.to_string(),
                &project_slug,
            ])
        } else {
            go_path_clean(&project_slug)
        };
        Ok(BuildDirs {
            builds_dir: builds_dir.to_string(),
            project_dir: go_path_join(&[builds_dir, &project_unique_dir]),
            cache_dir: go_path_join(&[cache_dir, &go_path_clean(&project_slug)]),
        })
    }

    /// Returns `<CI_PROJECT_DIR>.tmp`, where the scripts keep file variables and
    /// the `GITLAB_ENV` file.
    pub fn tmp_project_dir(&self) -> String {
        format!("{}.tmp", self.project_dir)
    }
}

/// Joins slash-separated path elements like Go's `path.Join`: empty elements are
/// skipped and the result is cleaned.
pub(crate) fn go_path_join(elements: &[&str]) -> String {
    let joined = elements
        .iter()
        .filter(|element| !element.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    if joined.is_empty() {
        return String::new();
    }
    go_path_clean(&joined)
}

/// Cleans a slash-separated path like Go's `path.Clean`.
pub(crate) fn go_path_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.last().is_some_and(|last| *last != "..") {
                    segments.pop();
                } else if !rooted {
                    segments.push("..");
                }
            }
            other => segments.push(other),
        }
    }
    let body = segments.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_config() {
        let output = parse_config_output(
            br#"{"builds_dir":"/builds","cache_dir":"/cache","builds_dir_is_shared":true,
                "hostname":"vm-1","driver":{"name":"d","version":"1"},
                "job_env":{"A":"1","B":null},"shell":"bash","extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(output.builds_dir.as_deref(), Some("/builds"));
        assert_eq!(output.builds_dir_is_shared, Some(true));
        assert_eq!(output.driver.unwrap().version.as_deref(), Some("1"));
        assert_eq!(
            output.job_env.unwrap(),
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), String::new())
            ]
        );
    }

    #[test]
    fn parse_empty_and_null_mean_no_overrides() {
        assert_eq!(parse_config_output(b"").unwrap(), ConfigOutput::default());
        assert_eq!(
            parse_config_output(b"null\n").unwrap(),
            ConfigOutput::default()
        );
        assert_eq!(
            parse_config_output(b"{\"builds_dir\":null}").unwrap(),
            ConfigOutput::default()
        );
    }

    #[test]
    fn parse_keys_case_insensitively() {
        let output = parse_config_output(br#"{"BUILDS_DIR":"/b"}"#).unwrap();
        assert_eq!(output.builds_dir.as_deref(), Some("/b"));
    }

    #[test]
    fn parse_rejects_wrong_types_and_garbage() {
        for bad in [
            &b"{\"job_env\":{\"A\":1}}"[..],
            b"{\"builds_dir\":5}",
            b"[]",
            b"\xef\xbb\xbf{}",
            b"{} trailing",
            b"  \n",
        ] {
            let error = parse_config_output(bad).unwrap_err();
            assert!(
                error.starts_with("error while parsing JSON output: "),
                "{error}"
            );
        }
    }

    #[test]
    fn dirs_for_unshared_and_shared_layouts() {
        let job = Job::new(1).project(7, "grp/sub/proj").concurrent_ids(3, 5);
        let unshared = BuildDirs::compute("/builds/", "/cache", false, &job).unwrap();
        assert_eq!(unshared.project_dir, "/builds/grp/sub/proj");
        assert_eq!(unshared.cache_dir, "/cache/grp/sub/proj");
        assert_eq!(unshared.tmp_project_dir(), "/builds/grp/sub/proj.tmp");

        let shared = BuildDirs::compute("/builds", "/cache", true, &job).unwrap();
        assert_eq!(shared.project_dir, "/builds/t3stT0k3/5/grp/sub/proj");
    }

    #[test]
    fn dirs_reject_empty_settings() {
        let job = Job::new(1);
        assert_eq!(
            BuildDirs::compute("", "/c", false, &job).unwrap_err(),
            "the builds_dir is not configured"
        );
        assert_eq!(
            BuildDirs::compute("/b", "", false, &job).unwrap_err(),
            "the cache_dir is not configured"
        );
    }

    #[test]
    fn go_path_clean_cases() {
        assert_eq!(go_path_clean("/a//b/./c/.."), "/a/b");
        assert_eq!(go_path_clean("/.."), "/");
        assert_eq!(go_path_clean("a/../.."), "..");
        assert_eq!(go_path_clean(""), ".");
    }
}
