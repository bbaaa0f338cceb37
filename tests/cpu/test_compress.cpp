// The compression pipeline (pipeline/compress.hpp) on a tiny random LLaMA written with our GGUF
// writer (q/k rows permuted as llama.cpp's converter does): compress -> file -> read back ->
// decoded weights equal the clustering and are in HF order; bpw accounting; the --bpw search meets
// its target; RTN within its error bound; an interrupted run resumes to a byte-identical file
// without redoing finished matrices; bad input (unknown pattern, unmeetable target, no
// projections, full disk, non-finite numbers) gives a clear error and no output. RTN with several
// and short groups per row equals a straightforward twin written here; RTN matrices resume too.
// Orphaned temporaries of the output are removed by the next run; GGUF tensors without an HF name
// are warned about and listed. Seeds are fixed (kSeed, options.seed).
#include <catch2/catch.hpp>

#include <sys/file.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/codebook/decode.hpp"
#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/file.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"
#include "cluscomp/io/reference_checkpoint.hpp"
#include "cluscomp/io/safetensors.hpp"
#include "cluscomp/model/llama.hpp"
#include "cluscomp/pipeline/compress.hpp"
#include "cluscomp/reference/dtype_ref.hpp"
#include "support/require_error.hpp"
#include "support/test_data.hpp"
#include "support/tiny_llama.hpp"

namespace test_compress {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
using cluscomp_test::file_bytes;
using cluscomp_test::require_error;
using cluscomp_test::TempDir;

namespace {

constexpr uint32_t kSeed = 4242;

using Tiny = cluscomp_test::TinyLlama;

Tiny make_tiny() {
  cluscomp_test::TinyLlamaOptions o;
  o.seed = kSeed;
  o.vocab = 40;
  o.context = 32;
  return cluscomp_test::make_tiny_llama(o);
}

void write_gguf(const Tiny& t, const std::string& path) { cluscomp_test::write_bytes(path, cluscomp_test::write_tiny_gguf(t)); }

CompressOptions explicit_options(int d, int64_t k) {
  CompressOptions o;
  for (auto& s : o.per_kind) {
    s.d = d;
    s.k = k;
  }
  o.iterations = 4;
  o.seed = 99;
  o.threads = 2;
  return o;
}

// A progress callback that cancels the run once `n` matrices are done.
CompressCallback cancel_after(int n) {
  auto done = std::make_shared<int>(0);
  return [done, n](const CompressProgress& p) {
    if (p.stage == CompressProgress::Stage::kMatrixDone) ++*done;
    return *done < n;
  };
}

// A progress callback that counts the matrices computed (not taken from the work directory).
CompressCallback count_computed(int* computed) {
  return [computed](const CompressProgress& p) {
    if (p.stage == CompressProgress::Stage::kMatrixDone && !p.resumed) ++*computed;
    return true;
  };
}

struct Fixture {
  TempDir dir;
  Tiny tiny = make_tiny();
  std::string gguf = (dir / "tiny.gguf").string();
  SourceModel src;
  Fixture() {
    write_gguf(tiny, gguf);
    src = read_source_model(gguf);
  }
};

}  // namespace

TEST_CASE("compress: explicit settings -> file -> read back equals the clustering, HF order, loads and runs",
          "[pipeline][compress]") {
  Fixture fx;
  INFO("seed " << kSeed);
  const CompressOptions o = explicit_options(4, 32);
  const std::string out = (fx.dir / "tiny.cluscomp.safetensors").string();
  const CompressReport rep = compress_model(fx.src, out, o);
  REQUIRE(rep.matrices.size() == 14);
  CHECK(rep.resumed == 0);
  CHECK_FALSE(std::filesystem::exists(out + ".work"));
  const CluscompModel cm = read_cluscomp_model(out);
  REQUIRE(cm.clustered.size() == 14);
  double bits = 0, weights = 0;
  for (const MatrixReport& r : rep.matrices) {
    INFO(r.plan.name);
    const CodebookTensor& t = cm.clustered.at(r.plan.name);
    // Same clustering recomputed independently.
    const CodebookTensor again = cluster_matrix(fx.tiny.w.at(r.plan.name), r.plan.out, r.plan.in, r.plan.cluster,
                                                r.plan.name, o.iterations, o.seed, 1);
    CHECK(t.centroid_bytes() == again.centroid_bytes());
    CHECK(t.code_words() == again.code_words());
    // Decoded weights are close to the HF-order source (a row permutation would give ~1.4).
    const std::vector<float> dec = decode_dense(t, DecodeLayout::kW);
    const std::vector<float>& w = fx.tiny.w.at(r.plan.name);
    double e = 0, n = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      e += (static_cast<double>(w[i]) - dec[i]) * (static_cast<double>(w[i]) - dec[i]);
      n += static_cast<double>(w[i]) * w[i];
    }
    CHECK(std::sqrt(e / n) == Approx(r.rel_error()).epsilon(1e-9));
    CHECK(r.rel_error() < 0.6);
    CHECK(r.plan.bpw == t.shape().bpw_packed());
    CHECK(t.shape().centroid_dtype == DType::kF16);
    CHECK(t.code_bits() == 5);
    bits += r.plan.bpw * static_cast<double>(r.plan.out * r.plan.in);
    weights += static_cast<double>(r.plan.out * r.plan.in);
  }
  CHECK(rep.bpw == Approx(bits / weights).epsilon(1e-12));
  // bpw accounting by hand for q (64x64, d=4, K=32 fp16): 5/4 + 32*4*16/4096.
  for (const MatrixReport& r : rep.matrices)
    if (r.plan.name == "model.layers.1.self_attn.q_proj.weight") CHECK(r.plan.bpw == Approx(5.0 / 4 + 32.0 * 4 * 16 / 4096));
  CHECK(cm.metadata.at("compress.method") == "cluscomp");
  CHECK(std::stod(cm.metadata.at("compress.bpw")) == Approx(rep.bpw).epsilon(1e-5));
  // Dense tensors stay (fp16), the runtime loads the file.
  REQUIRE(cm.find_dense("model.embed_tokens.weight"));
  CHECK(cm.find_dense("model.embed_tokens.weight")->dtype == DType::kF16);
  // The runtime loads the file: its logits equal those of an HF directory holding the decoded
  // weights (the dense tensors as stored, fp16 -> fp32 exactly).
  const std::filesystem::path hf = fx.dir / "hf";
  std::filesystem::create_directories(hf);
  write_llama_config((hf / "config.json").string(), fx.tiny.cfg);
  {
    SafetensorsWriter w;
    std::map<std::string, std::vector<float>> keep;
    for (const auto& kv : cm.clustered) keep[kv.first] = decode_dense(kv.second, DecodeLayout::kW);
    for (const TensorRef& t : cm.dense) keep[t.name] = tensor_to_float(t);
    for (const auto& kv : keep)
      w.add(kv.first, DType::kF32, fx.tiny.shape.at(kv.first), kv.second.data(), kv.second.size() * 4);
    w.write((hf / "model.safetensors").string());
  }
  LlamaModel m = load_llama_model(out);
  LlamaModel dec = load_llama_model(hf.string());
  KvCache c1 = m.make_cache(8), c2 = dec.make_cache(8);
  const std::vector<int32_t> ids = {1, 5, 7, 2, 9};
  const std::vector<float> l1 = m.forward(ids, c1), l2 = dec.forward(ids, c2);
  double e = 0, n = 0;
  for (size_t i = 0; i < l1.size(); ++i) {
    REQUIRE(std::isfinite(l1[i]));
    e += (static_cast<double>(l1[i]) - l2[i]) * (static_cast<double>(l1[i]) - l2[i]);
    n += static_cast<double>(l2[i]) * l2[i];
  }
  CHECK(std::sqrt(e / n) < 1e-4);
}

