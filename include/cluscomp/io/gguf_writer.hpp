#pragma once
/// GGUF version 3 writer (little-endian): metadata of every value type, tensors as raw bytes of
/// any ggml type, alignment padding. Files are written through AtomicFileWriter (temporary file
/// + rename), so a failed write never leaves a partial file at the destination.
///
/// Layout written: header, metadata in insertion order, tensor infos in insertion order, zero
/// padding to the alignment, then each tensor's bytes followed by zero padding to the alignment
/// (after the last one too, as ggml does, so ggml's readers that load the padded data section
/// accept the file). The alignment is `general.alignment` when that key was added (it must be a
/// uint32 power of two), else 32; the key is written only when added.
///
/// Determinism: the output bytes depend only on the calls made.

#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cluscomp/host/checked.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"

CLUSCOMP_NAMESPACE_BEGIN

class GgufWriter {
 public:
  /// Adds a metadata entry. Throws Error(kInvalidArgument) naming the key for a duplicate key,
  /// an array item whose type differs from the array's element type, a bool other than 0/1,
  /// arrays nested deeper than the reader accepts, or a `general.alignment` that is not a uint32
  /// power of two.
  void add(const std::string& key, GgufValue value) {
    if (!keys_.insert(key).second)
      throw Error(StatusCode::kInvalidArgument, "GGUF writer: duplicate metadata key '" + key + "'");
    try {
      check_value(value, key, 0);
      if (key == "general.alignment") {
        if (value.type != GgufType::kUint32 || value.bits == 0 ||
            (value.bits & (value.bits - 1)) != 0)
          throw Error(StatusCode::kInvalidArgument,
                      "GGUF writer: 'general.alignment' must be a uint32 power of two");
        alignment_ = static_cast<uint32_t>(value.bits);
      }
    } catch (...) {
      keys_.erase(key);
      throw;
    }
    kvs_.push_back({key, std::move(value)});
  }
  void add_u32(const std::string& key, uint32_t v) { add(key, GgufValue::u32(v)); }
  void add_i32(const std::string& key, int32_t v) { add(key, GgufValue::i32(v)); }
  void add_u64(const std::string& key, uint64_t v) { add(key, GgufValue::u64(v)); }
  void add_f32(const std::string& key, float v) { add(key, GgufValue::f32(v)); }
  void add_bool(const std::string& key, bool v) { add(key, GgufValue::boolean(v)); }
  void add_string(const std::string& key, std::string v) {
    add(key, GgufValue::string(std::move(v)));
  }
  /// Sets `general.alignment` (a power of two).
  void set_alignment(uint32_t a) { add_u32("general.alignment", a); }

  /// Adds a tensor whose `n_bytes` bytes at `data` are copied now. `ne` is in GGUF order (ne[0]
  /// fastest). Throws Error(kInvalidArgument) naming the tensor for a duplicate or empty name,
  /// 0 or more than 4 dims, a dim < 1, an element count overflow, an unknown type, ne[0] not a
  /// multiple of the block size, or n_bytes different from the size the type and dims imply.
  void add_tensor(const std::string& name, GgmlType type, std::vector<int64_t> ne, const void* data,
                  size_t n_bytes) {
    Pending p = make_pending(name, type, std::move(ne), n_bytes);
    const auto* b = static_cast<const unsigned char*>(data);
    p.owned.assign(b, b + n_bytes);
    p.data = nullptr;
    tensors_.push_back(std::move(p));
  }

  /// As add_tensor, but borrows `data`: it must stay valid until the last write call.
  void add_tensor_view(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                       const void* data, size_t n_bytes) {
    Pending p = make_pending(name, type, std::move(ne), n_bytes);
    p.data = static_cast<const unsigned char*>(data);
    tensors_.push_back(std::move(p));
  }

  uint32_t alignment() const { return alignment_; }

  /// The whole file as bytes.
  std::vector<unsigned char> to_bytes() const {
    VectorSink s;
    emit(s);
    return std::move(s.bytes);
  }

