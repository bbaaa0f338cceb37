#pragma once
/// GGUF reader (format versions 2 and 3, little-endian), the ggml tensor type table, and the
/// metadata value type shared with the writer (gguf_writer.hpp).
///
/// Layout (ggml's docs/gguf.md): magic "GGUF", u32 version, u64 tensor_count, u64 kv_count,
/// kv_count x (string key, u32 value type, value), tensor_count x (string name, u32 n_dims,
/// n_dims x u64 ne, u32 ggml type, u64 offset), padding to `general.alignment` (default 32), then
/// the data section; a tensor's offset is relative to the data section and a multiple of the
/// alignment. Strings are u64 length + bytes (no terminator); an array is u32 element type, u64
/// count, elements (arrays of arrays allowed).
///
/// Validation is strict and never reads out of bounds: every length and count is checked against
/// the bytes that remain before anything is allocated or read, so a hostile file costs at most
/// O(file size) memory and time. Every failure throws cluscomp::Error whose message starts with
/// the file's name and names the key or tensor: kFormatError (the bytes violate the format),
/// kUnsupported (version 1, big-endian files, unknown ggml types), kOutOfRange (tensor data past
/// the end of the file), kNotFound (an accessor asked for a missing key or tensor).
///
/// Determinism: parsing is pure; the result depends only on the bytes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"

CLUSCOMP_NAMESPACE_BEGIN

// ---- ggml tensor types ----------------------------------------------------------------------------

/// ggml tensor element types, with ggml's numeric ids (ids 4, 5, 31..33 and 36..38 were removed
/// from ggml and are rejected as unknown).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

/// Block geometry of one ggml type: `block_size` elements are stored in `type_size` bytes.
struct GgmlTypeTraits {
  const char* name = nullptr;  // ggml's spelling ("Q4_K"); nullptr for an unknown id
  int64_t block_size = 0;
  int64_t type_size = 0;
};

/// Traits of a raw type id; `name == nullptr` when ggml has no such type.
inline GgmlTypeTraits ggml_type_traits(uint32_t id) {
  constexpr int64_t kQK = 32, kQKK = 256;
  switch (id) {
    case 0: return {"F32", 1, 4};
    case 1: return {"F16", 1, 2};
    case 2: return {"Q4_0", kQK, 2 + kQK / 2};
    case 3: return {"Q4_1", kQK, 4 + kQK / 2};
    case 6: return {"Q5_0", kQK, 2 + 4 + kQK / 2};
    case 7: return {"Q5_1", kQK, 4 + 4 + kQK / 2};
    case 8: return {"Q8_0", kQK, 2 + kQK};
    case 9: return {"Q8_1", kQK, 4 + kQK};
    case 10: return {"Q2_K", kQKK, 4 + kQKK / 16 + kQKK / 4};
    case 11: return {"Q3_K", kQKK, 2 + kQKK / 4 + kQKK / 8 + 12};
    case 12: return {"Q4_K", kQKK, 4 + 12 + kQKK / 2};
    case 13: return {"Q5_K", kQKK, 4 + 12 + kQKK / 8 + kQKK / 2};
    case 14: return {"Q6_K", kQKK, 2 + kQKK / 2 + kQKK / 4 + kQKK / 16};
    case 15: return {"Q8_K", kQKK, 4 + kQKK + kQKK / 8};
    case 16: return {"IQ2_XXS", kQKK, 2 + kQKK / 4};
    case 17: return {"IQ2_XS", kQKK, 2 + kQKK / 4 + kQKK / 32};
    case 18: return {"IQ3_XXS", kQKK, 2 + kQKK / 4 + kQKK / 8};
    case 19: return {"IQ1_S", kQKK, 2 + kQKK / 8 + kQKK / 16};
    case 20: return {"IQ4_NL", kQK, 2 + kQK / 2};
    case 21: return {"IQ3_S", kQKK, 2 + kQKK / 4 + kQKK / 8 + kQKK / 32 + 4};
    case 22: return {"IQ2_S", kQKK, 2 + kQKK / 4 + kQKK / 16};
    case 23: return {"IQ4_XS", kQKK, 4 + kQKK / 2 + kQKK / 64};
    case 24: return {"I8", 1, 1};
    case 25: return {"I16", 1, 2};
    case 26: return {"I32", 1, 4};
    case 27: return {"I64", 1, 8};
    case 28: return {"F64", 1, 8};
    case 29: return {"IQ1_M", kQKK, kQKK / 8 + kQKK / 16 + kQKK / 32};
    case 30: return {"BF16", 1, 2};
    case 34: return {"TQ1_0", kQKK, 2 + 4 * 13};
    case 35: return {"TQ2_0", kQKK, 2 + 64};
    case 39: return {"MXFP4", kQK, 1 + kQK / 2};
    default: return {};
  }
}

