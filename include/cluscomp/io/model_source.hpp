#pragma once
/// The weights of a LLaMA-family source model under HF names, read one tensor at a time as fp32 in
/// HF row order, whatever the file: a GGUF file (dequantised bit-identically to ggml, llama.cpp's
/// q/k permutation undone: io/gguf_llama.hpp) or an HF directory (config.json plus
/// model.safetensors, or the shards listed by model.safetensors.index.json; fp32/fp16/bf16
/// converted exactly). It is the one place that knows how a source file maps to HF tensors: the
/// runtime's loaders (load_llama_gguf, load_llama_hf in model/llama.hpp) and compress
/// (read_source_model, pipeline/compress.hpp) both read through it, so a fix to a format's
/// mapping reaches both.
///
/// Not covered: cluscomp-format files. The runtime keeps their clustered matrices as codebooks
/// (load_llama_cluscomp builds codebook Linears, never fp32 matrices), which this fp32 view would
/// hide; and compress does not take a compressed model as its source.
///
/// Errors: cluscomp::Error naming the file and the tensor: kNotFound (missing file or shard),
/// kFormatError (malformed file, a shape that disagrees with the caller's), kUnsupported
/// (architecture). Reads are deterministic and the object is safe to read from several threads
/// (it only reads memory-mapped files).

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"

CLUSCOMP_NAMESPACE_BEGIN

namespace detail {
inline std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace detail

class ModelSource {
 public:
  /// One tensor: HF name, HF (torch) shape, and where its bytes are.
  struct Entry {
    std::string name;
    std::vector<int64_t> shape;
    const GgufTensorInfo* gguf = nullptr;  // GGUF source
    const TensorRef* tensor = nullptr;     // HF source
  };

  /// A GGUF file by path (not a directory) or an HF directory.
  static ModelSource open(const std::string& path) {
    if (std::filesystem::is_directory(path)) return open_hf(path);
    return open_gguf(std::make_shared<const GgufReader>(path));
  }

  /// A GGUF file already open; `g` must outlive the source.
  static ModelSource open_gguf(const GgufReader& g) {
    return open_gguf(std::shared_ptr<const GgufReader>(&g, [](const GgufReader*) {}));
  }

  static ModelSource open_gguf(std::shared_ptr<const GgufReader> g) {
    ModelSource s;
    s.name_ = g->name();
    s.gguf_ = std::move(g);
    s.config_ = llama_config_from_gguf(*s.gguf_);
    GgufHfTensors t = gguf_hf_tensors(*s.gguf_);
    s.skipped_ = std::move(t.skipped);
    for (auto& kv : t.tensors) {
      Entry e;
      e.shape.assign(kv.second->ne.rbegin(), kv.second->ne.rend());
      e.name = std::move(kv.first);
      e.gguf = kv.second;
      s.add(std::move(e));
    }
    return s;
  }

  /// An HF model directory: config.json plus model.safetensors, or the shards listed by
  /// model.safetensors.index.json (tensors in shard order, each shard in its own order).
  static ModelSource open_hf(const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path d(dir);
    ModelSource s;
    s.name_ = dir;
    s.config_ = read_llama_config((d / "config.json").string());
    std::vector<std::string> shard_names;
    const fs::path index = d / "model.safetensors.index.json";
    if (fs::exists(index)) {
      const std::string text = read_text_file(index.string());
      const nlohmann::json j = detail::parse_json_strict(text.data(), text.data() + text.size(), index.string());
      if (!j.is_object() || !j.contains("weight_map") || !j.at("weight_map").is_object())
        throw Error(StatusCode::kFormatError, index.string() + ": no 'weight_map' object");
      for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it) {
        if (!it.value().is_string())
          throw Error(StatusCode::kFormatError, index.string() + ": weight_map entry '" + it.key() + "' is not a string");
        const std::string f = it.value().get<std::string>();
        if (std::find(shard_names.begin(), shard_names.end(), f) == shard_names.end()) shard_names.push_back(f);
      }
    } else {
      shard_names.push_back("model.safetensors");
    }
    // Entries point into the files: reserve so that no push_back moves them.
    s.files_ = std::make_shared<std::vector<SafetensorsFile>>();
    s.files_->reserve(shard_names.size());
    for (const std::string& f : shard_names) {
      const fs::path p = d / f;
      if (!fs::exists(p)) throw Error(StatusCode::kNotFound, p.string() + ": no such file");
      s.files_->push_back(SafetensorsFile::open(p.string()));
    }
    for (const SafetensorsFile& f : *s.files_)
      for (const TensorRef& t : f.tensors()) {
        Entry e;
        e.name = t.name;
        e.shape = t.shape;
        e.tensor = &t;
        s.add(std::move(e));
      }
    return s;
  }

