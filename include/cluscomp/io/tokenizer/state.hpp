#pragma once
/// The serialisable state of a tokenizer: the compact JSON that a cluscomp file embeds
/// ("cluscomp.tokenizer", schema in docs/format.md) so that it tokenises without the model it was
/// compressed from. Written from the tables (merges as id pairs, in rank order), read back into a
/// TokenizerVocab; Tokenizer::to_state_json / from_state_json are the public face.

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/tokenizer/pretokenize.hpp"
#include "cluscomp/io/tokenizer/tables.hpp"
#include "cluscomp/io/tokenizer/utf8.hpp"
#include "cluscomp/io/tokenizer/vocab.hpp"

CLUSCOMP_NAMESPACE_BEGIN
namespace detail {

/// The state version written, and the newest one read (Tokenizer::kStateVersion).
inline constexpr int kTokenizerStateVersion = 1;

/// A byte string as JSON: itself when it is valid UTF-8 (JSON text must be), else {"hex": ".."}.
inline nlohmann::json json_of_bytes(const std::string& s) {
  if (unicode::find_invalid_utf8(s) == s.size()) return s;
  static const char* hex = "0123456789abcdef";
  std::string h;
  for (unsigned char c : s) {
    h.push_back(hex[c >> 4]);
    h.push_back(hex[c & 15]);
  }
  return nlohmann::json{{"hex", h}};
}

/// The inverse of json_of_bytes; false for anything else.
inline bool bytes_of_json(const nlohmann::json& j, std::string& out) {
  if (j.is_string()) {
    out = j.get<std::string>();
    return true;
  }
  if (!j.is_object() || j.size() != 1 || !j.contains("hex") || !j["hex"].is_string()) return false;
  const std::string& h = j["hex"].get_ref<const std::string&>();
  if (h.size() % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < h.size(); i += 2) {
    int v = 0;
    for (size_t k = i; k < i + 2; ++k) {
      const char c = h[k];
      v *= 16;
      if (c >= '0' && c <= '9') v += c - '0';
      else if (c >= 'a' && c <= 'f') v += c - 'a' + 10;
      else return false;
    }
    out.push_back(static_cast<char>(v));
  }
  return true;
}

/// See Tokenizer::to_state_json.
inline std::string tokenizer_state_json(const TokenizerTables& d) {
  const bool byte_level = d.model == TokenizerModel::kByteLevelBpe;
  nlohmann::json j;
  j["version"] = kTokenizerStateVersion;
  j["model"] = byte_level ? "byte_level_bpe" : "sentencepiece_bpe";
  nlohmann::json tokens = nlohmann::json::array(), types = nlohmann::json::array();
  for (size_t i = 0; i < d.text.size(); ++i) {
    tokens.push_back(json_of_bytes(d.text[i]));
    types.push_back(static_cast<int32_t>(d.type[i]));
  }
  j["tokens"] = std::move(tokens);
  j["types"] = std::move(types);
  if (byte_level) {
    j["pre"] = pre_tokenizer_gguf_name(d.pre);
    nlohmann::json merges = nlohmann::json::array();
    for (const auto& m : d.merges_by_rank()) merges.push_back({m.first, m.second});
    j["merges"] = std::move(merges);
  } else {
    // JSON has no inf/nan: those scores are strings (nlohmann would write null).
    nlohmann::json scores = nlohmann::json::array();
    for (float x : d.score) {
      if (std::isfinite(x)) scores.push_back(x);
      else scores.push_back(std::isnan(x) ? "nan" : (x > 0 ? "inf" : "-inf"));
    }
    j["scores"] = std::move(scores);
  }
  j["bos_id"] = d.bos;
  j["eos_id"] = d.eos;
  j["unk_id"] = d.unk;
  j["add_bos"] = d.add_bos;
  j["add_space_prefix"] = d.add_space_prefix;
  j["ignore_merges"] = d.ignore_merges;
  j["chat_template"] = json_of_bytes(d.chat_template);
  return j.dump();
}

/// The tables of a state written by tokenizer_state_json, unvalidated beyond the fields
/// themselves (from_vocab checks them); errors name `origin` (see Tokenizer::from_state_json).
inline TokenizerVocab tokenizer_state_vocab(std::string_view text, const std::string& origin) {
  const auto bad = [&](const std::string& what) { return Error(StatusCode::kFormatError, origin + ": " + what); };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("tokenizer state is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw bad("tokenizer state is not a JSON object");
  TokenizerVocab v;
  try {
    const int64_t version = j.at("version").get<int64_t>();
    if (version < 1) throw bad("tokenizer state version " + std::to_string(version) + " is not >= 1");
    if (version > kTokenizerStateVersion)
      throw Error(StatusCode::kUnsupported, origin + ": tokenizer state version " + std::to_string(version) +
                                                " is newer than this build reads (" + std::to_string(kTokenizerStateVersion) + ")");
    const std::string model = j.at("model").get<std::string>();
    if (model == "byte_level_bpe") v.model = TokenizerModel::kByteLevelBpe;
    else if (model == "sentencepiece_bpe") v.model = TokenizerModel::kSentencePieceBpe;
    else throw Error(StatusCode::kUnsupported, origin + ": tokenizer model '" + model + "' is not supported");
    for (const auto& t : j.at("tokens")) {
      v.tokens.emplace_back();
      if (!bytes_of_json(t, v.tokens.back()))
        throw bad("token " + std::to_string(v.tokens.size() - 1) + " is neither a string nor {\"hex\": ...}");
    }
    const int64_t n = static_cast<int64_t>(v.tokens.size());
    for (const auto& t : j.at("types")) {
      const int64_t x = t.get<int64_t>();
      if (x < 0 || x > 6) throw bad("token type " + std::to_string(x) + " is not 0..6");
      v.types.push_back(static_cast<TokenType>(x));
    }
    if (v.model == TokenizerModel::kByteLevelBpe) {
      try {
        v.pre = pre_tokenizer_from_gguf_name(j.at("pre").get<std::string>());
      } catch (const Error& e) {
        throw Error(e.code(), origin + ": " + e.what());
      }
      for (const auto& m : j.at("merges")) {
        if (!m.is_array() || m.size() != 2) throw bad("merge " + std::to_string(v.merges.size()) + " is not [left, right]");
        const int64_t a = m[0].get<int64_t>(), b = m[1].get<int64_t>();
        if (a < 0 || a >= n || b < 0 || b >= n)
          throw bad("merge " + std::to_string(v.merges.size()) + " names a token outside the vocabulary of " + std::to_string(n));
        v.merges.emplace_back(v.tokens[static_cast<size_t>(a)], v.tokens[static_cast<size_t>(b)]);
      }
    } else {
      for (const auto& x : j.at("scores")) {
        if (x.is_number()) {
          v.scores.push_back(x.get<float>());
        } else {
          const std::string s = x.get<std::string>();
          if (s == "inf") v.scores.push_back(std::numeric_limits<float>::infinity());
          else if (s == "-inf") v.scores.push_back(-std::numeric_limits<float>::infinity());
          else if (s == "nan") v.scores.push_back(std::numeric_limits<float>::quiet_NaN());
          else throw bad("score '" + s + "' is not a number, \"inf\", \"-inf\" or \"nan\"");
        }
      }
    }
    const auto id = [&](const char* key) {
      const int64_t x = j.at(key).get<int64_t>();
      if (x < -1 || x >= n) throw bad(std::string(key) + " " + std::to_string(x) + " is outside the vocabulary of " + std::to_string(n));
      return static_cast<int32_t>(x);
    };
    v.bos_id = id("bos_id");
    v.eos_id = id("eos_id");
    v.unk_id = id("unk_id");
    v.add_bos = j.at("add_bos").get<bool>();
    v.add_space_prefix = j.at("add_space_prefix").get<bool>();
    v.ignore_merges = j.at("ignore_merges").get<bool>();
    if (!bytes_of_json(j.at("chat_template"), v.chat_template))
      throw bad("chat_template is neither a string nor {\"hex\": ...}");
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("unexpected tokenizer state content: ") + e.what());
  }
  return v;
}

}  // namespace detail
CLUSCOMP_NAMESPACE_END
