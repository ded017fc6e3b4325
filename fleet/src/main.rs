//! `huis-fleet`: the fleet service (`serve`), its first set-up (`init`), and a command-line
//! client of its REST API for scripts (`rooms`, `claim`, `command`, …).

use huis_fleet::{alerts, api, campaigns, config, console, db, mqtt, pki, server, users};
use huis_fleet::{hash, now_ms, random_token};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// The huis fleet service.
#[derive(Parser)]
#[command(name = "huis-fleet", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// The service's address, for the client commands.
    #[arg(long, global = true, default_value = "https://127.0.0.1:8443")]
    url: String,
    /// A file holding the API token, for the client commands.
    #[arg(long, global = true, default_value = "/var/lib/huis-fleet/admin.token")]
    token_file: PathBuf,
    /// The fleet's CA (PEM), trusted for the service's address.
    #[arg(long, global = true, default_value = "/var/lib/huis-fleet/pki/ca.crt")]
    ca: PathBuf,
}

/// Someone given access, written to the database directly (no service needed).
#[derive(clap::Args)]
struct Person {
    #[arg(long, default_value = "/var/lib/huis-fleet/huis-fleet.toml")]
    config: PathBuf,
    #[arg(long)]
    user: String,
    /// admin, operator or readonly.
    #[arg(long)]
    role: String,
}

impl Person {
    /// The database of the configuration, once the role is known to be one.
    async fn db(&self) -> anyhow::Result<db::Db> {
        let cfg = config::Config::load(&self.config)?;
        if api::Role::parse(&self.role).is_none() {
            bail!("role '{}' is not admin, operator or readonly", self.role);
        }
        Ok(db::Db::open(&cfg.database).await?)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Makes the fleet's CA, the certificates of the service and the broker, the first admin
    /// token, huis-fleet.toml and mosquitto.conf in DATA_DIR.
    Init {
        #[arg(long)]
        data_dir: PathBuf,
        /// The organisation's name, in the CA's name.
        #[arg(long, default_value = "huis")]
        name: String,
        /// Names and addresses the service and broker are reached at (repeat).
        #[arg(long = "host", default_values_t = ["127.0.0.1".to_string(), "localhost".to_string()])]
        hosts: Vec<String>,
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: String,
        #[arg(long, default_value_t = 8883)]
        broker_port: u16,
        /// Database; default SQLite in DATA_DIR.
        #[arg(long)]
        database: Option<String>,
    },
    /// Runs the service.
    Serve {
        #[arg(long, default_value = "/var/lib/huis-fleet/huis-fleet.toml")]
        config: PathBuf,
    },
    /// Makes an API token for a person or script (written to the database directly).
    Token(Person),
    /// Adds a person who signs in to the console with a name and password, or gives them a new
    /// role and password (which also unlocks the account). The password is read from stdin.
    User(Person),
    /// Lists the rooms, or those matching the filters.
    Rooms {
        /// online or offline
        #[arg(long, default_value = "")]
        status: String,
        #[arg(long, default_value = "")]
        site: String,
        /// Found in the room's id, name or version.
        #[arg(long, default_value = "")]
        q: String,
    },
    /// Shows one room: its state, latest events and commands.
    Room { id: String },
    /// Makes a one-time claim code for a room to enrol with.
    Claim {
        room_id: String,
        #[arg(long, default_value_t = 72)]
        valid_hours: u32,
    },
    /// Sends a room a command: `command room-a dial uri=sip:…`.
    Command { room_id: String, name: String, args: Vec<String> },
    /// Sets a room's desired configuration: `desired room-a 3 audio.output_volume=60`.
    Desired { room_id: String, version: u64, settings: Vec<String> },
    /// Starts an update campaign over ROOMS, in this order, group by group.
    Campaign {
        #[arg(long)]
        version: String,
        /// The bundle's https:// address. A bundle copied into DATA_DIR/bundles/ is handed out
        /// by the service itself, to enrolled rooms only, at PUBLIC_URL/bundles/NAME.
        #[arg(long)]
        bundle_url: String,
        #[arg(long, default_value_t = 10)]
        first_group: usize,
        #[arg(long, default_value_t = 4)]
        growth: usize,
        #[arg(long, default_value_t = 0.95)]
        success_share: f64,
        #[arg(long, default_value_t = 0.05)]
        failure_threshold: f64,
        #[arg(long, default_value_t = 3600)]
        room_timeout_s: u64,
        #[arg(long, default_value = "")]
        id: String,
        #[arg(required = true)]
        rooms: Vec<String>,
    },
    /// Shows a campaign's progress.
    CampaignStatus { id: String },
    /// Replaces the organisation's configuration template: `template-org audio.output_volume=60`.
    TemplateOrg { settings: Vec<String> },
    /// Replaces a site's configuration template.
    TemplateSite { site: String, settings: Vec<String> },
    /// Replaces a room's own configuration template.
    TemplateRoom { room_id: String, settings: Vec<String> },
    /// Puts a room in a site ("" for none).
    Site { room_id: String, site: String },
    /// A room's effective configuration, each key with the layer it came from.
    Config { room_id: String },
    /// Prints a one-time link that signs you in to the web console (good for a minute).
    LoginLink {
        /// The console page to open, e.g. /console/rooms/room-1.
        #[arg(long, default_value = "/console/rooms")]
        next: String,
    },
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,rumqttc=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("huis-fleet: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Init { data_dir, name, hosts, listen, broker_port, database } => {
            init(&data_dir, &name, &hosts, &listen, broker_port, database).await
        }
        Cmd::Serve { config } => serve(&config).await,
        Cmd::Token(p) => {
            let db = p.db().await?;
            let token = random_token(24);
            db.add_token(&hash(&token), &p.user, &p.role, now_ms()).await?;
            db.audit(&random_token(8), now_ms(), "huis-fleet token", "token", &p.user, &p.role).await?;
            println!("{token}");
            Ok(())
        }
        Cmd::User(p) => {
            users::check_name(&p.user)?;
            let db = p.db().await?;
            let mut password = String::new();
            std::io::stdin().read_line(&mut password).context("reading the password from stdin")?;
            let phc = users::hash_password(password.trim_end_matches(['\r', '\n']))?;
            db.set_user(&p.user, &p.role, &phc, now_ms()).await?;
            db.audit(&random_token(8), now_ms(), "huis-fleet user", "user", &p.user, &p.role).await?;
            println!("{} signs in to the console as {}", p.user, p.role);
            Ok(())
        }
        client => client_command(&cli.url, &cli.token_file, &cli.ca, client).await,
    }
}

