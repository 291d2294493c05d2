//! Running the binary and reading what it printed.

use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs a command, failing the test if it outlives `limit`. Output is read
/// while it runs, so a chatty process never blocks on a full pipe.
pub fn run_with_limit(command: Command, limit: Duration) -> Output {
    let mut host = Host::spawn(command);
    match host.wait_for_exit(limit) {
        Some(output) => output,
        None => panic!(
            "audit-archiver did not exit within {limit:?}; stderr:\n{}",
            stderr(&host.kill9())
        ),
    }
}

/// Runs the binary with `args` and no endpoint: what needs no S3 or SQS
/// (`--version`, `completions`, `route`, flag errors).
pub fn run_offline(args: &[&str]) -> Output {
    let mut command = Command::new(crate::binary());
    command.args(args);
    run_with_limit(command, Duration::from_secs(60))
}

/// Runs the binary with `args`, writing `stdin` to it (`route --event -`).
pub fn run_with_stdin(args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(crate::binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn audit-archiver");
    let mut input = child.stdin.take().expect("a piped stdin");
    let stdin = stdin.to_string();
    // Written on a thread: a large input must not block on a full stdout.
    let writer = std::thread::spawn(move || input.write_all(stdin.as_bytes()));
    let output = child.wait_with_output().expect("audit-archiver runs");
    match writer.join().expect("the stdin writer") {
        // Exited before reading it all (a refused flag): the output says why.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            panic!("cannot write stdin: {error}")
        }
        _ => output,
    }
}

/// Reads a child's pipe to the end on a thread of its own.
pub fn collect_pipe(pipe: Option<impl std::io::Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        buffer
    })
}

/// A running `audit-archiver` whose output is collected in the background;
/// killed on drop.
pub struct Host {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Host {
    /// Spawns `command` (from [`crate::Moto::command`]) with piped output.
    pub fn spawn(mut command: Command) -> Host {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn audit-archiver");
        let stdout = Some(collect_pipe(child.stdout.take()));
        let stderr = Some(collect_pipe(child.stderr.take()));
        Host {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, then collect.
    pub fn kill9(mut self) -> Output {
        let _ = self.child.kill();
        self.collect()
    }

    /// Sends SIGTERM (without waiting).
    pub fn term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the exit; on time, the output. Otherwise it
    /// is SIGKILLed and the output is the error.
    pub fn wait(mut self, limit: Duration) -> Result<Output, Output> {
        match self.wait_for_exit(limit) {
            Some(output) => Ok(output),
            None => Err(self.kill9()),
        }
    }

    /// The output if it exits within `limit`; still running otherwise.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<Output> {
        let deadline = Instant::now() + limit;
        while self.running() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(self.collect())
    }

    fn collect(&mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap(),
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The stderr of a run, for assertion messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code; panics (with stderr) when a signal ended the process.
pub fn exit_code(output: &Output) -> i32 {
    output
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal; stderr:\n{}", stderr(output)))
}

/// The JSON summary `run` prints as its last stdout line when it ends.
pub fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary; stderr:\n{}", stderr(output)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary {line:?}: {e}"))
}

/// The summary, if the run printed one (a killed run does not).
pub fn summary_of(output: &Output) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
}

/// A summary counter, 0 when absent.
pub fn counter(summary: &Option<serde_json::Value>, name: &str) -> u64 {
    summary.as_ref().and_then(|s| s[name].as_u64()).unwrap_or(0)
}

/// The whole stdout as one JSON document (`verify --format json`, ...).
pub fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(output)
        )
    })
}