TEST_CASE("compress: codebook layers of every searched d run like their decoded weights", "[pipeline][compress]") {
  Fixture fx;
  for (int d : {2, 4, 8}) {
    INFO("d " << d);
    CompressOptions o = explicit_options(d, d == 2 ? 256 : 64);
    const std::string out = (fx.dir / ("d" + std::to_string(d) + ".safetensors")).string();
    compress_model(fx.src, out, o);
    const CluscompModel cm = read_cluscomp_model(out);
    const std::filesystem::path hf = fx.dir / ("hf" + std::to_string(d));
    std::filesystem::create_directories(hf);
    write_llama_config((hf / "config.json").string(), fx.tiny.cfg);
    SafetensorsWriter w;
    std::map<std::string, std::vector<float>> keep;
    for (const auto& kv : cm.clustered) keep[kv.first] = decode_dense(kv.second, DecodeLayout::kW);
    for (const TensorRef& t : cm.dense) keep[t.name] = tensor_to_float(t);
    for (const auto& kv : keep) w.add(kv.first, DType::kF32, fx.tiny.shape.at(kv.first), kv.second.data(), kv.second.size() * 4);
    w.write((hf / "model.safetensors").string());
    LlamaModel m = load_llama_model(out), dec = load_llama_model(hf.string());
    KvCache c1 = m.make_cache(8), c2 = dec.make_cache(8);
    const std::vector<int32_t> ids = {3, 1, 4, 1, 5, 9};
    const std::vector<float> l1 = m.forward(ids, c1), l2 = dec.forward(ids, c2);
    double e = 0, n = 0;
    for (size_t i = 0; i < l1.size(); ++i) {
      e += (static_cast<double>(l1[i]) - l2[i]) * (static_cast<double>(l1[i]) - l2[i]);
      n += static_cast<double>(l2[i]) * l2[i];
    }
    CHECK(std::sqrt(e / n) < 1e-4);
  }
}

TEST_CASE("compress: S = 2 codebooks and the reference layout", "[pipeline][compress]") {
  Fixture fx;
  CompressOptions o = explicit_options(4, 16);
  for (auto& s : o.per_kind) s.num_codebooks = 2;
  o.kinds = parse_projection_patterns("mlp");
  const std::string out = (fx.dir / "s2.safetensors").string();
  const CompressReport rep = compress_model(fx.src, out, o);
  REQUIRE(rep.matrices.size() == 6);
  const CluscompModel cm = read_cluscomp_model(out);
  CHECK(cm.clustered.at("model.layers.0.mlp.up_proj.weight").shape().num_codebooks == 2);
  CHECK(cm.find_dense("model.layers.0.self_attn.q_proj.weight"));  // not selected: dense
  require_error([&] { compress_model(fx.src, (fx.dir / "ref").string(), [&] { auto p = o; p.reference_layout = true; return p; }()); },
                StatusCode::kInvalidArgument, "S = 1");
  CompressOptions r = explicit_options(4, 16);
  r.reference_layout = true;
  const CompressReport rr = compress_model(fx.src, (fx.dir / "ref").string(), r);
  CHECK(std::filesystem::exists(fx.dir / "ref" / "model.safetensors"));
  CHECK(std::filesystem::exists(fx.dir / "ref" / "config.json"));
  const ReferenceCheckpoint ck = read_reference_checkpoint((fx.dir / "ref").string());
  CHECK(ck.clustered.size() == 14);
  CHECK(rr.output_bytes > 0);
  // The two layouts hold the same clustering: the same settings in cluscomp's own format decode
  // to exactly the dense matrices that the reference files give, both through the reader and
  // through a decode of the raw <prefix>.cluster / <prefix>.index written here (CLUSCOMP.md §1:
  // vector v = i*(out_pad/d) + j holds W[j*d .. j*d+d-1, i]; padding rows dropped).
  const std::string own = (fx.dir / "own.safetensors").string();
  CompressOptions r_own = r;
  r_own.reference_layout = false;
  compress_model(fx.src, own, r_own);
  const CluscompModel cm_own = read_cluscomp_model(own);
  REQUIRE(cm_own.clustered.size() == 14);
  const SafetensorsFile raw = SafetensorsFile::open((fx.dir / "ref" / "model.safetensors").string());
  int raw_pairs = 0;
  for (const auto& t : raw.tensors()) raw_pairs += t.name.size() > 8 && t.name.compare(t.name.size() - 8, 8, ".cluster") == 0;
  CHECK(raw_pairs == 14);
  for (const auto& kv : cm_own.clustered) {
    INFO(kv.first);
    const CodebookShape& sh = kv.second.shape();
    const std::vector<float> want = decode_dense(kv.second, DecodeLayout::kW);  // (out, in)
    REQUIRE(ck.clustered.count(kv.first) == 1);
    CHECK(decode_dense(ck.clustered.at(kv.first), DecodeLayout::kW) == want);
    const std::string prefix = kv.first.substr(0, kv.first.size() - 7);  // drop ".weight"
    const TensorRef* cl = raw.find(prefix + ".cluster");
    const TensorRef* ix = raw.find(prefix + ".index");
    REQUIRE(cl);
    REQUIRE(ix);
    REQUIRE(ix->dtype == DType::kI32);
    REQUIRE(cl->shape.size() == 2);
    const int64_t k = cl->shape[0], d = cl->shape[1];
    CHECK(k == sh.k);
    CHECK(d == sh.d);
    const int64_t out_pad = (sh.out + d - 1) / d * d, per_row = out_pad / d;
    REQUIRE(ix->numel() == sh.in * per_row);
    const std::vector<float> c = tensor_to_float(*cl);
    std::vector<float> got(static_cast<size_t>(sh.out * sh.in), std::nanf(""));
    for (int64_t i = 0; i < sh.in; ++i)
      for (int64_t j = 0; j < per_row; ++j) {
        int32_t code;
        std::memcpy(&code, ix->data + (i * per_row + j) * 4, 4);
        if (code < 0 || code >= k) FAIL("code " << code << " outside [0, " << k << ") at vector " << i * per_row + j);
        for (int64_t t = 0; t < d && j * d + t < sh.out; ++t)
          got[static_cast<size_t>((j * d + t) * sh.in + i)] = c[static_cast<size_t>(code * d + t)];
      }
    CHECK(got == want);
  }
}

