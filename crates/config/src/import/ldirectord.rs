//! ldirectord.cf to lvsd YAML (placeholder replaced below).
use std::path::Path;

use super::Converted;
use crate::Error;

/// Converts an ldirectord.cf.
pub fn convert(_text: &str, _path: &Path) -> Result<Converted, Error> {
    Err(Error::Invalid {
        path: String::new(),
        problems: vec![],
        omitted: 0,
    })
}