async fn init(
    dir: &Path,
    name: &str,
    hosts: &[String],
    listen: &str,
    broker_port: u16,
    database: Option<String>,
) -> anyhow::Result<()> {
    let pki_dir = dir.join("pki");
    let ca = pki::Ca::create(&pki_dir, name)?;
    let (cert, key) = ca.issue("fleet.service", hosts, true)?;
    pki::write_file(&pki_dir.join("service.crt"), cert.as_bytes(), 0o644)?;
    pki::write_file(&pki_dir.join("service.key"), key.as_bytes(), 0o600)?;
    let (cert, key) = ca.issue("broker", hosts, true)?;
    pki::write_file(&pki_dir.join("broker.crt"), cert.as_bytes(), 0o644)?;
    pki::write_file(&pki_dir.join("broker.key"), key.as_bytes(), 0o600)?;
    let host = hosts.first().cloned().unwrap_or_else(|| "127.0.0.1".into());
    let port = listen.rsplit_once(':').map(|p| p.1).unwrap_or("8443");
    let database = database.unwrap_or_else(|| format!("sqlite://{}", dir.join("fleet.db").display()));
    let cfg = config::Config {
        listen: listen.to_owned(),
        public_url: format!("https://{host}:{port}"),
        data_dir: dir.to_owned(),
        database: database.clone(),
        broker: format!("mqtts://{host}:{broker_port}"),
        room_broker: format!("mqtts://{host}:{broker_port}"),
        group: "huis-fleet".into(),
        alert_webhook: String::new(),
        call_quality: Default::default(),
    };
    let cfg_path = dir.join("huis-fleet.toml");
    pki::write_file(&cfg_path, toml::to_string(&cfg)?.as_bytes(), 0o644)?;
    std::fs::create_dir_all(dir.join("mosquitto"))?;
    pki::write_file(&dir.join("mosquitto/acl"), include_str!("../broker/acl").as_bytes(), 0o644)?;
    let conf = include_str!("../broker/mosquitto.conf.in")
        .replace("@PORT@", &broker_port.to_string())
        .replace("@BIND@", "0.0.0.0")
        .replace("@CA@", &pki_dir.join("ca.crt").display().to_string())
        .replace("@CERT@", &pki_dir.join("broker.crt").display().to_string())
        .replace("@KEY@", &pki_dir.join("broker.key").display().to_string())
        .replace("@ACL@", &dir.join("mosquitto/acl").display().to_string())
        .replace("@DATA@", &dir.join("mosquitto").display().to_string());
    pki::write_file(&dir.join("mosquitto/mosquitto.conf"), conf.as_bytes(), 0o644)?;
    let db = db::Db::open(&database).await?;
    let token = random_token(24);
    db.add_token(&hash(&token), "admin", "admin", now_ms()).await?;
    pki::write_file(&dir.join("admin.token"), format!("{token}\n").as_bytes(), 0o600)?;
    println!("fleet set up in {}: {} (admin token in admin.token)", dir.display(), cfg_path.display());
    Ok(())
}