TEST_CASE("compress: --bpw search meets the target and spends it", "[pipeline][compress][search]") {
  Fixture fx;
  for (double target : {2.5, 3.5}) {
    INFO("target " << target);
    CompressOptions o = explicit_options(4, 16);
    o.target_bpw = target;
    o.search_d = {2, 4, 8};
    o.search_sample = 1024;
    o.search_k = 16;
    const std::vector<MatrixPlan> plans = plan_compression(fx.src, o);
    double bits = 0, weights = 0;
    for (const MatrixPlan& p : plans) {
      bits += p.bpw * static_cast<double>(p.out * p.in);
      weights += static_cast<double>(p.out * p.in);
      CHECK(p.predicted_error >= 0);
    }
    CHECK(bits / weights <= target);
    CHECK(bits / weights > target - 0.75);  // the greedy phase spends the budget
    const CompressReport rep = compress_model(fx.src, (fx.dir / "b.safetensors").string(), o);
    CHECK(rep.bpw == Approx(bits / weights));
  }
  CompressOptions o = explicit_options(4, 16);
  o.target_bpw = 0.05;
  require_error([&] { plan_compression(fx.src, o); }, StatusCode::kInvalidArgument, "cannot be met");
  CHECK_FALSE(std::filesystem::exists(fx.dir / "x.safetensors"));
}

TEST_CASE("compress: RTN 2/3/4 bits within the rounding bound, stored dense-decodable", "[pipeline][compress][rtn]") {
  Fixture fx;
  for (int bits : {2, 3, 4}) {
    INFO("bits " << bits);
    CompressOptions o;
    o.method = CompressMethod::kRtn;
    o.rtn.bits = bits;
    const std::string out = (fx.dir / ("rtn" + std::to_string(bits) + ".safetensors")).string();
    const CompressReport rep = compress_model(fx.src, out, o);
    const CluscompModel cm = read_cluscomp_model(out);
    CHECK(cm.clustered.empty());
    // in = 64 or 96: one group per row -> bits + 32 / in.
    for (const MatrixReport& r : rep.matrices) {
      INFO(r.plan.name);
      CHECK(r.plan.bpw == Approx(bits + 32.0 / static_cast<double>(r.plan.in)));
      const TensorRef* t = cm.find_dense(r.plan.name);
      REQUIRE(t);
      CHECK(t->dtype == DType::kF16);
      const std::vector<float> q = tensor_to_float(*t);
      const std::vector<float>& w = fx.tiny.w.at(r.plan.name);
      for (int64_t row = 0; row < r.plan.out; ++row) {
        float lo = w[static_cast<size_t>(row * r.plan.in)], hi = lo;
        for (int64_t i = 0; i < r.plan.in; ++i) {
          lo = std::min(lo, w[static_cast<size_t>(row * r.plan.in + i)]);
          hi = std::max(hi, w[static_cast<size_t>(row * r.plan.in + i)]);
        }
        const double scale = (static_cast<double>(hi) - lo) / ((1 << bits) - 1);
        for (int64_t i = 0; i < r.plan.in; ++i) {
          const size_t k = static_cast<size_t>(row * r.plan.in + i);
          // half a step, plus fp16 rounding of scale/min/value (relative 2^-11 each, amplified by the level)
          const double bound = 0.5 * scale + ((1 << bits) + 2) * std::ldexp(std::max(std::fabs(hi), std::fabs(lo)), -10);
          REQUIRE(std::fabs(static_cast<double>(w[k]) - q[k]) <= bound);
        }
      }
    }
  }
}

TEST_CASE("compress: an interrupted run resumes to a byte-identical file without redoing matrices",
          "[pipeline][compress][resume]") {
  Fixture fx;
  CompressOptions o = explicit_options(4, 32);
  o.jobs = 1;  // one matrix at a time: the interruptions below happen after an exact count
  const std::filesystem::path a = fx.dir / "a.safetensors", b = fx.dir / "b.safetensors";
  compress_model(fx.src, a.string(), o);
  // Interrupt after 5 finished matrices.
  CompressOptions cut = o;
  cut.progress = cancel_after(5);
  require_error([&] { compress_model(fx.src, b.string(), cut); }, StatusCode::kCancelled, "cancelled");
  CHECK_FALSE(std::filesystem::exists(b));
  int work_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(b.string() + ".work")) work_files += e.is_regular_file();
  CHECK(work_files == 5);
  // Resume: 5 matrices reused, the rest computed; same bytes as the uninterrupted run.
  CompressOptions resume = o;
  resume.threads = 1;  // k-means is deterministic for any thread count
  int computed = 0;
  resume.progress = count_computed(&computed);
  const CompressReport rep = compress_model(fx.src, b.string(), resume);
  CHECK(rep.resumed == 5);
  CHECK(computed == 9);
  CHECK(file_bytes(a) == file_bytes(b));
  CHECK_FALSE(std::filesystem::exists(b.string() + ".work"));

  // Interruption by SIGKILL of a child mid-run, then resume.
  const std::filesystem::path c = fx.dir / "c.safetensors";
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    CompressOptions k = o;
    int n = 0;
    k.progress = [&](const CompressProgress& p) {
      if (p.stage == CompressProgress::Stage::kMatrixDone && ++n == 7) raise(SIGKILL);
      return true;
    };
    try {
      compress_model(fx.src, c.string(), k);
    } catch (...) {
    }
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK_FALSE(std::filesystem::exists(c));
  const CompressReport rc = compress_model(fx.src, c.string(), o);
  CHECK(rc.resumed == 7);
  CHECK(file_bytes(a) == file_bytes(c));

  // A work file made for other settings is not reused.
  CompressOptions other = o;
  cut.progress = cancel_after(1);
  require_error([&] { compress_model(fx.src, b.string(), cut); }, StatusCode::kCancelled, "cancelled");
  other.seed = 7;
  const CompressReport ro = compress_model(fx.src, b.string(), other);
  CHECK(ro.resumed == 0);
}

