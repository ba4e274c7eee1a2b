//! Generation of the per-stage script files in the shape gitlab-runner 19.1+
//! writes for the bash and sh shells (`shells/bash.go`, `shells/abstract.go`).
//!
//! A script is a fixed frame around one body:
//!
//! ```text
//! #!/usr/bin/env bash
//!
//! trap 'exit 1' TERM
//!
//! case "$(set -o)" in *"pipefail"*) set -o pipefail;; esac; set -o errexit
//! set +o noclobber
//! (trap 'exit 1' TERM; eval $'<body>') < /dev/null
//! exit 0
//! ```
//!
//! The body exports every job variable, changes to `CI_PROJECT_DIR` and runs the
//! commands, each echoed in bold green as `$ <command>`. The body is quoted once
//! more as a whole for `eval`, so values are quoted twice in the file.

use std::os::unix::ffi::OsStrExt;

use crate::config::{go_path_join, BuildDirs};
use crate::job::{StageBody, SubStage, Variable};
use crate::quote::{ansi_c_quote, go_quote};

const ANSI_BOLD_GREEN: &str = "\x1b[32;1m";
const ANSI_RESET: &str = "\x1b[0;m";

/// The name of the `GITLAB_ENV` file under `<CI_PROJECT_DIR>.tmp`.
pub const GITLAB_ENV_FILE: &str = "gitlab_runner_env";

/// What a stage body depends on besides the stage itself.
#[derive(Clone, Copy, Debug)]
pub struct ScriptContext<'a> {
    /// The runner's expanded variable list, in precedence order.
    pub variables: &'a [Variable],
    pub dirs: &'a BuildDirs,
    /// `hostname` from the config output, shown in the `prepare_script` banner.
    pub hostname: Option<&'a str>,
    /// `bash` or `sh`; it only changes the shebang.
    pub shell: &'a str,
}

/// Returns the whole script file for `stage`.
pub fn generate_script(stage: &SubStage, context: &ScriptContext<'_>) -> Vec<u8> {
    match &stage.body {
        StageBody::RawScript(script) => script.clone(),
        StageBody::Raw(body) => wrap_body(context.shell, body),
        StageBody::Commands(commands) => {
            wrap_body(context.shell, &stage_body(&stage.name, commands, context))
        }
    }
}

/// Wraps `body` in the runner's script frame: shebang, TERM trap, pipefail probe,
/// errexit, noclobber off, the body run by `eval` in a subshell with stdin from
/// `/dev/null`, then `exit 0`.
pub fn wrap_body(shell: &str, body: &[u8]) -> Vec<u8> {
    let mut script = Vec::with_capacity(body.len() * 2 + 200);
    if !shell.is_empty() {
        script.extend_from_slice(format!("#!/usr/bin/env {shell}\n\n").as_bytes());
    }
    script.extend_from_slice(b"trap 'exit 1' TERM\n\n");
    script.extend_from_slice(
        b"case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n",
    );
    script.extend_from_slice(b"set +o noclobber\n");
    script.extend_from_slice(b"(trap 'exit 1' TERM; eval ");
    script.extend_from_slice(&ansi_c_quote(body));
    script.extend_from_slice(b") < /dev/null\n");
    script.extend_from_slice(b"exit 0\n");
    script
}

/// Returns the body the runner writes for a stage named `stage_name`, with
/// `commands` as the user commands of that stage.
///
/// - `prepare_script`: the hostname banner and removal of stale temp files, no
///   exports and no `cd`. Commands, if any, run in whatever directory the driver
///   starts the script in.
/// - `get_sources`: exports, then what the runner writes for
///   `GIT_STRATEGY: none` (a notice and `mkdir -p` of the project directory);
///   with commands, also `cd` to it.
/// - `cleanup_file_variables`: exports of file variables as paths and removal
///   of the temp files.
/// - every other stage: exports, `cd` to the project directory, commands;
///   `after_script` prints `Running after script...` first.
// NOTE: get_sources performs no Git checkout, and GET_SOURCES_ATTEMPTS retries
// (with `clear_worktree` in between) are not modelled.
pub fn stage_body(stage_name: &str, commands: &[String], context: &ScriptContext<'_>) -> Vec<u8> {
    let mut writer = BodyWriter::new(context);
    match stage_name {
        "prepare_script" => {
            writer.hostname_banner();
            writer.remove_temp_files(false);
            writer.commands(commands);
        }
        "get_sources" => {
            writer.exports(false);
            writer.export_plain("GIT_TERMINAL_PROMPT", b"0");
            writer.export_plain("GCM_INTERACTIVE", b"Never");
            writer.notice("Skipping Git repository setup");
            writer.command(&["mkdir", "-p", &context.dirs.project_dir]);
            if !commands.is_empty() {
                writer.command(&["cd", &context.dirs.project_dir]);
                writer.commands(commands);
            }
        }
        "cleanup_file_variables" => {
            writer.exports(true);
            writer.remove_temp_files(true);
            writer.commands(commands);
        }
        _ => {
            writer.exports(false);
            writer.command(&["cd", &context.dirs.project_dir]);
            if stage_name == "after_script" {
                writer.notice("Running after script...");
            }
            writer.commands(commands);
        }
    }
    writer.body
}

