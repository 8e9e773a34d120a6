//! Building fixture variants on demand.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard, OnceLock},
    time::SystemTime,
};

use fs2::FileExt;

/// Every variant [`fixture`] can build.
pub const VARIANTS: &[&str] = &[
    "c-O0",
    "c-O2",
    "c-nopie",
    "c-nodwarf",
    "rust-debug",
    "rust-release",
    "go",
    "go-noopt",
];

/// The demo's Go services, built like fixtures (start them with
/// [`crate::FixtureProcess::spawn_service`]).
pub const DEMO_SERVICES: &[&str] = &["demo-gateway", "demo-payments", "demo-worker"];

/// Fixture servers, built like fixtures; they print `ready ADDR`, so start them with
/// [`crate::FixtureProcess::spawn_service`]. `c-httpd` is `tests/fixtures/c/httpd.c`;
/// `c-redis-job` (`tests/fixtures/c/redis_job.c`) and `go-redis-job`
/// (`tests/fixtures/go/redisjob`) are Redis job workers (and, the C one, a producer).
pub const SERVER_FIXTURES: &[&str] = &["c-httpd", "c-redis-job", "go-redis-job"];

/// The binary's file name: the fixtures are all `orders`; servers and demo services carry
/// their own.
fn binary_name(variant: &str) -> &str {
    match variant {
        "demo-gateway" | "demo-payments" | "demo-worker" => variant,
        "c-httpd" => "httpd",
        "c-redis-job" => "redis_job",
        "go-redis-job" => "redisjob",
        _ => "orders",
    }
}

/// The source file of a fixture: `lang` is `c`, `rust` or `go`, `httpd` for the C
/// HTTP server, or `redis-job` for the C Redis worker.
pub fn fixture_source(lang: &str) -> PathBuf {
    let dir = fixtures_dir();
    match lang {
        "c" => dir.join("c/orders.c"),
        "httpd" => dir.join("c/httpd.c"),
        "redis-job" => dir.join("c/redis_job.c"),
        "rust" => dir.join("rust/orders.rs"),
        "go" => dir.join("go/orders/main.go"),
        other => {
            panic!("unknown fixture language {other:?}; expected c, rust, go, httpd or redis-job")
        }
    }
}

/// The path of the built `variant` (one of [`VARIANTS`]), building it first if it is
/// missing or older than its sources.
///
/// Safe to call from many test threads and processes at once. Panics with the missing
/// tool's name if a compiler is not installed.
pub fn fixture(variant: &str) -> PathBuf {
    if let Some(path) = built().get(variant) {
        return path.clone();
    }
    // Not under the memo lock, so other variants build meanwhile; the file lock in
    // `build` keeps two builds of one variant apart.
    let path = build(variant);
    built().insert(variant.to_string(), path.clone());
    path
}

/// Per-process memo of built variants: after the first call, no file lock and no stat.
fn built() -> MutexGuard<'static, HashMap<String, PathBuf>> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `tests/` in the workspace.
///
/// Found from the running test's `CARGO_MANIFEST_DIR` (cargo sets it when it runs tests
/// and benches) rather than this crate's compile-time one: a build cached in a target dir
/// that several checkouts share may have been compiled in another, now gone, and its
/// fixtures' DWARF would name sources there.
pub(crate) fn tests_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| {
            PathBuf::from(dir)
                .ancestors()
                .map(|d| d.join("tests"))
                .find(|t| t.join("fixtures").is_dir() && t.join("demo").is_dir())
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn fixtures_dir() -> PathBuf {
    tests_dir().join("fixtures")
}

/// Cargo's target dir: `CARGO_TARGET_DIR` when set (as `.ci/run` does), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_dir().join(dir)
            }
        }
        _ => workspace_dir().join("target"),
    }
}

fn workspace_dir() -> PathBuf {
    tests_dir()
        .parent()
        .expect("tests/ has a parent directory")
        .to_path_buf()
}

/// One step of a build: a program and its arguments.
struct Step {
    tool: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    dir: PathBuf,
}

