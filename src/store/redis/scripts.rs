//! The server-side scripts, one per store method: each call is one `EVALSHA` (the `redis` crate
//! loads a script with `SCRIPT LOAD` when the server does not know it yet, also after a
//! restart). Every script starts with `lib.lua`, the helpers they share.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub(super) static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(concat!(include_str!("lib.lua"), include_str!($file))));
    };
}

script!(ACQUIRE, "acquire.lua");
script!(RENEW, "renew.lua");
script!(RELEASE, "release.lua");
script!(MEMBERS, "members.lua");
script!(LIST, "list.lua");
script!(SCHEDULES, "schedules.lua");
script!(PLAN, "plan.lua");
script!(START_RUNS, "start_runs.lua");
script!(END_RUNS, "end_runs.lua");
script!(COMMAND, "command.lua");
script!(HISTORY, "history.lua");
