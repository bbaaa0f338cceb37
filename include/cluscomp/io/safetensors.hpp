#pragma once
/// Safetensors: a strict reader (memory-mapped file or caller's buffer) and a deterministic,
/// atomic, streaming writer.
///
/// File layout (https://github.com/huggingface/safetensors): 8-byte little-endian header length N,
/// N bytes of UTF-8 JSON (an object; may be padded with trailing spaces), then the data area.
/// The JSON maps tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative
/// to the data area) plus an optional "__metadata__" string->string map.
///
/// The reader accepts exactly what the official implementation accepts, and a little less: every
/// problem is an Error naming the file, the tensor and the rule (see docs/format.md §5):
/// - kFormatError: anything malformed (short file, header length past the end or over 100 MB,
///   header not starting with '{', not UTF-8, not JSON, duplicate keys, entries missing a field
///   or with a wrong JSON type, unknown keys in an entry, negative or non-integer dimensions,
///   element counts that overflow, byte ranges that disagree with the shape, run past the data
///   area, overlap, or leave holes; tensors must cover the data area contiguously from 0 to end).
/// - kUnsupported: a dtype name cluscomp does not know (a newer safetensors dtype).
///
/// Byte order: the format is little-endian and so is every host cluscomp supports.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/dtype.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cluscomp's file formats are little-endian; big-endian hosts are not supported"
#endif

CLUSCOMP_NAMESPACE_BEGIN

/// Largest header cluscomp will parse (the official implementation's limit).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

/// A tensor inside a safetensors file (or a tensor handed to a writer): non-owning. `data` points
/// at `nbytes` bytes in the file's data area; it is NOT necessarily aligned to the element size
/// (files from other writers need not align), so read through memcpy or the helpers below.
struct TensorRef {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const unsigned char* data = nullptr;
  uint64_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  /// True when `data` is aligned for direct typed access.
  bool aligned() const {
    return reinterpret_cast<uintptr_t>(data) % static_cast<uintptr_t>(dtype_size(dtype)) == 0;
  }
};

/// "[2, 3]" for messages.
inline std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace detail {

/// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and > U+10FFFF included),
/// or n when the whole buffer is valid.
inline size_t utf8_invalid_at(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
      cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return i;
    }
    if (n - i < static_cast<size_t>(len)) return i;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xc0u) != 0x80u) return i;
      cp = (cp << 6) | (p[i + k] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return i;
    i += static_cast<size_t>(len);
  }
  return n;
}

