//! One binary, four programs: isakmpd(8), iked(8), ikectl(8) or ipsecctl(8) by the name
//! it is started under (a hard or symbolic link), or by a first argument `--iked` /
//! `--ikectl` / `--ipsecctl` for a binary that cannot be linked under another name.

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_owned())
        .unwrap_or_default();
    let mut rest = if args.is_empty() {
        Vec::new()
    } else {
        args.split_off(1)
    };
    let personality = match name.as_str() {
        "iked" => "iked",
        "ikectl" => "ikectl",
        "ipsecctl" => "ipsecctl",
        _ => match rest.first().map(String::as_str) {
            Some("--iked") => {
                rest.remove(0);
                "iked"
            }
            Some("--ikectl") => {
                rest.remove(0);
                "ikectl"
            }
            Some("--ipsecctl") => {
                rest.remove(0);
                "ipsecctl"
            }
            _ => "isakmpd",
        },
    };
    let status = match personality {
        "iked" => isakmpd::iked::main(rest),
        "ikectl" => isakmpd::iked::ikectl::main(rest),
        "ipsecctl" => isakmpd::ipsecctl::main(rest),
        _ => match isakmpd::args::parse(rest) {
            Ok(o) => isakmpd::daemon::run(o),
            Err(e) => {
                eprintln!("isakmpd: {e}");
                eprintln!("{}", isakmpd::args::USAGE);
                1
            }
        },
    };
    std::process::exit(status);
}
