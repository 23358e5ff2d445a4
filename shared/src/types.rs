//! Brazilian document numbers, validated with their check digits.

use serde::{Deserialize, Serialize};

fn digits<const N: usize>(text: &str) -> Option<[u32; N]> {
    let bytes = text.as_bytes();
    if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut out = [0; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = u32::from(b - b'0');
    }
    // A run of one digit passes the arithmetic but is never issued.
    (!out.iter().all(|d| *d == out[0])).then_some(out)
}

/// Serde through the checked constructor: a stored or received number is re-validated.
macro_rules! document_serde {
    ($type:ident, $error:literal) => {
        impl TryFrom<String> for $type {
            type Error = &'static str;
            fn try_from(text: String) -> Result<Self, Self::Error> {
                Self::parse(&text).ok_or($error)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.0
            }
        }
    };
}

/// Personal data (LGPD): `Debug` prints the type only, so no log line, panic or assertion
/// message carries the number, and neither does anything that derives `Debug` around it (a
/// user, a consent).
macro_rules! redacted_debug {
    ($type:ident) => {
        impl std::fmt::Debug for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($type), "([redacted])"))
            }
        }
    };
}

/// A CPF: 11 digits as a string, leading zeros kept, no punctuation, check digits right
/// (FAPI-BR 5.2.2.3, TKN-9).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Cpf(String);

document_serde!(Cpf, "not a valid CPF");
redacted_debug!(Cpf);

impl Cpf {
    /// Parses `^\d{11}$` and checks both check digits (mod 11).
    pub fn parse(text: &str) -> Option<Self> {
        let d = digits::<11>(text)?;
        let check = |len: usize| {
            let sum: u32 = (0..len).map(|i| d[i] * (len as u32 + 1 - i as u32)).sum();
            (sum * 10 % 11) % 10
        };
        (check(9) == d[9] && check(10) == d[10]).then(|| Self(text.to_string()))
    }

    /// The 11 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A CNPJ, in either form the Receita Federal issues (FAPI-BR 5.2.2.4, TKN-9, AMB-24): 14
/// digits, or since July 2026 (IN RFB 2.229/2024) 12 characters of `[0-9A-Z]` then 2 digits.
/// Both check digits are verified.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Cnpj(String);

document_serde!(Cnpj, "not a valid CNPJ");
redacted_debug!(Cnpj);

impl Cnpj {
    /// Parses `^[0-9A-Z]{12}\d{2}$` and checks both check digits: mod 11 with weights 2..=9
    /// from the right, each character worth its ASCII code minus 48 (so digits keep their
    /// value and the numeric form is unchanged).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if b.len() != 14
            || !b[..12]
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
            || !b[12..].iter().all(u8::is_ascii_digit)
            || b.iter().all(|c| *c == b[0])
        {
            return None;
        }
        let d: Vec<u32> = b.iter().map(|c| u32::from(c - b'0')).collect();
        let check = |len: usize| {
            // Weights run 2..=9 from the right, repeating.
            let sum: u32 = (0..len)
                .map(|i| d[i] * (((len - 1 - i) % 8) as u32 + 2))
                .sum();
            match sum % 11 {
                0 | 1 => 0,
                r => 11 - r,
            }
        };
        (check(12) == d[12] && check(13) == d[13]).then(|| Self(text.to_string()))
    }

    /// The 14 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tkn_9_cpf_check_digits() {
        assert!(Cpf::parse("52998224725").is_some());
        assert!(Cpf::parse("01234567890").is_some(), "leading zero kept");
        assert!(Cpf::parse("52998224724").is_none(), "second digit wrong");
        assert!(Cpf::parse("52998224735").is_none(), "first digit wrong");
        assert!(Cpf::parse("529.982.247-25").is_none(), "punctuation");
        assert!(Cpf::parse("11111111111").is_none(), "repeated digit");
        assert!(Cpf::parse("5299822472").is_none(), "too short");
    }

    #[test]
    fn tkn_9_cnpj_check_digits() {
        assert!(Cnpj::parse("11222333000181").is_some());
        assert!(Cnpj::parse("11444777000161").is_some());
        assert!(Cnpj::parse("11222333000182").is_none());
        assert!(Cnpj::parse("11.222.333/0001-81").is_none());
        assert!(Cnpj::parse("00000000000000").is_none());
    }

    #[test]
    fn amb_24_alphanumeric_cnpj_check_digits() {
        // The Receita Federal's published example.
        assert!(Cnpj::parse("12ABC34501DE35").is_some());
        assert!(
            Cnpj::parse("12ABC34501DE36").is_none(),
            "second digit wrong"
        );
        assert!(Cnpj::parse("12ABC34501DE45").is_none(), "first digit wrong");
        assert!(Cnpj::parse("12abc34501de35").is_none(), "lower case");
        assert!(
            Cnpj::parse("12ABC34501DEA5").is_none(),
            "check digits are digits"
        );
        assert!(Cnpj::parse("12.ABC.345/01DE-35").is_none());
    }
}
