#pragma once
/// cluscomp's own compressed-model format (specified byte for byte in docs/format.md).
///
/// A safetensors file, so any safetensors tool can list it:
/// - per clustered matrix `<name>` (the HF weight name it replaces, e.g.
///   "model.layers.0.self_attn.q_proj.weight"):
///     `<name>.centroids`  F32 | F16 | BF16, shape [S, K, d]  (codebook s owns input rows
///                         [floor(s*in/S), floor((s+1)*in/S)), see codebook_view.hpp)
///     `<name>.codes`      U32, shape [packed_words(in*out_pad/d, code_bits)]  (bitpack.hpp)
/// - dense tensors under their own names, as given;
/// - `__metadata__`: "cluscomp.format_version" = "1"; per matrix "cluscomp.matrix.<name>" = a
///   JSON object string {out, in, out_pad, d, k, num_codebooks, code_bits, centroid_dtype,
///   num_vectors, code_words, bpw_reference, bpw_packed}; optionally "cluscomp.config" (the
///   source model's config.json text) and "cluscomp.tokenizer" (Tokenizer::to_state_json); any
///   other keys the caller passes.

#include <cmath>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/bitpack.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/safetensors.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The format version this code writes and the newest it reads.
inline constexpr int kCluscompFormatVersion = 1;

inline constexpr const char* kCluscompVersionKey = "cluscomp.format_version";
inline constexpr const char* kCluscompMatrixKeyPrefix = "cluscomp.matrix.";
inline constexpr const char* kCluscompConfigKey = "cluscomp.config";
/// The model's tokenizer, Tokenizer::to_state_json text (docs/format.md): a compressed file
/// tokenises without the model it was compressed from.
inline constexpr const char* kCluscompTokenizerKey = "cluscomp.tokenizer";

/// Whether a caller may set metadata key `key` on a cluscomp file: every key outside "cluscomp.*",
/// and the optional format keys that describe the model (config, tokenizer). The version and the
/// per-matrix descriptions are the writer's own.
inline bool is_cluscomp_caller_key(const std::string& key) {
  return key.rfind("cluscomp.", 0) != 0 || key == kCluscompConfigKey || key == kCluscompTokenizerKey;
}

/// A cluscomp model read from disk: the clustered matrices (owning copies) and the dense
/// tensors (TensorRefs into `file`, valid while this object lives; moving keeps them valid).
struct CluscompModel {
  SafetensorsFile file;
  int format_version = 0;
  std::map<std::string, CodebookTensor> clustered;
  std::vector<TensorRef> dense;                  // file order
  std::map<std::string, std::string> metadata;   // the whole __metadata__, cluscomp.* included

  const TensorRef* find_dense(const std::string& name) const {
    for (const auto& t : dense)
      if (t.name == name) return &t;
    return nullptr;
  }
  /// The metadata a writer may pass on to write_cluscomp_model: everything but the keys the
  /// format itself writes (the version and the per-matrix descriptions); the config and the
  /// tokenizer are kept, so a rewritten file (calibrate, recover) stays self-contained.
  std::map<std::string, std::string> caller_metadata() const {
    std::map<std::string, std::string> m;
    for (const auto& kv : metadata)
      if (is_cluscomp_caller_key(kv.first)) m.insert(kv);
    return m;
  }
  /// The stored source config.json text, or "" when none was stored.
  std::string config_json() const {
    auto it = metadata.find(kCluscompConfigKey);
    return it == metadata.end() ? std::string() : it->second;
  }
};

/// The metadata JSON of one matrix (what write_cluscomp_model stores under
/// "cluscomp.matrix.<name>"). Deterministic: keys sorted, bpw printed by nlohmann (shortest
/// round-trip form).
inline std::string cluscomp_matrix_metadata(const CodebookShape& s) {
  nlohmann::json j;
  j["out"] = s.out;
  j["in"] = s.in;
  j["out_pad"] = s.out_pad();
  j["d"] = s.d;
  j["k"] = s.k;
  j["num_codebooks"] = s.num_codebooks;
  j["code_bits"] = s.effective_code_bits();
  j["centroid_dtype"] = dtype_name(s.centroid_dtype);
  j["num_vectors"] = s.num_vectors();
  j["code_words"] = packed_words(s.num_vectors(), s.effective_code_bits());
  j["bpw_reference"] = s.bpw_reference();
  j["bpw_packed"] = s.bpw_packed();
  return j.dump();
}

