//! Distinguished names: the registered `tls_client_auth_subject_dn` (an RFC 4514 string) is
//! compared with the certificate's subject under RFC 4517 `distinguishedNameMatch` (CLI-8,
//! BR-DCR 7.1-15): same RDNs in the same order, each a set of equal attribute values; string
//! values compare without case and with insignificant spaces folded (caseIgnoreMatch); the
//! Brasil attributes written as `=#hex` (BR-DCR 7.1.2) compare by their decoded value.

use x509_cert::der::{Any, Decode, Encode, Tag, Tagged};

/// One attribute value, normalised for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// A directory string: lower-cased, spaces trimmed and folded.
    Text(String),
    /// Anything else: the DER encoding.
    Der(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ava {
    oid: String,
    value: Value,
}

/// A distinguished name, most significant RDN first (the order of the DER encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinguishedName(Vec<Vec<Ava>>);

fn fold(text: &str) -> Value {
    Value::Text(
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase(),
    )
}

/// Decodes a DER attribute value: the string types to text, anything else kept as DER.
fn from_der(der: &[u8]) -> Option<Value> {
    let any = Any::from_der(der).ok()?;
    let bytes = any.value();
    let text = match any.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString => String::from_utf8(bytes.to_vec()).ok()?,
        Tag::TeletexString => bytes.iter().map(|b| char::from(*b)).collect(),
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()?
        }
        _ => return Some(Value::Der(der.to_vec())),
    };
    Some(fold(&text))
}

/// Short names of RFC 4514 and the ones Brasil certificates use, with their OIDs.
const NAMES: [(&str, &str); 18] = [
    ("cn", "2.5.4.3"),
    ("sn", "2.5.4.4"),
    ("serialnumber", "2.5.4.5"),
    ("c", "2.5.4.6"),
    ("l", "2.5.4.7"),
    ("st", "2.5.4.8"),
    ("street", "2.5.4.9"),
    ("o", "2.5.4.10"),
    ("ou", "2.5.4.11"),
    ("title", "2.5.4.12"),
    ("businesscategory", "2.5.4.15"),
    ("givenname", "2.5.4.42"),
    ("organizationidentifier", "2.5.4.97"),
    ("uid", "0.9.2342.19200300.100.1.1"),
    ("dc", "0.9.2342.19200300.100.1.25"),
    ("emailaddress", "1.2.840.113549.1.9.1"),
    ("jurisdictioncountryname", "1.3.6.1.4.1.311.60.2.1.3"),
    ("jurisdictionc", "1.3.6.1.4.1.311.60.2.1.3"),
];

/// RFC 4514 3: an attribute type is a short name or a dotted OID, which may carry the
/// `OID.` prefix of older writers (RFC 1779). Any dotted OID is accepted, in or out of the
/// table, so that every attribute a certificate can hold can be registered.
fn attribute_oid(name: &str) -> Option<String> {
    let name = name.trim();
    let name = match name.get(..4) {
        Some(prefix) if prefix.eq_ignore_ascii_case("oid.") => &name[4..],
        _ => name,
    };
    let dotted = name.split('.').count() > 1
        && name
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if dotted {
        return Some(name.to_string());
    }
    let lower = name.to_ascii_lowercase();
    NAMES
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, oid)| (*oid).to_string())
}

