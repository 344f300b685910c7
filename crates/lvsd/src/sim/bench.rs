//! A host-side harness for a cold `lvsd apply` of a large table (issue 29): the steps before
//! the first write to the kernel are in series with it, so each is timed on its own. Run with
//! `cargo test --release -p lvsd --bin lvsd sim::bench -- --ignored --nocapture`.
//! The simulated kernel applies requests in-process, so its "write" time is not the kernel's:
//! it is printed apart, and the engine's own share is the pass minus it.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::world::{SimIo, World};
use crate::engine::{Engine, Mutation, PassSpec};

/// The file `tests/bench/lvsd-bench.sh`'s `gen_yaml` writes: `n` services of `r` reals each.
fn gen_yaml(n: usize, r: usize) -> String {
    let mut out = String::with_capacity(n * (60 + r * 28));
    out.push_str("services:\n");
    for i in 0..n {
        let _ = write!(
            out,
            "  - address: 10.1.{}.{}:80\n    scheduler: wlc\n    reals:\n",
            i / 250,
            i % 250 + 1
        );
        for j in 1..=r {
            let _ = writeln!(out, "      - address: 10.2.{}.{}", j / 250, j % 250 + 1);
        }
    }
    out
}

/// The best of `runs` timings of `f` (and its last result).
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("at least one run"))
}

#[test]
#[ignore = "a timing harness, not a test: run it in release with --ignored --nocapture"]
fn cold_apply_10000_by_10() {
    let (n, r) = (10_000, 10);
    let runs = 5;
    let yaml = gen_yaml(n, r);
    let dir = std::env::temp_dir().join(format!("lvsd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("cfg.yaml");
    std::fs::write(&file, &yaml).expect("write the config");
    println!("config: {n} services x {r} reals, {} bytes", yaml.len());

    let (t_parse, cfg) = best(2 * runs, || config::load(&file).expect("valid"));
    println!("read and validated the config: {t_parse:?}");
    let (t_one, one) = best(2 * runs, || {
        config::parse_sequentially(&yaml, "cfg.yaml").expect("valid")
    });
    assert!(one == cfg);
    println!("... the same on one thread: {t_one:?}");

    let opts = plan::Options {
        exclusive: false,
        now: 1_700_000_000,
    };
    let empty = plan::Observed::default();
    let none = plan::Owned::default();
    let (t_plan, p) = best(runs, || plan::plan(&cfg.desired, &empty, &none, opts));
    println!("planned {} operations: {t_plan:?}", p.ops.len());

    let (t_render, text) = best(runs, || crate::state_file::render(&p.owned));
    println!("rendered the intent ({} bytes): {t_render:?}", text.len());
    let (t_write, ()) = best(runs, || {
        crate::state_file::write_atomic(&dir, "owned", &text).expect("saved")
    });
    println!("saved the intent durably (write, fsync, rename): {t_write:?}");
    let (t_save, ()) = best(runs, || {
        crate::state_file::save(&dir, &p.owned).expect("saved")
    });
    println!("recorded the intent (render + durable save): {t_save:?}");

    let (t_req, requests) = best(runs, || {
        p.ops.iter().map(plan::Op::to_request).collect::<Vec<_>>()
    });
    println!("operations to requests: {t_req:?}");
    let (t_sim, ()) = best(runs, || {
        let mut w = World::new(1_700_000_000, 10);
        for rq in &requests {
            w.apply(rq).expect("the simulated kernel takes it");
        }
    });
    println!("simulated kernel applying them (not the kernel's cost): {t_sim:?}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let unable = BTreeSet::new();
    let (t_pass, applied) = best(runs, || {
        let world = Rc::new(RefCell::new(World::new(1_700_000_000, 10)));
        let mut engine = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
        let pass =
            rt.block_on(engine.converge(&cfg, &cfg.desired, &PassSpec::everything(false, &unable)));
        pass.table.done().map_or(0, |t| t.applied.len())
    });
    println!(
        "cold pass against the simulated kernel: {t_pass:?} ({applied} applied; engine's own \
         share without the simulated writes about {:?})",
        t_pass.saturating_sub(t_sim)
    );
    // One more pass with the engine's own timing log (`lvsd::timing`), step by step.
    let log = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("lvsd::timing=debug"))
        .with_writer(std::io::stdout)
        .without_time()
        .with_target(false)
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(log, || {
        let world = Rc::new(RefCell::new(World::new(1_700_000_000, 10)));
        let mut engine = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
        rt.block_on(engine.converge(&cfg, &cfg.desired, &PassSpec::everything(false, &unable)))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A cold pass of `cfg` into an empty simulated kernel (`prepare` sets the world up first) by
/// an engine carrying `mutation`: the world, the engine and what the pass did.
fn cold_pass(
    cfg: &config::Config,
    mutation: Mutation,
    prepare: impl FnOnce(&mut World),
) -> (Rc<RefCell<World>>, Engine<SimIo>, crate::engine::Pass) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let world = Rc::new(RefCell::new(World::new(1_700_000_000, 10)));
    prepare(&mut world.borrow_mut());
    let mut engine = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
    engine.mutation = mutation;
    let unable = BTreeSet::new();
    let pass =
        rt.block_on(engine.converge(cfg, &cfg.desired, &PassSpec::everything(false, &unable)));
    (world, engine, pass)
}

/// The intent is durable before the first write, whatever the size of the pass: with the disk
/// refusing the save, a cold apply of a large table writes nothing to the kernel and says why;
/// an engine that skips the intent (the mutation) does write, so the test can fail.
#[test]
fn a_cold_apply_whose_intent_cannot_be_saved_writes_nothing() {
    let cfg = config::parse(&gen_yaml(300, 3), "cfg.yaml").expect("valid");
    for mutation in [Mutation::None, Mutation::SkipIntent] {
        let (world, _, pass) = cold_pass(&cfg, mutation, |w| w.save_fails = true);
        let w = world.borrow();
        if mutation == Mutation::SkipIntent {
            assert!(
                !w.writes.is_empty(),
                "the mutation writes without an intent"
            );
            continue;
        }
        let e = pass.table.error().map(|e| format!("{e:#}"));
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("the disk refused the save")),
            "{e:?}"
        );
        assert!(
            w.writes.is_empty(),
            "{} writes reached the kernel",
            w.writes.len()
        );
        assert!(w.services.is_empty());
        assert!(w.owned.is_none());
    }
}

/// A pass too large to read back works out the table it leaves beside its writes (on another
/// thread while the kernel takes them): that table, which the next small edit starts from, is
/// the kernel's. The mutation that leaves one write out of it is caught.
#[test]
fn the_table_a_large_pass_leaves_is_the_kernels() {
    let cfg = config::parse(&gen_yaml(300, 3), "cfg.yaml").expect("valid");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for mutation in [Mutation::None, Mutation::AheadMissesOne] {
        let (world, engine, pass) = cold_pass(&cfg, mutation, |_| {});
        assert_eq!(pass.table.done().map(|t| t.applied.len()), Some(1_200));
        let kept = engine.kept_table().expect("a table kept").clone();
        let mut fresh = Engine::with_io(SimIo(world.clone()), PathBuf::from("/sim"), false);
        let kernel = rt.block_on(fresh.observe()).expect("read");
        assert_eq!(kernel.services.len(), 300);
        if mutation == Mutation::None {
            assert!(kept == kernel, "the kept table is not the kernel's");
        } else {
            assert!(kept != kernel, "the mutation went unseen");
        }
    }
}
