// Activation-aware clustering on the real model (SmolLM2-135M-Instruct Q4_1, scripts/setup.sh):
// input statistics from 4 windows of the calibration text (Old Testament), then nine real
// matrices (q, v, down of blocks 0, 11 and 29) clustered at d = 4, K = 256 with and without the
// weights. The output error is measured with statistics of held-out text (the New Testament,
// which the weights never saw): the activation-aware codebooks must be better there, i.e. the
// weighting generalises beyond the windows it was computed on.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/tokenizer.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/activation_stats.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "support/test_data.hpp"

namespace test_activation_real {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

TEST_CASE("activation-aware clustering of real matrices lowers the held-out output error", "[activation][real]") {
  const fs::path model = cluscomp_test::real_model_path();
  const fs::path text_dir = cluscomp_test::data_dir() / "text";
  if (!fs::exists(model)) FAIL("no real model at " << model << ": run scripts/setup.sh");
  GgufReader g(model.string());
  const Tokenizer tok = Tokenizer::from_gguf(g);
  const std::vector<int32_t> cal = tok.encode(read_text_file((text_dir / "kjv.calibration.txt").string()), false);
  const std::vector<int32_t> eval = tok.encode(read_text_file((text_dir / "kjv.evaluation.txt").string()), false);
  LlamaRuntimeOptions ro;
  ro.threads = 2;
  const LlamaModel teacher = load_llama_model(model.string(), ro);
  ActivationStatsOptions ao;
  ao.samples = 4;
  ao.window = 128;
  ao.threads = 2;
  const ActivationStats st_cal = collect_activation_stats(teacher, cal, ao);
  const ActivationStats st_eval = collect_activation_stats(teacher, eval, ao);
  REQUIRE(st_cal.mean_sq.size() == 210);

  // Real activations are far from uniform: the largest column energy of some down_proj input is
  // hundreds of times its mean (SmolLM2's massive activations).
  double worst_ratio = 0;
  for (const auto& kv : st_cal.mean_sq) {
    double mean = 0, mx = 0;
    for (float v : kv.second) {
      mean += v;
      mx = std::max(mx, static_cast<double>(v));
    }
    mean /= static_cast<double>(kv.second.size());
    worst_ratio = std::max(worst_ratio, mx / mean);
  }
  WARN("largest column energy / mean over the 210 matrices: " << worst_ratio);
  CHECK(worst_ratio > 100);

  const SourceModel src = read_source_model(model.string());
  CompressOptions co;
  co.input_importance = st_cal.mean_sq;
  ClusterSettings cs;
  cs.d = 4;
  cs.k = 256;
  double total_plain = 0, total_aware = 0;
  int better = 0, n = 0;
  for (int b : {0, 11, 29})
    for (const char* k : {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"}) {
      const std::string name = "model.layers." + std::to_string(b) + "." + k + ".weight";
      INFO(name);
      const SourceTensor* t = nullptr;
      for (const auto& s : src.tensors)
        if (s.name == name) t = &s;
      REQUIRE(t);
      const int64_t out = t->shape[0], in = t->shape[1];
      const std::vector<float> colw = compress_detail::column_weights(co, name, in);
      const CodebookTensor plain = cluster_matrix(t->values, out, in, cs, name, 5, 1234, 2);
      const CodebookTensor aware = cluster_matrix(t->values, out, in, cs, name, 5, 1234, 2, {}, colw);
      // Held-out output error: the evaluation text's raw column energies.
      const std::vector<float>& h = st_eval.mean_sq.at(name);
      const double ep = codebook_sq_error(plain, t->values, h), ea = codebook_sq_error(aware, t->values, h);
      UNSCOPED_INFO(name << ": held-out output error aware / plain = " << ea / ep);
      total_plain += ep;
      total_aware += ea;
      better += ea < ep;
      ++n;
    }
  WARN("held-out output error aware / plain, 9 matrices: " << total_aware / total_plain << " (" << better << "/9 better)");
  CHECK(better >= 7);
  CHECK(total_aware < 0.5 * total_plain);
}

}  // namespace test_activation_real
