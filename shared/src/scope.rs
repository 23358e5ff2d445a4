//! `scope` values (RFC 6749 3.3): space-delimited, order irrelevant (BCA-12), each kept once.

use crate::error::ProtocolError;

/// Most scope values one request may carry: the profile's requests need a handful, and a
/// bound keeps a hostile scope from costing quadratic time.
pub const MAX_VALUES: usize = 32;

/// Splits `text` into its values, each once, in the order first seen.
pub fn parse(text: &str) -> Result<Vec<String>, ProtocolError> {
    let mut scope: Vec<String> = Vec::new();
    for value in text.split(' ').filter(|s| !s.is_empty()) {
        if scope.iter().any(|s| s == value) {
            continue;
        }
        if scope.len() == MAX_VALUES {
            return Err(ProtocolError::InvalidScope("scope holds too many values"));
        }
        scope.push(value.to_string());
    }
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_once_and_bounded() {
        assert_eq!(parse(" openid  a openid b ").unwrap(), ["openid", "a", "b"]);
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert!(parse(&many.join(" ")).is_err());
        assert_eq!(parse(&many[..32].join(" ")).unwrap().len(), 32);
    }
}