inline GgmlTypeTraits ggml_type_traits(GgmlType t) {
  return ggml_type_traits(static_cast<uint32_t>(t));
}

/// ggml's name of a type ("Q4_1"), or "type#<id>" for an unknown id.
inline std::string ggml_type_name(GgmlType t) {
  const GgmlTypeTraits tr = ggml_type_traits(t);
  return tr.name ? std::string(tr.name) : "type#" + std::to_string(static_cast<uint32_t>(t));
}

/// Bytes of a row of `n` elements of type `t`; throws Error(kInvalidArgument) for an unknown
/// type or when `n` is not a multiple of the block size.
inline uint64_t ggml_row_size(GgmlType t, int64_t n) {
  const GgmlTypeTraits tr = ggml_type_traits(t);
  if (!tr.name) throw Error(StatusCode::kInvalidArgument, "unknown ggml type " + ggml_type_name(t));
  if (n < 0 || n % tr.block_size != 0)
    throw Error(StatusCode::kInvalidArgument,
                std::to_string(n) + " elements is not a multiple of the " + tr.name +
                    " block size " + std::to_string(tr.block_size));
  return checked_mul(static_cast<uint64_t>(n / tr.block_size), static_cast<uint64_t>(tr.type_size),
                     "ggml row size");
}

// ---- metadata values ------------------------------------------------------------------------------

/// GGUF metadata value types, with the file's numeric ids.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

inline const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "?";
}

inline bool gguf_type_is_unsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 ||
         t == GgufType::kUint64;
}
inline bool gguf_type_is_signed(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 ||
         t == GgufType::kInt64;
}
inline bool gguf_type_is_integer(GgufType t) {
  return gguf_type_is_unsigned(t) || gguf_type_is_signed(t);
}
inline bool gguf_type_is_float(GgufType t) {
  return t == GgufType::kFloat32 || t == GgufType::kFloat64;
}

/// Encoded size of a scalar of type `t` (0 for string and array, whose size varies).
inline int gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    default: return 0;
  }
}

