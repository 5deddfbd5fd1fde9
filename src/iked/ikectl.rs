//! ikectl(8): `ikectl [-q] [-s socket] command [arg ...]` sends one command to iked's
//! control socket and prints the answer. `load FILE` reads the file here (ikectl runs as
//! root; the daemon's unprivileged process could not) and sends its text along. The
//! certificate authority commands (`ca ...`) say that openssl(1) is the tool for that.

#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use crate::args::UsageError;

pub const USAGE: &str = "usage: ikectl [-q] [-s socket] command [arg ...]";

/// The control commands and how many words follow each (min, max).
const COMMANDS: &[(&str, usize, usize)] = &[
    ("active", 0, 0),
    ("passive", 0, 0),
    ("couple", 0, 0),
    ("decouple", 0, 0),
    ("load", 1, 1),
    ("log", 1, 1),
    ("monitor", 0, 0),
    ("reload", 0, 0),
    ("reset", 1, 2),
    ("show", 1, 1),
];

/// Checks a command line against ikectl(8)'s grammar; returns it as one line.
pub fn command_line(words: &[String]) -> Result<String, UsageError> {
    let Some(cmd) = words.first() else {
        return Err(UsageError("no command".into()));
    };
    if cmd == "ca" {
        return Err(UsageError(
            "ca: this ikectl builds no certificate authority; openssl(1) is the tool for \
             that (openssl req -x509 for the CA, openssl req and openssl x509 -req for \
             certificates, openssl ca -gencrl for CRLs), then copy the CA to /etc/iked/ca/, \
             certificates to /etc/iked/certs/, the key to /etc/iked/private/local.key \
             and CRLs to /etc/iked/crls/"
                .into(),
        ));
    }
    let &(_, min, max) = COMMANDS
        .iter()
        .find(|(c, _, _)| c == cmd)
        .ok_or_else(|| UsageError(format!("unknown command '{cmd}'")))?;
    let args = &words[1..];
    if args.len() < min || args.len() > max {
        return Err(UsageError(format!("{cmd}: wrong number of arguments")));
    }
    let ok = match (cmd.as_str(), args.first().map(String::as_str), args.len()) {
        ("show", Some(w), _) => ["sa", "flows", "stats", "certstore"].contains(&w),
        ("log", Some(w), _) => ["verbose", "brief"].contains(&w),
        ("reset", Some("id"), 2) => true,
        ("reset", Some(w), 1) => ["all", "policy", "sa", "user", "ca"].contains(&w),
        ("reset", _, _) => false,
        _ => true,
    };
    if !ok {
        return Err(UsageError(format!("{}: unknown argument", words.join(" "))));
    }
    if args.iter().any(|a| a.contains('\n')) {
        return Err(UsageError("arguments may not contain newlines".into()));
    }
    if args.iter().any(|a| a.trim().is_empty()) {
        return Err(UsageError(format!("{cmd}: empty argument")));
    }
    Ok(words.join(" "))
}

/// ikectl(8): returns the exit status.
pub fn main(args: Vec<String>) -> i32 {
    let parsed = options(&args).and_then(|(socket, i)| Ok((socket, command_line(&args[i..])?)));
    let (socket, line) = match parsed {
        Ok(x) => x,
        Err(e) => {
            eprintln!("ikectl: {e}");
            eprintln!("{USAGE}");
            return 1;
        }
    };
    let mut request = format!("{line}\n").into_bytes();
    if let Some(path) = line.strip_prefix("load ") {
        match std::fs::read(path) {
            Ok(text) => request.extend_from_slice(&text),
            Err(e) => {
                eprintln!("ikectl: {path}: {e}");
                return 1;
            }
        }
    }
    if line == "monitor" {
        return monitor(&socket, &request);
    }
    match exchange(&socket, &request) {
        Ok(answer) => {
            let (status, text) = answer.split_once('\n').unwrap_or((&answer, ""));
            print!("{text}");
            if status == "ok" {
                0
            } else {
                eprintln!(
                    "ikectl: {}",
                    status.strip_prefix("error: ").unwrap_or(status)
                );
                1
            }
        }
        Err(e) => {
            eprintln!("ikectl: {socket}: {e}");
            1
        }
    }
}