inline bool is_utf8(const std::string& s) {
  return utf8_invalid_at(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == s.size();
}

inline const char* json_type_name(const nlohmann::json& j) {
  if (j.is_number_float()) return "a non-integer number";
  if (j.is_number_integer() && !j.is_number_unsigned()) return "a negative number";
  return j.type_name();
}

/// Deepest nesting of arrays/objects accepted in JSON headers and configs. Real files need 3-4;
/// the cap keeps recursive JSON code (dump, comparisons) away from stack exhaustion.
inline constexpr int kMaxJsonDepth = 64;

/// Largest nesting depth of `[`/`{` outside strings (stops counting past the cap).
inline int json_nesting_depth(const char* p, const char* end) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (; p < end; ++p) {
    const char c = *p;
    if (in_string) {
      if (c == '\\') ++p;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) max_depth = depth;
      if (max_depth > kMaxJsonDepth) return max_depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

/// Compact JSON of `j`, cut to 80 characters, for messages.
template <class Json>
std::string json_excerpt(const Json& j) {
  std::string s = j.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

/// Parses JSON text, rejecting duplicate object keys at any depth (nlohmann would keep the last
/// silently; two entries for one tensor name must not pass). Throws Error(kFormatError) naming
/// `what`.
inline nlohmann::json parse_json_strict(const char* begin, const char* end, const std::string& what) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  std::string duplicate;
  auto cb = [&](int /*depth*/, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) -> bool {
    switch (ev) {
      case nlohmann::json::parse_event_t::object_start: keys.emplace_back(); break;
      case nlohmann::json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case nlohmann::json::parse_event_t::key:
        if (!keys.empty() && parsed.is_string()) {
          const std::string& k = parsed.get_ref<const std::string&>();
          if (!keys.back().insert(k).second && duplicate.empty()) duplicate = k;
        }
        break;
      default: break;
    }
    return true;
  };
  if (json_nesting_depth(begin, end) > kMaxJsonDepth)
    throw Error(StatusCode::kFormatError,
                what + " nests arrays/objects deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, end, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& e) {
    throw Error(StatusCode::kFormatError, what + " is not valid JSON: " + e.what());
  }
  if (!duplicate.empty())
    throw Error(StatusCode::kFormatError, what + " has the key '" + duplicate + "' twice");
  return j;
}

}  // namespace detail

/// A parsed safetensors file. Owns its memory mapping (when opened from a path) or borrows the
/// caller's buffer (from_buffer: the buffer must outlive this object). Movable; TensorRef data
/// pointers stay valid across moves.
class SafetensorsFile {
 public:
  SafetensorsFile() = default;

  /// Maps and parses `path`. Throws Error (kIoError for the OS, kFormatError/kUnsupported for the
  /// content) with `path` in the message.
  static SafetensorsFile open(const std::string& path) {
    SafetensorsFile f;
    f.map_ = MappedFile(path);
    f.parse(f.map_.data(), f.map_.size(), path);
    return f;
  }

  /// Parses a caller-owned buffer (not copied); `name` appears in error messages.
  static SafetensorsFile from_buffer(const void* data, size_t size, std::string name) {
    SafetensorsFile f;
    f.parse(static_cast<const unsigned char*>(data), size, name);
    return f;
  }

  const std::string& name() const { return name_; }
  /// Tensors in file order (ascending data offset; ties, i.e. empty tensors, by name).
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  /// Tensor names in file order.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    n.reserve(tensors_.size());
    for (const auto& t : tensors_) n.push_back(t.name);
    return n;
  }
  /// The tensor called `name`, or nullptr.
  const TensorRef* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  bool contains(const std::string& name) const { return find(name) != nullptr; }
  /// The tensor called `name`; throws Error(kNotFound) naming the file and the tensor.
  const TensorRef& at(const std::string& name) const {
    const TensorRef* t = find(name);
    if (!t) throw Error(StatusCode::kNotFound, name_ + ": no tensor '" + name + "'");
    return *t;
  }
  /// The `__metadata__` map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// Bytes of JSON header (N) and the file offset of the data area (8 + N).
  uint64_t header_bytes() const { return header_bytes_; }
  uint64_t data_offset() const { return 8 + header_bytes_; }
  uint64_t data_bytes() const { return data_bytes_; }

 private:
  [[noreturn]] void fail(const std::string& msg, StatusCode code = StatusCode::kFormatError) const {
    throw Error(code, name_ + ": " + msg);
  }

  void parse(const unsigned char* data, size_t size, const std::string& name) {
    name_ = name;
    if (size < 8)
      fail("file is " + std::to_string(size) +
           " bytes, shorter than the 8-byte safetensors header length");
    uint64_t n = 0;
    std::memcpy(&n, data, 8);
    if (n > kSafetensorsMaxHeaderBytes)
      fail("header length " + std::to_string(n) + " exceeds the limit of " +
           std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
    if (n > size - 8)
      fail("header length " + std::to_string(n) + " runs past the end of the file (" +
           std::to_string(size) + " bytes)");
    header_bytes_ = n;
    data_bytes_ = size - 8 - n;
    const unsigned char* hdr = data + 8;
    if (n == 0 || hdr[0] != '{') fail("header does not start with '{'");
    const size_t bad = detail::utf8_invalid_at(hdr, n);
    if (bad != n) fail("header is not valid UTF-8 (byte " + std::to_string(bad) + " of the header)");
    const nlohmann::json j = detail::parse_json_strict(
        reinterpret_cast<const char*>(hdr), reinterpret_cast<const char*>(hdr + n), name_ + ": header");
    if (!j.is_object()) fail("header is not a JSON object");

    struct Range {
      uint64_t begin, end;
      size_t idx;
    };
    std::vector<Range> ranges;
    const unsigned char* area = hdr + n;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      const nlohmann::json& v = it.value();
      if (key == "__metadata__") {
        if (v.is_null()) continue;  // the official reader accepts a null map
        if (!v.is_object()) fail("__metadata__ must be an object of strings, got " + std::string(v.type_name()));
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            fail("__metadata__ must map strings to strings; key '" + m.key() + "' holds " +
                 detail::json_type_name(m.value()));
          metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      const std::string tn = "tensor '" + key + "': ";
      if (!v.is_object()) fail(tn + "entry is " + detail::json_type_name(v) + ", not an object");
      for (auto f = v.begin(); f != v.end(); ++f)
        if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
          fail(tn + "unknown key '" + f.key() + "'");
      for (const char* req : {"dtype", "shape", "data_offsets"})
        if (!v.contains(req)) fail(tn + "missing '" + req + "'");
      const auto& jd = v.at("dtype");
      if (!jd.is_string()) fail(tn + "'dtype' is " + detail::json_type_name(jd) + ", not a string");
      TensorRef t;
      t.name = key;
      if (!parse_dtype(jd.get<std::string>(), &t.dtype))
        fail(tn + "unknown dtype '" + jd.get<std::string>() + "'", StatusCode::kUnsupported);
      const auto& js = v.at("shape");
      if (!js.is_array()) fail(tn + "'shape' is " + detail::json_type_name(js) + ", not an array");
      uint64_t numel = 1;
      bool overflow = false;
      for (const auto& dim : js) {
        if (!dim.is_number_unsigned()) {
          if (dim.is_number_integer())
            fail(tn + "dimension " + detail::json_excerpt(dim) + " is negative");
          fail(tn + "dimension " + detail::json_excerpt(dim) + " is not a non-negative integer");
        }
        const uint64_t dv = dim.get<uint64_t>();
        if (dv > static_cast<uint64_t>(INT64_MAX)) fail(tn + "dimension " + detail::json_excerpt(dim) + " is too large");
        t.shape.push_back(static_cast<int64_t>(dv));
        if (__builtin_mul_overflow(numel, dv, &numel)) overflow = true;
      }
      uint64_t nbytes = 0;
      if (overflow || numel > static_cast<uint64_t>(INT64_MAX) ||
          __builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(t.dtype)), &nbytes))
        fail(tn + "shape " + detail::json_excerpt(js) + " has an element count that overflows 64 bits");
      const auto& jo = v.at("data_offsets");
      if (!jo.is_array() || jo.size() != 2)
        fail(tn + "'data_offsets' must be an array of two integers, got " + detail::json_excerpt(jo));
      for (const auto& o : jo)
        if (!o.is_number_unsigned())
          fail(tn + "data offset " + detail::json_excerpt(o) + " is not a non-negative integer");
      const uint64_t b = jo[0].get<uint64_t>(), e = jo[1].get<uint64_t>();
      if (e < b)
        fail(tn + "data_offsets end " + std::to_string(e) + " is before begin " + std::to_string(b));
      if (e - b != nbytes)
        fail(tn + "data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + ") hold " +
             std::to_string(e - b) + " bytes but shape " + detail::json_excerpt(js) + " of " + dtype_name(t.dtype) +
             " needs " + std::to_string(nbytes));
      if (e > data_bytes_)
        fail(tn + "data_offsets end " + std::to_string(e) + " is past the data area (" +
             std::to_string(data_bytes_) + " bytes)");
      t.data = area + b;
      t.nbytes = nbytes;
      ranges.push_back({b, e, tensors_.size()});
      tensors_.push_back(std::move(t));
    }
    // The official rule: sorted by offset, the tensors tile [0, data_bytes) exactly.
    std::sort(ranges.begin(), ranges.end(), [this](const Range& a, const Range& b) {
      if (a.begin != b.begin) return a.begin < b.begin;
      if (a.end != b.end) return a.end < b.end;
      return tensors_[a.idx].name < tensors_[b.idx].name;
    });
    uint64_t pos = 0;
    const std::string* prev = nullptr;
    for (const Range& r : ranges) {
      const std::string& nm = tensors_[r.idx].name;
      if (r.begin < pos)
        fail("tensors '" + *prev + "' and '" + nm + "' overlap (byte " + std::to_string(r.begin) +
             " of the data area)");
      if (r.begin > pos)
        fail("bytes [" + std::to_string(pos) + ", " + std::to_string(r.begin) +
             ") of the data area are not covered by any tensor (hole before '" + nm + "')");
      pos = r.end;
      prev = &nm;
    }
    if (pos != data_bytes_)
      fail("bytes [" + std::to_string(pos) + ", " + std::to_string(data_bytes_) +
           ") at the end of the data area are not covered by any tensor");
    std::vector<TensorRef> ordered;
    ordered.reserve(tensors_.size());
    for (const Range& r : ranges) ordered.push_back(std::move(tensors_[r.idx]));
    tensors_ = std::move(ordered);
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  }

  MappedFile map_;
  std::string name_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  uint64_t header_bytes_ = 0;
  uint64_t data_bytes_ = 0;
};

