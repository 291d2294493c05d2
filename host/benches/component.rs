//! What routing costs: natively (`audit_archiver_transform::Router`) against
//! through the sandboxed component (`RouterComponent` → `RouterInstance`),
//! one message per call and in batches (contract 1.0's `route-batch` and
//! 1.1's `route-queue` side by side), with and without the body crossing
//! the boundary; and what a start-up costs, compiling or from the cache.
//!
//! Run: `cargo bench -p audit-archiver --bench component`
//! (CI: `cargo bench -p audit-archiver --bench component -- --test`, one
//! iteration of each). Results are per message (`Throughput::Elements`).
//!
//! `BENCH_COMPONENT=PATH` routes with the component at PATH instead of the
//! embedded one. The clock is wall time by default. `BENCH_CLOCK=cpu` measures the
//! benchmark thread's own CPU time instead (`CLOCK_THREAD_CPUTIME_ID`): on a
//! machine shared with other work, wall time also counts the time the thread
//! waited for a core, CPU time does not.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use audit_archiver::route::{ComponentSource, RouterComponent, SandboxLimits, EMBEDDED_COMPONENT};
use audit_archiver_transform::{Message, Router, Settings, TimeSource};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkId, Criterion, Throughput};

const QUEUE: &str =
    "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-prismacloud-auditlog.fifo";

/// A Prisma Cloud audit record, as documented (~330 bytes).
fn body(n: usize) -> String {
    format!(
        r#"{{"timestamp":{},"user":"alice@example.com","ipAddress":"203.0.113.7","resourceType":"Account Group","resourceName":"TEST-{n}","actionType":"CREATE","action":"'alice@example.com'(with role 'System Admin':'System Admin') created the account group.","result":"Successful"}}"#,
        1_750_991_540_913u64 + n as u64
    )
}

struct Input {
    ids: Vec<String>,
    bodies: Vec<String>,
}

impl Input {
    fn new(n: usize) -> Self {
        Input {
            ids: (0..n)
                .map(|i| format!("3f6c1b2e-8d4a-4c1e-9a7b-{i:012}"))
                .collect(),
            bodies: (0..n).map(body).collect(),
        }
    }

    /// The messages as the host builds them: with the body only for `event`.
    fn messages(&self, with_body: bool) -> Vec<Message<'_>> {
        self.ids
            .iter()
            .zip(&self.bodies)
            .enumerate()
            .map(|(i, (id, body))| Message {
                message_id: id,
                queue: QUEUE,
                body: if with_body { body } else { "" },
                first_receive_ms: Some(1_750_991_540_913 + i as u64),
                sent_ms: Some(1_750_991_540_000 + i as u64),
            })
            .collect()
    }
}

/// `BENCH_COMPONENT=PATH` benchmarks another component than the embedded one
/// (for example the same routing built another way).
fn bench_component() -> Option<std::path::PathBuf> {
    std::env::var_os("BENCH_COMPONENT").map(Into::into)
}

