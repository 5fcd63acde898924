//! `sekisho.toml` through the config parser, and the duration and
//! office-hours syntaxes it and the policies use.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{Config, Hours, format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::parse(text, std::path::Path::new("/etc/sekisho/sekisho.toml"));
    if let Ok(d) = parse_duration(text) {
        let shown = format_duration(d);
        assert_eq!(
            parse_duration(&shown),
            Ok(d),
            "{shown:?} does not read back"
        );
    }
    if let Ok(h) = Hours::parse(text) {
        let shown = h.to_string();
        let again = Hours::parse(&shown).expect("displayed hours parse");
        assert_eq!(again.to_string(), shown);
    }
});