/// One metadata value. Scalars keep their exact bits: unsigned integers and bool zero-extended,
/// signed integers sign-extended (two's complement), float32/float64 as their IEEE bit patterns,
/// so a read-write round trip is bit-exact. Arrays keep their element type even when empty.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t bits = 0;                  // scalar payload (see above)
  std::string str;                    // kString
  GgufType elem_type = GgufType::kUint8;  // kArray: type of every item
  std::vector<GgufValue> items;       // kArray

  // Constructors of each kind.
  static GgufValue u8(uint8_t v) { return scalar(GgufType::kUint8, v); }
  static GgufValue i8(int8_t v) { return scalar(GgufType::kInt8, static_cast<uint64_t>(int64_t{v})); }
  static GgufValue u16(uint16_t v) { return scalar(GgufType::kUint16, v); }
  static GgufValue i16(int16_t v) { return scalar(GgufType::kInt16, static_cast<uint64_t>(int64_t{v})); }
  static GgufValue u32(uint32_t v) { return scalar(GgufType::kUint32, v); }
  static GgufValue i32(int32_t v) { return scalar(GgufType::kInt32, static_cast<uint64_t>(int64_t{v})); }
  static GgufValue u64(uint64_t v) { return scalar(GgufType::kUint64, v); }
  static GgufValue i64(int64_t v) { return scalar(GgufType::kInt64, static_cast<uint64_t>(v)); }
  static GgufValue f32(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return scalar(GgufType::kFloat32, b);
  }
  static GgufValue f64(double v) {
    uint64_t b;
    std::memcpy(&b, &v, 8);
    return scalar(GgufType::kFloat64, b);
  }
  static GgufValue boolean(bool v) { return scalar(GgufType::kBool, v ? 1u : 0u); }
  static GgufValue string(std::string s) {
    GgufValue v;
    v.type = GgufType::kString;
    v.str = std::move(s);
    return v;
  }
  /// An array; every item must have type `elem`, else Error(kInvalidArgument).
  static GgufValue array(GgufType elem, std::vector<GgufValue> items) {
    for (size_t i = 0; i < items.size(); ++i)
      if (items[i].type != elem)
        throw Error(StatusCode::kInvalidArgument,
                    std::string("GGUF array of ") + gguf_type_name(elem) + ": item " +
                        std::to_string(i) + " has type " + gguf_type_name(items[i].type));
    GgufValue v;
    v.type = GgufType::kArray;
    v.elem_type = elem;
    v.items = std::move(items);
    return v;
  }
  static GgufValue string_array(const std::vector<std::string>& s) {
    std::vector<GgufValue> it;
    it.reserve(s.size());
    for (const auto& x : s) it.push_back(string(x));
    return array(GgufType::kString, std::move(it));
  }
  static GgufValue i32_array(const std::vector<int32_t>& a) {
    std::vector<GgufValue> it;
    it.reserve(a.size());
    for (int32_t x : a) it.push_back(i32(x));
    return array(GgufType::kInt32, std::move(it));
  }
  static GgufValue f32_array(const std::vector<float>& a) {
    std::vector<GgufValue> it;
    it.reserve(a.size());
    for (float x : a) it.push_back(f32(x));
    return array(GgufType::kFloat32, std::move(it));
  }

  bool is_array() const { return type == GgufType::kArray; }
  /// Float value of a float32/float64 scalar (float32 widened exactly).
  double float_value() const {
    if (type == GgufType::kFloat32) {
      const uint32_t b = static_cast<uint32_t>(bits);
      float f;
      std::memcpy(&f, &b, 4);
      return f;
    }
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  /// Value of a signed integer scalar.
  int64_t signed_value() const { return static_cast<int64_t>(bits); }

  /// Structural equality; floats compare by bits (NaN equals the same NaN).
  bool operator==(const GgufValue& o) const {
    return type == o.type && bits == o.bits && str == o.str &&
           (type != GgufType::kArray || elem_type == o.elem_type) && items == o.items;
  }
  bool operator!=(const GgufValue& o) const { return !(*this == o); }

 private:
  static GgufValue scalar(GgufType t, uint64_t b) {
    GgufValue v;
    v.type = t;
    v.bits = b;
    return v;
  }
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

/// One tensor's header entry. `ne` is in GGUF/ggml order: ne[0] is the fastest-varying (the row
/// length), so a PyTorch (out, in) weight has ne = {in, out}.
struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // 1..4 dims, each >= 1
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;      // relative to the data section, a multiple of the alignment
  uint64_t n_elements = 0;  // product of ne
  uint64_t n_bytes = 0;     // n_elements / block_size * type_size
  int64_t n_rows() const { return static_cast<int64_t>(n_elements) / ne[0]; }
};

namespace detail {

/// Bounds-checked little-endian cursor over the header. Every read first checks the remaining
/// byte count; loads go through memcpy (the file gives no alignment guarantee).
class GgufCursor {
 public:
  GgufCursor(const unsigned char* data, size_t size, const std::string& name)
      : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(StatusCode code, const std::string& msg) const {
    throw Error(code, name_ + ": " + msg);
  }

  void need(uint64_t n, const std::string& ctx, const char* what) const {
    if (n > remaining())
      fail(StatusCode::kFormatError,
           ctx + ": truncated: " + what + " needs " + std::to_string(n) + " bytes at offset " +
               std::to_string(pos_) + " but only " + std::to_string(remaining()) + " remain");
  }

