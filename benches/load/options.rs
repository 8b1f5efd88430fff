//! Command-line options of the load tool.

use std::path::{Path, PathBuf};

pub(crate) const USAGE: &str = "usage: cargo bench --bench load -- [options]

  --concurrency C     SMTP connections (default 10)
  --messages N        messages in total (default 1000)
  --size S            2k | 20k | 1m | 20m (default 2k)
  --max-seconds T     wall-clock cap per run (default 120)
  --matrix quick      concurrency {1,10,50} x sizes {2k,20k}, markdown table
  --matrix full       concurrency {1,10,50,200} x sizes {2k,20k,1m} (+20m at 1
                      and 10), each paired with smtp-source -> smtp-sink; the
                      20k c=50 cell again at half its rate; the sending API
                      at c=10 and 50 into smtp-sink. Markdown tables
  --matrix outbound   only the sending-API part of --matrix full
  --outbound          one sending-API run (POST /v1/messages -> smtp-sink)
  --rate R            start at most R transactions (or API requests) per second
  --cell-seconds S    how long each matrix cell sends (default 3)
  --postfix-bin DIR   where smtp-sink and smtp-source are (default /usr/sbin)
  --server-wrap CMD   run the server under CMD (e.g. \"valgrind --tool=callgrind\")
  --idle K            open K idle SMTP connections, report server RSS
  --spool-parent DIR  where the temporary spool goes (default target/load-bench)
  --no-fsync          POSTERN_FSYNC=false (voids durability; comparison only)
  --client-threads T  tokio worker threads for the client+receiver (default 2)
  --database-url URL  the server keeps its store in PostgreSQL (POSTERN_DATABASE_URL)
  --replicas K        K postern processes on that database, the clients spread
                      over their SMTP ports (default 1; K > 1 needs --database-url)
  --sink              one smtp-source -> smtp-sink run with --size, -c, -n
  --env K=V           one more setting for the server (repeatable), e.g.
                      --env POSTERN_DATABASE_POOL=20
  --new-connection    a new SMTP connection per message (connect, EHLO, the
                      transaction, QUIT), and smtp-source without -d";

// ---------------------------------------------------------------- options

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    K2,
    K20,
    M1,
    M20,
}

impl Size {
    pub(crate) fn parse(s: &str) -> Option<Size> {
        match s.to_ascii_lowercase().as_str() {
            "2k" => Some(Size::K2),
            "20k" => Some(Size::K20),
            "1m" => Some(Size::M1),
            "20m" => Some(Size::M20),
            _ => None,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Size::K2 => "2k",
            Size::K20 => "20k",
            Size::M1 => "1m",
            Size::M20 => "20m",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matrix {
    Quick,
    Full,
    Outbound,
}

#[derive(Debug, Clone)]
pub(crate) struct Opts {
    pub(crate) concurrency: usize,
    pub(crate) messages: usize,
    pub(crate) size: Size,
    pub(crate) max_seconds: u64,
    pub(crate) matrix: Option<Matrix>,
    pub(crate) idle: Option<usize>,
    pub(crate) spool_parent: PathBuf,
    pub(crate) fsync: bool,
    pub(crate) client_threads: usize,
    pub(crate) outbound: bool,
    pub(crate) rate: Option<f64>,
    pub(crate) cell_seconds: u64,
    pub(crate) postfix_bin: PathBuf,
    pub(crate) server_wrap: Vec<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) replicas: usize,
    pub(crate) sink: bool,
    /// Extra `POSTERN_*` settings for the server (`--env`).
    pub(crate) env: Vec<(String, String)>,
    /// A new SMTP connection per message (and smtp-source without `-d`).
    pub(crate) new_connection: bool,
}

pub(crate) fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        concurrency: 10,
        messages: 1000,
        size: Size::K2,
        max_seconds: 120,
        matrix: None,
        idle: None,
        spool_parent: Path::new(env!("CARGO_MANIFEST_DIR")).join("target/load-bench"),
        fsync: true,
        client_threads: 2,
        outbound: false,
        rate: None,
        cell_seconds: 3,
        postfix_bin: PathBuf::from("/usr/sbin"),
        server_wrap: Vec::new(),
        database_url: None,
        replicas: 1,
        sink: false,
        env: Vec::new(),
        new_connection: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        let num = |v: String| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(format!("{a}: {v:?} is not a positive number"))
        };
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--concurrency" | "-c" => o.concurrency = num(val()?)?,
            "--messages" | "-n" => o.messages = num(val()?)?,
            "--size" => {
                let v = val()?;
                o.size = Size::parse(&v).ok_or(format!("--size: {v:?} is not 2k|20k|1m|20m"))?;
            }
            "--max-seconds" => o.max_seconds = num(val()?)? as u64,
            "--matrix" => {
                o.matrix = Some(match val()?.as_str() {
                    "quick" => Matrix::Quick,
                    "full" => Matrix::Full,
                    "outbound" => Matrix::Outbound,
                    v => return Err(format!("--matrix: quick|full|outbound, not {v:?}")),
                })
            }
            "--outbound" => o.outbound = true,
            "--rate" => {
                let v = val()?;
                o.rate = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0)
                        .ok_or(format!("--rate: {v:?} is not a positive number"))?,
                );
            }
            "--cell-seconds" => o.cell_seconds = num(val()?)? as u64,
            "--postfix-bin" => o.postfix_bin = PathBuf::from(val()?),
            "--server-wrap" => {
                o.server_wrap = val()?.split_whitespace().map(String::from).collect()
            }
            "--idle" => o.idle = Some(num(val()?)?),
            "--spool-parent" => o.spool_parent = PathBuf::from(val()?),
            "--no-fsync" => o.fsync = false,
            "--client-threads" => o.client_threads = num(val()?)?,
            "--database-url" => o.database_url = Some(val()?),
            "--replicas" => o.replicas = num(val()?)?,
            "--sink" => o.sink = true,
            "--new-connection" => o.new_connection = true,
            "--env" => {
                let v = val()?;
                let (k, v) = v
                    .split_once('=')
                    .ok_or(format!("--env: {v:?} is not KEY=VALUE"))?;
                o.env.push((k.to_string(), v.to_string()));
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.replicas > 1 && o.database_url.is_none() {
        // Two processes on one spool directory would not share it safely.
        return Err("--replicas above 1 needs --database-url".into());
    }
    Ok(o)
}