/// Trims the spaces around a value, but not an escaped trailing one (`a\ `, RFC 4514 2.4).
fn trim_value(value: &str) -> &str {
    let value = value.trim_start();
    let mut end = value.len();
    while end > 0 && value.as_bytes()[end - 1] == b' ' {
        let backslashes = value.as_bytes()[..end - 1]
            .iter()
            .rev()
            .take_while(|b| **b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            break;
        }
        end -= 1;
    }
    &value[..end]
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Splits at unescaped `sep`, keeping escapes in the pieces.
fn split_unescaped(text: &str, seps: &[u8]) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c.is_ascii() && seps.contains(&(c as u8)) {
            parts.push(String::new());
            continue;
        }
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Removes RFC 4514 escapes (`\,` and `\XX`) from a string value.
fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::new();
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            let next = *raw.get(i + 1)?;
            if next.is_ascii_hexdigit() {
                bytes.push(
                    u8::from_str_radix(std::str::from_utf8(raw.get(i + 1..i + 3)?).ok()?, 16)
                        .ok()?,
                );
                i += 3;
            } else {
                bytes.push(next);
                i += 2;
            }
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

impl DistinguishedName {
    /// Parses an RFC 4514 string (least significant RDN first, as written).
    pub fn parse(text: &str) -> Option<Self> {
        let mut rdns = Vec::new();
        for rdn in split_unescaped(text, b",;") {
            let mut avas = Vec::new();
            for ava in split_unescaped(&rdn, b"+") {
                let (name, value) = ava.split_once('=')?;
                let oid = attribute_oid(name)?;
                let value = trim_value(value);
                let value = match value.strip_prefix('#') {
                    Some(h) => from_der(&hex(h)?)?,
                    None => fold(&unescape(value)?),
                };
                avas.push(Ava { oid, value });
            }
            rdns.push(avas);
        }
        if rdns.is_empty() {
            return None;
        }
        rdns.reverse();
        Some(Self(rdns))
    }

    /// The subject of a certificate.
    pub fn from_name(name: &x509_cert::name::Name) -> Option<Self> {
        let mut rdns = Vec::new();
        for rdn in name.0.iter() {
            let mut avas = Vec::new();
            for ava in rdn.0.iter() {
                let der = ava.value.to_der().ok()?;
                avas.push(Ava {
                    oid: ava.oid.to_string(),
                    value: from_der(&der)?,
                });
            }
            rdns.push(avas);
        }
        Some(Self(rdns))
    }

    /// RFC 4517 `distinguishedNameMatch`.
    pub fn matches(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.len() == b.len()
                    && a.iter().all(|x| b.contains(x))
                    && b.iter().all(|x| a.contains(x))
            })
    }

    /// The text value of the attribute `oid` in the most significant RDN that has it.
    pub fn text(&self, oid: &str) -> Option<&str> {
        self.0
            .iter()
            .flatten()
            .find(|a| a.oid == oid)
            .and_then(|a| match &a.value {
                Value::Text(t) => Some(t.as_str()),
                Value::Der(_) => None,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dn(s: &str) -> DistinguishedName {
        DistinguishedName::parse(s).unwrap_or_else(|| panic!("cannot parse {s}"))
    }

    #[test]
    fn cli_8_case_spaces_and_names_do_not_matter() {
        assert!(
            dn("CN=tpp.example, O=TPP  Ltda,C=BR").matches(&dn("cn=TPP.example,o=tpp ltda,c=br"))
        );
        assert!(dn("2.5.4.3=x,C=BR").matches(&dn("CN=x,C=BR")));
        assert!(!dn("CN=x,C=BR").matches(&dn("C=BR,CN=x")), "order matters");
        assert!(!dn("CN=x,C=BR").matches(&dn("CN=x,O=y,C=BR")));
        assert!(
            dn("CN=a+UID=b,C=BR").matches(&dn("UID=b+CN=a,C=BR")),
            "multi-valued RDNs are sets"
        );
        assert!(dn(r"CN=Acme\, Inc.,C=BR").matches(&dn(r"CN=acme\2c inc.,C=BR")));
    }

    #[test]
    fn cli_8_rfc_4514_forms_parse() {
        assert!(
            dn(r"CN=a\ ,C=BR").matches(&dn("CN=a,C=BR")),
            "escaped trailing space"
        );
        assert!(
            dn("OID.2.5.4.3=x,C=BR").matches(&dn("CN=x,C=BR")),
            "OID. prefix"
        );
        assert!(dn("oid.2.5.4.3=x,C=BR").matches(&dn("CN=x,C=BR")));
        let unlisted = dn("1.3.6.1.4.1.99999.1=Value,CN=x,C=BR");
        assert!(unlisted.matches(&dn("1.3.6.1.4.1.99999.1=value,CN=x,C=BR")));
        assert!(!unlisted.matches(&dn("1.3.6.1.4.1.99999.2=value,CN=x,C=BR")));
        assert!(DistinguishedName::parse("postalCodeX=1").is_none());
    }

    #[test]
    fn cli_8_brasil_hex_values_match_their_string_form() {
        // organizationIdentifier (2.5.4.97) as a UTF8String "OFBBR-123", in =#hex form.
        let hex_form = "2.5.4.97=#0c094f464242522d313233,CN=tpp,C=BR";
        assert!(dn(hex_form).matches(&dn("organizationIdentifier=OFBBR-123,CN=tpp,C=BR")));
        assert!(!dn(hex_form).matches(&dn("organizationIdentifier=OFBBR-124,CN=tpp,C=BR")));
        assert_eq!(dn(hex_form).text("2.5.4.97"), Some("ofbbr-123"));
        assert!(DistinguishedName::parse("2.5.4.97=#0c09zz").is_none());
        assert!(DistinguishedName::parse("nonsense").is_none());
    }
}