/// Accumulates body lines the way the runner's `BashWriter` does.
struct BodyWriter<'a> {
    context: &'a ScriptContext<'a>,
    body: Vec<u8>,
}

impl<'a> BodyWriter<'a> {
    fn new(context: &'a ScriptContext<'a>) -> Self {
        BodyWriter {
            context,
            body: Vec::new(),
        }
    }

    fn line(&mut self, text: &[u8]) {
        self.body.extend_from_slice(text);
        self.body.push(b'\n');
    }

    /// Returns the path of `name` in the temp project directory, made absolute
    /// against `$PWD` when the builds directory is relative, as the runner does.
    fn temp_file(&self, name: &str) -> String {
        let path = go_path_join(&[&self.context.dirs.tmp_project_dir(), name]);
        if path.starts_with('/') || path.starts_with("$PWD") {
            path
        } else {
            go_path_join(&["$PWD", &path])
        }
    }

    /// Writes a command whose words are each quoted with `ansi_c_quote`.
    fn command(&mut self, words: &[&str]) {
        let quoted: Vec<Vec<u8>> = words.iter().map(|w| ansi_c_quote(w.as_bytes())).collect();
        self.line(&quoted.join(&b' '));
    }

    fn notice(&mut self, text: &str) {
        let colored = format!("{ANSI_BOLD_GREEN}{text}{ANSI_RESET}");
        let mut line = b"echo ".to_vec();
        line.extend_from_slice(&ansi_c_quote(colored.as_bytes()));
        self.line(&line);
    }

    fn hostname_banner(&mut self) {
        let message = match self.context.hostname {
            Some(hostname) if !hostname.is_empty() => {
                format!("Running on $(hostname) via {hostname}...")
            }
            _ => "Running on $(hostname)...".to_string(),
        };
        let mut line = b"echo ".to_vec();
        line.extend_from_slice(&go_quote(message.as_bytes()));
        self.line(&line);
    }

    fn export_plain(&mut self, key: &str, value: &[u8]) {
        let mut line = b"export ".to_vec();
        line.extend_from_slice(&ansi_c_quote(key.as_bytes()));
        line.push(b'=');
        line.extend_from_slice(&ansi_c_quote(value));
        self.line(&line);
    }

    fn export_file(&mut self, variable: &Variable) {
        let temp_dir = self.context.dirs.tmp_project_dir();
        let path = self.temp_file(&variable.key);

        let mut mkdir = b"mkdir -p ".to_vec();
        mkdir.extend_from_slice(&go_quote(temp_dir.as_bytes()));
        self.line(&mkdir);

        let mut printf = b"printf '%s' ".to_vec();
        printf.extend_from_slice(&ansi_c_quote(variable.value.as_bytes()));
        printf.extend_from_slice(b" > ");
        printf.extend_from_slice(&go_quote(path.as_bytes()));
        self.line(&printf);

        let mut export = b"export ".to_vec();
        export.extend_from_slice(&ansi_c_quote(variable.key.as_bytes()));
        export.push(b'=');
        export.extend_from_slice(&go_quote(path.as_bytes()));
        self.line(&export);
    }

    /// Writes the exports of every variable, then `GITLAB_ENV` and the loop that
    /// re-reads it. With `paths_only`, file variables are exported as their path
    /// without rewriting the file, as in `cleanup_file_variables`.
    fn exports(&mut self, paths_only: bool) {
        for variable in self.context.variables {
            if !variable.file {
                self.export_plain(&variable.key, variable.value.as_bytes());
            } else if paths_only {
                let path = self.temp_file(&variable.key);
                self.export_plain(&variable.key, path.as_bytes());
            } else {
                self.export_file(variable);
            }
        }

        let env_file = self.temp_file(GITLAB_ENV_FILE);
        self.export_plain("GITLAB_ENV", env_file.as_bytes());

        let temp_dir = go_quote(self.context.dirs.tmp_project_dir().as_bytes());
        let quoted_env_file = go_quote(env_file.as_bytes());
        self.line(&[&b"mkdir -p "[..], &temp_dir].concat());
        self.line(&[&b"touch "[..], &quoted_env_file].concat());
        self.line(
            &[
                &b"while read -r line; do export \"$line\"; done < "[..],
                &quoted_env_file,
            ]
            .concat(),
        );
    }