/// `-q` and `-s socket` (bundled or not) before the command: the socket and where the
/// command starts.
fn options(args: &[String]) -> Result<(String, usize), UsageError> {
    let mut socket = super::DEFAULT_SOCKET.to_owned();
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') && args[i] != "-" {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        for (k, f) in a[1..].char_indices() {
            match f {
                'q' => {}
                's' => {
                    let rest = &a[1 + k + 1..];
                    socket = if !rest.is_empty() {
                        rest.to_owned()
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(UsageError("option requires an argument -- s".into()));
                    };
                    break;
                }
                _ => return Err(UsageError(format!("unknown option -- {f}"))),
            }
        }
    }
    Ok((socket, i))
}

/// `ikectl monitor`: as ikectl(8), waits for the socket to appear (retrying while it is
/// missing or refuses), then prints the daemon's events as they come, until it closes
/// the connection ("pipe closed", status 1, as ikectl's).
fn monitor(socket: &str, request: &[u8]) -> i32 {
    use std::io::ErrorKind::{ConnectionRefused, NotFound};
    let mut s = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if matches!(e.kind(), NotFound | ConnectionRefused) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                eprintln!("ikectl: connect: {socket}: {e}");
                return 1;
            }
        }
    };
    if let Err(e) = s
        .write_all(request)
        .and_then(|_| s.shutdown(std::net::Shutdown::Write))
    {
        eprintln!("ikectl: write error: {e}");
        return 1;
    }
    // The first line says whether the daemon took us; then the events, copied as read.
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    let mut out = std::io::stdout();
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("ikectl: read error: {e}");
                return 1;
            }
        };
        let mut data = &buf[..n];
        if first.last() != Some(&b'\n') {
            let k = data
                .iter()
                .position(|&b| b == b'\n')
                .map_or(data.len(), |k| k + 1);
            first.extend_from_slice(&data[..k]);
            data = &data[k..];
            if first.last() == Some(&b'\n') && first != b"ok\n" {
                let e = String::from_utf8_lossy(&first);
                let e = e.trim_end();
                eprintln!("ikectl: {}", e.strip_prefix("error: ").unwrap_or(e));
                return 1;
            }
        }
        if out.write_all(data).and_then(|_| out.flush()).is_err() {
            return 1;
        }
    }
    eprintln!("ikectl: pipe closed");
    1
}

fn exchange(socket: &str, request: &[u8]) -> std::io::Result<String> {
    let mut s = UnixStream::connect(socket)?;
    s.write_all(request)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_before_the_command() {
        assert_eq!(
            options(&w("-s /tmp/x show sa")).unwrap(),
            ("/tmp/x".into(), 2)
        );
        assert_eq!(
            options(&w("-qs/tmp/x show sa")).unwrap(),
            ("/tmp/x".into(), 1)
        );
        assert_eq!(
            options(&w("show sa")).unwrap(),
            (crate::iked::DEFAULT_SOCKET.into(), 0)
        );
        assert!(options(&w("-z show")).is_err());
        assert!(options(&w("-s")).is_err());
    }

    #[test]
    fn grammar() {
        assert_eq!(command_line(&w("show sa")).unwrap(), "show sa");
        assert_eq!(
            command_line(&w("reset id foo@example.com")).unwrap(),
            "reset id foo@example.com"
        );
        assert!(command_line(&w("reset id")).is_err());
        assert!(command_line(&w("show")).is_err());
        assert!(command_line(&w("show everything")).is_err());
        assert!(command_line(&w("frobnicate")).is_err());
        assert!(command_line(&w("ca foo create")).is_err());
        assert!(command_line(&w("load /etc/iked.conf")).is_ok());
        assert!(command_line(&[]).is_err());
    }
}
