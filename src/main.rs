//! isakmpd(8): parse the command line and run the daemon.

fn main() {
    let opts = match isakmpd::args::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("isakmpd: {e}");
            eprintln!("{}", isakmpd::args::USAGE);
            std::process::exit(1);
        }
    };
    std::process::exit(isakmpd::daemon::run(opts));
}