/// What a variant is built from and how.
struct Recipe {
    sources: Vec<PathBuf>,
    steps: Vec<Step>,
}

fn recipe(variant: &str, out: &Path) -> Recipe {
    let out_s = out.to_string_lossy().into_owned();
    let dir = out.parent().expect("output has a parent").to_path_buf();
    let step = |tool: &str, args: &[&str]| Step {
        tool: tool.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        envs: Vec::new(),
        dir: dir.clone(),
    };
    match variant {
        "c-O0" | "c-O2" | "c-nopie" | "c-nodwarf" => {
            let src = fixture_source("c");
            let src_s = src.to_string_lossy().into_owned();
            let flags: &[&str] = match variant {
                "c-O0" => &["-g", "-O0"],
                "c-O2" => &["-g", "-O2"],
                "c-nopie" => &["-g", "-O0", "-no-pie", "-fno-pie"],
                _ => &["-O0"],
            };
            let mut args = flags.to_vec();
            args.extend(["-o", &out_s, &src_s]);
            let mut steps = vec![step("gcc", &args)];
            if variant == "c-nodwarf" {
                steps.push(step("strip", &["--strip-debug", &out_s]));
            }
            Recipe {
                sources: vec![src],
                steps,
            }
        }
        "c-httpd" | "c-redis-job" => {
            let src = fixture_source(if variant == "c-httpd" {
                "httpd"
            } else {
                "redis-job"
            });
            let src_s = src.to_string_lossy().into_owned();
            Recipe {
                sources: vec![src],
                steps: vec![step(
                    "gcc",
                    &["-g", "-O0", "-pthread", "-o", &out_s, &src_s],
                )],
            }
        }
        "rust-debug" | "rust-release" => {
            let src = fixture_source("rust");
            let src_s = src.to_string_lossy().into_owned();
            let opt: &[&str] = if variant == "rust-debug" {
                &["-C", "opt-level=0", "-g"]
            } else {
                &["-C", "opt-level=2", "-C", "debuginfo=2"]
            };
            let mut args = opt.to_vec();
            args.extend([
                "--crate-name",
                "orders",
                "--edition",
                "2021",
                "-o",
                &out_s,
                &src_s,
            ]);
            Recipe {
                sources: vec![src],
                steps: vec![step(&rustc(), &args)],
            }
        }
        "go" | "go-noopt" => {
            let noopt: &[&str] = if variant == "go-noopt" {
                &["-gcflags=all=-N -l"]
            } else {
                &[]
            };
            go_recipe(fixtures_dir().join("go/orders"), &out_s, noopt, step)
        }
        "go-redis-job" => go_recipe(fixtures_dir().join("go/redisjob"), &out_s, &[], step),
        "demo-gateway" | "demo-payments" | "demo-worker" => {
            let module = tests_dir().join("demo").join(&variant["demo-".len()..]);
            go_recipe(module, &out_s, &[], step)
        }
        other => panic!(
            "unknown fixture variant {other:?}; expected one of {VARIANTS:?}, \
             {SERVER_FIXTURES:?} or {DEMO_SERVICES:?}"
        ),
    }
}

/// `go build` of the module in `module` into `out`, offline and with its caches under the
/// target directory.
fn go_recipe(
    module: PathBuf,
    out: &str,
    extra: &[&str],
    step: impl Fn(&str, &[&str]) -> Step,
) -> Recipe {
    let mut args = vec!["build", "-buildvcs=false"];
    args.extend_from_slice(extra);
    args.extend(["-o", out, "."]);
    let cache = target_dir().join("fixtures/go-cache");
    let mut go_step = step(&go(), &args);
    go_step.dir = module.clone();
    go_step.envs = vec![
        ("GOFLAGS".into(), "-mod=mod".into()),
        ("GOPROXY".into(), "off".into()),
        ("GOTOOLCHAIN".into(), "local".into()),
        ("CGO_ENABLED".into(), "0".into()),
        (
            "GOCACHE".into(),
            cache.join("build").to_string_lossy().into_owned(),
        ),
        // Go refuses to run without a GOPATH, and HOME may be unset under CI.
        (
            "GOPATH".into(),
            cache.join("path").to_string_lossy().into_owned(),
        ),
    ];
    // Every .go file of the module: a fixture may span several.
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&module)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "go"))
                .collect()
        })
        .unwrap_or_default();
    sources.push(module.join("go.mod"));
    Recipe {
        sources,
        steps: vec![go_step],
    }
}

