// The real model (SmolLM2-135M-Instruct, Q4_1 GGUF) against an implementation we did not write:
// tests/model/llama_numpy_ref.py, a float64 NumPy forward from the HF LLaMA definition over
// weights dequantised by the PyPI `gguf` package (scripts/test.sh runs it first). Compares every
// position's logits of four prompts (relative L2 error, budget kRealLogitsRelTol), 32 greedy
// tokens per prompt (exactly), the NLL of a 512-token slice of the evaluation text (0.5%), and
// the perplexity of CLUSCOMP.md §4 over the first 2 windows of 2048 tokens of the evaluation text,
// tokenised by our tokenizer, whose ids must equal the reference's (HF `tokenizers`) first (0.5%).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/model/perplexity.hpp"
#include "cluscomp/model/sampling.hpp"
#include "support/runtime_tolerances.hpp"
#include "support/test_data.hpp"

namespace test_llama_real {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

const char* kHowTo =
    "run scripts/test.sh (or: $CLUSCOMP_DATA/venv-test/bin/python tests/model/llama_numpy_ref.py "
    "MODEL TEXT $CLUSCOMP_DATA/reference/llama_numpy)";

fs::path ref_dir() { return cluscomp_test::data_dir() / "reference" / "llama_numpy"; }

const nlohmann::json& manifest() {
  static const nlohmann::json m = [] {
    const fs::path p = ref_dir() / "manifest.json";
    if (!fs::exists(p)) FAIL("NumPy reference missing: " << p.string() << "\n" << kHowTo);
    return nlohmann::json::parse(read_text_file(p.string()));
  }();
  return m;
}

LlamaModel& model() {
  static std::unique_ptr<LlamaModel> m;
  if (!m) {
    const fs::path p = cluscomp_test::real_model_path();
    if (!fs::exists(p)) FAIL("real model missing: " << p.string() << "\nrun scripts/setup.sh");
    LlamaRuntimeOptions o;
    o.threads = 2;
    m = std::make_unique<LlamaModel>(load_llama_gguf(p.string(), o));
    REQUIRE(manifest()["model_size"].get<uint64_t>() == fs::file_size(p));  // else the dump is stale
  }
  return *m;
}

std::vector<float> read_f32(const fs::path& p, size_t n) {
  std::vector<float> v(n);
  std::ifstream f(p, std::ios::binary);
  REQUIRE(f.good());
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * 4));
  REQUIRE(static_cast<size_t>(f.gcount()) == n * 4);
  return v;
}

std::vector<int32_t> ids_of(const nlohmann::json& j) { return j.get<std::vector<int32_t>>(); }

}  // namespace

TEST_CASE("real model: config, memory report", "[model][llama]") {
  LlamaModel& m = model();
  const LlamaConfig& c = m.config();
  CHECK(c.num_hidden_layers == 30);
  CHECK(c.hidden_size == 576);
  CHECK(c.num_attention_heads == 9);
  CHECK(c.num_key_value_heads == 3);
  CHECK(c.head_dim == 64);
  CHECK(c.rope_theta == 100000.0);
  CHECK(c.tie_word_embeddings);
  const KvCache cache = m.make_cache(2048);
  const MemoryReport r = m.memory_report(&cache, 2048);
  // 134.5 M parameters in fp32 (the tied lm_head counted once).
  CHECK(r.weights == int64_t{134515008} * 4);
  CHECK(r.kv_cache == 2 * 30 * 2048 * 192 * 4);
}

