use std::sync::Arc;

use loopjob::{JobContext, JobError, LoopJob};

struct Pool;

#[derive(LoopJob)]
#[loopjob(interval = "10s", discover)]
struct Cleanup {
    pool: Pool,
    shared: Arc<Pool>,
    runs: u64,
}

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        let _ = (&self.pool, &self.shared, self.runs);
        Ok(())
    }
}

fn main() {}
