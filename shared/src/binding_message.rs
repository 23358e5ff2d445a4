//! `binding_message` (CIBA 7.1; BCA-17/18): a short text that the consumption device and the
//! authentication device both show, word for word, so that the holder can tell the request
//! they approve is the one in front of them.

use unicode_normalization::UnicodeNormalization;

use crate::error::ProtocolError;

/// Longest message, in characters after NFC normalisation (BCA-18 [decision]).
pub const MAX_CHARS: usize = 40;

/// A binding message the authentication device can show as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingMessage(String);

fn invalid(why: &'static str) -> ProtocolError {
    ProtocolError::InvalidBindingMessage(why)
}

impl BindingMessage {
    /// BCA-18: 1 to 40 characters once NFC-normalised, no control characters, no URL (a
    /// phishing vector on the holder's own phone).
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        let text: String = text.nfc().collect();
        let chars = text.chars().count();
        if chars == 0 || text.trim().is_empty() {
            return Err(invalid("binding_message must not be empty"));
        }
        if chars > MAX_CHARS {
            return Err(invalid("binding_message is longer than 40 characters"));
        }
        if text
            .chars()
            .any(|c| c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
        {
            return Err(invalid(
                "binding_message must not hold control or direction characters",
            ));
        }
        let lower = text.to_lowercase();
        if lower.contains("://") || lower.contains("www.") {
            return Err(invalid("binding_message must not hold a URL"));
        }
        Ok(Self(text))
    }

    /// The text, as the devices show it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bca_18_what_the_device_can_show() {
        assert_eq!(
            BindingMessage::parse("Compra 4521").unwrap().as_str(),
            "Compra 4521"
        );
        // "é" written as e + combining acute is one character after NFC.
        let decomposed = format!("{}{}", "a".repeat(39), "e\u{301}");
        assert_eq!(
            BindingMessage::parse(&decomposed)
                .unwrap()
                .as_str()
                .chars()
                .count(),
            40
        );
        assert!(BindingMessage::parse(&"é".repeat(40)).is_ok());
        for bad in [
            "",
            "   ",
            &"a".repeat(41),
            "line\nbreak",
            "tab\there",
            "see https://evil.example",
            "go to WWW.evil.example",
            "right\u{202E}to left",
        ] {
            assert!(
                matches!(
                    BindingMessage::parse(bad),
                    Err(ProtocolError::InvalidBindingMessage(_))
                ),
                "{bad:?}"
            );
        }
    }
}
