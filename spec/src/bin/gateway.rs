//! `gateway` binary (see spec/README.md): the Kong stand-in.

use clap::Parser;
use cloudrun_spec::gateway::{log, run, Opts};

fn main() {
    let opts = Opts::parse();
    if let Err(e) = run(opts) {
        log::emit("emerg", 0, None, &format!("{e:#}"));
        eprintln!("gateway: {e:#}");
        std::process::exit(1);
    }
}
