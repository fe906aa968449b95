//! `sluice pause|suppress|capacity|flood|dkim|...`: the settings database
//! edited from the command line. Writes go straight to the database, checked
//! as the REST API checks them; a running daemon (this one or any other
//! sharing the database) has the change in force within a second, through
//! the change marker. Rows are printed as JSON lines, private keys left out.

use crate::config::Config;
use crate::policy::edit;
use anyhow::{bail, Context, Result};
use serde_json::{Map, Value as Json};
use sluice_policy::schema::{PAUSED, SUPPRESSIONS};
use sluice_policy::Store;

/// What to do with a table that has ids (`capacity`, `flood`, `dkim`, ...).
#[derive(clap::Subcommand, Debug)]
pub enum RowAction {
    /// Print every row (JSON lines; `problem` says why the loader skips one).
    List,
    /// Add a row: COLUMN=VALUE ... (`COLUMN=@FILE` reads the value from FILE).
    Add { fields: Vec<String> },
    /// Change row ID: COLUMN=VALUE ...
    Set { id: i64, fields: Vec<String> },
    /// Remove row ID.
    Remove { id: i64 },
}

/// What to do with pauses and suppressions, named by their fields as in MailerQ's REST API.
#[derive(clap::Subcommand, Debug)]
pub enum FieldAction {
    /// Print every one in force (JSON lines).
    List,
    /// Add one, or update the one with the same scope: FIELD=VALUE ...
    Add { fields: Vec<String> },
    /// Remove the ones with this scope: FIELD=VALUE ...
    Remove { fields: Vec<String> },
}

/// The longest file a `COLUMN=@FILE` value may come from.
const MAX_FILE: u64 = 64 * 1024;

/// `NAME=VALUE` arguments as the API's fields.
fn fields(args: &[String]) -> Result<Map<String, Json>> {
    let mut out = Map::new();
    for a in args {
        let Some((name, value)) = a.split_once('=') else {
            bail!("`{a}`: expected NAME=VALUE");
        };
        let value = match value.strip_prefix('@') {
            Some(path) => {
                let len = std::fs::metadata(path)
                    .with_context(|| format!("{name}: {path}"))?
                    .len();
                if len > MAX_FILE {
                    bail!("{name}: {path} is larger than {MAX_FILE} bytes");
                }
                std::fs::read_to_string(path).with_context(|| format!("{name}: {path}"))?
            }
            None => value.to_string(),
        };
        out.insert(name.trim().to_string(), Json::String(value));
    }
    Ok(out)
}

fn store(c: &Config) -> Result<Box<dyn Store>> {
    Ok(crate::policy::open(c)?.0)
}

fn print(rows: impl IntoIterator<Item = Json>) {
    for r in rows {
        println!("{r}");
    }
}

/// `sluice TABLE list|add|set|remove` for the table `name` names.
pub fn rows(c: &Config, name: &str, action: RowAction) -> Result<()> {
    let table = edit::resource(name).context("no such settings table")?;
    let mut s = store(c)?;
    match action {
        RowAction::List => print(edit::list(s.as_mut(), table)?),
        RowAction::Add { fields: f } => {
            let id = edit::create(s.as_mut(), table, &fields(&f)?)?;
            println!("{}", serde_json::json!({"id": id}));
        }
        RowAction::Set { id, fields: f } => edit::change(s.as_mut(), table, id, &fields(&f)?)?,
        RowAction::Remove { id } => edit::remove(s.as_mut(), table, id)?,
    }
    Ok(())
}

/// `sluice pause list|add|remove` with MailerQ's fields (mta, domain, ip, tag, expire, reason).
pub fn pauses(c: &Config, action: FieldAction) -> Result<()> {
    let mut s = store(c)?;
    match action {
        FieldAction::List => {
            let now = sluice_queue::now_ms();
            print(s.rows(&PAUSED)?.iter().filter_map(|r| edit::pause_shown(r, now)));
        }
        FieldAction::Add { fields: f } => {
            let values = edit::pause_fields(&fields(&f)?)?;
            let (key, rest) = values.split_at(4);
            let id = edit::upsert(s.as_mut(), &PAUSED, key, rest)?;
            println!("{}", serde_json::json!({"created": id.is_some(), "id": id}));
        }
        FieldAction::Remove { fields: f } => {
            let values = edit::pause_fields(&fields(&f)?)?;
            let removed = s.delete(&PAUSED, &values[..4])?;
            println!("{}", serde_json::json!({"removed": removed}));
        }
    }
    Ok(())
}

/// `sluice suppress list|add|remove` with MailerQ's fields (type, value, code, extended, description).
pub fn suppressions(c: &Config, action: FieldAction) -> Result<()> {
    let mut s = store(c)?;
    match action {
        FieldAction::List => print(s.rows(&SUPPRESSIONS)?.iter().map(edit::suppression_shown)),
        FieldAction::Add { fields: f } => {
            let f = fields(&f)?;
            let (key, rest) = (edit::suppression_key(&f)?, edit::suppression_rest(&f)?);
            let id = edit::upsert(s.as_mut(), &SUPPRESSIONS, &key, &rest)?;
            println!("{}", serde_json::json!({"created": id.is_some(), "id": id}));
        }
        FieldAction::Remove { fields: f } => {
            let key = edit::suppression_key(&fields(&f)?)?;
            let removed = s.delete(&SUPPRESSIONS, &key)?;
            println!("{}", serde_json::json!({"removed": removed}));
        }
    }
    Ok(())
}
