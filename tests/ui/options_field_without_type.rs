use loopjob::{JobContext, JobError, LoopJob};

#[derive(Default)]
struct KeepAliveOptions {
    change_state_after_secs: u64,
}

#[derive(LoopJob)]
#[loopjob(interval = "10s", discover)]
struct PcKeepAlive {
    #[loopjob(options)]
    options: KeepAliveOptions,
}

impl PcKeepAlive {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        let _ = self.options.change_state_after_secs;
        Ok(())
    }
}

fn main() {}
