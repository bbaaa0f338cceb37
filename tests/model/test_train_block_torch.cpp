// TrainBlock (model/train_block.hpp) against PyTorch autograd on the same clustered LLaMA block
// with the same weights: block output, input gradient and every codebook's centroid gradient.
// Reference: tests/model/train_block_torch_ref.py, run by scripts/test.sh with the distribution's
// python3-torch into $CLUSCOMP_DATA/reference/train_block_torch (float64 autograd, stored as fp32;
// loss = sum(y * dy)). The block is random but covers GQA, q/k/v biases, d in {2, 3, 4, 8} (d = 3
// pads the output dimension), S = 2, and a dense frozen layer beside codebook layers.
//
// Tolerance: our block runs in fp32 against float64, through RMSNorm, softmax attention and two
// residual paths of width 32..48. Relative Frobenius error budgets 2e-6 for y and dx and 5e-6 for
// the centroid gradients: about 10x the measured figures (y 2.0e-7, dx 2.4e-7, centroid gradients
// 2.4e-7..4.8e-7 with torch 1.13 on x86-64), which are a few fp32 ulps (6e-8). A wrong sign,
// scale, code mapping or padding treatment gives errors of order 1.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluscomp/model/train_block.hpp"
#include "cluscomp/codebook/codebook_tensor.hpp"
#include "cluscomp/model/linear.hpp"
#include "support/test_data.hpp"

namespace test_train_block_torch {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

fs::path ref_dir() { return cluscomp_test::data_dir() / "reference" / "train_block_torch"; }

template <class T>
std::vector<T> read_raw(const std::string& file, size_t n) {
  const fs::path p = ref_dir() / file;
  REQUIRE(fs::exists(p));
  REQUIRE(fs::file_size(p) == n * sizeof(T));
  std::vector<T> v(n);
  std::ifstream f(p, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  return v;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& ref) {
  REQUIRE(a.size() == ref.size());
  double e = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    e += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    n += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(e / n);
}

constexpr double kOutputBudget = 2e-6;
constexpr double kGradBudget = 5e-6;

}  // namespace

TEST_CASE("train block: output, input gradient and centroid gradients equal PyTorch autograd", "[autograd][torch]") {
  const fs::path mp = ref_dir() / "manifest.json";
  if (!fs::exists(mp)) FAIL("no PyTorch reference at " << mp << ": run scripts/test.sh (it makes it)");
  nlohmann::json man;
  std::ifstream(mp) >> man;
  INFO("torch " << man["torch_version"].get<std::string>() << ", seed " << man["seed"].get<int64_t>());
  const auto& cfg = man["config"];
  const auto& files = man["files"];
  LlamaConfig c;
  c.model_type = "qwen2";  // q/k/v biases, no o bias
  c.hidden_size = cfg["hidden"];
  c.num_attention_heads = cfg["heads"];
  c.num_key_value_heads = cfg["kv_heads"];
  c.head_dim = cfg["head_dim"];
  c.intermediate_size = cfg["intermediate"];
  c.rms_norm_eps = cfg["rms_norm_eps"];
  c.rope_theta = cfg["rope_theta"];
  c.num_hidden_layers = 1;
  c.vocab_size = 8;
  c.max_position_embeddings = 64;
  const int64_t n = cfg["n"], H = c.hidden_size;

  LlamaBlock b;
  b.attn_norm = read_raw<float>(files["attn_norm"], static_cast<size_t>(H));
  b.ffn_norm = read_raw<float>(files["ffn_norm"], static_cast<size_t>(H));
  const char* names[7] = {"q", "k", "v", "o", "gate", "up", "down"};
  Linear* layers[7] = {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down};
  std::vector<std::string> trained;  // parameter order: codebook layers in q..down order
  for (int l = 0; l < 7; ++l) {
    const std::string nm = names[l];
    const auto& m = man["matrices"][nm];
    const int64_t out = m["out"], in = m["in"];
    std::vector<float> bias;
    if (files.contains(nm + ".bias")) bias = read_raw<float>(files[nm + ".bias"], static_cast<size_t>(out));
    if (m["dense"].get<bool>()) {
      *layers[l] = Linear::dense(nm, out, in, read_raw<float>(files[nm + ".weight"], static_cast<size_t>(out * in)),
                                 bias);
      continue;
    }
    CodebookShape s;
    s.out = out;
    s.in = in;
    s.d = m["d"];
    s.k = m["k"];
    s.num_codebooks = m["s"];
    s.centroid_dtype = DType::kF32;
    CodebookTensor t(s);
    const std::vector<float> cent = read_raw<float>(files[nm + ".centroids"], static_cast<size_t>(s.num_centroid_values()));
    std::memcpy(t.centroid_bytes().data(), cent.data(), cent.size() * 4);
    const std::vector<int32_t> codes = read_raw<int32_t>(files[nm + ".codes"], static_cast<size_t>(s.num_vectors()));
    throw_if_error(t.set_codes(codes.data(), s.num_vectors()));
    *layers[l] = Linear::from_codebook(nm, std::move(t), bias);
    trained.push_back(nm);
  }
  const std::vector<float> x = read_raw<float>(files["x"], static_cast<size_t>(n * H));
  const std::vector<float> dy = read_raw<float>(files["dy"], static_cast<size_t>(n * H));

  for (bool recompute : {false, true}) {
    INFO("recompute " << recompute);
    autograd::TrainBlockOptions opt;
    opt.recompute = recompute;
    autograd::TrainBlock tb(c, b, opt);
    ThreadPool pool(2);
    std::vector<float> y(static_cast<size_t>(n * H)), dx(y.size());
    autograd::TrainBlock::Saved saved;
    tb.zero_grad();
    tb.forward(x.data(), n, y.data(), &saved, &pool);
    tb.backward(saved, dy.data(), dx.data(), &pool);
    const double ey = rel_err(y, read_raw<float>(files["y"], y.size()));
    const double edx = rel_err(dx, read_raw<float>(files["dx"], dx.size()));
    INFO("y rel err " << ey << ", dx rel err " << edx);
    CHECK(ey < kOutputBudget);
    CHECK(edx < kOutputBudget);
    const std::vector<autograd::Parameter> params = tb.parameters();
    REQUIRE(params.size() == trained.size());
    for (size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      const std::vector<float> ref = read_raw<float>(files[trained[i] + ".dcentroids"], static_cast<size_t>(p.size));
      const double e = rel_err(std::vector<float>(p.grad, p.grad + p.size), ref);
      INFO(trained[i] << " (" << p.name << ") centroid gradient rel err " << e);
      CHECK(e < kGradBudget);
    }
  }
}

}  // namespace test_train_block_torch