  template <class T>
  T read(const std::string& ctx, const char* what) {
    need(sizeof(T), ctx, what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& ctx, const char* what) {
    const uint64_t n = read<uint64_t>(ctx, what);
    if (n > remaining())
      fail(StatusCode::kFormatError,
           ctx + ": truncated: " + what + " length " + std::to_string(n) + " at offset " +
               std::to_string(pos_ - 8) + " points past the end of the file (" +
               std::to_string(remaining()) + " bytes remain)");
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  const unsigned char* data_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& name_;
};

inline constexpr int kGgufMaxArrayDepth = 8;
inline constexpr int kGgufMaxDims = 4;

/// Smallest encoding of one value of type `t` (bounds array counts before allocating).
inline uint64_t gguf_min_value_size(GgufType t) {
  if (t == GgufType::kString) return 8;
  if (t == GgufType::kArray) return 12;
  return static_cast<uint64_t>(gguf_scalar_size(t));
}

inline bool gguf_type_valid(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

inline void read_gguf_value(GgufCursor& c, GgufType type, GgufValue& out, const std::string& ctx,
                            int depth) {
  out.type = type;
  switch (type) {
    case GgufType::kUint8: out.bits = c.read<uint8_t>(ctx, "uint8 value"); return;
    case GgufType::kInt8:
      out.bits = static_cast<uint64_t>(int64_t{c.read<int8_t>(ctx, "int8 value")});
      return;
    case GgufType::kUint16: out.bits = c.read<uint16_t>(ctx, "uint16 value"); return;
    case GgufType::kInt16:
      out.bits = static_cast<uint64_t>(int64_t{c.read<int16_t>(ctx, "int16 value")});
      return;
    case GgufType::kUint32: out.bits = c.read<uint32_t>(ctx, "uint32 value"); return;
    case GgufType::kInt32:
      out.bits = static_cast<uint64_t>(int64_t{c.read<int32_t>(ctx, "int32 value")});
      return;
    case GgufType::kFloat32: out.bits = c.read<uint32_t>(ctx, "float32 value"); return;
    case GgufType::kUint64: out.bits = c.read<uint64_t>(ctx, "uint64 value"); return;
    case GgufType::kInt64: out.bits = c.read<uint64_t>(ctx, "int64 value"); return;
    case GgufType::kFloat64: out.bits = c.read<uint64_t>(ctx, "float64 value"); return;
    case GgufType::kBool: {
      const uint8_t b = c.read<uint8_t>(ctx, "bool value");
      if (b > 1)
        c.fail(StatusCode::kFormatError,
               ctx + ": bool value " + std::to_string(b) + " at offset " +
                   std::to_string(c.pos() - 1) + " is neither 0 nor 1");
      out.bits = b;
      return;
    }
    case GgufType::kString: out.str = c.read_string(ctx, "string value"); return;
    case GgufType::kArray: {
      if (depth >= kGgufMaxArrayDepth)
        c.fail(StatusCode::kFormatError, ctx + ": arrays nested deeper than " +
                                             std::to_string(kGgufMaxArrayDepth) + " levels");
      const uint32_t et = c.read<uint32_t>(ctx, "array element type");
      if (!gguf_type_valid(et))
        c.fail(StatusCode::kFormatError,
               ctx + ": unknown array element type " + std::to_string(et) + " at offset " +
                   std::to_string(c.pos() - 4));
      out.elem_type = static_cast<GgufType>(et);
      const uint64_t n = c.read<uint64_t>(ctx, "array length");
      const uint64_t min_size = gguf_min_value_size(out.elem_type);
      if (n > c.remaining() / min_size)
        c.fail(StatusCode::kFormatError,
               ctx + ": truncated: array length " + std::to_string(n) + " of " +
                   gguf_type_name(out.elem_type) + " at offset " + std::to_string(c.pos() - 8) +
                   " points past the end of the file (" + std::to_string(c.remaining()) +
                   " bytes remain, each item needs at least " + std::to_string(min_size) + ")");
      out.items.resize(static_cast<size_t>(n));
      for (auto& it : out.items) read_gguf_value(c, out.elem_type, it, ctx, depth + 1);
      return;
    }
  }
  c.fail(StatusCode::kFormatError, ctx + ": unknown value type");
}

}  // namespace detail

// ---- the reader -----------------------------------------------------------------------------------

/// Whether the file at `path` starts with the GGUF magic (a regular file of at least 4 bytes;
/// mapping errors throw as MappedFile's do). The one format sniff for GGUF input.
inline bool is_gguf_file(const std::string& path) {
  const MappedFile f(path);
  return f.size() >= 4 && std::memcmp(f.data(), "GGUF", 4) == 0;
}

/// A parsed GGUF file. Holds the mapping (file constructor) or borrows the caller's buffer
/// (memory constructor; the buffer must outlive the reader). Movable, not copyable; tensor data
/// pointers stay valid across moves.
class GgufReader {
 public:
  static constexpr uint32_t kMagic = 0x46554747u;  // "GGUF" read as a little-endian u32
  static constexpr uint32_t kDefaultAlignment = 32;

  /// Maps and parses the file at `path`. Throws kIoError (cannot open) or the parse errors above.
  explicit GgufReader(const std::string& path) : file_(path) {
    data_ = file_.data();
    size_ = file_.size();
    name_ = path;
    parse();
  }

  /// Parses `size` bytes at `data` (borrowed, not copied); `name` appears in error messages.
  GgufReader(const unsigned char* data, size_t size, std::string name)
      : data_(data), size_(size), name_(std::move(name)) {
    parse();
  }

  GgufReader(GgufReader&&) = default;
  GgufReader& operator=(GgufReader&&) = default;
  GgufReader(const GgufReader&) = delete;
  GgufReader& operator=(const GgufReader&) = delete;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  /// File offset of the data section (end of header, padded to the alignment).
  uint64_t data_offset() const { return data_offset_; }
  /// The whole file.
  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

  // Metadata, in file order.
  const std::vector<GgufKeyValue>& metadata() const { return kvs_; }
  const GgufValue* find(const std::string& key) const {
    const auto it = key_index_.find(key);
    return it == key_index_.end() ? nullptr : &kvs_[it->second].value;
  }
  bool has(const std::string& key) const { return find(key) != nullptr; }
  /// The value of `key`; Error(kNotFound) naming the key when absent.
  const GgufValue& get(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) throw Error(StatusCode::kNotFound, name_ + ": metadata key '" + key + "' not found");
    return *v;
  }

  // Typed accessors. Integer getters accept any integer type whose value fits the requested one
  // (kOutOfRange otherwise); a value of another kind is kFormatError naming key and both types.
  uint64_t get_u64(const std::string& key) const { return as_u64(get(key), key, UINT64_MAX); }
  uint32_t get_u32(const std::string& key) const {
    return static_cast<uint32_t>(as_u64(get(key), key, UINT32_MAX));
  }
  int64_t get_i64(const std::string& key) const { return as_i64(get(key), key, INT64_MIN, INT64_MAX); }
  int32_t get_i32(const std::string& key) const {
    return static_cast<int32_t>(as_i64(get(key), key, INT32_MIN, INT32_MAX));
  }
  /// float32 exactly, or float64 rounded to nearest float.
  float get_f32(const std::string& key) const { return static_cast<float>(as_f64(get(key), key)); }
  double get_f64(const std::string& key) const { return as_f64(get(key), key); }
  bool get_bool(const std::string& key) const {
    const GgufValue& v = get(key);
    expect(v, GgufType::kBool, key);
    return v.bits != 0;
  }
  const std::string& get_string(const std::string& key) const {
    const GgufValue& v = get(key);
    expect(v, GgufType::kString, key);
    return v.str;
  }
  uint32_t get_u32_or(const std::string& key, uint32_t fallback) const {
    return has(key) ? get_u32(key) : fallback;
  }
  float get_f32_or(const std::string& key, float fallback) const {
    return has(key) ? get_f32(key) : fallback;
  }
  std::string get_string_or(const std::string& key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
  }
  std::vector<std::string> get_string_array(const std::string& key) const {
    const GgufValue& v = get_array(key, "string", [](GgufType t) { return t == GgufType::kString; });
    std::vector<std::string> out;
    out.reserve(v.items.size());
    for (const auto& it : v.items) out.push_back(it.str);
    return out;
  }
  /// Any integer element type, converted to int64 (uint64 items above INT64_MAX: kOutOfRange).
  std::vector<int64_t> get_int_array(const std::string& key) const {
    const GgufValue& v = get_array(key, "integer", gguf_type_is_integer);
    std::vector<int64_t> out;
    out.reserve(v.items.size());
    for (const auto& it : v.items) out.push_back(as_i64(it, key, INT64_MIN, INT64_MAX));
    return out;
  }
  /// float32 or float64 elements, as float (float64 rounded to nearest).
  std::vector<float> get_f32_array(const std::string& key) const {
    const GgufValue& v = get_array(key, "float", gguf_type_is_float);
    std::vector<float> out;
    out.reserve(v.items.size());
    for (const auto& it : v.items) out.push_back(static_cast<float>(it.float_value()));
    return out;
  }

  // Tensors, in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  /// Error(kNotFound) naming the tensor when absent.
  const GgufTensorInfo& tensor(const std::string& name) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (!t) throw Error(StatusCode::kNotFound, name_ + ": tensor '" + name + "' not found");
    return *t;
  }
  /// First byte of a tensor's data (validated to lie inside the file).
  const unsigned char* tensor_data(const GgufTensorInfo& t) const {
    return data_ + data_offset_ + t.offset;
  }

