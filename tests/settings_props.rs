//! Property: nothing in a config file or the environment makes loading or building panic, and
//! every problem says where it is: a key for each value problem, the variable for a malformed
//! variable.

use std::time::Duration;

use loopjob::settings::{LEADERSHIP_KEYS, Origin, SCHEDULE_KEYS};
use loopjob::{BuildProblem, Host, Schedule, Settings};
use proptest::prelude::*;
use toml::{Table, Value};

fn key() -> impl Strategy<Value = String> {
    let known: Vec<String> = SCHEDULE_KEYS
        .iter()
        .chain(&LEADERSHIP_KEYS)
        .chain(&["node_id", "group", "store", "shutdown_grace"])
        .map(|key| (*key).to_owned())
        .collect();
    prop_oneof![proptest::sample::select(known), "[a-z_]{1,10}"]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        proptest::sample::select(vec![
            "10s",
            "0s",
            "1h 30m",
            "none",
            "cluster",
            "partitioned",
            "fixed_delay",
            "delay",
            "true",
            "12",
            "memory",
            "sqlite://x.db",
            "",
            "-5s",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..3)
                .prop_map(|map| Value::Table(map.into_iter().collect())),
        ]
    })
}

fn section() -> impl Strategy<Value = Value> {
    prop_oneof![
        9 => prop::collection::btree_map(key(), value(), 0..6)
            .prop_map(|map| Value::Table(map.into_iter().collect())),
        1 => scalar(),
    ]
}

fn document() -> impl Strategy<Value = Table> {
    let job = proptest::sample::select(vec!["alpha", "beta", "gamma"]);
    (
        prop::collection::btree_map(job, section(), 0..3),
        proptest::option::of(section()),
        proptest::option::of(("[a-z]{1,6}", section())),
    )
        .prop_map(|(jobs, host, extra)| {
            let mut doc = Table::new();
            let jobs: Table = jobs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            doc.insert("jobs".into(), Value::Table(jobs));
            if let Some(host) = host {
                doc.insert("loopjob".into(), host);
            }
            if let Some((name, value)) = extra {
                doc.insert(name, value);
            }
            doc
        })
}

fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        ("(ALPHA|BETA|GAMMA)", key())
            .prop_map(|(job, key)| format!("LOOPJOB__JOBS__{job}__{}", key.to_uppercase())),
        key().prop_map(|key| format!("LOOPJOB__{}", key.to_uppercase())),
        "LOOPJOB__[A-Z_]{0,12}",
    ];
    let value = prop_oneof![
        proptest::sample::select(vec!["5s", "10", "true", "cluster", "0", "none", "x"])
            .prop_map(str::to_owned),
        ".{0,10}",
    ];
    prop::collection::vec((name, value), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn loading_and_building_never_panic_and_every_problem_is_located(doc in document(), env in env()) {
        let text = toml::to_string(&doc).expect("a table serializes");
        let loaded = Settings::loader().toml("p.toml", text).env_vars(env).load();
        let settings = match loaded {
            Ok(settings) => settings,
            Err(error) => {
                for problem in error.problems() {
                    // The TOML is well-formed, so only a variable can fail to load, by name.
                    let named = matches!(&problem.origin, Origin::Env { var } if var.starts_with("LOOPJOB__"));
                    prop_assert!(named, "{problem}");
                }
                return Ok(());
            }
        };
        let _ = settings.host();
        let built = Host::builder()
            .settings(settings)
            .job_fn("alpha", Schedule::every(Duration::from_secs(60)), |_| async { Ok(()) })
            .job_fn("beta", Schedule::every(Duration::from_secs(60)), |_| async { Ok(()) })
            .build();
        if let Err(error) = built {
            for problem in error.problems() {
                let problem = match problem {
                    BuildProblem::Settings(problem) => problem,
                    // A guarded job (leader = cluster, …) needs a store that no source gave.
                    BuildProblem::MissingStore { .. } => continue,
                    other => {
                        prop_assert!(false, "only settings can be wrong here: {other}");
                        continue;
                    }
                };
                prop_assert!(!problem.key.is_empty(), "{problem}");
                prop_assert!(!problem.message.is_empty(), "{problem}");
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        if let Ok(settings) = Settings::from_toml_str(&text) {
            let _ = settings.host();
        }
    }
}