TEST_CASE("compress: the resume key is the source's content, not its path or size", "[pipeline][compress][resume]") {
  Fixture fx;
  CompressOptions o = explicit_options(4, 16);
  o.iterations = 1;
  const std::string out = (fx.dir / "r.safetensors").string();
  // Stop before writing: all 14 matrices are in the work directory.
  CompressOptions cut = o;
  int resumed = 0;
  cut.progress = [&](const CompressProgress& p) {
    resumed += p.stage == CompressProgress::Stage::kMatrixDone && p.resumed;
    return p.stage != CompressProgress::Stage::kWriting;
  };
  require_error([&] { compress_model(fx.src, out, cut); }, StatusCode::kCancelled, "cancelled");
  // The same model under another path reuses every matrix.
  const std::string moved = (fx.dir / "moved.gguf").string();
  std::filesystem::copy_file(fx.gguf, moved);
  require_error([&] { compress_model(read_source_model(moved), out, cut); }, StatusCode::kCancelled, "cancelled");
  CHECK(resumed == 14);
  // The model changed in place, same path and same size: the changed matrix is recomputed, the
  // rest reused, and the result is what a fresh run on the changed model writes.
  Tiny changed = fx.tiny;
  const std::string q0 = "model.layers.0.self_attn.q_proj.weight";
  changed.w.at(q0)[7] += 0.5f;
  write_gguf(changed, fx.gguf);
  REQUIRE(std::filesystem::file_size(fx.gguf) == std::filesystem::file_size(moved));
  const SourceModel src2 = read_source_model(fx.gguf);
  const CompressReport rep = compress_model(src2, out, o);
  CHECK(rep.resumed == 13);
  for (const MatrixReport& r : rep.matrices) CHECK(r.resumed == (r.plan.name != q0));
  const std::string fresh = (fx.dir / "fresh.safetensors").string();
  CHECK(compress_model(src2, fresh, o).resumed == 0);
  CHECK(file_bytes(out) == file_bytes(fresh));
}

namespace {

/// Tokenization through `got` equals tokenization through `want` (ids, with and without BOS and
/// special tokens; decode; the chat template and its prompt ids); the tables are identical too.
void check_same_tokenization(const Tokenizer& want, const Tokenizer& got) {
  CHECK(got.to_state_json() == want.to_state_json());
  const std::vector<std::string> texts = {"", "the cat is on the mat", "  and then 1010 01 x", "ÜnÏcødé 😀 zzz",
                                          "<|im_start|>user\nhi<|im_end|>\n", "andandand\n\n\t the"};
  for (const std::string& t : texts) {
    INFO("text: " << t);
    for (bool special : {false, true})
      for (bool bos : {false, true}) {
        const std::vector<int32_t> ids = want.encode(t, bos, special);
        CHECK(got.encode(t, bos, special) == ids);
        CHECK(got.decode(ids) == want.decode(ids));
      }
  }
  for (const std::vector<ChatMessage>& chat : {std::vector<ChatMessage>{{"user", "Hi there"}},
                                               std::vector<ChatMessage>{{"system", "Be brief."}, {"user", "1 + 1?"}}}) {
    const std::string prompt = want.apply_chat_template(chat, true);
    CHECK(got.apply_chat_template(chat, true) == prompt);
    CHECK(got.encode(prompt, false, true) == want.encode(prompt, false, true));
  }
  CHECK(got.bos_id() == want.bos_id());
  CHECK(got.eos_id() == want.eos_id());
}

}  // namespace

TEST_CASE("compress: the output embeds the tokenizer and tokenises without its source (GGUF and HF)",
          "[pipeline][compress][tokenizer]") {
  namespace fs = std::filesystem;
  TempDir dir;
  const Tiny tiny = make_tiny();
  CompressOptions o = explicit_options(4, 16);
  o.iterations = 1;
  for (bool hf : {false, true}) {
    INFO((hf ? "HF directory source" : "GGUF source"));
    const fs::path src_path = dir / (hf ? "hf_model" : "tok.gguf");
    if (hf) {
      cluscomp_test::write_tiny_hf(tiny, src_path, true);
    } else {
      cluscomp_test::TinyGgufOptions go;
      go.tokenizer = true;
      cluscomp_test::write_bytes(src_path, cluscomp_test::write_tiny_gguf(tiny, go));
    }
    const Tokenizer want = load_model_tokenizer(src_path.string());
    REQUIRE(want.vocab_size() == 40);
    REQUIRE_FALSE(want.chat_template().empty());
    SourceModel src = read_source_model(src_path.string());
    REQUIRE(src.tokenizer);
    CHECK(src.tokenizer_note.empty());
    const std::string out = (dir / (hf ? "hf.cluscomp.safetensors" : "gguf.cluscomp.safetensors")).string();
    compress_model(src, out, o);
    CHECK(read_cluscomp_model(out).metadata.at("compress.source") == src_path.string());
    // The source is gone: the compressed file alone gives the same tokens.
    fs::remove_all(src_path);
    check_same_tokenization(want, load_model_tokenizer(out));
    // A source given by a relative path is recorded absolute.
    src.path = "some/relative/model.gguf";
    const std::string rel_out = (dir / "rel.safetensors").string();
    compress_model(src, rel_out, o);
    CHECK(read_cluscomp_model(rel_out).metadata.at("compress.source") ==
          (fs::current_path() / "some/relative/model.gguf").string());
  }
  // A source without a tokenizer still compresses; the note says why there is none.
  const fs::path bare = dir / "bare.gguf";
  write_gguf(tiny, bare.string());
  const SourceModel bare_src = read_source_model(bare.string());
  CHECK_FALSE(bare_src.tokenizer);
  CHECK_FALSE(bare_src.tokenizer_note.empty());
  const std::string bare_out = (dir / "bare.cluscomp.safetensors").string();
  compress_model(bare_src, bare_out, o);
  CHECK(read_cluscomp_model(bare_out).metadata.count(kCluscompTokenizerKey) == 0);
}