/// The Rust compiler for the Rust fixture: the one on PATH (rustup's), else Debian's.
fn rustc() -> String {
    find_tool("rustc", &["/usr/bin/rustc"])
}

/// Debian's golang-go puts `go` in /usr/lib/go/bin, and links it from /usr/bin.
fn go() -> String {
    find_tool("go", &["/usr/bin/go", "/usr/lib/go/bin/go"])
}

fn find_tool(name: &str, fallbacks: &[&str]) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    if on_path {
        return name.to_string();
    }
    fallbacks
        .iter()
        .find(|p| Path::new(p).is_file())
        .map_or_else(|| name.to_string(), |p| p.to_string())
}

/// Builds `variant` unless its binary is newer than its sources and was built with the
/// same command line.
pub(crate) fn build(variant: &str) -> PathBuf {
    let dir = target_dir().join("fixtures").join(variant);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let name = binary_name(variant);
    let out = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let stamped = recipe(variant, &out);
    let building = recipe(variant, &tmp);

    let lock_path = dir.join(".lock");
    let lock = fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    // Held until `lock` drops: other threads and processes wait, then find it built.
    lock.lock_exclusive()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));

    // The stamp records the command line, so a change of flags rebuilds too.
    let stamp_path = dir.join(format!("{name}.cmd"));
    let stamp = describe(&stamped);
    if is_fresh(&out, &stamped.sources)
        && fs::read_to_string(&stamp_path).ok() == Some(stamp.clone())
    {
        return out;
    }

    let _ = fs::remove_file(&tmp);
    for step in &building.steps {
        run_step(variant, step);
    }
    // Rename, never write in place: a test may still be running the old binary.
    fs::rename(&tmp, &out)
        .unwrap_or_else(|e| panic!("cannot rename {} to {}: {e}", tmp.display(), out.display()));
    fs::write(&stamp_path, stamp)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", stamp_path.display()));
    out
}

fn describe(recipe: &Recipe) -> String {
    recipe
        .steps
        .iter()
        .map(|s| {
            // The directory too: DWARF names the sources by path, and another checkout
            // sharing the target dir must not reuse a binary naming its own.
            let mut line = format!("cd {} && {}", s.dir.display(), s.tool);
            for a in &s.args {
                line.push(' ');
                line.push_str(a);
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_fresh(out: &Path, sources: &[PathBuf]) -> bool {
    let Ok(built) = fs::metadata(out).and_then(|m| m.modified()) else {
        return false;
    };
    sources.iter().all(|src| {
        let modified = fs::metadata(src)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::now());
        modified <= built
    })
}

fn run_step(variant: &str, step: &Step) {
    let mut cmd = Command::new(&step.tool);
    cmd.args(&step.args).current_dir(&step.dir);
    for (k, v) in &step.envs {
        cmd.env(k, v);
    }
    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "building fixture {variant} needs `{}`, which is not installed; \
             run `cargo xtask setup` as root to install it",
            tool_name(&step.tool)
        ),
        Err(e) => panic!(
            "building fixture {variant}: cannot run `{}`: {e}",
            step.tool
        ),
    };
    if !output.status.success() {
        panic!(
            "building fixture {variant} failed ({}): {} {}\n{}{}",
            output.status,
            step.tool,
            step.args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
}

fn tool_name(tool: &str) -> &str {
    Path::new(tool)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(tool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(
        expected = "needs `tracery-no-such-compiler`, which is not installed; run `cargo xtask setup`"
    )]
    fn a_missing_tool_names_itself_and_setup() {
        let step = Step {
            tool: "tracery-no-such-compiler".into(),
            args: Vec::new(),
            envs: Vec::new(),
            dir: std::env::temp_dir(),
        };
        run_step("c-O0", &step);
    }
}
