#pragma once
/// The tokenizer tables of a Hugging Face tokenizer.json (+ the tokenizer_config.json beside it),
/// as a TokenizerVocab (Tokenizer::from_tokenizer_json builds the tokenizer). Only the byte-level
/// BPE shapes whose pre-tokeniser regex pretokenize.hpp implements are accepted: the regex source
/// is compared verbatim, since a scanner that differed from it would tokenise differently.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/vocab.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

inline const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

inline bool is_type(const nlohmann::json& j, const char* t) {
  return j.is_object() && j.contains("type") && j["type"] == t;
}
inline bool byte_level_with_regex(const nlohmann::json& j, bool want_regex) {
  if (!is_type(j, "ByteLevel")) return false;
  const bool use_regex = j.value("use_regex", true);
  const bool prefix = j.value("add_prefix_space", false);
  return use_regex == want_regex && !prefix;
}
inline std::string json_token_content(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content")) return j["content"].get<std::string>();
  return "";
}

/// The tables of an already parsed tokenizer.json read from `path` (which names it in errors and
/// locates tokenizer_config.json). nlohmann::json exceptions escape for the caller to wrap.
inline TokenizerVocab tokenizer_json_vocab_of(const nlohmann::json& j, const std::string& path) {
  const auto unsupported = [&](const std::string& what, const nlohmann::json& part) {
    std::string dump = part.dump();
    if (dump.size() > 300) dump = dump.substr(0, 300) + "...";
    throw Error(StatusCode::kUnsupported, path + ": unsupported " + what + ": " + dump);
  };
  const nlohmann::json& m = j.at("model");
  if (!is_type(m, "BPE")) unsupported("model (only BPE)", m.contains("type") ? m["type"] : m);
  if (m.value("byte_fallback", false)) unsupported("BPE with byte_fallback (SentencePiece-style)", m);
  if (j.contains("normalizer") && !j["normalizer"].is_null()) unsupported("normalizer", j["normalizer"]);

  TokenizerVocab v;
  v.model = TokenizerModel::kByteLevelBpe;
  v.add_space_prefix = false;
  v.ignore_merges = m.value("ignore_merges", false);
  const nlohmann::json& pt = j.at("pre_tokenizer");
  if (byte_level_with_regex(pt, true)) {
    v.pre = PreTokenizer::kGpt2;
  } else if (is_type(pt, "Sequence") && pt.at("pretokenizers").size() == 2) {
    const nlohmann::json& a = pt["pretokenizers"][0];
    const nlohmann::json& b = pt["pretokenizers"][1];
    if (is_type(a, "Digits") && a.value("individual_digits", false) &&
        byte_level_with_regex(b, true)) {
      v.pre = PreTokenizer::kDigitsThenGpt2;
    } else if (is_type(a, "Split") && a.value("behavior", "") == "Isolated" &&
               !a.value("invert", false) && a.contains("pattern") && a["pattern"].contains("Regex") &&
               byte_level_with_regex(b, false)) {
      const std::string re = a["pattern"]["Regex"].get<std::string>();
      if (re == kLlama3Regex) v.pre = PreTokenizer::kLlama3;
      else if (re == kQwen2Regex) v.pre = PreTokenizer::kQwen2;
      else unsupported("pre-tokenizer regex", a["pattern"]);
    } else {
      unsupported("pre_tokenizer", pt);
    }
  } else {
    unsupported("pre_tokenizer", pt);
  }

  // Vocabulary: model.vocab plus added_tokens, by id; gaps become unused placeholders.
  std::vector<std::pair<int64_t, std::string>> entries;
  for (auto it = m.at("vocab").begin(); it != m.at("vocab").end(); ++it)
    entries.emplace_back(it.value().get<int64_t>(), it.key());
  std::vector<std::pair<int64_t, bool>> added;  // id, special
  if (j.contains("added_tokens"))
    for (const auto& t : j["added_tokens"]) {
      entries.emplace_back(t.at("id").get<int64_t>(), t.at("content").get<std::string>());
      added.emplace_back(t.at("id").get<int64_t>(), t.value("special", false));
    }
  int64_t max_id = -1;
  for (const auto& e : entries) {
    if (e.first < 0 || e.first >= INT32_MAX)
      throw Error(StatusCode::kFormatError, path + ": token id " + std::to_string(e.first) + " out of range");
    max_id = std::max(max_id, e.first);
  }
  v.tokens.assign(static_cast<size_t>(max_id + 1), std::string());
  v.types.assign(static_cast<size_t>(max_id + 1), TokenType::kUnused);
  for (const auto& e : entries) {
    v.tokens[static_cast<size_t>(e.first)] = e.second;
    v.types[static_cast<size_t>(e.first)] = TokenType::kNormal;
  }
  for (const auto& a : added)
    v.types[static_cast<size_t>(a.first)] = a.second ? TokenType::kControl : TokenType::kUserDefined;

  for (const auto& mg : m.at("merges")) {
    if (mg.is_array() && mg.size() == 2) {
      v.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.size() > 1 ? s.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos) throw Error(StatusCode::kFormatError, path + ": merge '" + s + "' has no space");
      v.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
  }

  const auto id_of = [&](const std::string& content) -> int32_t {
    for (size_t i = 0; i < v.tokens.size(); ++i)
      if (v.tokens[i] == content && v.types[i] != TokenType::kUnused) return static_cast<int32_t>(i);
    return -1;
  };
  if (j.contains("post_processor") && is_type(j["post_processor"], "TemplateProcessing")) {
    const nlohmann::json& pp = j["post_processor"];
    const nlohmann::json& single = pp.at("single");
    if (!single.empty() && single[0].contains("SpecialToken")) {
      const std::string name = single[0]["SpecialToken"].at("id").get<std::string>();
      const int32_t id = id_of(name);
      if (id >= 0) {
        v.bos_id = id;
        v.add_bos = true;
      }
    }
  }
  // tokenizer_config.json beside it: bos/eos, add_bos_token, chat_template.
  const std::filesystem::path cfg_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    nlohmann::json cfg;
    try {
      cfg = nlohmann::json::parse(read_text_file(cfg_path.string()));
    } catch (const nlohmann::json::exception& e) {
      throw Error(StatusCode::kFormatError, cfg_path.string() + ": not valid JSON: " + e.what());
    }
    if (cfg.contains("bos_token") && !cfg["bos_token"].is_null()) {
      const int32_t id = id_of(json_token_content(cfg["bos_token"]));
      if (id >= 0) v.bos_id = id;
    }
    if (cfg.contains("eos_token") && !cfg["eos_token"].is_null())
      v.eos_id = id_of(json_token_content(cfg["eos_token"]));
    if (cfg.contains("unk_token") && !cfg["unk_token"].is_null())
      v.unk_id = id_of(json_token_content(cfg["unk_token"]));
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
      v.add_bos = cfg["add_bos_token"].get<bool>();
    if (cfg.contains("chat_template")) {
      const nlohmann::json& ct = cfg["chat_template"];
      if (ct.is_string()) {
        v.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const auto& e : ct)
          if (e.value("name", "") == "default") v.chat_template = e.value("template", "");
      }
    }
  }
  if (v.add_bos && v.bos_id < 0) v.add_bos = false;
  return v;
}

/// See Tokenizer::from_tokenizer_json for what is accepted and the errors.
inline TokenizerVocab tokenizer_json_vocab(const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(StatusCode::kFormatError, path + ": not valid JSON: " + e.what());
  }
  try {
    return tokenizer_json_vocab_of(j, path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(StatusCode::kFormatError, path + ": unexpected tokenizer.json content: " + e.what());
  }
}

}  // namespace detail
CLUSCOMP_NAMESPACE_END
