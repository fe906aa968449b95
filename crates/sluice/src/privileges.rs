//! The `user` key: start as root (to bind port 25), then run as this user.

use anyhow::{Context, Result};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid, User};
use std::path::Path;

/// Looks up `name`.
pub fn lookup(name: &str) -> Result<User, String> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(format!("no such user `{name}`")),
        Err(e) => Err(format!("cannot look up `{name}`: {e}")),
    }
}

/// Gives `dir` and everything in it to `user`, so it can keep writing there.
pub fn give(dir: &Path, user: &User) -> Result<()> {
    let (uid, gid) = (Some(user.uid.as_raw()), Some(user.gid.as_raw()));
    std::os::unix::fs::chown(dir, uid, gid).with_context(|| format!("user: cannot chown {}", dir.display()))?;
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            give(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// Switches this process (all threads) to `user` for good.
pub fn drop_to(user: &User) -> Result<()> {
    if Uid::effective() == user.uid {
        return Ok(());
    }
    setgroups(&[user.gid]).context("user: setgroups")?;
    setgid(Gid::from_raw(user.gid.as_raw())).context("user: setgid")?;
    setuid(user.uid).context("user: setuid")?;
    anyhow::ensure!(
        setuid(Uid::from_raw(0)).is_err() || user.uid.is_root(),
        "user: privileges could be regained"
    );
    tracing::info!(user = %user.name, uid = user.uid.as_raw(), "dropped privileges");
    Ok(())
}
