use loopjob::LoopJob;

#[derive(LoopJob)]
#[loopjob(interval = "10s")]
struct Cleanup;

// No `impl Cleanup { async fn execute(&self, ctx: &JobContext) -> … }`.

fn main() {}
