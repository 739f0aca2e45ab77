use loopjob::{JobContext, JobError, LoopJob};

// Names are read in any case ("Global" is fine); a misspelled one gets a suggestion.
#[derive(LoopJob)]
#[loopjob(interval = "10s", leader = "Globl")]
struct Report;

impl Report {
    async fn execute(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

fn main() {}