  /// Writes the file atomically to `path`; throws Error(kIoError) naming the path on failure.
  void write_file(const std::string& path) const {
    AtomicFileWriter w(path);
    emit(w);
    w.commit();
  }

 private:
  struct Pending {
    std::string name;
    GgmlType type = GgmlType::kF32;
    std::vector<int64_t> ne;
    uint64_t n_bytes = 0;
    const unsigned char* data = nullptr;  // borrowed, or nullptr when `owned` holds the bytes
    std::vector<unsigned char> owned;
    const unsigned char* bytes() const { return data ? data : owned.data(); }
  };

  struct VectorSink {
    std::vector<unsigned char> bytes;
    void write(const void* p, size_t n) {
      const auto* b = static_cast<const unsigned char*>(p);
      bytes.insert(bytes.end(), b, b + n);
    }
    void write_zeros(size_t n) { bytes.insert(bytes.end(), n, 0); }
  };

  Pending make_pending(const std::string& name, GgmlType type, std::vector<int64_t> ne,
                       size_t n_bytes) {
    const std::string ctx = "GGUF writer: tensor '" + name + "': ";
    if (name.empty()) throw Error(StatusCode::kInvalidArgument, "GGUF writer: empty tensor name");
    if (tensor_names_.count(name))
      throw Error(StatusCode::kInvalidArgument, ctx + "duplicate tensor name");
    if (ne.empty() || ne.size() > 4)
      throw Error(StatusCode::kInvalidArgument,
                  ctx + std::to_string(ne.size()) + " dims (must be 1..4)");
    uint64_t n = 1;
    for (int64_t d : ne) {
      if (d < 1) throw Error(StatusCode::kInvalidArgument, ctx + "dim " + std::to_string(d) + " < 1");
      n = checked_mul(n, static_cast<uint64_t>(d), "GGUF writer: element count");
    }
    const GgmlTypeTraits tr = ggml_type_traits(type);
    if (!tr.name) throw Error(StatusCode::kInvalidArgument, ctx + "unknown ggml type " + ggml_type_name(type));
    if (ne[0] % tr.block_size != 0)
      throw Error(StatusCode::kInvalidArgument,
                  ctx + "ne[0] = " + std::to_string(ne[0]) + " is not a multiple of the " +
                      tr.name + " block size " + std::to_string(tr.block_size));
    const uint64_t want = checked_mul(n / static_cast<uint64_t>(tr.block_size),
                                      static_cast<uint64_t>(tr.type_size), "GGUF writer: bytes");
    if (want != n_bytes)
      throw Error(StatusCode::kInvalidArgument,
                  ctx + std::to_string(n_bytes) + " bytes given, " + tr.name + " with these dims needs " +
                      std::to_string(want));
    Pending p;
    p.name = name;
    p.type = type;
    p.ne = std::move(ne);
    p.n_bytes = want;
    tensor_names_.insert(name);
    return p;
  }

  static void check_value(const GgufValue& v, const std::string& key, int depth) {
    if (static_cast<uint32_t>(v.type) > static_cast<uint32_t>(GgufType::kFloat64))
      throw Error(StatusCode::kInvalidArgument, "GGUF writer: key '" + key + "': bad value type");
    if (v.type == GgufType::kBool && v.bits > 1)
      throw Error(StatusCode::kInvalidArgument, "GGUF writer: key '" + key + "': bool not 0/1");
    if (v.type != GgufType::kArray) return;
    if (depth >= detail::kGgufMaxArrayDepth)
      throw Error(StatusCode::kInvalidArgument,
                  "GGUF writer: key '" + key + "': arrays nested deeper than " +
                      std::to_string(detail::kGgufMaxArrayDepth) + " levels");
    for (const GgufValue& it : v.items) {
      if (it.type != v.elem_type)
        throw Error(StatusCode::kInvalidArgument,
                    "GGUF writer: key '" + key + "': array of " + gguf_type_name(v.elem_type) +
                        " holds an item of type " + gguf_type_name(it.type));
      check_value(it, key, depth + 1);
    }
  }

