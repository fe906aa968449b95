//! PROXY headers and command lines from arbitrary bytes: no panics, and a
//! parsed header never claims more bytes than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = sluice_smtp::proxy::parse(data) {
        assert!(used <= data.len());
    }
    let _ = sluice_smtp::command::parse(data, data.first().is_some_and(|b| b & 1 == 1));
});
