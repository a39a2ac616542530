//! `authsome approve [DESTINATION]`: answer, from another terminal, a `run --ask` whose command
//! holds its terminal, through each waiting run's socket in `AUTHSOME_HOME/runs/`
//! (`run::ask` serves them). Without DESTINATION it lists what is waiting.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::args::ApproveArgs;
use crate::context::Context;
use crate::error::{CliError, CliResult, Kind};
use crate::run::ask::{ApproveReply, ApproveRequest, Decision};

pub(crate) fn approve(ctx: &Context, args: &ApproveArgs) -> CliResult {
    let (host, port) = match &args.destination {
        Some(d) => {
            let (host, port) = split_destination(d)?;
            (Some(host), port)
        }
        None => (None, None),
    };
    let decision = host.as_ref().map(|_| {
        if args.once {
            Decision::Once
        } else if args.always {
            Decision::Always
        } else if args.deny {
            Decision::Deny
        } else {
            Decision::Run
        }
    });
    let request = ApproveRequest { host: host.clone(), port, decision };
    let mut answered: Vec<(String, Vec<String>)> = Vec::new();
    for (run_id, socket) in sockets(ctx, args.run.as_deref()) {
        if let Some(reply) = ask(&socket, &request)
            && !reply.destinations.is_empty()
        {
            answered.push((run_id, reply.destinations));
        }
    }
    if ctx.out.json {
        let runs: Vec<_> = answered.iter().map(|(id, d)| json!({"run_id": id, "destinations": d})).collect();
        let mut doc = json!({"waiting": runs});
        if let Some(decision) = decision {
            doc = json!({"decision": decision, "runs": runs});
        }
        if decision.is_none() || !answered.is_empty() {
            ctx.out.json(&doc);
            return Ok(());
        }
    }
    let Some(decision) = decision else {
        if answered.is_empty() {
            ctx.out.note("Nothing is waiting for a decision.");
        }
        for (run_id, destinations) in &answered {
            for d in destinations {
                ctx.out.data(&format!("run {run_id}  {d}"));
            }
        }
        return Ok(());
    };
    if answered.is_empty() {
        let what = args.destination.as_deref().unwrap_or_default();
        return Err(CliError::new(Kind::Generic, format!("no run is waiting for {what}"))
            .hint("`authsome approve` lists what is waiting (HOST:PORT as the waiting line shows it)"));
    }
    let verb = match decision {
        Decision::Once => "allowed once",
        Decision::Run => "allowed for the rest of the run",
        Decision::Always => "allowed for the rest of the run (and added to its --policy file, if it has one)",
        Decision::Deny => "denied",
    };
    for (run_id, destinations) in &answered {
        ctx.out.note(&format!("authsome: {} {verb} (run {run_id})", destinations.join(", ")));
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]:port`.
fn split_destination(text: &str) -> CliResult<(String, Option<u16>)> {
    let bad = || {
        CliError::new(Kind::Usage, format!("{text}: expected HOST or HOST:PORT"))
            .hint("e.g. authsome approve api.example.com:443")
    };
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().map_err(|_| bad())?),
            None if tail.is_empty() => None,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !host.is_empty() => {
            Ok((host.to_string(), Some(port.parse().map_err(|_| bad())?)))
        }
        None if !text.is_empty() => Ok((text.to_string(), None)),
        _ => Err(bad()),
    }
}

/// Each run's socket, by run id (filtered by an id prefix).
fn sockets(ctx: &Context, run: Option<&str>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(ctx.home.root().join("runs")) else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".sock")?.to_string();
            run.is_none_or(|prefix| id.starts_with(prefix)).then(|| (id, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// One request to one run (`None`: the run is gone or does not answer).
fn ask(socket: &std::path::Path, request: &ApproveRequest) -> Option<ApproveReply> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = serde_json::to_vec(request).ok()?;
    line.push(b'\n');
    stream.write_all(&line).ok()?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(split_destination("api.example.com").unwrap(), ("api.example.com".into(), None));
        assert_eq!(split_destination("a.example:8443").unwrap(), ("a.example".into(), Some(8443)));
        assert_eq!(split_destination("[::1]:443").unwrap(), ("::1".into(), Some(443)));
        for bad in ["", "a:b", ":443", "[::1", "[::1]x"] {
            assert!(split_destination(bad).is_err(), "{bad}");
        }
    }
}