    /// Writes `rm -f` of the temp files the runner clears; with `file_variables`,
    /// also the files of file-type variables.
    fn remove_temp_files(&mut self, file_variables: bool) {
        for name in [GITLAB_ENV_FILE, "masking.db"] {
            let path = self.temp_file(name);
            self.command(&["rm", "-f", &path]);
        }
        if file_variables {
            for variable in self.context.variables.iter().filter(|v| v.file) {
                let path = self.temp_file(&variable.key);
                self.command(&["rm", "-f", &path]);
            }
        }
    }

    /// Writes each command echoed as `$ <command>` in bold green, then the command.
    fn commands(&mut self, commands: &[String]) {
        for command in commands {
            let command = command.trim();
            if command.is_empty() {
                self.line(b"echo");
            } else if let Some((first_line, _)) = command.split_once('\n') {
                self.notice(&format!("$ {first_line} # collapsed multi-line command"));
            } else {
                self.notice(&format!("$ {command}"));
            }
            self.line(command.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Job;

    fn dirs() -> BuildDirs {
        BuildDirs::compute("/builds", "/cache", false, &Job::new(1)).unwrap()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn wrap_body_has_runner_shape() {
        let script = text(&wrap_body("bash", b"echo hi\n"));
        let expected = "#!/usr/bin/env bash\n\n\
                        trap 'exit 1' TERM\n\n\
                        case \"$(set -o)\" in *\"pipefail\"*) set -o pipefail;; esac; set -o errexit\n\
                        set +o noclobber\n\
                        (trap 'exit 1' TERM; eval $'echo hi\\n') < /dev/null\n\
                        exit 0\n";
        assert_eq!(script, expected);
    }

    #[test]
    fn build_script_body_shape() {
        let dirs = dirs();
        let variables = vec![Variable::new("A", "x y")];
        let context = ScriptContext {
            variables: &variables,
            dirs: &dirs,
            hostname: None,
            shell: "bash",
        };
        let body = text(&stage_body(
            "build_script",
            &["make all".to_string()],
            &context,
        ));
        let expected = "export A=$'x y'\n\
                        export GITLAB_ENV=/builds/group/project.tmp/gitlab_runner_env\n\
                        mkdir -p \"/builds/group/project.tmp\"\n\
                        touch \"/builds/group/project.tmp/gitlab_runner_env\"\n\
                        while read -r line; do export \"$line\"; done < \"/builds/group/project.tmp/gitlab_runner_env\"\n\
                        cd /builds/group/project\n\
                        echo $'\\x1b[32;1m$ make all\\x1b[0;m'\n\
                        make all\n";
        assert_eq!(body, expected);
    }

    #[test]
    fn file_variable_is_written_with_printf() {
        let dirs = dirs();
        let variables = vec![Variable::new("CERT", "a'b").file()];
        let context = ScriptContext {
            variables: &variables,
            dirs: &dirs,
            hostname: None,
            shell: "bash",
        };
        let body = text(&stage_body("build_script", &[], &context));
        assert!(body.starts_with(
            "mkdir -p \"/builds/group/project.tmp\"\n\
             printf '%s' $'a\\'b' > \"/builds/group/project.tmp/CERT\"\n\
             export CERT=\"/builds/group/project.tmp/CERT\"\n"
        ));
    }

    #[test]
    fn prepare_script_has_banner_and_no_exports() {
        let dirs = dirs();
        let variables = vec![Variable::new("A", "1")];
        let context = ScriptContext {
            variables: &variables,
            dirs: &dirs,
            hostname: Some("vm-1"),
            shell: "bash",
        };
        let body = text(&stage_body("prepare_script", &[], &context));
        assert_eq!(
            body,
            "echo \"Running on $(hostname) via vm-1...\"\n\
             rm -f /builds/group/project.tmp/gitlab_runner_env\n\
             rm -f /builds/group/project.tmp/masking.db\n"
        );
    }

    #[test]
    fn multi_line_and_empty_commands() {
        let dirs = dirs();
        let context = ScriptContext {
            variables: &[],
            dirs: &dirs,
            hostname: None,
            shell: "bash",
        };
        let commands = vec!["  ".to_string(), "if true; then\n  echo y\nfi".to_string()];
        let body = text(&stage_body("step_x", &commands, &context));
        assert!(body.ends_with(
            "echo\n\n\
             echo $'\\x1b[32;1m$ if true; then # collapsed multi-line command\\x1b[0;m'\n\
             if true; then\n  echo y\nfi\n"
        ));
    }
}