/// Converts a float tensor (F32, F16, BF16, F64, F8_E4M3, F8_E5M2) to fp32 into `out` (numel
/// floats). Exact for every dtype but F64, which rounds to nearest even. Deterministic.
/// Throws Error(kUnsupported) for a non-float dtype.
inline void tensor_to_float(const TensorRef& t, float* out) {
  if (!is_float_dtype(t.dtype))
    throw Error(StatusCode::kUnsupported, "tensor '" + t.name + "' has dtype " +
                                              dtype_name(t.dtype) + ", not a float dtype");
  const int64_t n = t.numel();
  switch (t.dtype) {
    case DType::kF32: std::memcpy(out, t.data, static_cast<size_t>(n) * 4); return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = half_bits_to_float(h);
      }
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = bf16_bits_to_float(h);
      }
      return;
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_as_double(t.data, t.dtype, i));
  }
}

/// As above, into a new vector.
inline std::vector<float> tensor_to_float(const TensorRef& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  if (!v.empty()) tensor_to_float(t, v.data());
  return v;
}

/// The inverse of tensor_to_float for the dtypes cluscomp writes: `n` fp32 values as the
/// little-endian bytes of `dt` (F32 copies; F16 and BF16 round to nearest even). Compress (dense
/// tensors, RTN values) and recover (trained dense tensors) both store through it, so their
/// files agree byte for byte. Throws Error(kUnsupported) naming any other dtype (callers that can
/// say why check first, with their own message).
inline std::vector<unsigned char> encode_float_values(const float* v, size_t n, DType dt) {
  if (dt != DType::kF32 && dt != DType::kF16 && dt != DType::kBF16)
    throw Error(StatusCode::kUnsupported, std::string("cannot store fp32 values as ") + dtype_name(dt) +
                                              " (F32, F16, BF16 only)");
  std::vector<unsigned char> bytes(n * static_cast<size_t>(dtype_size(dt)));
  for (size_t i = 0; i < n; ++i) {
    if (dt == DType::kF32) {
      std::memcpy(bytes.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t b = dt == DType::kF16 ? float_to_half_bits(v[i]) : float_to_bf16_bits(v[i]);
      std::memcpy(bytes.data() + 2 * i, &b, 2);
    }
  }
  return bytes;
}

/// Converts an integer or BOOL tensor to int64 (exact). Throws Error(kUnsupported) for float
/// dtypes and Error(kOutOfRange) for a U64 value above INT64_MAX.
inline std::vector<int64_t> tensor_to_int64(const TensorRef& t) {
  if (is_float_dtype(t.dtype))
    throw Error(StatusCode::kUnsupported, "tensor '" + t.name + "' has dtype " +
                                              dtype_name(t.dtype) + ", not an integer dtype");
  const int64_t n = t.numel();
  std::vector<int64_t> v(static_cast<size_t>(n));
  const int es = dtype_size(t.dtype);
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* p = t.data + i * es;
    switch (t.dtype) {
      case DType::kI8: { int8_t x; std::memcpy(&x, p, 1); v[i] = x; break; }
      case DType::kI16: { int16_t x; std::memcpy(&x, p, 2); v[i] = x; break; }
      case DType::kI32: { int32_t x; std::memcpy(&x, p, 4); v[i] = x; break; }
      case DType::kI64: { int64_t x; std::memcpy(&x, p, 8); v[i] = x; break; }
      case DType::kU8: v[i] = p[0]; break;
      case DType::kBool: v[i] = p[0] != 0; break;
      case DType::kU16: { uint16_t x; std::memcpy(&x, p, 2); v[i] = x; break; }
      case DType::kU32: { uint32_t x; std::memcpy(&x, p, 4); v[i] = x; break; }
      default: {
        uint64_t x;
        std::memcpy(&x, p, 8);
        if (x > static_cast<uint64_t>(INT64_MAX))
          throw Error(StatusCode::kOutOfRange, "tensor '" + t.name + "': value " + std::to_string(x) +
                                                   " at element " + std::to_string(i) +
                                                   " does not fit int64");
        v[i] = static_cast<int64_t>(x);
      }
    }
  }
  return v;
}

