//! Policy files (`policies/*.toml`) through the loader's parser and its
//! cross-file checks. Input: one or two files separated by a NUL byte.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use sekisho::fuzzing::{Config, PolicySet};

/// The networks the example policies in `policies/` name.
const CONFIG: &str = r#"
[[network]]
name = "acme-office"
cidrs = ["127.0.0.1/32"]
[[network]]
name = "acme-sub-office"
cidrs = ["127.0.0.0/8", "2001:db8::/32"]
[[network]]
name = "lg-closed-vpn"
cidrs = ["127.0.0.2/32"]
closed = true
"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(PathBuf, String)> = text
        .splitn(2, '\0')
        .enumerate()
        .map(|(i, t)| (PathBuf::from(format!("/policies/{i}.toml")), t.to_owned()))
        .collect();
    let networks = Config::parse(CONFIG, std::path::Path::new("/etc/sekisho/sekisho.toml"))
        .expect("the fixed config parses")
        .networks;
    match PolicySet::parse_files(&files, Some(&networks), None) {
        Ok(_) => {}
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without errors");
            for e in &errors.0 {
                // Every error names a line that exists in its file.
                if let Some(line) = e.line {
                    let (_, text) = files.iter().find(|(p, _)| *p == e.file).expect("file");
                    let lines = text.matches('\n').count() + 1;
                    assert!((1..=lines).contains(&line), "line {line} out of range");
                }
            }
        }
    }
});
