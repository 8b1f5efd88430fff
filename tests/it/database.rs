//! The PostgreSQL store's connection (issue #12), against the throwaway
//! server `tests/run.sh` starts (or `POSTERN_TEST_DATABASE_URL`).

use std::time::Duration;

use postern::config::DatabaseSettings;
use postern::spool::pg::connect;
use postern::spool::pg::migrate::{self, Migration};

/// The test database's URL; `None` (test skipped) outside CI when there is
/// none, a clear failure in CI, where one must exist.
pub fn test_database_url() -> Option<String> {
    match std::env::var("POSTERN_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ if std::env::var_os("CI").is_some() => panic!(
            "POSTERN_TEST_DATABASE_URL is not set and CI is: run the tests with \
             `bash tests/run.sh` (it starts a throwaway PostgreSQL; needs initdb, \
             e.g. apt-get install postgresql) or point the variable at a database"
        ),
        _ => {
            eprintln!("skipped: POSTERN_TEST_DATABASE_URL is not set (bash tests/run.sh sets it)");
            None
        }
    }
}

#[tokio::test]
async fn select_one_through_the_production_pool() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = DatabaseSettings::from_url(&url).expect("test database URL parses");
    let pool = connect::pool(&settings).expect("pool builds");
    let health = connect::check(&pool, Duration::from_secs(10))
        .await
        .expect("SELECT 1 on the test database");
    // The throwaway server has no certificate: prefer falls back to plain.
    assert!(!health.tls);
}

#[tokio::test]
async fn a_closed_port_is_reported_unreachable() {
    let port = crate::helpers::free_port();
    let settings =
        DatabaseSettings::from_url(&format!("postgres://u:hunter2@127.0.0.1:{port}/d")).unwrap();
    let pool = connect::pool(&settings).unwrap();
    let e = connect::check(&pool, Duration::from_secs(10))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("database unreachable"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
}

/// A fresh database on the test server, so runs never see each other's
/// schema.
pub async fn fresh_database(url: &str) -> DatabaseSettings {
    let admin = connect::pool(&DatabaseSettings::from_url(url).unwrap()).unwrap();
    let name = format!("t_{}", uuid::Uuid::now_v7().simple());
    let client = admin.get().await.unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let mut s = DatabaseSettings::from_url(url).unwrap();
    s.pg.dbname(&name);
    s
}

const TEST_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "counter",
        sql: "CREATE TABLE t_counter (n int NOT NULL); INSERT INTO t_counter VALUES (0);",
    },
    Migration {
        version: 2,
        name: "bump",
        // Not idempotent on purpose: applied twice, n would be 2.
        sql: "UPDATE t_counter SET n = n + 1;",
    },
];

#[tokio::test]
async fn concurrent_runners_apply_each_migration_once() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = fresh_database(&url).await;
    let mut runners = Vec::new();
    for _ in 0..6 {
        let pool = connect::pool(&settings).unwrap();
        runners.push(tokio::spawn(async move {
            migrate::apply(&pool, TEST_MIGRATIONS).await
        }));
    }
    let mut applied = Vec::new();
    for r in runners {
        applied.extend(r.await.unwrap().expect("runner succeeds"));
    }
    applied.sort();
    assert_eq!(
        applied,
        vec![1, 2],
        "each version applied by exactly one runner"
    );
    let pool = connect::pool(&settings).unwrap();
    let n: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT n FROM t_counter", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let status = migrate::status(&pool, TEST_MIGRATIONS).await.unwrap();
    assert_eq!((status.applied, status.known), (Some(2), Some(2)));
    // A binary knowing only version 1 refuses this database.
    let e = migrate::apply(&pool, &TEST_MIGRATIONS[..1])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the database is at schema version 2, newer than this binary knows (1); run a newer Postern"
    );
}

#[tokio::test]
async fn a_failing_migration_leaves_nothing_applied() {
    let Some(url) = test_database_url() else {
        return;
    };
    let settings = fresh_database(&url).await;
    let pool = connect::pool(&settings).unwrap();
    let broken = [
        TEST_MIGRATIONS[0],
        Migration {
            version: 2,
            name: "broken",
            sql: "SELECT no_such_column FROM t_counter;",
        },
    ];
    let e = migrate::apply(&pool, &broken).await.unwrap_err();
    assert!(
        e.to_string().starts_with("migration 2 (broken) failed"),
        "{e}"
    );
    let status = migrate::status(&pool, &broken).await.unwrap();
    assert_eq!(status.applied, None);
}

