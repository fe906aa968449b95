//! Exports the plugin API (`MQ_*`) from the `sluice` binary's dynamic symbol
//! table, so plugins resolve it at dlopen time.
fn main() {
    let list = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin/exports.list");
    println!("cargo::rerun-if-changed={list}");
    println!("cargo::rustc-link-arg-bins=-Wl,--dynamic-list={list}");
}