TEST_CASE("real model: logits of every prompt position match the NumPy float64 forward", "[model][llama]") {
  LlamaModel& m = model();
  const auto& man = manifest();
  const int64_t V = man["vocab"].get<int64_t>();
  REQUIRE(V == m.vocab_size());
  double worst = 0;
  for (const auto& p : man["prompts"]) {
    const auto ids = ids_of(p["ids"]);
    INFO("prompt " << p["text"].dump());
    KvCache cache = m.make_cache(256);
    const auto got = m.forward(ids, cache, /*all=*/true);
    const auto ref = read_f32(ref_dir() / p["logits_file"].get<std::string>(), ids.size() * static_cast<size_t>(V));
    for (size_t t = 0; t < ids.size(); ++t) {
      double num = 0, den = 0;
      size_t best_got = 0, best_ref = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double g = got[t * V + v], r = ref[t * V + v];
        num += (g - r) * (g - r);
        den += r * r;
        if (got[t * V + v] > got[t * V + best_got]) best_got = v;
        if (ref[t * V + v] > ref[t * V + best_ref]) best_ref = v;
      }
      const double rel = std::sqrt(num / den);
      worst = std::max(worst, rel);
      INFO("position " << t << " relative error " << rel);
      CHECK(rel < cluscomp_test::kRealLogitsRelTol);
      CHECK(best_got == best_ref);
    }
  }
  WARN("real model logits: worst relative L2 error vs NumPy float64 = " << worst);
}

TEST_CASE("real model: 32 greedy tokens agree with the NumPy forward, token for token", "[model][llama]") {
  LlamaModel& m = model();
  for (const auto& p : manifest()["prompts"]) {
    const auto ids = ids_of(p["ids"]);
    const auto want = ids_of(p["greedy"]);
    INFO("prompt " << p["text"].dump());
    KvCache cache = m.make_cache(256);
    auto logits = m.forward(ids, cache);
    std::vector<int32_t> got;
    for (size_t i = 0; i < want.size(); ++i) {
      got.push_back(Sampler::argmax(logits.data(), m.vocab_size()));
      if (i + 1 < want.size()) logits = m.forward(&got.back(), 1, cache);
    }
    CHECK(got == want);
  }
}

TEST_CASE("real model: NLL of a 512-token slice within 0.5% of the NumPy forward", "[model][llama]") {
  LlamaModel& m = model();
  const auto& nll = manifest()["nll"];
  const auto ids = ids_of(nll["ids"]);
  PerplexityOptions o;
  o.window = static_cast<int64_t>(ids.size());
  const PerplexityResult r = evaluate_perplexity(m, ids, o);
  REQUIRE(r.predictions == nll["predictions"].get<int64_t>());
  const double want = nll["nll_sum"].get<double>();
  const double rel = std::fabs(r.nll_sum - want) / want;
  WARN("real model NLL (512 tokens): ours mean " << r.mean_nll() << " ppl " << r.perplexity() << ", NumPy mean "
                                                 << nll["mean_nll"].get<double>() << "; relative difference " << rel
                                                 << "; " << r.tokens_per_second() << " tokens/s (2 threads)");
  CHECK(rel < cluscomp_test::kRealNllRelTol);
}

TEST_CASE("real model: prefill == decode bit for bit, and 1 thread == 2 threads", "[model][llama]") {
  LlamaModel& m = model();
  const auto ids = ids_of(manifest()["prompts"][1]["ids"]);
  KvCache a = m.make_cache(64);
  const auto pre = m.forward(ids, a, true);
  KvCache b = m.make_cache(64);
  std::vector<float> dec;
  for (int32_t id : ids) {
    const auto l = m.forward(&id, 1, b);
    dec.insert(dec.end(), l.begin(), l.end());
  }
  CHECK(pre == dec);
  LlamaRuntimeOptions one;
  one.threads = 1;
  LlamaModel m1 = load_llama_gguf(cluscomp_test::real_model_path().string(), one);
  KvCache c = m1.make_cache(64);
  CHECK(m1.forward(ids, c, true) == pre);
}

