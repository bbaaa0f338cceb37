#!/usr/bin/env python3
"""Independent dump of a GGUF file with the PyPI `gguf` package (gguf-py) and numpy.

    python tests/model/gguf_dump.py MODEL.gguf OUTDIR

Writes, for tests/model/test_real_gguf.cpp to compare against cluscomp's own reader:
  OUTDIR/tensors/NNNN.f32   one file per tensor (file order): gguf-py's dequantised values as
                            little-endian float32, in ggml memory order (ne[0] fastest)
  OUTDIR/manifest.json      written LAST (via a temporary + rename), so its presence means the
                            dump is complete. Contents:
    model_path, model_size, version, alignment, data_offset,
    metadata: [{key, type, ...}] in file order (the GGUF.* pseudo-fields excluded), where
      integers and bools: "value" (int); float32/float64: "bits" (the IEEE bit pattern as an
      int) and "value" (for humans); strings: "hex" (the raw bytes); arrays: "elem_type" and
      "values", each item encoded as above (ints, float bits, or hex strings)
    tensors: [{name, type, type_id, ne (GGUF order), offset (relative to the data section),
               abs_offset, n_elements, n_bytes, file}]
Nothing here shares code with cluscomp: it is the check.
"""
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

FLOAT_BITS = {GGUFValueType.FLOAT32: np.uint32, GGUFValueType.FLOAT64: np.uint64}


def scalar_json(vtype, part):
    """One scalar or string from a gguf-py field part."""
    if vtype == GGUFValueType.STRING:
        return {"hex": bytes(part).hex()}
    if vtype in FLOAT_BITS:
        arr = np.asarray(part)
        return {"bits": int(arr.view(FLOAT_BITS[vtype])[0]), "value": float(arr[0])}
    if vtype == GGUFValueType.BOOL:
        return {"value": int(bool(part[0]))}
    return {"value": int(part[0])}


def field_json(field):
    types = field.types
    out = {"key": field.name, "type": types[0].name.lower()}
    if types[0] == GGUFValueType.ARRAY:
        if len(types) < 2:  # empty array: gguf-py does not keep the element type
            out["elem_type"] = None
            out["values"] = []
            return out
        et = types[1]
        if et == GGUFValueType.ARRAY:
            raise SystemExit(f"{field.name}: nested arrays are not supported by this dump")
        out["elem_type"] = et.name.lower()
        vals = []
        for idx in field.data:
            j = scalar_json(et, field.parts[idx])
            vals.append(j["hex"] if "hex" in j else j.get("bits", j.get("value")))
        out["values"] = vals
        return out
    out.update(scalar_json(types[0], field.parts[field.data[0]]))
    return out


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model, outdir = sys.argv[1], sys.argv[2]
    tdir = os.path.join(outdir, "tensors")
    os.makedirs(tdir, exist_ok=True)
    manifest_path = os.path.join(outdir, "manifest.json")
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # an interrupted run must not leave a stale "complete" dump

    r = GGUFReader(model)
    version = int(r.fields["GGUF.version"].parts[-1][0])
    metadata = [field_json(f) for name, f in r.fields.items() if not name.startswith("GGUF.")]

    tensors = []
    for i, t in enumerate(r.tensors):
        values = dequantize(t.data, t.tensor_type)
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if values.size != int(t.n_elements):
            raise SystemExit(f"{t.name}: gguf-py returned {values.size} values for {t.n_elements}")
        fname = f"{i:04d}.f32"
        values.astype("<f4").tofile(os.path.join(tdir, fname))
        tensors.append({
            "name": t.name,
            "type": gguf.GGMLQuantizationType(int(t.tensor_type)).name,
            "type_id": int(t.tensor_type),
            "ne": [int(d) for d in t.shape],
            "offset": int(t.data_offset) - int(r.data_offset),
            "abs_offset": int(t.data_offset),
            "n_elements": int(t.n_elements),
            "n_bytes": int(t.n_bytes),
            "file": "tensors/" + fname,
        })

    manifest = {
        "model_path": os.path.abspath(model),
        "model_size": os.path.getsize(model),
        "gguf_py_version": gguf_version(),
        "version": version,
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "metadata": metadata,
        "tensors": tensors,
    }
    tmp = manifest_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
    os.replace(tmp, manifest_path)
    print(f"gguf_dump: {len(metadata)} keys, {len(tensors)} tensors -> {outdir}")


if __name__ == "__main__":
    main()
