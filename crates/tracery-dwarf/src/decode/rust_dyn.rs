//! Rust trait objects: the concrete type named by the vtable pointer, and the value the
//! plan copied behind the data pointer (`fetch_plan::builder::rust_dyn`).

use super::{Bytes, Decoder};
use crate::{
    fetch_plan::{Follow, RegionId},
    value::Value,
};

impl Decoder<'_> {
    /// The trait object at `off`: `data` and `vtable` are its pointers' offsets.
    pub(super) fn dyn_trait(
        &self,
        r: RegionId,
        b: &Bytes,
        off: u64,
        (data, vtable): (u64, u64),
        nest: usize,
    ) -> Value {
        let (ptr, vt) = match (b.word(off + data), b.word(off + vtable)) {
            (Ok(p), Ok(v)) => (p, v),
            (Err(hole), _) | (_, Err(hole)) => return hole,
        };
        if ptr == 0 {
            return Value::Null;
        }
        let Some((name, ty)) = self.plan.rust_vtables.get(&vt.wrapping_sub(self.bias)) else {
            return Value::Interface {
                type_name: format!("unknown (vtable {vt:#x})"),
                value: None,
            };
        };
        let value = match (ty, self.plan.follows.get(&(r, off + data))) {
            (None, _) => Value::unavailable("concrete type not described in DWARF"),
            (Some(ty), Some(Follow::Region(t))) => {
                let tb = self.region(*t);
                self.value(*t, &tb, 0, *ty, nest + 1)
            }
            (Some(_), Some(Follow::Budget)) => Value::unavailable("capture budget exhausted"),
            (Some(_), Some(Follow::Skipped(why))) => Value::unavailable(why.clone()),
            // A zero-sized type: no bytes to read.
            (Some(ty), None) if self.plan.types.size_of(*ty) == Some(0) => {
                let empty = Bytes {
                    buf: Vec::new(),
                    holes: Vec::new(),
                };
                self.value(r, &empty, 0, *ty, nest + 1)
            }
            (Some(_), None) => Value::unavailable("not captured: pointer depth limit"),
        };
        Value::Interface {
            type_name: name.clone(),
            value: Some(Box::new(value)),
        }
    }
}