 private:
  [[noreturn]] void fail(StatusCode code, const std::string& msg) const {
    throw Error(code, name_ + ": " + msg);
  }
  void expect(const GgufValue& v, GgufType t, const std::string& key) const {
    if (v.type != t)
      fail(StatusCode::kFormatError, "metadata key '" + key + "' has type " +
                                         gguf_type_name(v.type) + ", expected " + gguf_type_name(t));
  }
  template <class Pred>
  const GgufValue& get_array(const std::string& key, const char* want, Pred ok) const {
    const GgufValue& v = get(key);
    if (v.type != GgufType::kArray || !ok(v.elem_type))
      fail(StatusCode::kFormatError,
           "metadata key '" + key + "' has type " +
               (v.type == GgufType::kArray ? std::string("array of ") + gguf_type_name(v.elem_type)
                                           : std::string(gguf_type_name(v.type))) +
               ", expected an array of " + want);
    return v;
  }
  uint64_t as_u64(const GgufValue& v, const std::string& key, uint64_t max) const {
    if (gguf_type_is_unsigned(v.type)) {
      if (v.bits > max) range_fail(v, key);
      return v.bits;
    }
    if (gguf_type_is_signed(v.type)) {
      if (v.signed_value() < 0 || static_cast<uint64_t>(v.signed_value()) > max) range_fail(v, key);
      return static_cast<uint64_t>(v.signed_value());
    }
    fail(StatusCode::kFormatError, "metadata key '" + key + "' has type " +
                                       gguf_type_name(v.type) + ", expected an integer");
  }
  int64_t as_i64(const GgufValue& v, const std::string& key, int64_t lo, int64_t hi) const {
    if (gguf_type_is_unsigned(v.type)) {
      if (v.bits > static_cast<uint64_t>(hi)) range_fail(v, key);
      return static_cast<int64_t>(v.bits);
    }
    if (gguf_type_is_signed(v.type)) {
      if (v.signed_value() < lo || v.signed_value() > hi) range_fail(v, key);
      return v.signed_value();
    }
    fail(StatusCode::kFormatError, "metadata key '" + key + "' has type " +
                                       gguf_type_name(v.type) + ", expected an integer");
  }
  double as_f64(const GgufValue& v, const std::string& key) const {
    if (!gguf_type_is_float(v.type))
      fail(StatusCode::kFormatError, "metadata key '" + key + "' has type " +
                                         gguf_type_name(v.type) + ", expected a float");
    return v.float_value();
  }
  [[noreturn]] void range_fail(const GgufValue& v, const std::string& key) const {
    const std::string val = gguf_type_is_signed(v.type) ? std::to_string(v.signed_value())
                                                        : std::to_string(v.bits);
    fail(StatusCode::kOutOfRange, "metadata key '" + key + "' value " + val +
                                      " does not fit the requested integer type");
  }

