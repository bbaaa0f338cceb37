#pragma once
/// The reference ClusComp checkpoint layout (CLUSCOMP.md §6), for interoperability:
/// a Hugging Face model directory (config.json + model.safetensors, or shards listed in
/// model.safetensors.index.json) where each clustered projection `<prefix>.weight` is replaced by
///   `<prefix>.cluster`  float (F32, F16 or BF16), shape [K, d]
///   `<prefix>.index`    I32 (clustered checkpoints) or U16 (inference variant), shape [in*out_pad/d]
/// and config.json carries `num_clusters` (K) and `cluster_dim` (d). The (out, in) shape is not
/// stored: it comes from the model config (llama_projection_shape) or the caller. The layout has
/// exactly one codebook per matrix (S = 1) and one K and d for the whole model.
///
/// In cluscomp the clustered matrix of `<prefix>.cluster/.index` is keyed `<prefix>.weight` (the
/// HF name of the weight it replaces), the same key cluscomp_format.hpp uses.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The two reference tensors of one matrix, owning their bytes.
struct ReferenceTensors {
  DType cluster_dtype = DType::kF32;
  std::vector<int64_t> cluster_shape;  // [K, d]
  std::vector<unsigned char> cluster;  // (K, d) row-major
  DType index_dtype = DType::kI32;
  std::vector<int64_t> index_shape;    // [in * out_pad / d]
  std::vector<unsigned char> index;    // one code per vector, v = i * out_pad/d + j
};

