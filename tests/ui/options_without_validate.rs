use loopjob::{JobContext, JobError, LoopJob};

#[derive(serde::Deserialize)]
struct CleanupOptions {
    batch: u32,
}

#[derive(LoopJob)]
#[loopjob(interval = "10s", options = CleanupOptions, discover)]
struct Cleanup {
    options: CleanupOptions,
}

impl Cleanup {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        let _ = self.options.batch;
        Ok(())
    }
}

fn main() {}