  void parse() {
    detail::GgufCursor c(data_, size_, name_);
    const std::string hdr = "header";
    const uint32_t magic = c.read<uint32_t>(hdr, "magic");
    if (magic != kMagic)
      fail(StatusCode::kFormatError, "not a GGUF file (bad magic at offset 0)");
    version_ = c.read<uint32_t>(hdr, "version");
    if (version_ != 2 && version_ != 3) {
      if ((version_ & 0xffffu) == 0 && version_ != 0)
        fail(StatusCode::kUnsupported,
             "GGUF version field " + std::to_string(version_) +
                 " looks byte-swapped: big-endian GGUF files are not supported");
      fail(StatusCode::kUnsupported, "GGUF version " + std::to_string(version_) +
                                         " is not supported (only versions 2 and 3)");
    }
    const uint64_t n_tensors = c.read<uint64_t>(hdr, "tensor count");
    const uint64_t n_kv = c.read<uint64_t>(hdr, "metadata key/value count");
    // Each kv needs >= 13 bytes (u64 key length, u32 type, 1-byte value); each tensor info
    // >= 32 (u64 name length, u32 n_dims, one u64 dim, u32 type, u64 offset).
    constexpr uint64_t kMinKv = 13, kMinTensor = 32;
    if (n_kv > c.remaining() / kMinKv)
      fail(StatusCode::kFormatError,
           "header: metadata key/value count " + std::to_string(n_kv) +
               " is absurd: the remaining " + std::to_string(c.remaining()) +
               " bytes hold at most " + std::to_string(c.remaining() / kMinKv));
    if (n_tensors > c.remaining() / kMinTensor ||
        n_kv * kMinKv + n_tensors * kMinTensor > c.remaining())
      fail(StatusCode::kFormatError,
           "header: tensor count " + std::to_string(n_tensors) + " is absurd: the remaining " +
               std::to_string(c.remaining()) + " bytes cannot hold it with " +
               std::to_string(n_kv) + " key/value pairs");

    kvs_.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      const std::string kctx = "metadata entry #" + std::to_string(i);
      GgufKeyValue kv;
      kv.key = c.read_string(kctx, "key");
      const std::string ctx = "metadata key '" + kv.key + "'";
      const uint32_t t = c.read<uint32_t>(ctx, "value type");
      if (!detail::gguf_type_valid(t))
        fail(StatusCode::kFormatError,
             ctx + ": unknown value type " + std::to_string(t) + " at offset " +
                 std::to_string(c.pos() - 4));
      detail::read_gguf_value(c, static_cast<GgufType>(t), kv.value, ctx, 0);
      if (!key_index_.emplace(kv.key, kvs_.size()).second)
        fail(StatusCode::kFormatError, "duplicate metadata key '" + kv.key + "'");
      kvs_.push_back(std::move(kv));
    }

