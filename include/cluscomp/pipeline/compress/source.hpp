#pragma once
/// What compress reads: the seven projection kinds of a LLaMA-family block (names and patterns)
/// and the whole source model as HF-named fp32 tensors (read_source_model, through
/// io/model_source.hpp, the same reader the runtime's loaders use). Part of
/// pipeline/compress.hpp, which includes it.

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/model_source.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"

CLUSCOMP_NAMESPACE_BEGIN

// ---------------------------------------------------------------------------------------------
// Which matrices

/// The seven projections of a LLaMA-family decoder block.
enum class ProjectionKind { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumProjectionKinds = 7;

inline const char* projection_kind_name(ProjectionKind k) {
  static const char* const kNames[] = {"q", "k", "v", "o", "gate", "up", "down"};
  return kNames[static_cast<int>(k)];
}

/// The kind of an HF weight name "model.layers.<i>.{self_attn.{q,k,v,o}_proj|mlp.{gate,up,down}_proj}.weight";
/// false for any other name.
inline bool projection_kind_of(const std::string& name, ProjectionKind* kind) {
  static const std::pair<const char*, ProjectionKind> kSuffix[] = {
      {".self_attn.q_proj.weight", ProjectionKind::kQ},  {".self_attn.k_proj.weight", ProjectionKind::kK},
      {".self_attn.v_proj.weight", ProjectionKind::kV},  {".self_attn.o_proj.weight", ProjectionKind::kO},
      {".mlp.gate_proj.weight", ProjectionKind::kGate}, {".mlp.up_proj.weight", ProjectionKind::kUp},
      {".mlp.down_proj.weight", ProjectionKind::kDown}};
  if (name.rfind("model.layers.", 0) != 0) return false;
  for (const auto& s : kSuffix) {
    const std::string suf = s.first;
    if (name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0) {
      if (kind) *kind = s.second;
      return true;
    }
  }
  return false;
}

/// Parses a comma-separated list of kind patterns: q, k, v, o, gate, up, down, attn (q,k,v,o),
/// mlp (gate,up,down), all. Returns the kinds in canonical order without duplicates. Throws
/// Error(kInvalidArgument) naming an unknown pattern or an empty list.
inline std::vector<ProjectionKind> parse_projection_patterns(const std::string& list) {
  std::array<bool, kNumProjectionKinds> on{};
  size_t pos = 0;
  bool any = false;
  while (pos <= list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string p = list.substr(pos, comma - pos);
    pos = comma + 1;
    if (p.empty()) continue;
    any = true;
    bool found = false;
    for (int k = 0; k < kNumProjectionKinds; ++k)
      if (p == projection_kind_name(static_cast<ProjectionKind>(k))) on[static_cast<size_t>(k)] = found = true;
    if (p == "attn" || p == "all") on[0] = on[1] = on[2] = on[3] = found = true;
    if (p == "mlp" || p == "all") on[4] = on[5] = on[6] = found = true;
    if (!found)
      throw Error(StatusCode::kInvalidArgument, "unknown matrix pattern '" + p +
                                                    "' (known: q, k, v, o, gate, up, down, attn, mlp, all)");
  }
  if (!any) throw Error(StatusCode::kInvalidArgument, "the matrix pattern list '" + list + "' names no matrix");
  std::vector<ProjectionKind> out;
  for (int k = 0; k < kNumProjectionKinds; ++k)
    if (on[static_cast<size_t>(k)]) out.push_back(static_cast<ProjectionKind>(k));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Source model

/// One tensor of the source model: HF name, HF (torch) shape, fp32 values in HF order.
struct SourceTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
};

/// A whole model in fp32 with HF names and HF row order (llama.cpp's q/k permutation undone).
struct SourceModel {
  LlamaConfig config;
  std::string path;                   // where it was read from (recorded in the output metadata)
  std::vector<SourceTensor> tensors;  // source order
  /// GGUF names of the tensors read_source_model left out (no HF name: hf_name_from_gguf), in file
  /// order; compress_model warns about them.
  std::vector<std::string> skipped;
  /// The model's tokenizer, embedded in the output so that it tokenises without the source;
  /// empty when the source has none cluscomp reads (then `tokenizer_note` says why).
  std::optional<Tokenizer> tokenizer;
  std::string tokenizer_note;
};

/// Reads a LLaMA-family model through ModelSource (io/model_source.hpp): a GGUF file (every tensor
/// dequantised to fp32, bit-identical to ggml; q/k rows of llama/mistral files restored to HF
/// order, as load_llama_gguf does) or an HF directory with config.json + model.safetensors or its
/// shards (fp32/fp16/bf16 converted exactly), as load_llama_hf does; and its tokenizer
/// (load_model_tokenizer: GGUF metadata, tokenizer.json). GGUF tensors without an HF name are
/// left out and listed in SourceModel::skipped. Throws Error naming the file: kNotFound,
/// kFormatError, kUnsupported (architectures); a missing or unsupported tokenizer is not an error
/// (SourceModel::tokenizer_note).
inline SourceModel read_source_model(const std::string& path) {
  namespace fs = std::filesystem;
  SourceModel m;
  m.path = path;
  if (!fs::exists(path)) throw Error(StatusCode::kNotFound, path + ": no such file or directory");
  try {
    m.tokenizer = load_model_tokenizer(path);
  } catch (const Error& e) {
    m.tokenizer_note = e.what();
  }
  const ModelSource src = ModelSource::open(path);
  m.config = src.config();
  m.skipped = src.skipped();
  for (const ModelSource::Entry& e : src.tensors()) m.tensors.push_back({e.name, e.shape, src.read(e)});
  return m;
}

CLUSCOMP_NAMESPACE_END