namespace detail {

inline void check_reference_codebook(const CodebookTensor& t, DType index_dtype, const std::string& what) {
  const CodebookShape& s = t.shape();
  if (s.num_codebooks != 1)
    throw Error(StatusCode::kUnsupported,
                what + ": the reference layout holds one codebook per matrix, this one has S = " +
                    std::to_string(s.num_codebooks));
  if (index_dtype != DType::kI32 && index_dtype != DType::kU16)
    throw Error(StatusCode::kInvalidArgument, what + ": reference index dtype must be I32 or U16, got " +
                                                  dtype_name(index_dtype));
}

/// Writes codes [v0, v1) of `t` as index_dtype into `out`.
inline void codes_to_index(const CodebookTensor& t, int64_t v0, int64_t v1, DType index_dtype,
                           unsigned char* out) {
  for (int64_t v = v0; v < v1; ++v) {
    const uint32_t c = t.code(v);
    if (index_dtype == DType::kI32) {
      const int32_t x = static_cast<int32_t>(c);
      std::memcpy(out + (v - v0) * 4, &x, 4);
    } else {
      const uint16_t x = static_cast<uint16_t>(c);
      std::memcpy(out + (v - v0) * 2, &x, 2);
    }
  }
}

inline std::string strip_weight_suffix(const std::string& name) {
  const std::string w = ".weight";
  if (name.size() > w.size() && name.compare(name.size() - w.size(), w.size(), w) == 0)
    return name.substr(0, name.size() - w.size());
  return name;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace detail

/// A CodebookTensor as the reference's two tensors. The cluster keeps the centroid dtype; the
/// index is I32 or U16. Exact (no arithmetic). Throws Error(kUnsupported) when S != 1.
inline ReferenceTensors codebook_to_reference(const CodebookTensor& t, DType index_dtype = DType::kI32) {
  detail::check_reference_codebook(t, index_dtype, "codebook_to_reference");
  const CodebookShape& s = t.shape();
  ReferenceTensors r;
  r.cluster_dtype = s.centroid_dtype;
  r.cluster_shape = {s.k, s.d};
  r.cluster = t.centroid_bytes();
  r.index_dtype = index_dtype;
  r.index_shape = {s.num_vectors()};
  r.index.resize(static_cast<size_t>(s.num_vectors()) * static_cast<size_t>(dtype_size(index_dtype)));
  detail::codes_to_index(t, 0, s.num_vectors(), index_dtype, r.index.data());
  return r;
}

/// Builds a CodebookTensor (S = 1, codes packed at `code_bits`, 0 = ceil(log2 K)) from a
/// reference cluster [K, d] and index [in*out_pad/d], given the HF weight shape (out, in).
/// Exact. Throws Error naming `name`: kUnsupported (cluster dtype not F32/F16/BF16, index dtype
/// not I32/U16/I64), kFormatError (ranks, K/d out of range, index length, an index outside
/// [0, K)).
inline CodebookTensor codebook_from_reference(const TensorRef& cluster, const TensorRef& index,
                                              int64_t out, int64_t in, int code_bits = 0,
                                              const std::string& name = "") {
  const std::string what = name.empty() ? cluster.name : name;
  auto fmt = [&what](const std::string& m) { return Error(StatusCode::kFormatError, what + ": " + m); };
  if (cluster.dtype != DType::kF32 && cluster.dtype != DType::kF16 && cluster.dtype != DType::kBF16)
    throw Error(StatusCode::kUnsupported, what + ": cluster dtype " + dtype_name(cluster.dtype) +
                                              " is not one of F32, F16, BF16");
  if (index.dtype != DType::kI32 && index.dtype != DType::kU16 && index.dtype != DType::kI64)
    throw Error(StatusCode::kUnsupported, what + ": index dtype " + dtype_name(index.dtype) +
                                              " is not one of I32, U16, I64");
  if (cluster.shape.size() != 2)
    throw fmt("cluster must have shape [K, d], got " + shape_to_string(cluster.shape));
  if (index.shape.size() != 1)
    throw fmt("index must be flat, got shape " + shape_to_string(index.shape));
  CodebookShape s;
  s.out = out;
  s.in = in;
  s.k = cluster.shape[0];
  s.d = cluster.shape[1] >= 1 && cluster.shape[1] <= 16 ? static_cast<int>(cluster.shape[1]) : 0;
  s.num_codebooks = 1;
  s.code_bits = code_bits;
  s.centroid_dtype = cluster.dtype;
  if (s.d == 0) throw fmt("cluster dimension d = " + std::to_string(cluster.shape[1]) + " is not in 1..16");
  const Status st = s.validate();
  if (!st.ok()) throw Error(st.code() == StatusCode::kInvalidArgument ? StatusCode::kFormatError : st.code(),
                            what + ": " + st.message());
  const int64_t nv = s.num_vectors();  // in, out <= 2^40 and d >= 1: checked below
  uint64_t nv_check;
  if (__builtin_mul_overflow(static_cast<uint64_t>(in), static_cast<uint64_t>(s.vectors_per_row()), &nv_check) ||
      nv_check > (uint64_t{1} << 56))
    throw fmt("(out, in) = (" + std::to_string(out) + ", " + std::to_string(in) + ") is too large");
  if (index.shape[0] != nv)
    throw fmt("index has " + std::to_string(index.shape[0]) + " entries but (out, in) = (" +
              std::to_string(out) + ", " + std::to_string(in) + ") with d = " + std::to_string(s.d) +
              " needs in * out_pad / d = " + std::to_string(nv));
  if (index.nbytes != static_cast<uint64_t>(nv) * static_cast<uint64_t>(dtype_size(index.dtype)))
    throw fmt("index holds " + std::to_string(index.nbytes) + " bytes, expected " +
              std::to_string(nv * dtype_size(index.dtype)));
  CodebookTensor t(s);
  if (cluster.nbytes != t.centroid_bytes().size())
    throw fmt("cluster holds " + std::to_string(cluster.nbytes) + " bytes, expected " +
              std::to_string(t.centroid_bytes().size()));
  std::memcpy(t.centroid_bytes().data(), cluster.data, static_cast<size_t>(cluster.nbytes));
  const int es = dtype_size(index.dtype);
  for (int64_t v = 0; v < nv; ++v) {
    int64_t c;
    if (index.dtype == DType::kI32) {
      int32_t x;
      std::memcpy(&x, index.data + v * es, 4);
      c = x;
    } else if (index.dtype == DType::kU16) {
      uint16_t x;
      std::memcpy(&x, index.data + v * es, 2);
      c = x;
    } else {
      std::memcpy(&c, index.data + v * es, 8);
    }
    if (c < 0 || c >= s.k)
      throw fmt("index " + std::to_string(c) + " at vector " + std::to_string(v) +
                " is outside [0, K = " + std::to_string(s.k) + ")");
    t.set_code(v, static_cast<uint32_t>(c));
  }
  return t;
}

/// A reference checkpoint in memory. Dense TensorRefs point into `files`, which stay mapped
/// as long as this object lives (moving it keeps them valid).
struct ReferenceCheckpoint {
  LlamaConfig config;
  std::vector<SafetensorsFile> files;
  std::map<std::string, CodebookTensor> clustered;  // key: "<prefix>.weight"
  std::vector<TensorRef> dense;                      // every other tensor, in file order

  const TensorRef* find_dense(const std::string& name) const {
    for (const auto& t : dense)
      if (t.name == name) return &t;
    return nullptr;
  }
};

/// Maps a clustered matrix's prefix ("model.layers.0.mlp.up_proj") to its HF (out, in);
/// returns false when unknown.
using ShapeResolver = std::function<bool(const std::string& prefix, int64_t* out, int64_t* in)>;

/// Reads a reference checkpoint directory: config.json plus model.safetensors, or the shards of
/// model.safetensors.index.json. (out, in) of each clustered matrix comes from `resolve` or,
/// when empty, from llama_projection_shape(config). Codes are re-packed at ceil(log2 K) bits.
/// Exact. Throws Error naming the file and tensor: kIoError/kNotFound for missing files,
/// kFormatError when a cluster/index pair is incomplete, disagrees with config (K, d, index
/// length) or holds an index >= K, kUnsupported for a matrix whose shape cannot be resolved.
inline ReferenceCheckpoint read_reference_checkpoint(const std::string& dir, const ShapeResolver& resolve = {}) {
  namespace fs = std::filesystem;
  ReferenceCheckpoint ck;
  const fs::path root(dir);
  ck.config = read_llama_config((root / "config.json").string());

  const fs::path single = root / "model.safetensors";
  const fs::path index_path = root / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(single, ec)) {
    ck.files.push_back(SafetensorsFile::open(single.string()));
  } else if (fs::exists(index_path, ec)) {
    const std::string ip = index_path.string();
    const std::string text = read_text_file(ip);
    const nlohmann::json j = detail::parse_json_strict(text.data(), text.data() + text.size(), ip);
    if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
      throw Error(StatusCode::kFormatError, ip + ": missing the 'weight_map' object");
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shard_names;
    for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it) {
      if (!it.value().is_string())
        throw Error(StatusCode::kFormatError, ip + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string f = it.value().get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        throw Error(StatusCode::kFormatError, ip + ": shard name '" + f + "' is not a plain file name");
      weight_map[it.key()] = f;
      shard_names.insert(f);
    }
    for (const auto& f : shard_names) {
      ck.files.push_back(SafetensorsFile::open((root / f).string()));
      const SafetensorsFile& sf = ck.files.back();
      for (const auto& t : sf.tensors()) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end() || w->second != f)
          throw Error(StatusCode::kFormatError, sf.name() + ": tensor '" + t.name +
                                                    "' is not assigned to this shard by " + ip);
      }
    }
    for (const auto& kv : weight_map) {
      bool found = false;
      for (const auto& sf : ck.files)
        if (sf.name() == (root / kv.second).string()) {
          found = sf.contains(kv.first);
          break;
        }
      if (!found)
        throw Error(StatusCode::kFormatError, ip + ": tensor '" + kv.first + "' is missing from shard " + kv.second);
    }
  } else {
    throw Error(StatusCode::kNotFound, dir + ": neither model.safetensors nor model.safetensors.index.json");
  }

  // Pair up <prefix>.cluster / <prefix>.index across all files.
  std::map<std::string, const TensorRef*> clusters, indices;
  for (const auto& sf : ck.files) {
    for (const auto& t : sf.tensors()) {
      if (detail::ends_with(t.name, ".cluster"))
        clusters[t.name.substr(0, t.name.size() - 8)] = &t;
      else if (detail::ends_with(t.name, ".index"))
        indices[t.name.substr(0, t.name.size() - 6)] = &t;
      else
        ck.dense.push_back(t);
    }
  }
  const std::string cfg = (root / "config.json").string();
  if (!clusters.empty() && ck.config.num_clusters == 0)
    throw Error(StatusCode::kFormatError,
                cfg + ": the checkpoint has clustered matrices but no num_clusters / cluster_dim");
  for (const auto& kv : indices)
    if (!clusters.count(kv.first))
      throw Error(StatusCode::kFormatError, dir + ": '" + kv.first + ".index' has no '" + kv.first + ".cluster'");
  for (const auto& kv : clusters) {
    const std::string& prefix = kv.first;
    auto ix = indices.find(prefix);
    if (ix == indices.end())
      throw Error(StatusCode::kFormatError, dir + ": '" + prefix + ".cluster' has no '" + prefix + ".index'");
    const TensorRef& c = *kv.second;
    if (c.shape.size() == 2 && (c.shape[0] != ck.config.num_clusters || c.shape[1] != ck.config.cluster_dim))
      throw Error(StatusCode::kFormatError,
                  dir + ": '" + c.name + "' has shape " + shape_to_string(c.shape) + " but " + cfg +
                      " says num_clusters = " + std::to_string(ck.config.num_clusters) +
                      ", cluster_dim = " + std::to_string(ck.config.cluster_dim));
    int64_t out = 0, in = 0;
    const bool known = resolve ? resolve(prefix, &out, &in) : llama_projection_shape(ck.config, prefix, &out, &in);
    if (!known)
      throw Error(StatusCode::kUnsupported, dir + ": cannot tell the (out, in) shape of clustered matrix '" +
                                                prefix + "'");
    ck.clustered.emplace(prefix + ".weight", codebook_from_reference(c, *ix->second, out, in, 0, dir + ": " + prefix));
  }
  return ck;
}

