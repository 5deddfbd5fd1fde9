//! The FIFO user interface of isakmpd(8) (ui.c).
//!
//! Commands are lines; the first character selects the command. [`parse_command`] is a pure
//! function from a line to a [`Command`] or a reason it is garbled; the event loop routes the
//! result. [`LineReader`] turns the non-blocking byte stream into lines with a fixed buffer:
//! an over-long line is dropped whole (with one warning), never grown without bound.
//!
//! Grammar (isakmpd(8), and ui.c for the details the manual leaves open):
//! `c name` · `C set [s]:t=v [force]` · `C add [s]:t=v` · `C rmv [s]:t=v` · `C rm [s]:t` ·
//! `C rms [s]` · `C get [s]:t` · `d cookies msgid|-` · `D class level` · `D A level` · `D T` ·
//! `M active|passive` · `p on[=path]` · `p off` · `Q` · `R` · `r` · `S` · `T` ·
//! `t [main|quick] name`. Values are single words, as ui.c reads them with `%s`.

#![forbid(unsafe_code)]

use std::fmt;
use std::os::fd::RawFd;

use crate::args::{is_run_path, parse_debug_class, parse_debug_level, DebugSelector};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfCmd {
    Set {
        section: String,
        tag: String,
        value: String,
        force: bool,
    },
    Add {
        section: String,
        tag: String,
        value: String,
    },
    Rmv {
        section: String,
        tag: String,
        value: String,
    },
    Rm {
        section: String,
        tag: String,
    },
    Rms {
        section: String,
    },
    Get {
        section: String,
        tag: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugCmd {
    Set(DebugSelector, u8),
    Toggle,
}

/// Which SA `t` tears down (the engine's request type).
pub use crate::ike::Phase;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `c name`: start a connection.
    Connect(String),
    Conf(ConfCmd),
    /// `d cookies msgid`: delete one SA; `msgid` None (written `-`) means phase 1.
    Delete {
        icookie: [u8; 8],
        rcookie: [u8; 8],
        msgid: Option<[u8; 4]>,
    },
    Debug(DebugCmd),
    /// `M passive` (true) / `M active` (false).
    Passive(bool),
    /// `p on[=path]` (Some(path or default)) / `p off` (None).
    Capture(Option<Option<String>>),
    Quit,
    Reload,
    Report,
    SaReport,
    TeardownAll,
    Teardown {
        phase: Phase,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(s: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(s.into()))
}

/// Parses one line (without its newline). `Ok(None)` is an empty line.
pub fn parse_command(line: &str) -> Result<Option<Command>, ParseError> {
    let line = line
        .trim_end_matches(['\r', ' ', '\t'])
        .trim_start_matches([' ', '\t']);
    let Some(first) = line.chars().next() else {
        return Ok(None);
    };
    let rest = &line[first.len_utf8()..];
    // Every command's letter stands alone: "Qx" is not "Q".
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return err(format!("unknown command '{}'", word(line)));
    }
    let args: Vec<&str> = rest.split_whitespace().collect();
    let none = |c: Command| {
        if args.is_empty() {
            Ok(Some(c))
        } else {
            err(format!("command '{first}' takes no arguments"))
        }
    };
    match first {
        'Q' => none(Command::Quit),
        'R' => none(Command::Reload),
        'r' => none(Command::Report),
        'S' => none(Command::SaReport),
        'T' => none(Command::TeardownAll),
        'c' => match args.as_slice() {
            [name] => Ok(Some(Command::Connect((*name).into()))),
            _ => err("usage: c name"),
        },
        't' => match args.as_slice() {
            [name] => Ok(Some(Command::Teardown {
                phase: Phase::Quick,
                name: (*name).into(),
            })),
            [ph, name] => {
                let phase = match *ph {
                    "main" => Phase::Main,
                    "quick" => Phase::Quick,
                    _ => return err(format!("t: phase must be main or quick, not '{ph}'")),
                };
                Ok(Some(Command::Teardown {
                    phase,
                    name: (*name).into(),
                }))
            }
            _ => err("usage: t [main|quick] name"),
        },
        'M' => match args.as_slice() {
            ["active"] => Ok(Some(Command::Passive(false))),
            ["passive"] => Ok(Some(Command::Passive(true))),
            _ => err("usage: M active|passive"),
        },
        'p' => match args.as_slice() {
            ["off"] => Ok(Some(Command::Capture(None))),
            ["on"] => Ok(Some(Command::Capture(Some(None)))),
            [a] if a.starts_with("on=") => {
                let path = &a[3..];
                if !is_run_path(path) {
                    return err(format!(
                        "p: '{path}': only paths beginning with /var/run/ are allowed"
                    ));
                }
                Ok(Some(Command::Capture(Some(Some(path.into())))))
            }
            _ => err("usage: p on[=path] | p off"),
        },
        'D' => match args.as_slice() {
            ["T"] => Ok(Some(Command::Debug(DebugCmd::Toggle))),
            [class, level] => {
                let sel = parse_debug_class(class)
                    .ok_or_else(|| ParseError(format!("D: bad class '{class}' (0-10 or A)")))?;
                let lvl = parse_debug_level(level)
                    .ok_or_else(|| ParseError(format!("D: bad level '{level}' (0-99)")))?;
                Ok(Some(Command::Debug(DebugCmd::Set(sel, lvl))))
            }
            _ => err("usage: D class level | D A level | D T"),
        },
        'd' => match args.as_slice() {
            [cookies, msgid] => parse_delete(cookies, msgid).map(Some),
            _ => err("usage: d cookies msgid"),
        },
        'C' => parse_conf(rest.trim_start()).map(|c| Some(Command::Conf(c))),
        _ => err(format!("unknown command '{}'", word(line))),
    }
}

fn word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn parse_delete(cookies: &str, msgid: &str) -> Result<Command, ParseError> {
    let c: [u8; 16] = hex_bytes(cookies)
        .ok_or_else(|| ParseError(format!("d: cookies '{cookies}' are not 32 hex digits")))?;
    let msgid = if msgid == "-" {
        None
    } else {
        Some(hex_bytes::<4>(msgid).ok_or_else(|| {
            ParseError(format!(
                "d: message id '{msgid}' is not 8 hex digits or '-'"
            ))
        })?)
    };
    let mut icookie = [0u8; 8];
    let mut rcookie = [0u8; 8];
    icookie.copy_from_slice(&c[..8]);
    rcookie.copy_from_slice(&c[8..]);
    Ok(Command::Delete {
        icookie,
        rcookie,
        msgid,
    })
}

/// `[section]` then, unless `stop_at_section`, `:tag` and optionally `=value`.
fn parse_conf(s: &str) -> Result<ConfCmd, ParseError> {
    let (sub, rest) = s.split_once([' ', '\t']).unwrap_or((s, ""));
    let rest = rest.trim_start();
    let usage = |u: &str| ParseError(format!("usage: C {u}"));
    let Some(after_bracket) = rest.strip_prefix('[') else {
        return Err(usage(match sub {
            "rms" => "rms [section]",
            "rm" | "get" => "rm|get [section]:tag",
            _ => "set|add|rmv [section]:tag=value",
        }));
    };
    let Some(end) = after_bracket.find(']') else {
        return err("C: section without closing ']'");
    };
    let section = &after_bracket[..end];
    if section.is_empty() {
        return err("C: empty section name");
    }
    let tail = &after_bracket[end + 1..];
    let section = section.to_string();
    if sub == "rms" {
        if !tail.trim().is_empty() {
            return Err(usage("rms [section]"));
        }
        return Ok(ConfCmd::Rms { section });
    }
    let Some(tagpart) = tail.strip_prefix(':') else {
        return err("C: expected ':' after [section]");
    };
    let mut words = tagpart.split_whitespace();
    let first = words.next().unwrap_or("");
    let extra: Vec<&str> = words.collect();
    match sub {
        "rm" | "get" => {
            if first.is_empty() || first.contains('=') || !extra.is_empty() {
                return Err(usage("rm|get [section]:tag"));
            }
            let tag = first.to_string();
            Ok(if sub == "rm" {
                ConfCmd::Rm { section, tag }
            } else {
                ConfCmd::Get { section, tag }
            })
        }
        "set" | "add" | "rmv" => {
            let Some((tag, value)) = first.split_once('=') else {
                return Err(usage("set|add|rmv [section]:tag=value"));
            };
            if tag.is_empty() || value.is_empty() {
                return Err(usage("set|add|rmv [section]:tag=value"));
            }
            let (tag, value) = (tag.to_string(), value.to_string());
            match (sub, extra.as_slice()) {
                ("set", []) => Ok(ConfCmd::Set {
                    section,
                    tag,
                    value,
                    force: false,
                }),
                ("set", ["force"]) => Ok(ConfCmd::Set {
                    section,
                    tag,
                    value,
                    force: true,
                }),
                // ipsecctl(8) writes `force` after `C add` too; ui.c ignores it there.
                ("add", [] | ["force"]) => Ok(ConfCmd::Add {
                    section,
                    tag,
                    value,
                }),
                ("rmv", [] | ["force"]) => Ok(ConfCmd::Rmv {
                    section,
                    tag,
                    value,
                }),
                _ => err(format!("C {sub}: unexpected '{}'", extra.join(" "))),
            }
        }
        _ => err(format!(
            "C: unknown subcommand '{sub}' (set, add, rmv, rm, rms, get)"
        )),
    }
}

/// Longest accepted command line; longer lines are dropped.
pub const MAX_LINE: usize = 4096;

/// Splits a byte stream into lines with a fixed buffer.
pub struct LineReader {
    buf: Box<[u8; MAX_LINE]>,
    len: usize,
    /// Inside an over-long line: discard until the next newline.
    discarding: bool,
}

/// What one chunk of input produced.
pub enum Line<'a> {
    Text(&'a str),
    /// A line that was not UTF-8, or too long.
    Garbled(&'static str),
}

impl Default for LineReader {
    fn default() -> Self {
        LineReader {
            buf: Box::new([0; MAX_LINE]),
            len: 0,
            discarding: false,
        }
    }
}

impl LineReader {
    /// Feeds bytes; calls `f` for every complete line.
    pub fn feed(&mut self, mut data: &[u8], mut f: impl FnMut(Line<'_>)) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let chunk = &data[..nl.unwrap_or(data.len())];
            data = match nl {
                Some(i) => &data[i + 1..],
                None => &[],
            };
            if !self.discarding {
                if self.len + chunk.len() > MAX_LINE {
                    self.discarding = true;
                    self.len = 0;
                } else {
                    self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
                    self.len += chunk.len();
                }
            }
            if nl.is_none() {
                break;
            }
            if self.discarding {
                self.discarding = false;
                f(Line::Garbled("line too long"));
            } else {
                match std::str::from_utf8(&self.buf[..self.len]) {
                    Ok(s) => f(Line::Text(s)),
                    Err(_) => f(Line::Garbled("line is not valid UTF-8")),
                }
            }
            self.len = 0;
        }
    }
}

/// The FIFO (or stdin) file descriptor and its line reader.
pub struct Fifo {
    pub fd: RawFd,
    pub reader: LineReader,
    /// False once stdin reached end of file (a FIFO opened read-write never does).
    pub open: bool,
}

impl Fifo {
    pub fn new(fd: RawFd) -> Fifo {
        Fifo {
            fd,
            reader: LineReader::default(),
            open: true,
        }
    }

    /// Reads what is available (at most `max_reads` reads, to bound work per wake-up) and
    /// hands each line to `f`.
    pub fn read_lines(&mut self, max_reads: usize, mut f: impl FnMut(Line<'_>)) {
        let mut chunk = [0u8; 4096];
        for _ in 0..max_reads {
            match crate::sys::read(self.fd, &mut chunk) {
                Ok(0) => {
                    self.open = false;
                    return;
                }
                Ok(n) => self.reader.feed(&chunk[..n], &mut f),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return, // EAGAIN: drained
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::DebugClass;

    fn ok(s: &str) -> Command {
        parse_command(s)
            .unwrap_or_else(|e| panic!("{s:?}: {e}"))
            .unwrap()
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn simple_commands() {
        assert_eq!(ok("Q"), Command::Quit);
        assert_eq!(ok("R"), Command::Reload);
        assert_eq!(ok("r"), Command::Report);
        assert_eq!(ok("S"), Command::SaReport);
        assert_eq!(ok("T"), Command::TeardownAll);
        assert_eq!(ok("  S \r"), Command::SaReport);
        assert_eq!(
            ok("c IPsec-east-west"),
            Command::Connect(s("IPsec-east-west"))
        );
        assert_eq!(
            ok("t conn"),
            Command::Teardown {
                phase: Phase::Quick,
                name: s("conn")
            }
        );
        assert_eq!(
            ok("t main 192.0.2.1"),
            Command::Teardown {
                phase: Phase::Main,
                name: s("192.0.2.1")
            }
        );
        assert_eq!(
            ok("t quick conn"),
            Command::Teardown {
                phase: Phase::Quick,
                name: s("conn")
            }
        );
        assert_eq!(ok("M passive"), Command::Passive(true));
        assert_eq!(ok("M active"), Command::Passive(false));
        assert_eq!(ok("p on"), Command::Capture(Some(None)));
        assert_eq!(
            ok("p on=/var/run/x.pcap"),
            Command::Capture(Some(Some(s("/var/run/x.pcap"))))
        );
        assert_eq!(ok("p off"), Command::Capture(None));
        assert_eq!(ok("D T"), Command::Debug(DebugCmd::Toggle));
        assert_eq!(
            ok("D A 30"),
            Command::Debug(DebugCmd::Set(DebugSelector::All, 30))
        );
        assert_eq!(
            ok("D 7 99"),
            Command::Debug(DebugCmd::Set(DebugSelector::One(DebugClass::Exchange), 99))
        );
        assert_eq!(parse_command("").unwrap(), None);
        assert_eq!(parse_command("   ").unwrap(), None);
    }

    #[test]
    fn delete() {
        assert_eq!(
            ok("d 00112233445566778899aabbccddeeff -"),
            Command::Delete {
                icookie: [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77],
                rcookie: [0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                msgid: None
            }
        );
        assert_eq!(
            ok("d 00112233445566778899AABBCCDDEEFF 01020304"),
            Command::Delete {
                icookie: [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77],
                rcookie: [0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff],
                msgid: Some([1, 2, 3, 4])
            }
        );
    }

    #[test]
    fn conf_commands() {
        assert_eq!(
            ok("C set [General]:Retransmits=5"),
            Command::Conf(ConfCmd::Set {
                section: s("General"),
                tag: s("Retransmits"),
                value: s("5"),
                force: false
            })
        );
        assert_eq!(
            ok("C set [Phase 1]:192.0.2.2=peer-192.0.2.2 force"),
            Command::Conf(ConfCmd::Set {
                section: s("Phase 1"),
                tag: s("192.0.2.2"),
                value: s("peer-192.0.2.2"),
                force: true
            })
        );
        assert_eq!(
            ok("C add [Phase 2]:Connections=from-10.1.0.0/24-to-10.2.0.0/24"),
            Command::Conf(ConfCmd::Add {
                section: s("Phase 2"),
                tag: s("Connections"),
                value: s("from-10.1.0.0/24-to-10.2.0.0/24")
            })
        );
        assert_eq!(
            ok("C rmv [Phase 2]:Connections=x"),
            Command::Conf(ConfCmd::Rmv {
                section: s("Phase 2"),
                tag: s("Connections"),
                value: s("x")
            })
        );
        assert_eq!(
            ok("C rm [a]:b"),
            Command::Conf(ConfCmd::Rm {
                section: s("a"),
                tag: s("b")
            })
        );
        assert_eq!(
            ok("C rms [phase2-x]"),
            Command::Conf(ConfCmd::Rms {
                section: s("phase2-x")
            })
        );
        assert_eq!(
            ok("C get [General]:Listen-on"),
            Command::Conf(ConfCmd::Get {
                section: s("General"),
                tag: s("Listen-on")
            })
        );
        // A value may itself contain '=' (only the first one splits).
        assert_eq!(
            ok("C set [x]:Authentication=a=b"),
            Command::Conf(ConfCmd::Set {
                section: s("x"),
                tag: s("Authentication"),
                value: s("a=b"),
                force: false
            })
        );
    }

    #[test]
    fn garbled_lines_are_errors() {
        for bad in [
            "x",
            "Qq",
            "Q now",
            "S 1",
            "cfoo",
            "c",
            "c a b",
            "t",
            "t phase1 x",
            "t a b c",
            "M",
            "M maybe",
            "p",
            "p on=/tmp/x",
            "p on=/var/run/../etc/x",
            "p maybe",
            "D",
            "D 11 1",
            "D 1 100",
            "D X 1",
            "D T T",
            "d",
            "d 00 -",
            "d 00112233445566778899aabbccddeeff",
            "d 00112233445566778899aabbccddeeff 0102",
            "d 00112233445566778899aabbccddeefg -",
            "C",
            "C set",
            "C set General:x=1",
            "C set [General:x=1",
            "C set []:x=1",
            "C set [a]x=1",
            "C set [a]:x",
            "C set [a]:=1",
            "C set [a]:x=",
            "C set [a]:x=1 force now",
            "C set [a]:x=1 please",
            "C get [a]:x=1",
            "C get [a]",
            "C rms [a]:b",
            "C frob [a]:b=c",
            "\u{1b}[A",
            "ä",
        ] {
            assert!(parse_command(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn line_reader() {
        let mut r = LineReader::default();
        let mut out = Vec::new();
        let mut collect = |l: Line<'_>| {
            out.push(match l {
                Line::Text(t) => t.to_string(),
                Line::Garbled(g) => format!("!{g}"),
            })
        };
        r.feed(b"S\nC get [a", &mut collect);
        r.feed(b"]:b\n\n", &mut collect);
        let long = vec![b'x'; MAX_LINE + 10];
        r.feed(&long, &mut collect);
        r.feed(b"tail\nQ\n", &mut collect);
        r.feed(b"\xff\xfe\n", &mut collect);
        assert_eq!(
            out,
            vec![
                "S",
                "C get [a]:b",
                "",
                "!line too long",
                "Q",
                "!line is not valid UTF-8"
            ]
        );
    }
}