/// `no-body`: time source `first-receive`, empty body (what `run` sends by
/// default). `body`: time source `event`, the body crosses and is parsed.
fn cases() -> [(&'static str, Settings, bool); 2] {
    let event = Settings {
        time_source: TimeSource::Event,
        ..Settings::default()
    };
    [
        ("no-body", Settings::default(), false),
        ("body", event, true),
    ]
}

fn routing<M: Measurement>(c: &mut Criterion<M>) {
    let input = Input::new(1000);
    for (case, settings, with_body) in cases() {
        let messages = input.messages(with_body);
        let native = Router::new(&settings).unwrap();
        let component = RouterComponent::load(
            ComponentSource::file_or_embedded(bench_component().as_deref()),
            &settings,
            SandboxLimits::default(),
            None,
        )
        .unwrap();
        let mut instance = component.instance().unwrap();
        if !component.has_route_queue() {
            eprintln!(
                "{}: no route-queue (a 1.0 component): component/route-queue measures route-batch",
                component.origin()
            );
        }

        let mut group = c.benchmark_group(format!("route/{case}"));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));

        group.throughput(Throughput::Elements(1));
        // What the guest redoes on every call: parse and check the settings.
        group.bench_function("native/router-new", |b| {
            b.iter(|| black_box(Router::new(black_box(&settings)).unwrap()))
        });
        group.bench_function("native/single", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % messages.len();
                black_box(native.route(black_box(&messages[i])).unwrap())
            })
        });
        group.bench_function("component/single", |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % messages.len();
                black_box(instance.route(black_box(&messages[i])).unwrap())
            })
        });
        // A batch of 1 shows the fixed cost of a call.
        for size in [1, 10, 100, 1000] {
            let batch = &messages[..size];
            group.throughput(Throughput::Elements(size as u64));
            group.bench_with_input(BenchmarkId::new("native/batch", size), batch, |b, batch| {
                b.iter(|| black_box(native.route_batch(black_box(batch))))
            });
            // Contract 1.0's `route-batch`: strings per message both ways.
            group.bench_with_input(
                BenchmarkId::new("component/route-batch", size),
                batch,
                |b, batch| b.iter(|| black_box(instance.route_batch_1_0(black_box(batch)))),
            );
            // What `run` uses: 1.1's `route-queue` (packed strings) when the
            // component has it (else the same as the line above).
            group.bench_with_input(
                BenchmarkId::new("component/route-queue", size),
                batch,
                |b, batch| b.iter(|| black_box(instance.route_batch(black_box(batch)))),
            );
        }
        group.finish();
    }
}

fn startup<M: Measurement>(c: &mut Criterion<M>) {
    let settings = Settings::default();
    let limits = SandboxLimits::default();
    let dir =
        std::env::temp_dir().join(format!("audit-archiver-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut group = c.benchmark_group("startup");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    // Embedded bytes → ready instance (compile, link, validate settings, instantiate).
    group.bench_function("compile", |b| {
        b.iter(|| {
            let component =
                RouterComponent::load(ComponentSource::Embedded, &settings, limits, None).unwrap();
            black_box(component.instance().unwrap());
        })
    });
    // The same from a warm cache (deserialize_file instead of compiling).
    RouterComponent::load(ComponentSource::Embedded, &settings, limits, Some(&dir)).unwrap();
    group.bench_function("cached", |b| {
        b.iter(|| {
            let component =
                RouterComponent::load(ComponentSource::Embedded, &settings, limits, Some(&dir))
                    .unwrap();
            black_box(component.instance().unwrap());
        })
    });
    // The parts: deserialize alone, and one more instance of a loaded component.
    let engine_probe =
        RouterComponent::load(ComponentSource::Embedded, &settings, limits, None).unwrap();
    group.bench_function("instance", |b| {
        b.iter(|| black_box(engine_probe.instance().unwrap()))
    });
    group.finish();
    report_cache_entry(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Prints the size of the cache entry next to the component's (once).
fn report_cache_entry(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            eprintln!(
                "cache entry {} : {size} bytes (component: {} bytes)",
                entry.file_name().to_string_lossy(),
                EMBEDDED_COMPONENT.len()
            );
        }
    }
}

/// The calling thread's CPU time, from `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`.
struct ThreadCpuTime;

/// `struct timespec` on 64-bit Linux.
#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, time: *mut Timespec) -> i32;
}

/// `CLOCK_THREAD_CPUTIME_ID` in `<time.h>` on Linux.
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

fn thread_cpu_time() -> Duration {
    let mut time = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable `struct timespec`; this clock
    // exists on every Linux since 2.6.12.
    let status = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) };
    assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as with wall time: reuse its formatting.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

fn run<M: Measurement>(mut criterion: Criterion<M>) {
    routing(&mut criterion);
    startup(&mut criterion);
    criterion.final_summary();
}

fn main() {
    match std::env::var("BENCH_CLOCK").as_deref() {
        Err(_) | Ok("wall") => run(Criterion::default().configure_from_args()),
        Ok("cpu") => run(Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args()),
        Ok(other) => {
            eprintln!("BENCH_CLOCK={other:?}: use `wall` (the default) or `cpu`");
            std::process::exit(2);
        }
    }
}
