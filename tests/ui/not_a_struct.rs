use loopjob::LoopJob;

#[derive(LoopJob)]
#[loopjob(interval = "10s")]
enum Cleanup {
    Tokens,
    Sessions,
}

fn main() {}
