//! Loading plugins: every `*.so` in `plugin-directory`, byte-wise alphabetical,
//! `dlopen(RTLD_NOW | RTLD_LOCAL)` so a missing symbol fails at load; a
//! required `mq_version()` that must return [`crate::API_VERSION`].

use crate::context::MqContext;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::path::{Path, PathBuf};

/// Why plugins could not be loaded; each names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin-directory {0}: {1}")]
    Directory(PathBuf, std::io::Error),
    #[error("plugin {0}: cannot be loaded: {1}")]
    Open(PathBuf, String),
    #[error("plugin {0}: does not export mq_version(), which every plugin must (return MQ_API_VERSION, {expected})", expected = crate::API_VERSION)]
    NoVersion(PathBuf),
    #[error("plugin {path}: built for API version {found}, this host implements MQ_API_VERSION {expected}; rebuild it against this host's mailerq.h", path = .0.display(), found = .1, expected = crate::API_VERSION)]
    WrongVersion(PathBuf, i32),
}

type VoidFn = unsafe extern "C" fn();
type ContextFn = unsafe extern "C" fn(*mut MqContext);

/// The lifecycle functions a plugin may export beside its hooks.
const LIFECYCLE: &[&str] = &[
    "mq_initialize",
    "mq_cleanup",
    "mq_context_initialize",
    "mq_context_cleanup",
];

/// Every function a plugin may export, by name; what `plugin check` reports.
pub fn exportable() -> impl Iterator<Item = &'static str> {
    LIFECYCLE
        .iter()
        .copied()
        .chain(crate::hooks::HookName::ALL.iter().map(|h| h.symbol()))
}

/// One loaded plugin.
pub struct Plugin {
    /// File name, e.g. `10-auth.so`; how logs name it.
    pub name: String,
    /// The name again, for the per-connection handles.
    pub(crate) shared_name: std::sync::Arc<str>,
    pub path: PathBuf,
    /// The functions it exports, in [`exportable`] order.
    pub exports: Vec<&'static str>,
    initialize: Option<VoidFn>,
    cleanup: Option<VoidFn>,
    pub(crate) context_initialize: Option<ContextFn>,
    pub(crate) context_cleanup: Option<ContextFn>,
    pub(crate) hooks: crate::hooks::HookTable,
    // Kept last so it is dropped after the function pointers into it.
    _library: Library,
}

impl Plugin {
    /// Opens one plugin file and checks its version.
    pub fn open(path: &Path) -> Result<Plugin, PluginError> {
        // SAFETY: dlopen runs the plugin's initialisers; loading native code
        // chosen by the operator is the point of plugin-directory. RTLD_NOW
        // resolves every symbol now, so a missing one is an error here rather
        // than a crash at first call.
        let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
            .map_err(|e| PluginError::Open(path.to_path_buf(), with_sources(&e)))?;
        // SAFETY: the header declares mq_version as `int mq_version(void)`.
        let version = unsafe { library.get::<unsafe extern "C" fn() -> i32>("mq_version") }
            .map_err(|_| PluginError::NoVersion(path.to_path_buf()))?;
        // SAFETY: a plugin's mq_version takes nothing and returns an int.
        let found = unsafe { version() };
        if found != crate::API_VERSION {
            return Err(PluginError::WrongVersion(path.to_path_buf(), found));
        }
        // SAFETY (all lookups below): the types are those mailerq.h declares for
        // these names; the pointers stay valid while `library` is loaded, and
        // the Plugin keeps it loaded for as long as it can be called.
        let void_fn = |name: &str| unsafe { library.get::<VoidFn>(name).ok().map(|s| *s) };
        let context_fn = |name: &str| unsafe { library.get::<ContextFn>(name).ok().map(|s| *s) };
        let exports = exportable()
            // SAFETY: only asks whether the symbol exists; it is not called.
            .filter(|h| unsafe { library.get::<VoidFn>(*h) }.is_ok())
            .collect();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Plugin {
            shared_name: std::sync::Arc::from(name.as_str()),
            name,
            path: path.to_path_buf(),
            exports,
            initialize: void_fn("mq_initialize"),
            cleanup: void_fn("mq_cleanup"),
            context_initialize: context_fn("mq_context_initialize"),
            context_cleanup: context_fn("mq_context_cleanup"),
            // SAFETY: a plugin built against mailerq.h; the Plugin keeps the library loaded.
            hooks: unsafe { crate::hooks::HookTable::load(&library) },
            _library: library,
        })
    }
}

/// The first of `names` that is already loaded in the process (by a plugin),
/// without loading anything new: how the host finds json-c and libev, which
/// it does not link itself.
pub(crate) fn already_loaded(names: &[&str]) -> Option<Library> {
    names.iter().find_map(|name| {
        // SAFETY: RTLD_NOLOAD only returns a library that is already loaded,
        // so no initialiser runs.
        unsafe { Library::open(Some(*name), RTLD_NOW | libc::RTLD_NOLOAD) }.ok()
    })
}

/// An error and its sources: libloading keeps dlerror()'s text (which names
/// the missing symbol) in the source.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// All plugins, in call order.
pub struct Plugins {
    pub list: Vec<Plugin>,
    /// Told how long each hook call took, per plugin (the daemon's metrics):
    /// from the call until the plugin gave control back (its hand-off included).
    pub observer: Option<HookObserver>,
}

/// See [`Plugins::observer`]: plugin name, hook name, time.
pub type HookObserver = std::sync::Arc<dyn Fn(&str, &'static str, std::time::Duration) + Send + Sync>;

impl Plugins {
    /// No plugins.
    pub fn none() -> Plugins {
        Plugins {
            list: Vec::new(),
            observer: None,
        }
    }

    /// Loads every `*.so` in `dir` in byte-wise order of file name; other files
    /// are skipped (logged at debug). The first failure stops start-up.
    pub fn load_directory(dir: &Path) -> Result<Plugins, PluginError> {
        let entries = std::fs::read_dir(dir).map_err(|e| PluginError::Directory(dir.to_path_buf(), e))?;
        let mut paths = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| PluginError::Directory(dir.to_path_buf(), e))?;
            let path = entry.path();
            let is_so = path.extension().is_some_and(|e| e == "so");
            if is_so && path.is_file() {
                paths.push(path);
            } else {
                tracing::debug!(file = %path.display(), "plugin-directory: not a plugin (only regular *.so files are), skipped");
            }
        }
        // Byte-wise order of the file names (OsStr compares bytes on Unix).
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        let list = paths.iter().map(|p| Plugin::open(p)).collect::<Result<Vec<_>, _>>()?;
        for p in &list {
            tracing::info!(plugin = %p.name, hooks = ?p.exports, "plugin loaded");
        }
        Ok(Plugins { list, observer: None })
    }

    /// `mq_initialize` of every plugin, in order (main thread, before ports open).
    pub fn initialize(&self) {
        for p in &self.list {
            if let Some(f) = p.initialize {
                // SAFETY: `void mq_initialize(void)`, called once, as the API says.
                unsafe { f() };
            }
        }
    }

    /// `mq_cleanup` of every plugin, in order (after the workers stopped).
    pub fn cleanup(&self) {
        for p in &self.list {
            if let Some(f) = p.cleanup {
                // SAFETY: `void mq_cleanup(void)`, called once at shutdown.
                unsafe { f() };
            }
        }
    }
}
