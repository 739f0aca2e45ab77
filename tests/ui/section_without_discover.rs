use loopjob::{JobContext, JobError, LoopJob};

#[derive(LoopJob)]
#[loopjob(interval = "10s", section = "cleanup_v2")]
struct Cleanup;

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
