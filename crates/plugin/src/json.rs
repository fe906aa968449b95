//! `MQ_json`: json-c is not linked into Sluice. A plugin that uses MQ_json
//! links libjson-c itself, which puts it in the process; the host then finds
//! its functions with `dlopen(RTLD_NOLOAD)` (the library was loaded as a
//! local dependency of the plugin, so it is not in the global scope).

use libloading::os::unix::Library;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;

/// The json-c functions the host uses.
pub(crate) struct JsonC {
    pub parse: unsafe extern "C" fn(*const c_char) -> *mut c_void,
    pub to_string: unsafe extern "C" fn(*mut c_void, c_int) -> *const c_char,
    pub put: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub object_add: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void) -> c_int,
    pub new_string_len: unsafe extern "C" fn(*const c_char, c_int) -> *mut c_void,
    _library: Library,
}

// SAFETY: the function pointers are plain C functions, safe to share; json-c
// objects are only ever used on the worker thread that built them.
unsafe impl Sync for JsonC {}
unsafe impl Send for JsonC {}

/// Says once, when a plugin first calls MQ_json without json-c in the
/// process, which plugin it was (not at start: most plugins never call it).
pub(crate) fn report_missing(plugin: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::error!(
            plugin,
            "MQ_json: json-c is not loaded (link the plugin with -ljson-c); MQ_json returns NULL"
        );
    });
}

/// json-c, if some plugin brought it into the process.
pub(crate) fn json_c() -> Option<&'static JsonC> {
    static JSON_C: OnceLock<Option<JsonC>> = OnceLock::new();
    JSON_C
        .get_or_init(|| {
            crate::loader::already_loaded(&["libjson-c.so.5", "libjson-c.so.4", "libjson-c.so.3", "libjson-c.so"])
                .and_then(|lib| {
                    // SAFETY: json-c's public signatures (json_object.h, json_tokener.h).
                    unsafe {
                        Some(JsonC {
                            parse: *lib.get(b"json_tokener_parse\0").ok()?,
                            to_string: *lib.get(b"json_object_to_json_string_ext\0").ok()?,
                            put: *lib.get(b"json_object_put\0").ok()?,
                            object_add: *lib.get(b"json_object_object_add\0").ok()?,
                            new_string_len: *lib.get(b"json_object_new_string_len\0").ok()?,
                            _library: lib,
                        })
                    }
                })
        })
        .as_ref()
}