TEST_CASE("compress: files from before tokenizers were embedded use their source, or say how to fix it",
          "[pipeline][compress][tokenizer]") {
  namespace fs = std::filesystem;
  TempDir dir;
  const Tiny tiny = make_tiny();
  const fs::path src_path = dir / "old_src.gguf";
  cluscomp_test::TinyGgufOptions go;
  go.tokenizer = true;
  cluscomp_test::write_bytes(src_path, cluscomp_test::write_tiny_gguf(tiny, go));
  const Tokenizer want = load_model_tokenizer(src_path.string());
  CompressOptions o = explicit_options(4, 16);
  o.iterations = 1;
  const std::string full = (dir / "full.safetensors").string();
  compress_model(read_source_model(src_path.string()), full, o);
  // An old file: no embedded tokenizer, the source as it was typed (relative to where compress
  // ran, here the file's own directory).
  const std::string old = (dir / "old.safetensors").string();
  {
    const CluscompModel cm = read_cluscomp_model(full);
    std::map<std::string, std::string> meta = cm.caller_metadata();
    REQUIRE(meta.erase(kCluscompTokenizerKey) == 1);
    meta["compress.source"] = "old_src.gguf";
    write_cluscomp_model(old, cm.dense, cm.clustered, meta);
  }
  check_same_tokenization(want, load_model_tokenizer(old));
  fs::remove(src_path);
  require_error([&] { (void)load_model_tokenizer(old); }, StatusCode::kNotFound, "'old_src.gguf' (compress.source) is missing");
  require_error([&] { (void)load_model_tokenizer(old); }, StatusCode::kNotFound, "cluscomp embed-tokenizer " + old);
  // The repair: embed the tokenizer (from wherever the source is now); the file is then the one
  // compress writes today, up to compress.source.
  embed_model_tokenizer(old, want, old);
  check_same_tokenization(want, load_model_tokenizer(old));
  const CluscompModel a = read_cluscomp_model(full), b = read_cluscomp_model(old);
  CHECK(b.metadata.at(kCluscompTokenizerKey) == a.metadata.at(kCluscompTokenizerKey));
  CHECK(b.metadata.size() == a.metadata.size());
  // A plain safetensors file with nothing beside it.
  const std::string plain = (dir / "plain.safetensors").string();
  write_cluscomp_model(plain, a.dense, {}, {});
  require_error([&] { (void)load_model_tokenizer(plain); }, StatusCode::kNotFound, "the file embeds none");
}

TEST_CASE("compress: several matrices at once give the same bytes; a cancel stops every job",
          "[pipeline][compress][jobs]") {
  Fixture fx;
  CompressOptions o = explicit_options(4, 32);
  o.jobs = 1;
  o.threads = 1;
  const std::filesystem::path a = fx.dir / "a.safetensors";
  const CompressReport ra = compress_model(fx.src, a.string(), o);
  CHECK(ra.jobs == 1);
  for (int jobs : {2, 3, 0}) {
    INFO("jobs " << jobs);
    CompressOptions j = o;
    j.jobs = jobs;
    j.threads = 3;
    const std::filesystem::path b = fx.dir / ("j" + std::to_string(jobs) + ".safetensors");
    // The callback is never entered by two jobs at once, and `done` counts finished matrices.
    std::atomic<int> inside{0};
    int64_t last_done = 0;
    bool overlap = false, monotone = true;
    j.progress = [&](const CompressProgress& p) {
      overlap = overlap || inside.fetch_add(1) != 0;
      monotone = monotone && p.done >= last_done;
      last_done = p.done;
      inside.fetch_sub(1);
      return true;
    };
    const CompressReport rb = compress_model(fx.src, b.string(), j);
    CHECK(rb.jobs == (jobs == 0 ? 2 : jobs));
    CHECK(rb.job_threads == 1);  // 3 threads / 2 or 3 jobs
    CHECK_FALSE(overlap);
    CHECK(monotone);
    CHECK(last_done == static_cast<int64_t>(rb.matrices.size()));
    CHECK(file_bytes(a) == file_bytes(b));
    REQUIRE(rb.matrices.size() == ra.matrices.size());
    for (size_t i = 0; i < rb.matrices.size(); ++i) CHECK(rb.matrices[i].plan.name == ra.matrices[i].plan.name);
  }
  // Cancel with 3 jobs: the call throws kCancelled, no output, the work files that exist are
  // whole matrices, and a resume with 2 jobs reuses them and ends with the same bytes.
  CompressOptions cut = o;
  cut.jobs = 3;
  cut.threads = 3;
  cut.progress = cancel_after(4);
  const std::filesystem::path c = fx.dir / "c.safetensors";
  require_error([&] { compress_model(fx.src, c.string(), cut); }, StatusCode::kCancelled, "cancelled at matrix");
  CHECK_FALSE(std::filesystem::exists(c));
  int work_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(c.string() + ".work")) work_files += e.is_regular_file();
  CHECK(work_files >= 4);
  CompressOptions resume = o;
  resume.jobs = 2;
  resume.threads = 2;
  const CompressReport rc = compress_model(fx.src, c.string(), resume);
  CHECK(rc.resumed == work_files);
  CHECK(file_bytes(a) == file_bytes(c));
}

