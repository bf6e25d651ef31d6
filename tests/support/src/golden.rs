//! Golden files: expected bytes kept in `tests/golden/`, compared exactly.
//!
//! `BLESS=1 ./tests/run.sh` (or `BLESS=1 cargo test --test e2e NAME`)
//! writes what the run produced over the expected file instead; review the
//! diff before committing it.

use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden")
}

/// Checks `actual` against the golden file `name`, or rewrites the file
/// when `BLESS` is set.
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("cannot bless {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read golden file {}: {e} (BLESS=1 creates it)",
            path.display()
        )
    });
    assert!(
        actual == expected,
        "the output differs from golden file {} (BLESS=1 rewrites it; review the diff)\n\
         expected:\n{expected}\nactual:\n{actual}",
        path.display()
    );
}