  const LlamaConfig& config() const { return config_; }
  /// The GGUF file's name or the HF directory, as used in messages.
  const std::string& name() const { return name_; }
  /// Every tensor with an HF name, in source order.
  const std::vector<Entry>& tensors() const { return entries_; }
  /// GGUF names of the tensors without an HF name (file order); empty for HF directories.
  const std::vector<std::string>& skipped() const { return skipped_; }
  /// The entry of HF name `name`, or null.
  const Entry* find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &entries_[it->second];
  }

  /// fp32 values of `e` in HF order.
  std::vector<float> read(const Entry& e) const {
    if (e.gguf) return gguf_tensor_hf_values(*gguf_, *e.gguf, e.name, config_);
    return tensor_to_float(*e.tensor);
  }

  /// Reads tensor `name` into `out` after checking it has HF shape `shape`: the runtime's
  /// LlamaTensorFetch. False when the source has no such tensor; Error(kFormatError) naming it
  /// when the shape differs (a GGUF message gives the GGUF name and ne, fastest dimension first).
  bool fetch(const std::string& name, const std::vector<int64_t>& shape, std::vector<float>* out) const {
    const Entry* e = find_checked(name, shape);
    if (!e) return false;
    *out = read(*e);
    return true;
  }

  /// The ggml type id a tensor's bytes are stored in: the GGUF tensor's type; for safetensors
  /// F32 0, F16 1, BF16 30, and kNoGgmlType for other dtypes.
  static constexpr uint32_t kNoGgmlType = 0xffffffffu;
  uint32_t stored_type_id(const Entry& e) const {
    if (e.gguf) return static_cast<uint32_t>(e.gguf->type);
    switch (e.tensor->dtype) {
      case DType::kF32: return 0;
      case DType::kF16: return 1;
      case DType::kBF16: return 30;
      default: return kNoGgmlType;
    }
  }

  /// Like fetch, but the tensor's bytes as the file stores them (type: stored_type_id), rows in
  /// HF order (a GGUF q/k permutation undone on whole rows), for runtimes that compute on the
  /// stored type. Same errors as fetch.
  bool fetch_stored(const std::string& name, const std::vector<int64_t>& shape, uint32_t* type_id,
                    std::vector<unsigned char>* out) const {
    const Entry* e = find_checked(name, shape);
    if (!e) return false;
    *type_id = stored_type_id(*e);
    if (e->gguf)
      *out = gguf_tensor_hf_bytes(*gguf_, *e->gguf, e->name, config_);
    else
      out->assign(e->tensor->data, e->tensor->data + e->tensor->nbytes);
    return true;
  }

 private:
  ModelSource() = default;

  /// The entry of `name` after checking it has HF shape `shape` (Error(kFormatError) naming it
  /// otherwise; a GGUF message gives the GGUF name and ne, fastest dimension first); null when
  /// the source has no such tensor.
  const Entry* find_checked(const std::string& name, const std::vector<int64_t>& shape) const {
    const Entry* e = find(name);
    if (!e) return nullptr;
    if (e->gguf) {
      const std::vector<int64_t> want(shape.rbegin(), shape.rend());  // GGUF ne: fastest first
      if (e->gguf->ne != want)
        throw Error(StatusCode::kFormatError, name_ + ": tensor '" + e->gguf->name + "' (" + name + ") has ne " +
                                                  detail::shape_text(e->gguf->ne) + ", expected " +
                                                  detail::shape_text(want));
    } else if (e->shape != shape) {
      throw Error(StatusCode::kFormatError, name_ + ": tensor '" + name + "' has shape " +
                                                detail::shape_text(e->shape) + ", expected " + detail::shape_text(shape));
    }
    return e;
  }

  // A later tensor of the same HF name replaces an earlier one in find(), as the loaders' maps
  // always did (HF shards list a name once; GGUF names map one to one).
  void add(Entry e) {
    index_[e.name] = entries_.size();
    entries_.push_back(std::move(e));
  }

  std::string name_;
  LlamaConfig config_;
  std::shared_ptr<const GgufReader> gguf_;
  std::shared_ptr<std::vector<SafetensorsFile>> files_;
  std::vector<Entry> entries_;
  std::map<std::string, size_t> index_;
  std::vector<std::string> skipped_;
};

CLUSCOMP_NAMESPACE_END