TEST_CASE("compress: bad input gives a clear error and no output", "[pipeline][compress][errors]") {
  Fixture fx;
  require_error([] { parse_projection_patterns("q,attn,foo"); }, StatusCode::kInvalidArgument, "unknown matrix pattern 'foo'");
  require_error([] { parse_projection_patterns(","); }, StatusCode::kInvalidArgument, "names no matrix");
  CHECK(parse_projection_patterns("mlp,q").size() == 4);

  SourceModel empty = fx.src;
  empty.tensors.erase(std::remove_if(empty.tensors.begin(), empty.tensors.end(),
                                     [](const SourceTensor& t) { return projection_kind_of(t.name, nullptr); }),
                      empty.tensors.end());
  const std::string out = (fx.dir / "none.safetensors").string();
  require_error([&] { compress_model(empty, out, explicit_options(4, 16)); }, StatusCode::kInvalidArgument,
                "no projection matrices");
  CHECK_FALSE(std::filesystem::exists(out));

  CompressOptions big = explicit_options(4, 4096);  // K above the vectors of a 32x64 matrix
  require_error([&] { compress_model(fx.src, out, big); }, StatusCode::kInvalidArgument, "exceeds the number of distinct points");
  CHECK_FALSE(std::filesystem::exists(out));

  CompressOptions bad = explicit_options(4, 16);
  bad.target_bpw = 0.01;
  require_error([&] { compress_model(fx.src, out, bad); }, StatusCode::kInvalidArgument, "cannot be met");
  CHECK_FALSE(std::filesystem::exists(out));

  // Full disk: a child with RLIMIT_FSIZE below the output size and SIGXFSZ ignored.
  const std::string full = (fx.dir / "full.safetensors").string();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl;
    rl.rlim_cur = rl.rlim_max = 20000;
    setrlimit(RLIMIT_FSIZE, &rl);
    try {
      compress_model(fx.src, full, explicit_options(4, 16));
    } catch (const Error& e) {
      _exit(e.code() == StatusCode::kIoError && !std::filesystem::exists(full) ? 0 : 2);
    } catch (...) {
      _exit(4);
    }
    _exit(5);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(full));
}

TEST_CASE("compress: non-finite or negative numeric options are refused, naming the option", "[pipeline][compress][errors]") {
  Fixture fx;
  const std::string out = (fx.dir / "nan.safetensors").string();
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (double v : {nan, inf, -inf, -1.0}) {
    INFO("target_bpw " << v);
    CompressOptions o = explicit_options(4, 16);
    o.target_bpw = v;  // NaN used to fail "<= 0" and plan the largest settings
    require_error([&] { plan_compression(fx.src, o); }, StatusCode::kInvalidArgument, "target bpw");
    require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "target bpw");
  }
  for (double v : {nan, inf, -0.5}) {
    INFO("importance_damp " << v);
    CompressOptions o = explicit_options(4, 16);
    o.importance_damp = v;  // refused with or without importance
    require_error([&] { plan_compression(fx.src, o); }, StatusCode::kInvalidArgument, "importance damping");
    require_error([&] { compress_model(fx.src, out, o); }, StatusCode::kInvalidArgument, "importance damping");
  }
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".work"));
}

namespace {

// RTN written out straightforwardly, sharing nothing with rtn_quantize but the float arithmetic
// it specifies: a first pass finds each (row, group) min/max, a second one quantises; fp16 through
// the reference twins (reference/dtype_ref.hpp). Returns the fp16 values compress stores.
std::vector<float> rtn_twin(const std::vector<float>& w, int64_t out, int64_t in, int bits, int64_t group) {
  const int64_t groups = (in + group - 1) / group;
  std::vector<float> lo(static_cast<size_t>(out * groups), INFINITY), hi(lo.size(), -INFINITY);
  for (int64_t r = 0; r < out; ++r)
    for (int64_t i = 0; i < in; ++i) {
      const size_t g = static_cast<size_t>(r * groups + i / group);
      lo[g] = std::min(lo[g], w[static_cast<size_t>(r * in + i)]);
      hi[g] = std::max(hi[g], w[static_cast<size_t>(r * in + i)]);
    }
  auto f16 = [](float x) { return static_cast<float>(reference::half_bits_to_double_ref(reference::float_to_half_bits_ref(x))); };
  const float top = static_cast<float>((1 << bits) - 1);
  std::vector<float> q(w.size());
  for (int64_t r = 0; r < out; ++r)
    for (int64_t i = 0; i < in; ++i) {
      const size_t g = static_cast<size_t>(r * groups + i / group);
      const float mn = f16(lo[g]), sc = f16((hi[g] - lo[g]) / top);
      float level = sc > 0 ? std::nearbyint((w[static_cast<size_t>(r * in + i)] - mn) / sc) : 0.0f;
      level = std::min(top, std::max(0.0f, level));
      q[static_cast<size_t>(r * in + i)] = f16(sc * level + mn);
    }
  return q;
}

// A model of two projections whose input widths are not multiples of 128 (3 and 2 groups per row,
// short last groups of 44 and 1 columns); each row's last group has its own, much larger range.
SourceModel rtn_edge_model(const Tiny& tiny) {
  SourceModel m;
  m.config = tiny.cfg;
  m.path = "rtn-edge";
  std::mt19937 rng(kSeed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const std::vector<std::pair<std::string, int64_t>> mats = {{"model.layers.0.mlp.down_proj.weight", 300},
                                                              {"model.layers.0.self_attn.o_proj.weight", 129}};
  for (const auto& [name, in] : mats) {
    SourceTensor t;
    t.name = name;
    t.shape = {6, in};
    t.values.resize(static_cast<size_t>(6 * in));
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t i = 0; i < in; ++i)
        t.values[static_cast<size_t>(r * in + i)] = (i >= in / 128 * 128 ? 40.0f : 0.1f) * nd(rng) + 0.01f * r;
    m.tensors.push_back(std::move(t));
  }
  return m;
}

}  // namespace