/// Writes a reference checkpoint into `dir` (created if needed): model.safetensors (dense tensors
/// as given, then per matrix `<prefix>.cluster` and `<prefix>.index`, see SafetensorsWriter for
/// the order) and config.json with num_clusters / cluster_dim set. Both files are complete on disk
/// before either is renamed into place (AtomicFileWriter::finish), so an error while writing
/// leaves the directory as it was; codes are converted one matrix at a time while streaming. Exact, deterministic.
/// Throws Error: kUnsupported when a matrix has S != 1 or the matrices disagree on K or d (the
/// reference cannot load that), kInvalidArgument for name clashes, kIoError from the OS.
inline void write_reference_checkpoint(const std::string& dir, LlamaConfig config,
                                       const std::vector<TensorRef>& dense,
                                       const std::map<std::string, CodebookTensor>& clustered,
                                       DType index_dtype = DType::kI32) {
  SafetensorsWriter w;
  for (const auto& t : dense) w.add(t);
  int64_t k = 0, d = 0;
  for (const auto& kv : clustered) {
    const CodebookTensor& t = kv.second;
    detail::check_reference_codebook(t, index_dtype, kv.first);
    const CodebookShape& s = t.shape();
    if (k == 0) {
      k = s.k;
      d = s.d;
    } else if (s.k != k || s.d != d) {
      throw Error(StatusCode::kUnsupported,
                  kv.first + ": K = " + std::to_string(s.k) + ", d = " + std::to_string(s.d) +
                      " differs from the other matrices (K = " + std::to_string(k) + ", d = " +
                      std::to_string(d) + "); the reference layout has one K and d per model");
    }
    const std::string prefix = detail::strip_weight_suffix(kv.first);
    w.add(prefix + ".cluster", s.centroid_dtype, {s.k, s.d}, t.centroid_bytes().data(), t.centroid_bytes().size());
    const CodebookTensor* tp = &t;
    w.add_streamed(prefix + ".index", index_dtype, {s.num_vectors()},
                   [tp, index_dtype](const SafetensorsWriter::ByteSink& sink) {
                     const int64_t n = tp->shape().num_vectors();
                     const int64_t chunk = 1 << 16;
                     std::vector<unsigned char> buf(static_cast<size_t>(chunk) * 4);
                     for (int64_t v0 = 0; v0 < n; v0 += chunk) {
                       const int64_t v1 = v0 + chunk < n ? v0 + chunk : n;
                       detail::codes_to_index(*tp, v0, v1, index_dtype, buf.data());
                       sink(buf.data(), static_cast<size_t>(v1 - v0) * static_cast<size_t>(dtype_size(index_dtype)));
                     }
                   });
  }
  if (k > 0) {
    config.num_clusters = k;
    config.cluster_dim = d;
  }
  const std::string config_text = llama_config_text(config);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error(StatusCode::kIoError, dir + ": cannot create directory: " + ec.message());
  const std::filesystem::path root(dir);
  // Both files are written and synced before either is renamed into place, so a full disk or a
  // failing producer leaves the previous pair (or nothing) as it was, never a new model with an
  // old config.json.
  AtomicFileWriter cf((root / "config.json").string());
  cf.write(config_text);
  AtomicFileWriter mf((root / "model.safetensors").string());
  w.write_to(mf);
  cf.finish();
  mf.finish();
  mf.publish();
  cf.publish();
}

CLUSCOMP_NAMESPACE_END