TEST_CASE("real model, stored dense weights: file-sized memory, same logits as fp32, prefill == decode",
          "[model][llama][stored]") {
  LlamaModel& m = model();  // DenseWeights::kFp32
  const fs::path p = cluscomp_test::real_model_path();
  LlamaRuntimeOptions o;
  o.threads = 2;
  o.dense = DenseWeights::kStored;
  LlamaModel s = load_llama_gguf(p.string(), o);
  // Every weight stays in the file's type: Q8_0 embedding (tied lm_head), Q4_1 projections.
  REQUIRE(s.weights().embed_stored);
  CHECK_FALSE(s.weights().embed);
  CHECK(s.weights().embed_stored->type() == StoredType::kQ8_0);
  CHECK(s.weights().lm_head.shares_weight_with(s.weights().embed_stored.get()));
  for (const LlamaBlock& b : s.weights().blocks)
    for (const Linear* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) {
      REQUIRE(l->kind() == LinearKind::kStored);
      CHECK(l->stored_weight()->type() == StoredType::kQ4_1);
    }
  const int64_t file = static_cast<int64_t>(fs::file_size(p));
  const int64_t weights = s.memory_report().weights;
  WARN("real model, stored: " << weights << " bytes of weights for a " << file << "-byte file (fp32: "
                              << m.memory_report().weights << ")");
  CHECK(weights <= file);
  // q/k rows are un-permuted as whole rows of blocks: every prompt position's logits equal the
  // fp32 runtime's, bit for bit where both run fused lanes (AVX2+FMA), else within the budget.
  for (const auto& pr : manifest()["prompts"]) {
    const auto ids = ids_of(pr["ids"]);
    INFO("prompt " << pr["text"].dump());
    KvCache c1 = m.make_cache(256), c2 = s.make_cache(256);
    const auto want = m.forward(ids, c1, true);
    const auto got = s.forward(ids, c2, true);
    if (matmul_uses_avx2()) {
      CHECK(got == want);
    } else {
      double num = 0, den = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
        den += static_cast<double>(want[i]) * want[i];
      }
      CHECK(std::sqrt(num / den) < cluscomp_test::kRealLogitsRelTol);
    }
    KvCache c3 = s.make_cache(256);
    std::vector<float> dec;
    for (int32_t id : ids) {
      const auto l = s.forward(&id, 1, c3);
      dec.insert(dec.end(), l.begin(), l.end());
    }
    CHECK(dec == got);
  }
}

TEST_CASE("real model: perplexity over 2 windows of 2048 within 0.5% of the NumPy forward", "[model][llama]") {
  LlamaModel& m = model();
  const auto& man = manifest();
  if (!man.contains("ppl")) FAIL("the NumPy reference predates the perplexity check: re-run it\n" << kHowTo);
  const auto& ppl = man["ppl"];
  const auto want_ids = ids_of(ppl["ids"]);
  const int64_t W = ppl["window"].get<int64_t>(), n_windows = ppl["windows"].get<int64_t>();
  REQUIRE(static_cast<int64_t>(want_ids.size()) == W * n_windows);

  const fs::path eval = cluscomp_test::data_dir() / "text" / "kjv.evaluation.txt";
  if (!fs::exists(eval)) FAIL("evaluation text missing: " << eval.string() << "\nrun scripts/setup.sh");
  const GgufReader reader(cluscomp_test::real_model_path().string());
  const Tokenizer tok = Tokenizer::from_gguf(reader);
  CHECK(tok.add_bos_default() == ppl["add_bos"].get<bool>());
  // Our ids, as `cluscomp eval` makes them: the whole text, the model's BOS default.
  const auto ids = tok.encode(read_text_file(eval.string()), tok.add_bos_default());
  CHECK(static_cast<int64_t>(ids.size()) == ppl["text_tokens"].get<int64_t>());
  REQUIRE(ids.size() >= want_ids.size());
  const std::vector<int32_t> head(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(want_ids.size()));
  REQUIRE(head == want_ids);

  PerplexityOptions o;
  o.window = W;
  o.max_windows = n_windows;
  const PerplexityResult r = evaluate_perplexity(m, ids, o);
  REQUIRE(r.windows == n_windows);
  REQUIRE(r.predictions == ppl["predictions"].get<int64_t>());
  const double want = ppl["ppl"].get<double>();
  const double rel = std::fabs(r.perplexity() - want) / want;
  WARN("real model perplexity (" << n_windows << " windows of " << W << "): ours " << r.perplexity() << ", NumPy "
                                 << want << "; relative difference " << rel << "; " << r.tokens_per_second()
                                 << " tokens/s (2 threads)");
  CHECK(rel < cluscomp_test::kRealPplRelTol);
}

}  // namespace test_llama_real
