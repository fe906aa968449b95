//! Exports the plugin API (`MQ_*`) from the `sluice` binary's dynamic symbol
//! table, so plugins resolve it at dlopen time.
fn main() {
    // Read when the script runs, not when it was compiled: a build script
    // compiled for another checkout sharing the target directory must still
    // name this checkout's list.
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let list = format!("{dir}/../plugin/exports.list");
    println!("cargo::rerun-if-changed={list}");
    println!("cargo::rustc-link-arg-bins=-Wl,--dynamic-list={list}");
}
