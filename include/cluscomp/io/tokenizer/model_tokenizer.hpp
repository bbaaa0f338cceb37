#pragma once
/// The tokenizer that goes with a model file, whatever its kind (the counterpart of
/// load_llama_model for text): a GGUF file's `tokenizer.ggml.*` metadata, an HF directory's
/// tokenizer.json (+ tokenizer_config.json), or the tokenizer a cluscomp file embeds
/// ("cluscomp.tokenizer", docs/format.md). Files written before cluscomp embedded tokenizers fall
/// back to a tokenizer.json beside them, then to the model named by their "compress.source".

#include <filesystem>
#include <map>
#include <string>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/io/tokenizer/tokenizer.hpp"

CLUSCOMP_NAMESPACE_BEGIN

/// The metadata key `cluscomp compress` records the source model's path under (absolute since
/// the tokenizer was embedded; older files hold the path as it was typed).
inline constexpr const char* kCompressSourceKey = "compress.source";

namespace model_tokenizer_detail {

inline Tokenizer load(const std::string& path, int depth) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw Error(StatusCode::kNotFound, path + ": no such file or directory");
  if (fs::is_directory(path)) {
    const fs::path tj = fs::path(path) / "tokenizer.json";
    if (!fs::exists(tj))
      throw Error(StatusCode::kNotFound, path + ": no tokenizer.json in the model directory");
    return Tokenizer::from_tokenizer_json(tj.string());
  }
  if (is_gguf_file(path)) {
    const GgufReader g(path);
    return Tokenizer::from_gguf(g);
  }
  std::map<std::string, std::string> meta;
  try {
    meta = SafetensorsFile::open(path).metadata();
  } catch (const Error&) {
    meta.clear();  // not a safetensors file: only a tokenizer.json beside it can help
  }
  const auto embedded = meta.find(kCluscompTokenizerKey);
  if (embedded != meta.end())
    return Tokenizer::from_state_json(embedded->second, path + " (" + kCluscompTokenizerKey + ")");
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const fs::path tj = dir / "tokenizer.json";
  if (fs::exists(tj)) return Tokenizer::from_tokenizer_json(tj.string());
  const auto src = meta.find(kCompressSourceKey);
  if (src == meta.end() || src->second.empty())
    throw Error(StatusCode::kNotFound, path + ": no tokenizer: the file embeds none ('" + kCluscompTokenizerKey +
                                           "') and there is no " + tj.string());
  // An old file: the source path as it was typed, relative to the directory compress ran in, which
  // is unknown; the current directory first, then the file's own directory.
  const fs::path typed(src->second);
  fs::path found;
  for (const fs::path& c : {typed, typed.is_relative() ? dir / typed : fs::path()}) {
    std::error_code ec;
    if (!c.empty() && fs::exists(c, ec) && !fs::equivalent(c, path, ec)) {
      found = c;
      break;
    }
  }
  if (found.empty() || depth >= 4)
    throw Error(StatusCode::kNotFound,
                path + ": no tokenizer: the file embeds none (it was written before cluscomp embedded tokenizers) "
                       "and its source model '" + src->second + "' (" + kCompressSourceKey +
                       ") is missing. Fix: put the source model back at that path, copy the source's tokenizer.json "
                       "(and tokenizer_config.json) to " + tj.string() +
                       ", or embed the tokenizer: cluscomp embed-tokenizer " + path + " SOURCE_MODEL");
  return load(found.string(), depth + 1);
}

}  // namespace model_tokenizer_detail

/// The tokenizer of the model at `path`, in this order:
///  - a directory: its tokenizer.json (with tokenizer_config.json beside it, see
///    Tokenizer::from_tokenizer_json);
///  - a GGUF file: its tokenizer metadata (Tokenizer::from_gguf);
///  - a safetensors file with "cluscomp.tokenizer" metadata (what `cluscomp compress` writes):
///    that tokenizer, so the source model is not needed;
///  - otherwise a tokenizer.json in the file's directory;
///  - otherwise, for a compressed file written before tokenizers were embedded, the tokenizer of
///    the model its "compress.source" names (as stored, then relative to the file's directory).
/// Errors (cluscomp::Error naming the path): kNotFound when no tokenizer is found (for an old
/// compressed file the message names the missing source and how to fix it), and the errors of the
/// tokenizer readers (kFormatError, kUnsupported). Deterministic; reads files only.
inline Tokenizer load_model_tokenizer(const std::string& path) { return model_tokenizer_detail::load(path, 0); }

/// Writes the cluscomp model at `model_path` to `out_path` (atomically; the same path replaces
/// it) with `tokenizer` embedded: every tensor and every other metadata key unchanged. The repair
/// for files compressed before tokenizers were embedded, whose source model may move away.
/// Errors: those of read_cluscomp_model and write_cluscomp_model, naming the files.
inline void embed_model_tokenizer(const std::string& model_path, const Tokenizer& tokenizer,
                                  const std::string& out_path) {
  const CluscompModel cm = read_cluscomp_model(model_path);
  std::map<std::string, std::string> meta = cm.caller_metadata();
  meta[kCluscompTokenizerKey] = tokenizer.to_state_json();
  write_cluscomp_model(out_path, cm.dense, cm.clustered, meta);
}

CLUSCOMP_NAMESPACE_END