async fn serve(config: &Path) -> anyhow::Result<()> {
    let cfg = config::Config::load(config)?;
    let pki_dir = cfg.pki();
    let read = |n: &str| std::fs::read(pki_dir.join(n)).with_context(|| format!("{}", pki_dir.join(n).display()));
    let (cert, key, ca_pem) = (read("service.crt")?, read("service.key")?, read("ca.crt")?);
    let ca = pki::Ca::load(&pki_dir)?;
    let db = db::Db::open(&cfg.database).await?;
    let client_tls = client_tls(&cert, &key, &ca_pem)?;
    let worker = format!("huis-fleet-{}", random_token(4));
    let http = reqwest::Client::builder().use_rustls_tls().timeout(std::time::Duration::from_secs(10)).build()?;
    let alerts = Arc::new(alerts::Alerts::new(http, cfg.alert_webhook.clone(), cfg.call_quality.clone()));
    let broker = mqtt::Broker::start(&cfg.broker, &worker, &cfg.group, client_tls, db.clone(), alerts.clone())?;
    let uploads = cfg.data_dir.join("uploads");
    std::fs::create_dir_all(&uploads)?;
    let bundles = cfg.data_dir.join("bundles");
    std::fs::create_dir_all(&bundles)?;
    let app = Arc::new(api::App {
        alerts: alerts.clone(),
        db,
        broker,
        ca,
        public_url: cfg.public_url.clone(),
        uploads,
        bundles,
        room_broker: cfg.room_broker.clone(),
        worker: worker.clone(),
        running: Default::default(),
    });
    tokio::spawn(campaigns::keeper(app.clone()));
    let tls = server::tls_config(&cert, &key, &ca_pem)?;
    tracing::info!(database = %db::redact(&cfg.database), broker = %cfg.broker, worker = %worker, "huis-fleet starting");
    server::serve(&cfg.listen, tls, api::router(app.clone()).merge(console::router(app))).await?;
    Ok(())
}

/// The service's TLS towards the broker: its certificate (named fleet.service), the fleet's CA.
#[allow(deprecated)]
fn client_tls(cert: &[u8], key: &[u8], ca: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca) {
        roots.add(c?)?;
    }
    let chain = CertificateDer::pem_slice_iter(cert).collect::<Result<Vec<_>, _>>()?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key)?)?;
    Ok(Arc::new(cfg))
}

fn pairs(items: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("'{a}' is not key=value"))
        })
        .collect()
}