TEST_CASE("compress: RTN with several groups per row and a short last group equals a straightforward twin",
          "[pipeline][compress][rtn]") {
  Fixture fx;
  const SourceModel m = rtn_edge_model(fx.tiny);
  for (int bits : {2, 3, 4}) {
    INFO("bits " << bits << ", seed " << kSeed);
    CompressOptions o;
    o.method = CompressMethod::kRtn;
    o.rtn.bits = bits;
    const std::string out = (fx.dir / ("edge" + std::to_string(bits) + ".safetensors")).string();
    const CompressReport rep = compress_model(m, out, o);
    REQUIRE(rep.matrices.size() == 2);
    const CluscompModel cm = read_cluscomp_model(out);
    for (const MatrixReport& r : rep.matrices) {
      INFO(r.plan.name);
      const SourceTensor& t = compress_detail::find_tensor(m, r.plan.name);
      const int64_t groups = (r.plan.in + 127) / 128;
      CHECK(groups == (r.plan.in == 300 ? 3 : 2));
      CHECK(r.plan.bpw == Approx(bits + 32.0 * static_cast<double>(groups) / static_cast<double>(r.plan.in)));
      const TensorRef* st = cm.find_dense(r.plan.name);
      REQUIRE(st);
      const std::vector<float> q = tensor_to_float(*st);
      const std::vector<float> twin = rtn_twin(t.values, r.plan.out, r.plan.in, bits, 128);
      REQUIRE(q.size() == twin.size());
      size_t differ = 0;
      double e = 0, n = 0;
      for (size_t i = 0; i < q.size(); ++i) {
        differ += q[i] != twin[i];
        e += (static_cast<double>(t.values[i]) - q[i]) * (static_cast<double>(t.values[i]) - q[i]);
        n += static_cast<double>(t.values[i]) * t.values[i];
      }
      CHECK(differ == 0);
      CHECK(r.rel_error() == Approx(std::sqrt(e / n)).epsilon(1e-12));
      // The small-range groups are not quantised with the short group's range: their error stays
      // on their own scale (one group per row would give errors ~40x larger there).
      for (int64_t row = 0; row < r.plan.out; ++row)
        for (int64_t i = 0; i < 128; ++i) {
          const size_t k = static_cast<size_t>(row * r.plan.in + i);
          REQUIRE(std::fabs(static_cast<double>(t.values[k]) - q[k]) < 0.5 * std::ldexp(1.0, 3 - bits));
        }
    }
  }
  // rtn_quantize itself (before the fp16 storage), other group sizes: the twin's values rounded to
  // fp16 are what the storage holds, so compare after that rounding.
  const SourceTensor& t = m.tensors[0];
  for (int64_t g : {1, 7, 64, 299, 300, 1000}) {
    INFO("group " << g);
    const std::vector<float> q = rtn_quantize(t.values, 6, 300, RtnSettings{3, static_cast<int>(g)});
    const std::vector<float> twin = rtn_twin(t.values, 6, 300, 3, g);
    size_t differ = 0;
    for (size_t i = 0; i < q.size(); ++i)
      differ += static_cast<float>(reference::half_bits_to_double_ref(reference::float_to_half_bits_ref(q[i]))) != twin[i];
    CHECK(differ == 0);
  }
}

TEST_CASE("compress: an interrupted RTN run resumes its matrices to a byte-identical file", "[pipeline][compress][rtn][resume]") {
  Fixture fx;
  CompressOptions o;
  o.method = CompressMethod::kRtn;
  o.rtn.bits = 3;
  o.jobs = 1;
  const std::filesystem::path a = fx.dir / "a.safetensors", b = fx.dir / "b.safetensors";
  const CompressReport ra = compress_model(fx.src, a.string(), o);
  CompressOptions cut = o;
  cut.progress = cancel_after(6);
  require_error([&] { compress_model(fx.src, b.string(), cut); }, StatusCode::kCancelled, "cancelled");
  CompressOptions resume = o;
  int computed = 0;
  resume.progress = count_computed(&computed);
  const CompressReport rb = compress_model(fx.src, b.string(), resume);
  CHECK(rb.resumed == 6);
  CHECK(computed == 8);
  CHECK(file_bytes(a) == file_bytes(b));
  REQUIRE(rb.matrices.size() == ra.matrices.size());
  for (size_t i = 0; i < rb.matrices.size(); ++i) {
    INFO(rb.matrices[i].plan.name);
    CHECK(rb.matrices[i].sq_error == ra.matrices[i].sq_error);  // the stored statistics, not re-estimated
    CHECK(rb.matrices[i].sq_norm == ra.matrices[i].sq_norm);
    CHECK(rb.matrices[i].resumed == (i < 6));
  }
  // RTN work files of other bits are not reused.
  cut.progress = cancel_after(6);
  require_error([&] { compress_model(fx.src, b.string(), cut); }, StatusCode::kCancelled, "cancelled");
  CompressOptions four = o;
  four.rtn.bits = 4;
  CHECK(compress_model(fx.src, b.string(), four).resumed == 0);
}

