//! Language-aware display of types and values. The renderers live in `tracery-model`,
//! beside the value tree, so a client renders snapshots without the DWARF stack.

pub use tracery_model::render::{render_text, Doc, Language, SourceLanguage, TypeForm};
pub use tracery_model::Value;