/// Writes a cluscomp model atomically to `path`. `dense` tensors are written from the caller's
/// memory and `clustered` from the CodebookTensors' own buffers (nothing is copied into one big
/// buffer). `metadata` goes into __metadata__ as well; of the "cluscomp.*" keys a caller may set
/// only "cluscomp.config" (the source config.json text) and "cluscomp.tokenizer" (stored as given;
/// load_model_tokenizer validates it), the others are refused. Exact and
/// deterministic (see SafetensorsWriter for the order). Throws Error: kInvalidArgument (name
/// clashes, reserved keys, an invalid CodebookTensor), kIoError from the OS.
inline void write_cluscomp_model(const std::string& path, const std::vector<TensorRef>& dense,
                                 const std::map<std::string, CodebookTensor>& clustered,
                                 const std::map<std::string, std::string>& metadata = {}) {
  SafetensorsWriter w;
  for (const auto& kv : metadata) {
    if (!is_cluscomp_caller_key(kv.first))
      throw Error(StatusCode::kInvalidArgument, "write_cluscomp_model: metadata key '" + kv.first +
                                                    "' is reserved for the format");
    w.set_metadata(kv.first, kv.second);
  }
  w.set_metadata(kCluscompVersionKey, std::to_string(kCluscompFormatVersion));
  for (const auto& t : dense) w.add(t);
  for (const auto& kv : clustered) {
    const CodebookTensor& t = kv.second;
    const CodebookShape& s = t.shape();
    throw_if_error(s.validate());
    const int bits = t.code_bits();
    const int64_t words = packed_words(s.num_vectors(), bits);
    if (static_cast<int64_t>(t.code_words().size()) != words ||
        t.centroid_bytes().size() != static_cast<size_t>(s.num_centroid_values()) *
                                         static_cast<size_t>(dtype_size(s.centroid_dtype)))
      throw Error(StatusCode::kInvalidArgument, "write_cluscomp_model: '" + kv.first +
                                                    "': buffers do not match the shape");
    w.add(kv.first + ".centroids", s.centroid_dtype, {s.num_codebooks, s.k, s.d},
          t.centroid_bytes().data(), t.centroid_bytes().size());
    w.add(kv.first + ".codes", DType::kU32, {words}, t.code_words().data(),
          t.code_words().size() * sizeof(uint32_t));
    w.set_metadata(kCluscompMatrixKeyPrefix + kv.first, cluscomp_matrix_metadata(s));
  }
  w.write(path);
}

namespace detail {

inline int64_t matrix_int(const nlohmann::json& j, const char* key, const std::string& what) {
  if (!j.contains(key))
    throw Error(StatusCode::kFormatError, what + ": matrix metadata lacks '" + key + "'");
  const auto& v = j.at(key);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > (uint64_t{1} << 62))
    throw Error(StatusCode::kFormatError,
                what + ": matrix metadata '" + key + "' must be a non-negative integer, got " + detail::json_excerpt(v));
  return v.get<int64_t>();
}

}  // namespace detail

