use loopjob::{JobContext, JobError, LoopJob};

#[derive(LoopJob)]
#[loopjob(interval = "10 parsecs")]
struct Cleanup;

#[derive(LoopJob)]
#[loopjob(interval = "10s", initial_delay = 30)]
struct Purge;

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

impl Purge {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