TEST_CASE("compress: a later run removes the temporaries a killed final write left, and only those",
          "[pipeline][compress][resume]") {
  namespace fs = std::filesystem;
  Fixture fx;
  const CompressOptions o = explicit_options(4, 16);
  const fs::path out = fx.dir / "t.safetensors";
  // A process killed in the middle of writing the output: its temporary stays.
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    AtomicFileWriter w(out.string());
    w.write(std::string(1000, 'x'));
    raise(SIGKILL);
    _exit(3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  REQUIRE(WIFSIGNALED(status));
  std::vector<fs::path> orphans;
  for (const auto& e : fs::directory_iterator(fx.dir.path()))
    if (e.path().filename().string().rfind("t.safetensors.tmp.", 0) == 0) orphans.push_back(e.path());
  REQUIRE(orphans.size() == 1);
  // Lookalikes that must stay: other outputs' temporaries, other lengths, other characters, a
  // directory, a temporary still being written (locked), one newer than the run.
  const auto old = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const char* n : {"u.safetensors.tmp.AbC123", "t.safetensors.tmp.AbC12", "t.safetensors.tmp.AbC1234",
                        "t.safetensors.tmp.AbC-12", "xt.safetensors.tmp.AbC123", "t.safetensors.tmp.Locked"})
    cluscomp_test::write_bytes(fx.dir / n, {1, 2, 3});
  fs::create_directory(fx.dir / "t.safetensors.tmp.Dir123");
  cluscomp_test::write_bytes(fx.dir / "t.safetensors.tmp.Future", {1});
  for (const auto& e : fs::directory_iterator(fx.dir.path()))
    if (e.path().filename().string().find(".tmp.") != std::string::npos && e.path().filename() != "t.safetensors.tmp.Future")
      fs::last_write_time(e.path(), old);
  fs::last_write_time(fx.dir / "t.safetensors.tmp.Future", fs::file_time_type::clock::now() + std::chrono::hours(1));
  const int held = ::open((fx.dir / "t.safetensors.tmp.Locked").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(held >= 0);
  REQUIRE(::flock(held, LOCK_EX | LOCK_NB) == 0);  // as a live AtomicFileWriter holds it

  const CompressReport rep = compress_model(fx.src, out.string(), o);
  ::close(held);
  CHECK(rep.removed_temporaries == std::vector<std::string>{orphans[0].string()});
  CHECK_FALSE(fs::exists(orphans[0]));
  CHECK(fs::exists(out));
  for (const char* n : {"u.safetensors.tmp.AbC123", "t.safetensors.tmp.AbC12", "t.safetensors.tmp.AbC1234",
                        "t.safetensors.tmp.AbC-12", "xt.safetensors.tmp.AbC123", "t.safetensors.tmp.Locked",
                        "t.safetensors.tmp.Dir123", "t.safetensors.tmp.Future"}) {
    INFO(n);
    CHECK(fs::exists(fx.dir / n));
  }
  // The writer's own temporary is locked while it lives: never taken for an orphan.
  {
    AtomicFileWriter w((fx.dir / "v.safetensors").string());
    w.write("abc");
    CHECK(remove_stale_temporaries((fx.dir / "v.safetensors").string(), fs::file_time_type::clock::now() + std::chrono::hours(1))
              .empty());
    w.finish();  // closed but not yet renamed: still locked
    CHECK(remove_stale_temporaries((fx.dir / "v.safetensors").string(), fs::file_time_type::clock::now() + std::chrono::hours(1))
              .empty());
    w.publish();
  }
  CHECK(file_bytes(fx.dir / "v.safetensors").size() == 3);
  // The reference layout cleans its two files' orphans inside the output directory.
  CompressOptions r = explicit_options(4, 16);
  r.reference_layout = true;
  fs::create_directories(fx.dir / "ref");
  for (const char* n : {"model.safetensors.tmp.Qw3rty", "config.json.tmp.Qw3rty", "other.bin.tmp.Qw3rty"}) {
    cluscomp_test::write_bytes(fx.dir / "ref" / n, {1});
    fs::last_write_time(fx.dir / "ref" / n, old);
  }
  const CompressReport rr = compress_model(fx.src, (fx.dir / "ref").string(), r);
  CHECK(rr.removed_temporaries == std::vector<std::string>{(fx.dir / "ref" / "config.json.tmp.Qw3rty").string(),
                                                           (fx.dir / "ref" / "model.safetensors.tmp.Qw3rty").string()});
  CHECK(fs::exists(fx.dir / "ref" / "other.bin.tmp.Qw3rty"));
}

TEST_CASE("compress: GGUF tensors without an HF name are warned about, listed, and left out", "[pipeline][compress]") {
  Fixture fx;
  cluscomp_test::TinyGgufOptions go;
  go.extra = {{"rope_freqs.weight", std::vector<float>(8, 1.0f)}, {"blk.0.attn_q_norm.weight", std::vector<float>(16, 1.0f)}};
  const std::string gguf = (fx.dir / "extra.gguf").string();
  cluscomp_test::write_bytes(gguf, cluscomp_test::write_tiny_gguf(fx.tiny, go));
  const SourceModel src = read_source_model(gguf);
  CHECK(src.skipped == std::vector<std::string>{"rope_freqs.weight", "blk.0.attn_q_norm.weight"});
  CHECK(src.tensors.size() == fx.src.tensors.size());
  CHECK(fx.src.skipped.empty());
  CompressOptions o = explicit_options(4, 16);
  std::vector<std::string> warnings;
  bool warning_first = true;
  int calls = 0;
  o.progress = [&](const CompressProgress& p) {
    if (p.stage == CompressProgress::Stage::kWarning) {
      warnings.push_back(p.message);
      warning_first = warning_first && calls == 0;
    }
    ++calls;
    return true;
  };
  const std::string out = (fx.dir / "extra.safetensors").string();
  const CompressReport rep = compress_model(src, out, o);
  REQUIRE(warnings.size() == 1);
  CHECK(warning_first);
  CHECK(warnings[0].find("2 source tensors") != std::string::npos);
  CHECK(warnings[0].find("rope_freqs.weight") != std::string::npos);
  CHECK(warnings[0].find("blk.0.attn_q_norm.weight") != std::string::npos);
  CHECK(rep.skipped_tensors == src.skipped);
  const CluscompModel cm = read_cluscomp_model(out);
  CHECK(cm.dense.size() + cm.clustered.size() == fx.src.tensors.size());
  // Without the callback the report still lists them; without such tensors nothing is sent.
  o.progress = nullptr;
  CHECK(compress_model(src, out, o).skipped_tensors.size() == 2);
  warnings.clear();
  o.progress = [&](const CompressProgress& p) {
    if (p.stage == CompressProgress::Stage::kWarning) warnings.push_back(p.message);
    return true;
  };
  CHECK(compress_model(fx.src, out, o).skipped_tensors.empty());
  CHECK(warnings.empty());
}

TEST_CASE("compress and the runtime refuse a device without a backend before any work", "[pipeline][compress][device]") {
  // Only the CPU has a backend. A cuda request must fail with a message that names cuda (no
  // backend built: kUnsupported; built but no GPU here: kCudaError; GPU present: kUnsupported
  // naming the operation), never run on the CPU instead, and touch nothing on disk.
  Fixture fx;
  auto require_device_error = [](auto&& f, const char* what) {
    INFO(what);
    try {
      f();
      FAIL("no error for device cuda");
    } catch (const Error& e) {
      INFO("message: " << e.what());
      CHECK((e.code() == StatusCode::kUnsupported || e.code() == StatusCode::kCudaError));
      CHECK(std::string(e.what()).find("cuda") != std::string::npos);
    }
  };
  CompressOptions o = explicit_options(4, 32);
  o.device = Device::kCuda;
  int calls = 0;
  o.progress = [&](const CompressProgress&) { return ++calls > 0; };
  const std::string out = (fx.dir / "cuda.safetensors").string();
  require_device_error([&] { compress_model(fx.src, out, o); }, "compress_model");
  require_device_error([&] { plan_compression(fx.src, o); }, "plan_compression");
  CHECK(calls == 0);
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".work"));
  LlamaRuntimeOptions ro;
  ro.device = Device::kCuda;
  require_device_error([&] { load_llama_gguf(fx.gguf, ro); }, "load_llama_gguf");
  require_device_error([&] { load_llama_model(fx.gguf, ro); }, "load_llama_model");
  // The same options on the CPU work (the default).
  o.device = Device::kCpu;
  CHECK(plan_compression(fx.src, o).size() == 14);
  ro.device = Device::kCpu;
  CHECK(load_llama_gguf(fx.gguf, ro).config().num_hidden_layers == fx.tiny.cfg.num_hidden_layers);
}

}  // namespace test_compress