  template <class Sink, class T>
  static void put(Sink& s, T v) {
    s.write(&v, sizeof(T));
  }
  template <class Sink>
  static void put_string(Sink& s, const std::string& str) {
    put<Sink, uint64_t>(s, str.size());
    s.write(str.data(), str.size());
  }
  template <class Sink>
  static void put_value(Sink& s, const GgufValue& v) {
    switch (v.type) {
      case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool:
        put<Sink, uint8_t>(s, static_cast<uint8_t>(v.bits));
        return;
      case GgufType::kUint16: case GgufType::kInt16:
        put<Sink, uint16_t>(s, static_cast<uint16_t>(v.bits));
        return;
      case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32:
        put<Sink, uint32_t>(s, static_cast<uint32_t>(v.bits));
        return;
      case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64:
        put<Sink, uint64_t>(s, v.bits);
        return;
      case GgufType::kString: put_string(s, v.str); return;
      case GgufType::kArray:
        put<Sink, uint32_t>(s, static_cast<uint32_t>(v.elem_type));
        put<Sink, uint64_t>(s, v.items.size());
        for (const GgufValue& it : v.items) put_value(s, it);
        return;
    }
  }

  static uint64_t pad(uint64_t x, uint64_t a) { return (a - x % a) % a; }

  template <class Sink>
  void emit(Sink& s) const {
    // Header and metadata.
    put<Sink, uint32_t>(s, GgufReader::kMagic);
    put<Sink, uint32_t>(s, 3);
    put<Sink, uint64_t>(s, tensors_.size());
    put<Sink, uint64_t>(s, kvs_.size());
    for (const GgufKeyValue& kv : kvs_) {
      put_string(s, kv.key);
      put<Sink, uint32_t>(s, static_cast<uint32_t>(kv.value.type));
      put_value(s, kv.value);
    }
    // Tensor infos with offsets packed in order, each aligned.
    uint64_t off = 0;
    for (const Pending& t : tensors_) {
      put_string(s, t.name);
      put<Sink, uint32_t>(s, static_cast<uint32_t>(t.ne.size()));
      for (int64_t d : t.ne) put<Sink, uint64_t>(s, static_cast<uint64_t>(d));
      put<Sink, uint32_t>(s, static_cast<uint32_t>(t.type));
      put<Sink, uint64_t>(s, off);
      off = checked_add(off, t.n_bytes, "GGUF writer: data size");
      off = checked_add(off, pad(off, alignment_), "GGUF writer: data size");
    }
    s.write_zeros(static_cast<size_t>(pad(header_size(), alignment_)));
    for (const Pending& t : tensors_) {
      s.write(t.bytes(), static_cast<size_t>(t.n_bytes));
      s.write_zeros(static_cast<size_t>(pad(t.n_bytes, alignment_)));
    }
  }

  /// Bytes of header + metadata + tensor infos.
  uint64_t header_size() const {
    uint64_t n = 4 + 4 + 8 + 8;
    for (const GgufKeyValue& kv : kvs_) n += 8 + kv.key.size() + 4 + value_size(kv.value);
    for (const Pending& t : tensors_) n += 8 + t.name.size() + 4 + 8 * t.ne.size() + 4 + 8;
    return n;
  }
  static uint64_t value_size(const GgufValue& v) {
    if (v.type == GgufType::kString) return 8 + v.str.size();
    if (v.type == GgufType::kArray) {
      uint64_t n = 4 + 8;
      for (const GgufValue& it : v.items) n += value_size(it);
      return n;
    }
    return static_cast<uint64_t>(gguf_scalar_size(v.type));
  }

  std::vector<GgufKeyValue> kvs_;
  std::unordered_set<std::string> keys_;
  std::vector<Pending> tensors_;
  std::unordered_set<std::string> tensor_names_;
  uint32_t alignment_ = GgufReader::kDefaultAlignment;
};

CLUSCOMP_NAMESPACE_END