    alignment_ = kDefaultAlignment;
    if (const GgufValue* a = find("general.alignment")) {
      if (a->type != GgufType::kUint32)
        fail(StatusCode::kFormatError, std::string("metadata key 'general.alignment' has type ") +
                                           gguf_type_name(a->type) + ", must be uint32");
      const uint64_t al = a->bits;
      if (al == 0 || (al & (al - 1)) != 0)
        fail(StatusCode::kFormatError, "metadata key 'general.alignment' = " +
                                           std::to_string(al) + " is not a power of two");
      alignment_ = static_cast<uint32_t>(al);
    }

    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
      GgufTensorInfo ti;
      ti.name = c.read_string("tensor info #" + std::to_string(i), "tensor name");
      const std::string ctx = "tensor '" + ti.name + "'";
      const uint32_t nd = c.read<uint32_t>(ctx, "n_dims");
      if (nd == 0 || nd > detail::kGgufMaxDims)
        fail(StatusCode::kFormatError, ctx + ": n_dims " + std::to_string(nd) +
                                           " is outside 1.." + std::to_string(detail::kGgufMaxDims));
      uint64_t n = 1;
      for (uint32_t d = 0; d < nd; ++d) {
        const uint64_t v = c.read<uint64_t>(ctx, "dimension");
        if (v == 0 || v > static_cast<uint64_t>(INT64_MAX))
          fail(StatusCode::kFormatError, ctx + ": dimension ne[" + std::to_string(d) + "] = " +
                                             std::to_string(v) + " is not in 1..2^63-1");
        try {
          n = checked_mul(n, v, "element count");
        } catch (const Error&) {
          fail(StatusCode::kFormatError, ctx + ": element count overflows 64 bits");
        }
        ti.ne.push_back(static_cast<int64_t>(v));
      }
      if (n > static_cast<uint64_t>(INT64_MAX))
        fail(StatusCode::kFormatError, ctx + ": element count " + std::to_string(n) +
                                           " exceeds 2^63-1");
      ti.n_elements = n;
      const uint32_t tt = c.read<uint32_t>(ctx, "ggml type");
      const GgmlTypeTraits tr = ggml_type_traits(tt);
      if (!tr.name)
        fail(StatusCode::kUnsupported, ctx + ": unknown ggml type " + std::to_string(tt));
      ti.type = static_cast<GgmlType>(tt);
      if (ti.ne[0] % tr.block_size != 0)
        fail(StatusCode::kFormatError,
             ctx + ": row length ne[0] = " + std::to_string(ti.ne[0]) +
                 " is not a multiple of the " + tr.name + " block size " +
                 std::to_string(tr.block_size));
      try {
        ti.n_bytes = checked_mul(n / static_cast<uint64_t>(tr.block_size),
                                 static_cast<uint64_t>(tr.type_size), "tensor bytes");
      } catch (const Error&) {
        fail(StatusCode::kFormatError, ctx + ": byte size overflows 64 bits");
      }
      ti.offset = c.read<uint64_t>(ctx, "data offset");
      if (ti.offset % alignment_ != 0)
        fail(StatusCode::kFormatError, ctx + ": data offset " + std::to_string(ti.offset) +
                                           " is not a multiple of the alignment " +
                                           std::to_string(alignment_));
      if (!tensor_index_.emplace(ti.name, tensors_.size()).second)
        fail(StatusCode::kFormatError, "duplicate tensor name '" + ti.name + "'");
      tensors_.push_back(std::move(ti));
    }