/// Interprets a parsed safetensors file as a cluscomp model. Exact. Throws Error naming the
/// file and matrix: kFormatError when it is not a cluscomp model (no version key), when a
/// matrix's metadata is malformed or disagrees with its tensors (dtype, [S, K, d], word count,
/// out_pad, non-zero bits past the last code), or a code is >= K; kUnsupported for a format
/// version newer than kCluscompFormatVersion or a centroid dtype other than F32/F16/BF16.
inline CluscompModel read_cluscomp_model(SafetensorsFile file) {
  CluscompModel m;
  m.file = std::move(file);
  const std::string& fname = m.file.name();
  m.metadata = m.file.metadata();
  auto fmt = [&fname](const std::string& msg) { return Error(StatusCode::kFormatError, fname + ": " + msg); };
  auto vit = m.metadata.find(kCluscompVersionKey);
  if (vit == m.metadata.end())
    throw fmt(std::string("not a cluscomp model: no '") + kCluscompVersionKey + "' in __metadata__");
  const std::string& vs = vit->second;
  if (vs.empty() || vs.size() > 9 || vs.find_first_not_of("0123456789") != std::string::npos)
    throw fmt("format version '" + vs + "' is not a decimal integer");
  m.format_version = std::stoi(vs);
  if (m.format_version < 1 || m.format_version > kCluscompFormatVersion)
    throw Error(StatusCode::kUnsupported, fname + ": cluscomp format version " + vs +
                                              " is not supported (this reader knows 1.." +
                                              std::to_string(kCluscompFormatVersion) + ")");
  std::set<std::string> claimed;
  const std::string prefix = kCluscompMatrixKeyPrefix;
  for (const auto& kv : m.metadata) {
    if (kv.first.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string name = kv.first.substr(prefix.size());
    const std::string what = fname + ": clustered matrix '" + name + "'";
    if (name.empty()) throw fmt("metadata key '" + kv.first + "' names no matrix");
    const nlohmann::json j =
        detail::parse_json_strict(kv.second.data(), kv.second.data() + kv.second.size(), what + " metadata");
    if (!j.is_object()) throw Error(StatusCode::kFormatError, what + ": metadata is not a JSON object");
    CodebookShape s;
    s.out = detail::matrix_int(j, "out", what);
    s.in = detail::matrix_int(j, "in", what);
    const int64_t d = detail::matrix_int(j, "d", what);
    s.k = detail::matrix_int(j, "k", what);
    const int64_t nc = detail::matrix_int(j, "num_codebooks", what);
    const int64_t cb = detail::matrix_int(j, "code_bits", what);
    if (d < 1 || d > 16) throw Error(StatusCode::kFormatError, what + ": d = " + std::to_string(d) + " is not in 1..16");
    if (cb < 1 || cb > 16)
      throw Error(StatusCode::kFormatError, what + ": code_bits = " + std::to_string(cb) + " is not in 1..16");
    if (nc < 1 || nc > s.in || nc > INT32_MAX)
      throw Error(StatusCode::kFormatError, what + ": num_codebooks = " + std::to_string(nc) + " is not in 1..in");
    s.d = static_cast<int>(d);
    s.num_codebooks = static_cast<int>(nc);
    s.code_bits = static_cast<int>(cb);
    if (!j.contains("centroid_dtype") || !j.at("centroid_dtype").is_string())
      throw Error(StatusCode::kFormatError, what + ": matrix metadata lacks the 'centroid_dtype' string");
    if (!parse_dtype(j.at("centroid_dtype").get<std::string>(), &s.centroid_dtype))
      throw Error(StatusCode::kFormatError, what + ": unknown centroid_dtype " + detail::json_excerpt(j.at("centroid_dtype")));
    const Status st = s.validate();
    if (!st.ok())
      throw Error(st.code() == StatusCode::kInvalidArgument ? StatusCode::kFormatError : st.code(),
                  what + ": " + st.message());
    uint64_t nv = 0, nbits = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(s.in), static_cast<uint64_t>(s.vectors_per_row()), &nv) ||
        __builtin_mul_overflow(nv, static_cast<uint64_t>(s.code_bits), &nbits) || nbits > (uint64_t{1} << 62))
      throw Error(StatusCode::kFormatError, what + ": (out, in) = (" + std::to_string(s.out) + ", " +
                                                std::to_string(s.in) + ") is too large");
    if (j.contains("out_pad") && detail::matrix_int(j, "out_pad", what) != s.out_pad())
      throw Error(StatusCode::kFormatError, what + ": out_pad " + detail::json_excerpt(j.at("out_pad")) +
                                                " is not out rounded up to a multiple of d (" +
                                                std::to_string(s.out_pad()) + ")");
    const int64_t words = packed_words(s.num_vectors(), s.code_bits);
    if (j.contains("code_words") && detail::matrix_int(j, "code_words", what) != words)
      throw Error(StatusCode::kFormatError, what + ": code_words " + detail::json_excerpt(j.at("code_words")) +
                                                " disagrees with the shape (" + std::to_string(words) + ")");
    const TensorRef* ct = m.file.find(name + ".centroids");
    const TensorRef* kt = m.file.find(name + ".codes");
    if (!ct) throw Error(StatusCode::kFormatError, what + ": tensor '" + name + ".centroids' is missing");
    if (!kt) throw Error(StatusCode::kFormatError, what + ": tensor '" + name + ".codes' is missing");
    const std::vector<int64_t> want_c = {s.num_codebooks, s.k, s.d};
    if (ct->dtype != s.centroid_dtype || ct->shape != want_c)
      throw Error(StatusCode::kFormatError, what + ": centroids are " + dtype_name(ct->dtype) + " " +
                                                shape_to_string(ct->shape) + ", metadata says " +
                                                dtype_name(s.centroid_dtype) + " " + shape_to_string(want_c));
    if (kt->dtype != DType::kU32 || kt->shape != std::vector<int64_t>{words})
      throw Error(StatusCode::kFormatError, what + ": codes are " + dtype_name(kt->dtype) + " " +
                                                shape_to_string(kt->shape) + ", expected U32 [" +
                                                std::to_string(words) + "] (packed_words of " +
                                                std::to_string(s.num_vectors()) + " codes at " +
                                                std::to_string(s.code_bits) + " bits)");
    // Sizes now match tensors inside the file, so the allocation below is bounded by its size.
    CodebookTensor t(s);
    std::memcpy(t.centroid_bytes().data(), ct->data, static_cast<size_t>(ct->nbytes));
    if (kt->nbytes) std::memcpy(t.code_words().data(), kt->data, static_cast<size_t>(kt->nbytes));
    const uint64_t used = nbits % 32;
    if (used != 0 && words > 0 && (t.code_words().back() >> used) != 0)
      throw Error(StatusCode::kFormatError, what + ": bits past the last code in the last word are not zero");
    const Status cs = t.validate_codes();
    if (!cs.ok()) throw Error(StatusCode::kFormatError, what + ": " + cs.message());
    claimed.insert(ct->name);
    claimed.insert(kt->name);
    m.clustered.emplace(name, std::move(t));
  }
  for (const auto& t : m.file.tensors())
    if (!claimed.count(t.name)) m.dense.push_back(t);
  return m;
}

/// Maps and reads a cluscomp model file (see the overload above).
inline CluscompModel read_cluscomp_model(const std::string& path) {
  return read_cluscomp_model(SafetensorsFile::open(path));
}

CLUSCOMP_NAMESPACE_END
