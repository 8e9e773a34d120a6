//! Snapshot parts that have a `tracery_dwarf` counterpart: the source language.
//!
//! `Snapshot`, `Location` and `StackFrame` themselves belong to `tracery-agent`, which
//! depends on this crate; their conversions live there.

use tracery_dwarf::SourceLanguage;

use super::ConvertError;
use crate::v1;

impl From<SourceLanguage> for v1::Language {
    fn from(lang: SourceLanguage) -> Self {
        match lang {
            SourceLanguage::C => v1::Language::C,
            SourceLanguage::Cpp => v1::Language::Cpp,
            SourceLanguage::Rust => v1::Language::Rust,
            SourceLanguage::Go => v1::Language::Go,
        }
    }
}

impl TryFrom<v1::Language> for SourceLanguage {
    type Error = ConvertError;

    fn try_from(lang: v1::Language) -> Result<Self, ConvertError> {
        match lang {
            v1::Language::C => Ok(SourceLanguage::C),
            v1::Language::Cpp => Ok(SourceLanguage::Cpp),
            v1::Language::Rust => Ok(SourceLanguage::Rust),
            v1::Language::Go => Ok(SourceLanguage::Go),
            v1::Language::Unspecified => Err(ConvertError::missing("Snapshot.language")),
        }
    }
}