    // Data section: header end rounded up to the alignment.
    const uint64_t end = c.pos();
    data_offset_ = end + (alignment_ - end % alignment_) % alignment_;
    if (tensors_.empty()) return;
    if (data_offset_ > size_)
      fail(StatusCode::kOutOfRange,
           "truncated: data section would start at offset " + std::to_string(data_offset_) +
               " past the end of the file (" + std::to_string(size_) + " bytes)");
    const uint64_t avail = size_ - data_offset_;
    std::vector<size_t> order(tensors_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    for (const GgufTensorInfo& t : tensors_) {
      if (t.offset > avail || t.n_bytes > avail - t.offset)
        fail(StatusCode::kOutOfRange,
             "tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", " +
                 (t.n_bytes > UINT64_MAX - t.offset ? std::string("overflow")
                                                    : std::to_string(t.offset + t.n_bytes)) +
                 ") of the data section lies past the end of the file (data section has " +
                 std::to_string(avail) + " bytes; file truncated?)");
    }
    std::sort(order.begin(), order.end(), [this](size_t a, size_t b) {
      return tensors_[a].offset < tensors_[b].offset ||
             (tensors_[a].offset == tensors_[b].offset && a < b);
    });
    for (size_t k = 1; k < order.size(); ++k) {
      const GgufTensorInfo& a = tensors_[order[k - 1]];
      const GgufTensorInfo& b = tensors_[order[k]];
      if (a.offset + a.n_bytes > b.offset)
        fail(StatusCode::kFormatError,
             "tensors '" + a.name + "' [" + std::to_string(a.offset) + ", " +
                 std::to_string(a.offset + a.n_bytes) + ") and '" + b.name + "' [" +
                 std::to_string(b.offset) + ", " + std::to_string(b.offset + b.n_bytes) +
                 ") overlap");
    }
  }

  MappedFile file_;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> kvs_;
  std::unordered_map<std::string, size_t> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

CLUSCOMP_NAMESPACE_END