/// A fresh database on the test server (see [`fresh_database`]), as a
/// URL for `POSTERN_DATABASE_URL`.
pub async fn fresh_database_url(url: &str) -> String {
    let settings = fresh_database(url).await;
    let mut u = url::Url::parse(url).unwrap();
    u.set_path(settings.pg.get_dbname().unwrap());
    u.to_string()
}

/// A PostgreSQL server of the test's own (`initdb` + `pg_ctl` from
/// `POSTERN_TEST_PG_BINDIR`, run as `POSTERN_TEST_PG_USER` when set), for
/// tests that stop and start the database. Stopped on drop.
pub struct Cluster {
    bindir: std::path::PathBuf,
    user: Option<String>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// `-c` settings added to every start (e.g. `ssl=on`).
    extra: Vec<String>,
}

impl Cluster {
    /// `None` (test skipped, saying why) without `POSTERN_TEST_PG_BINDIR`,
    /// which `tests/run.sh` sets when it found initdb.
    pub fn start() -> Option<Cluster> {
        Self::start_with(|_| Vec::new())
    }

    /// A cluster serving TLS with `leaf` (`ssl=on`; key and certificate
    /// owned by the server's user, as PostgreSQL demands).
    pub fn start_tls(leaf: &crate::pki::Leaf) -> Option<Cluster> {
        Self::start_with(|c| {
            let cert = c.own_file("server.crt", &leaf.chain_pem);
            let key = c.own_file("server.key", &leaf.key_pem);
            vec![
                "ssl=on".into(),
                format!("ssl_cert_file={cert}"),
                format!("ssl_key_file={key}"),
            ]
        })
    }

    /// `contents` as a file in the cluster's directory, readable by its
    /// user only; the path.
    fn own_file(&self, name: &str, contents: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.chown(&path);
        // The server resolves relative paths against its data directory.
        std::fs::canonicalize(&path).unwrap().display().to_string()
    }

    fn chown(&self, path: &std::path::Path) {
        if let Some(u) = &self.user {
            let ok = std::process::Command::new("chown")
                .args([u.as_str(), &path.display().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {u}");
        }
    }

    /// Made, with the settings `extra` gives for it, and started.
    fn start_with(extra: impl FnOnce(&Cluster) -> Vec<String>) -> Option<Cluster> {
        let Some(bindir) = std::env::var_os("POSTERN_TEST_PG_BINDIR") else {
            eprintln!("skipped: POSTERN_TEST_PG_BINDIR is not set (bash tests/run.sh sets it)");
            return None;
        };
        let user = std::env::var("POSTERN_TEST_PG_USER").ok();
        std::fs::create_dir_all("target/pg-test").unwrap();
        let dir = tempfile::Builder::new()
            .prefix("cluster.")
            .tempdir_in("target/pg-test")
            .unwrap();
        let mut c = Cluster {
            bindir: bindir.into(),
            user,
            dir,
            port: crate::helpers::free_port(),
            extra: Vec::new(),
        };
        c.chown(c.dir.path());
        c.extra = extra(&c);
        c.run(
            "initdb",
            &[
                "-D",
                &c.data(),
                "-U",
                "postern",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        );
        c.up();
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// `tool` of the server's bindir, run as its user.
    fn command(&self, tool: &str) -> std::process::Command {
        let exe = self.bindir.join(tool);
        match &self.user {
            Some(u) => {
                let mut c = std::process::Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => std::process::Command::new(&exe),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again, on the same port) and waits for it.
    pub fn up(&self) {
        let mut opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories={}",
            self.port,
            self.dir.path().display()
        );
        for e in &self.extra {
            opts.push_str(" -c ");
            opts.push_str(e);
        }
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// Stops the server, dropping every connection.
    pub fn down(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub fn url(&self) -> String {
        format!("postgres://postern@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.dir.path().join("data/postmaster.pid").exists() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}