async fn client_command(url: &str, token_file: &Path, ca: &Path, cmd: Cmd) -> anyhow::Result<()> {
    let token =
        std::fs::read_to_string(token_file).with_context(|| format!("the API token ({})", token_file.display()))?;
    let mut http = reqwest::Client::builder().use_rustls_tls().https_only(true);
    if let Ok(pem) = std::fs::read(ca) {
        for c in reqwest::Certificate::from_pem_bundle(&pem)? {
            http = http.add_root_certificate(c);
        }
    }
    let http = http.build()?;
    let base = url.trim_end_matches('/');
    let (method, path, body) = match cmd {
        Cmd::Rooms { status, site, q } => {
            let mut u = reqwest::Url::parse("http://x/api/v1/rooms").expect("a valid URL");
            for (k, v) in [("status", status), ("site", site), ("q", q)] {
                if !v.is_empty() {
                    u.query_pairs_mut().append_pair(k, &v);
                }
            }
            let query = u.query().map(|q| format!("?{q}")).unwrap_or_default();
            (reqwest::Method::GET, format!("/api/v1/rooms{query}"), None)
        }
        Cmd::Room { id } => (reqwest::Method::GET, format!("/api/v1/rooms/{id}"), None),
        Cmd::Claim { room_id, valid_hours } => (
            reqwest::Method::POST,
            "/api/v1/claims".into(),
            Some(serde_json::json!({ "room_id": room_id, "valid_hours": valid_hours })),
        ),
        Cmd::Command { room_id, name, args } => (
            reqwest::Method::POST,
            format!("/api/v1/rooms/{room_id}/commands"),
            Some(serde_json::json!({ "name": name, "args": pairs(&args)? })),
        ),
        Cmd::Desired { room_id, version, settings } => (
            reqwest::Method::PUT,
            format!("/api/v1/rooms/{room_id}/desired"),
            Some(serde_json::json!({ "config_version": version, "config": pairs(&settings)? })),
        ),
        Cmd::Campaign {
            version,
            bundle_url,
            first_group,
            growth,
            success_share,
            failure_threshold,
            room_timeout_s,
            id,
            rooms,
        } => (
            reqwest::Method::POST,
            "/api/v1/campaigns".into(),
            Some(serde_json::json!({
                "id": id, "version": version, "url": bundle_url, "rooms": rooms, "first_group": first_group, "growth": growth,
                "success_share": success_share, "failure_threshold": failure_threshold, "room_timeout_s": room_timeout_s,
            })),
        ),
        Cmd::CampaignStatus { id } => (reqwest::Method::GET, format!("/api/v1/campaigns/{id}"), None),
        Cmd::TemplateOrg { settings } => (
            reqwest::Method::PUT,
            "/api/v1/templates/org".into(),
            Some(serde_json::json!({ "config": pairs(&settings)? })),
        ),
        Cmd::TemplateSite { site, settings } => (
            reqwest::Method::PUT,
            format!("/api/v1/templates/sites/{site}"),
            Some(serde_json::json!({ "config": pairs(&settings)? })),
        ),
        Cmd::TemplateRoom { room_id, settings } => (
            reqwest::Method::PUT,
            format!("/api/v1/templates/rooms/{room_id}"),
            Some(serde_json::json!({ "config": pairs(&settings)? })),
        ),
        Cmd::Site { room_id, site } => {
            (reqwest::Method::PUT, format!("/api/v1/rooms/{room_id}/site"), Some(serde_json::json!({ "site": site })))
        }
        Cmd::Config { room_id } => (reqwest::Method::GET, format!("/api/v1/rooms/{room_id}/config"), None),
        Cmd::LoginLink { next } => {
            (reqwest::Method::POST, "/api/v1/login-links".into(), Some(serde_json::json!({ "next": next })))
        }
        Cmd::Init { .. } | Cmd::Serve { .. } | Cmd::Token(_) | Cmd::User(_) => unreachable!("handled before"),
    };
    let mut req = http.request(method, format!("{base}{path}")).bearer_auth(token.trim());
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.with_context(|| base.to_owned())?;
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        let why = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{status}: {why}");
    }
    if !text.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(_) => println!("{text}"),
        }
    }
    Ok(())
}
