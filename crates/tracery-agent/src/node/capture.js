// Installed once per Node process, as a non-enumerable property of the agent's binding
// function (which Runtime.addBinding created): the program's own objects are never touched.
// Each breakpoint's condition calls `capture` and evaluates to false, so V8 never pauses.
// Nothing here calls a getter, a Proxy trap or a user-defined method: values are read
// through property descriptors and saved built-ins only.
//
// Cost matters: `capture` runs on the service's only JavaScript thread at every hit. Types
// are told by `util.types` (native checks): probing a Map getter on a plain object throws,
// and with the debugger enabled every throw costs a stack trace and an exception event,
// which made serializing several times slower. Limits are checked before anything is read.
(function (binding, types, limits) {
  'use strict';
  const getOwnNames = Object.getOwnPropertyNames;
  const getDesc = Object.getOwnPropertyDescriptor;
  const getProto = Object.getPrototypeOf;
  const isArray = Array.isArray;
  const mapSize = getDesc(Map.prototype, 'size').get;
  const setSize = getDesc(Set.prototype, 'size').get;
  const mapEntries = Map.prototype.entries;
  const setValues = Set.prototype.values;
  const mapIterNext = getProto(new Map().entries()).next;
  const setIterNext = getProto(new Set().values()).next;
  const isProxy = types.isProxy;
  const isMap = types.isMap;
  const isSet = types.isSet;
  const dateIso = Date.prototype.toISOString;
  const isDate = types.isDate;
  const fnName = getDesc(Function.prototype, 'name');
  const stringify = JSON.stringify;
  const typedLength = getDesc(getProto(Uint8Array.prototype), 'length').get;
  const send = binding;
  const SavedError = Error;
  const states = new Map();

  function ctorName(o) {
    try {
      for (let p = o, i = 0; p !== null && i < 8; p = getProto(p), i++) {
        const d = getDesc(p, 'constructor');
        if (d && 'value' in d && typeof d.value === 'function') {
          const n = getDesc(d.value, 'name');
          return n && typeof n.value === 'string' && n.value ? n.value : 'Object';
        }
      }
    } catch (e) { /* a Proxy prototype chain: shown as Object */ }
    return o === null || getProto(o) === null ? 'Object' : 'Object';
  }

  function functionName(f) {
    const d = getDesc(f, 'name');
    return d && typeof d.value === 'string' ? d.value : '';
  }

  // One value, under the caps; `budget.left` counts bytes of the result left.
  function ser(v, depth, seen, budget) {
    if (budget.left <= 0) return { t: 'budget' };
    budget.left -= 8;
    switch (typeof v) {
      case 'undefined': return { t: 'u' };
      case 'boolean': return { t: 'b', v };
      case 'number':
        if (Number.isFinite(v) && !Object.is(v, -0)) return { t: 'n', v };
        return { t: 'n', s: Object.is(v, -0) ? '-0' : String(v) };
      case 'bigint': return { t: 'big', v: v.toString() };
      case 'string': {
        const cut = v.length > limits.maxString;
        const s = cut ? v.slice(0, limits.maxString) : v;
        budget.left -= s.length;
        return cut ? { t: 's', v: s, len: v.length } : { t: 's', v: s };
      }
      case 'symbol': return { t: 'sym', v: v.description === undefined ? '' : v.description };
      case 'function': return { t: 'f', name: functionName(v) };
    }
    if (v === null) return { t: 'null' };
    if (isProxy(v)) return { t: 'proxy' };
    if (seen.indexOf(v) >= 0) return { t: 'cyc' };
    if (isDate(v)) { try { return { t: 'date', v: dateIso.call(v) }; } catch (e) { return { t: 'date', v: 'Invalid Date' }; } }
    const c = ctorName(v);
    if (depth >= limits.maxDepth) return { t: 'deep', c };
    seen.push(v);
    try {
      if (isMap(v)) {
        const size = mapSize.call(v);
        const e = [];
        const it = mapEntries.call(v);
        for (let i = 0; i < size && i < limits.maxElements; i++) {
          const r = mapIterNext.call(it);
          if (r.done) break;
          e.push([ser(r.value[0], depth + 1, seen, budget), ser(r.value[1], depth + 1, seen, budget)]);
        }
        return { t: 'map', c, e, size };
      }
      if (isSet(v)) {
        const size = setSize.call(v);
        const items = [];
        const it = setValues.call(v);
        for (let i = 0; i < size && i < limits.maxElements; i++) {
          const r = setIterNext.call(it);
          if (r.done) break;
          items.push(ser(r.value, depth + 1, seen, budget));
        }
        return { t: 'set', c, items, size };
      }
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        const len = typedLength.call(v);
        const items = [];
        for (let i = 0; i < len && i < limits.maxElements; i++) items.push(ser(v[i], depth + 1, seen, budget));
        return { t: 'a', c, items, len };
      }
      if (isArray(v)) {
        const lenDesc = getDesc(v, 'length');
        const len = lenDesc.value;
        const items = [];
        for (let i = 0; i < len && i < limits.maxElements; i++) {
          items.push(field(v, String(i), depth, seen, budget));
        }
        return { t: 'a', items, len };
      }
      if (v instanceof SavedError) {
        const m = getDesc(v, 'message');
        return { t: 'err', c, msg: m && typeof m.value === 'string' ? m.value.slice(0, limits.maxString) : '' };
      }
      const names = getOwnNames(v);
      const p = [];
      let n = 0;
      for (let i = 0; i < names.length; i++) {
        const d = getDesc(v, names[i]);
        if (!d || !d.enumerable) continue;
        if (n++ >= limits.maxElements) continue;
        budget.left -= names[i].length;
        p.push([names[i], d.get || d.set ? { t: 'get' } : ser(d.value, depth + 1, seen, budget)]);
      }
      return n > p.length ? { t: 'o', c, p, count: n } : { t: 'o', c, p };
    } finally {
      seen.pop();
    }
  }

  function field(o, name, depth, seen, budget) {
    const d = getDesc(o, name);
    if (!d) return { t: 'hole' };
    if (d.get || d.set) return { t: 'get' };
    return ser(d.value, depth + 1, seen, budget);
  }

  // Called by the condition of breakpoint site `id` with `this` and one thunk per name in
  // scope (`[index, () => value]`); `when` is the user's --when, translated to JavaScript,
  // or null. A hit is kept when `when` holds, the site's `ratePerSec` (0: none) leaves
  // room this second, and fewer than `hitLimit` (0: none) were kept in this process.
  // (Building the thunks lazily, behind a closure, measured slower: V8 compiles the
  // condition's source at every hit, and a nested function costs more than it saves.)
  function capture(id, self, vars, when, ratePerSec, hitLimit) {
    try {
      if (when !== null) {
        let ok = false;
        try { ok = when() === true; } catch (e) { ok = false; }
        if (!ok) return false;
      }
      let st = states.get(id);
      if (st === undefined) { st = { since: 0, n: 0, total: 0 }; states.set(id, st); }
      if (hitLimit > 0 && st.total >= hitLimit) return false;
      // The hit that spends this second's rate says until when: the agent takes the V8
      // breakpoint out until then, so the hot path stops paying a debug break per pass.
      let quietUntil = 0;
      if (ratePerSec > 0) {
        const now = Date.now();
        if (now - st.since >= 1000) { st.since = now; st.n = 0; }
        if (st.n >= ratePerSec) return false;
        st.n++;
        if (st.n >= ratePerSec) quietUntil = st.since + 1000;
      }
      st.total++;
      const budget = { left: limits.maxBytes };
      const out = [];
      if (self !== undefined && self !== globalThis) {
        out.push([-1, ser(self, 0, [], budget)]);
      }
      for (let i = 0; i < vars.length; i++) {
        let v;
        try { v = vars[i][1](); } catch (e) { continue; }
        out.push([vars[i][0], ser(v, 0, [], budget)]);
      }
      const limit = SavedError.stackTraceLimit;
      let stack = '';
      try {
        SavedError.stackTraceLimit = limits.maxFrames;
        stack = String(new SavedError().stack);
      } finally {
        SavedError.stackTraceLimit = limit;
      }
      send(stringify({ id, vars: out, stack, time: Date.now(), quietUntil }));
    } catch (e) {
      try { send(stringify({ id, error: String(e && e.message) })); } catch (e2) { /* nothing to do */ }
    }
    return false;
  }

  // True when site `id` can keep no hit now: its hit limit is reached, or its rate is
  // used up this second. The condition asks first, so a spent site allocates nothing (not
  // even the thunks) and reads nothing; it only reads the state `capture` keeps.
  function spent(id, ratePerSec, hitLimit) {
    const st = states.get(id);
    if (st === undefined) return false;
    if (hitLimit > 0 && st.total >= hitLimit) return true;
    return ratePerSec > 0 && st.n >= ratePerSec && Date.now() - st.since < 1000;
  }

  Object.defineProperty(binding, 'tracery', { value: { capture, spent, states }, configurable: true });
  return true;
})
