use loopjob::{JobContext, JobError, LoopJob};

#[derive(LoopJob)]
#[loopjob(intreval = "10s")]
struct Cleanup;

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
