//! Display names of types, per source language: DWARF names most types, and the rest
//! (C pointers, arrays, function types) are built from their parts by [`Language::type_name`].

use super::{load::TypeLoader, TypeId, TypeKind};
use crate::render::{SourceLanguage, TypeForm};

/// Nesting bound for names (pointer to pointer to ...), against malformed DWARF.
const NAME_DEPTH: usize = 16;

impl TypeLoader<'_, '_> {
    /// The display name of a type, built per source language (memoized).
    pub fn name_of(&mut self, id: TypeId) -> String {
        self.name_depth(id, 0)
    }

    fn name_depth(&mut self, id: TypeId, depth: usize) -> String {
        if let Some(n) = self.names.get(&id) {
            return n.clone();
        }
        if depth > NAME_DEPTH {
            return "...".into();
        }
        let n = self.compute_name(id, depth).unwrap_or_else(|| "?".into());
        self.names.insert(id, n.clone());
        n
    }

    fn compute_name(&mut self, id: TypeId, depth: usize) -> Option<String> {
        let die = self.units.at_offset(id.0)?;
        let e = self.units.entry(die).ok()?;
        let lang = self.lang(die.unit);
        let language = lang.language();
        let name = self.units.name(die.unit, &e);
        let target = |this: &mut Self| -> String {
            match this.type_attr(die.unit, &e) {
                Some(t) => this.name_depth(t, depth + 1),
                None => language.type_name(TypeForm::Void),
            }
        };
        Some(match e.tag() {
            gimli::DW_TAG_structure_type
            | gimli::DW_TAG_class_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type => {
                let keyword = match e.tag() {
                    gimli::DW_TAG_union_type => "union",
                    gimli::DW_TAG_enumeration_type => "enum",
                    gimli::DW_TAG_class_type => "class",
                    _ => "struct",
                };
                let qualified = name.map(|n| match lang {
                    SourceLanguage::Rust | SourceLanguage::Cpp => {
                        self.units.qualified_name(die, &n)
                    }
                    _ => n,
                });
                language.type_name(TypeForm::Tagged {
                    keyword,
                    name: qualified.as_deref(),
                })
            }
            gimli::DW_TAG_typedef | gimli::DW_TAG_base_type | gimli::DW_TAG_unspecified_type => {
                match name {
                    Some(n) if lang == SourceLanguage::Rust && e.tag() == gimli::DW_TAG_typedef => {
                        self.units.qualified_name(die, &n)
                    }
                    Some(n) => n,
                    None => target(self),
                }
            }
            gimli::DW_TAG_pointer_type
            | gimli::DW_TAG_reference_type
            | gimli::DW_TAG_rvalue_reference_type => match name {
                Some(n) => n,
                None => {
                    let t = target(self);
                    language.type_name(TypeForm::Pointer {
                        target: &t,
                        reference: e.tag() != gimli::DW_TAG_pointer_type,
                    })
                }
            },
            gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type => {
                let t = target(self);
                let qualifier = if e.tag() == gimli::DW_TAG_const_type {
                    "const"
                } else {
                    "volatile"
                };
                language.type_name(TypeForm::Qualified {
                    qualifier,
                    target: &t,
                })
            }
            gimli::DW_TAG_array_type => match name {
                Some(n) => n,
                None => {
                    let elem = target(self);
                    let dims = match self.array(die, &e).ok()? {
                        TypeKind::Array { dims, .. } => dims,
                        _ => vec![None],
                    };
                    language.type_name(TypeForm::Array {
                        elem: &elem,
                        dims: &dims,
                    })
                }
            },
            gimli::DW_TAG_subroutine_type => match name {
                Some(n) => n,
                None => {
                    let ret = self
                        .type_attr(die.unit, &e)
                        .map(|t| self.name_depth(t, depth + 1));
                    let mut params = Vec::new();
                    for (child, ce) in self.children(die).ok()? {
                        if ce.tag() == gimli::DW_TAG_formal_parameter {
                            let p = self.type_attr(child.unit, &ce);
                            params.push(p.map_or_else(
                                || "?".to_string(),
                                |t| self.name_depth(t, depth + 1),
                            ));
                        } else if ce.tag() == gimli::DW_TAG_unspecified_parameters {
                            params.push("...".into());
                        }
                    }
                    language.type_name(TypeForm::Function {
                        ret: ret.as_deref(),
                        params: &params,
                    })
                }
            },
            _ => match name {
                Some(n) => n,
                None => target(self),
            },
        })
    }
}