/// Builds a safetensors file. Output is deterministic:
/// - data layout: tensors sorted by element size, largest first (8, 4, 2, 1 bytes), ties in
///   insertion order, packed without gaps. With the header padded to a multiple of 8 this puts
///   every tensor at an offset that is a multiple of its element size, so mapped data is aligned.
/// - header: `__metadata__` first (keys sorted), then the tensors in data-layout order; compact
///   JSON, padded with spaces so that 8 + N is a multiple of 8.
/// Tensors are written straight from the caller's memory (add), from an owned copy (add_copy) or
/// from a producer called at write time (add_streamed), so a whole model never sits in one
/// buffer. Writing to a path is atomic (AtomicFileWriter): on any error nothing appears at the
/// destination and a pre-existing file there is untouched.
class SafetensorsWriter {
 public:
  /// Receives bytes of the tensor being written, in order.
  using ByteSink = std::function<void(const void* data, size_t n)>;
  /// Called once at write time; must hand exactly the tensor's byte count to the sink.
  using Producer = std::function<void(const ByteSink& sink)>;

  /// Adds a tensor whose `nbytes` bytes at `data` the caller keeps alive until the last write.
  /// Throws Error(kInvalidArgument) for a bad name, a negative dimension, or a byte count that
  /// disagrees with the shape.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data,
           uint64_t nbytes) {
    if (data == nullptr && nbytes > 0)
      throw Error(StatusCode::kInvalidArgument, "safetensors writer: tensor '" + name + "': null data");
    check_new(name, dtype, shape, nbytes);
    Entry e{name, dtype, shape, nbytes, static_cast<const unsigned char*>(data), nullptr, {}};
    entries_.push_back(std::move(e));
  }
  /// Adds a TensorRef (its name, dtype, shape and bytes; no copy).
  void add(const TensorRef& t) { add(t.name, t.dtype, t.shape, t.data, t.nbytes); }

  /// Adds a tensor from a copy of its bytes.
  void add_copy(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                const void* data, uint64_t nbytes) {
    if (data == nullptr && nbytes > 0)
      throw Error(StatusCode::kInvalidArgument, "safetensors writer: tensor '" + name + "': null data");
    check_new(name, dtype, shape, nbytes);
    auto owned = std::make_shared<std::vector<unsigned char>>(
        static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + nbytes);
    Entry e{name, dtype, shape, nbytes, owned->data(), owned, {}};
    entries_.push_back(std::move(e));
  }

  /// Adds a tensor whose bytes `producer` generates at write time (e.g. a conversion done one
  /// tensor at a time). The byte count is numel * dtype size; a producer that delivers a
  /// different count makes the write fail with Error(kInvalidArgument).
  void add_streamed(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                    Producer producer) {
    const uint64_t nbytes = bytes_for(name, dtype, shape);
    check_new(name, dtype, shape, nbytes);
    Entry e{name, dtype, shape, nbytes, nullptr, nullptr, std::move(producer)};
    entries_.push_back(std::move(e));
  }

  /// Sets a `__metadata__` entry (both strings must be UTF-8).
  void set_metadata(const std::string& key, const std::string& value) {
    if (!detail::is_utf8(key) || !detail::is_utf8(value))
      throw Error(StatusCode::kInvalidArgument, "safetensors metadata '" + key + "' is not UTF-8");
    metadata_[key] = value;
  }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t size() const { return entries_.size(); }

  /// The padded header (without the 8-byte length).
  std::string header() const {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata_.empty()) {
      nlohmann::ordered_json m = nlohmann::ordered_json::object();
      for (const auto& kv : metadata_) m[kv.first] = kv.second;
      h["__metadata__"] = std::move(m);
    }
    uint64_t off = 0;
    for (size_t i : layout()) {
      const Entry& e = entries_[i];
      nlohmann::ordered_json t = nlohmann::ordered_json::object();
      t["dtype"] = dtype_name(e.dtype);
      t["shape"] = e.shape;
      t["data_offsets"] = {off, off + e.nbytes};
      off += e.nbytes;
      h[e.name] = std::move(t);
    }
    std::string s = h.dump();
    s.append((8 - s.size() % 8) % 8, ' ');
    return s;
  }

  /// Writes the file atomically. Throws Error(kIoError) naming the path on any OS failure (full
  /// disk included); the destination is then absent or untouched and no temporary remains.
  void write(const std::string& path) const {
    AtomicFileWriter w(path);
    write_to(w);
    w.commit();
  }

  /// Writes the whole file into `w` without committing it (for files that appear together, see
  /// AtomicFileWriter::finish).
  void write_to(AtomicFileWriter& w) const {
    emit([&w](const void* p, size_t n) { w.write(p, n); });
  }

  /// The whole file in memory (tests, fuzz seeds, small files).
  std::vector<unsigned char> to_bytes() const {
    std::vector<unsigned char> out;
    emit([&out](const void* p, size_t n) {
      const auto* c = static_cast<const unsigned char*>(p);
      out.insert(out.end(), c, c + n);
    });
    return out;
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    const unsigned char* data;
    std::shared_ptr<std::vector<unsigned char>> owned;
    Producer producer;
  };

  static uint64_t bytes_for(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    uint64_t n = 1;
    for (int64_t s : shape) {
      if (s < 0)
        throw Error(StatusCode::kInvalidArgument, "safetensors writer: tensor '" + name +
                                                      "' has negative dimension in shape " +
                                                      shape_to_string(shape));
      n = checked_mul(n, static_cast<uint64_t>(s), "safetensors writer: tensor shape");
    }
    return checked_mul(n, static_cast<uint64_t>(dtype_size(dtype)), "safetensors writer: tensor bytes");
  }

  void check_new(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                 uint64_t nbytes) {
    auto bad = [&](const std::string& m) {
      throw Error(StatusCode::kInvalidArgument, "safetensors writer: tensor '" + name + "': " + m);
    };
    if (name.empty()) bad("empty name");
    if (name == "__metadata__") bad("the name is reserved");
    if (!detail::is_utf8(name)) bad("name is not UTF-8");
    if (static_cast<int>(dtype) >= kNumDTypes) bad("unknown dtype");
    const uint64_t want = bytes_for(name, dtype, shape);
    if (want != nbytes)
      bad(std::to_string(nbytes) + " bytes given but shape " + shape_to_string(shape) + " of " +
          dtype_name(dtype) + " needs " + std::to_string(want));
    if (!names_.insert(name).second) bad("added twice");
  }

  std::vector<size_t> layout() const {
    std::vector<size_t> order(entries_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [this](size_t a, size_t b) {
      return dtype_size(entries_[a].dtype) > dtype_size(entries_[b].dtype);
    });
    return order;
  }

  template <class Sink>
  void emit(Sink&& sink) const {
    const std::string h = header();
    const uint64_t n = h.size();
    unsigned char len[8];
    std::memcpy(len, &n, 8);
    sink(len, 8);
    sink(h.data(), h.size());
    for (size_t i : layout()) {
      const Entry& e = entries_[i];
      if (!e.producer) {
        if (e.nbytes) sink(e.data, static_cast<size_t>(e.nbytes));
        continue;
      }
      uint64_t got = 0;
      e.producer([&](const void* p, size_t m) {
        if (m > e.nbytes - got)
          throw Error(StatusCode::kInvalidArgument, "safetensors writer: producer of tensor '" +
                                                        e.name + "' delivered more than " +
                                                        std::to_string(e.nbytes) + " bytes");
        got += m;
        if (m) sink(p, m);
      });
      if (got != e.nbytes)
        throw Error(StatusCode::kInvalidArgument, "safetensors writer: producer of tensor '" + e.name +
                                                      "' delivered " + std::to_string(got) +
                                                      " bytes, expected " + std::to_string(e.nbytes));
    }
  }

  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

CLUSCOMP_NAMESPACE_END
