use loopjob::{JobContext, JobError, LoopJob};

#[derive(LoopJob)]
#[loopjob(interval = "10s", leader = "cluster")]
struct Cleanup;

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
