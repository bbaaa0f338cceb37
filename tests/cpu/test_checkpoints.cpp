// Checkpoints: the reference ClusComp layout (.cluster/.index + config.json) and cluscomp's own
// format (safetensors with packed codes), round trips and negative tests.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "cluscomp/io/cluscomp_format.hpp"
#include "cluscomp/io/reference_checkpoint.hpp"
#include "support/llama_configs.hpp"
#include "support/test_data.hpp"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test_checkpoints {  // this file's names: tests are built as unity builds (tests/CMakeLists.txt)

using namespace cluscomp;
namespace fs = std::filesystem;

namespace {

/// A CodebookTensor with seeded random centroids (exactly representable in every dtype) and codes.
CodebookTensor random_codebook(int64_t out, int64_t in, int d, int64_t k, int s, DType dt,
                               uint32_t seed, int code_bits = 0) {
  CodebookShape sh;
  sh.out = out;
  sh.in = in;
  sh.d = d;
  sh.k = k;
  sh.num_codebooks = s;
  sh.code_bits = code_bits;
  sh.centroid_dtype = dt;
  CodebookTensor t(sh);
  std::mt19937 rng(seed);
  for (int64_t si = 0; si < s; ++si)
    for (int64_t c = 0; c < k; ++c)
      for (int j = 0; j < d; ++j)
        t.set_centroid(si, c, j, static_cast<float>(static_cast<int>(rng() % 255) - 127) / 64.0f);
  std::vector<uint32_t> codes(static_cast<size_t>(sh.num_vectors()));
  for (auto& c : codes) c = static_cast<uint32_t>(rng() % static_cast<uint32_t>(k));
  throw_if_error(t.set_codes(codes.data(), static_cast<int64_t>(codes.size())));
  return t;
}

void require_same(const CodebookTensor& a, const CodebookTensor& b) {
  REQUIRE(a.shape() == b.shape());
  REQUIRE(a.code_bits() == b.code_bits());
  REQUIRE(a.centroid_bytes() == b.centroid_bytes());
  REQUIRE(a.codes() == b.codes());
}

template <class F>
void expect_error(F&& f, StatusCode code, std::initializer_list<const char*> fragments) {
  try {
    f();
    FAIL("no error");
  } catch (const Error& e) {
    INFO("message: " << e.what());
    CHECK(e.code() == code);
    const std::string msg = e.what();
    for (const char* fr : fragments) {
      INFO("expected fragment: " << fr);
      CHECK(msg.find(fr) != std::string::npos);
    }
  }
}

LlamaConfig tiny_config() {
  LlamaConfig c = cluscomp_test::llama_config(cluscomp_test::kTinyCheckpointShape);
  c.extra["architectures"] = {"LlamaForCausalLM"};
  return c;
}

const char* const kProjections[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                    "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                    "mlp.down_proj"};

/// All seven projections of every layer of `c`, clustered with K, d.
std::map<std::string, CodebookTensor> tiny_clustered(const LlamaConfig& c, int64_t k, int d, DType dt) {
  std::map<std::string, CodebookTensor> m;
  uint32_t seed = 1;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (const char* p : kProjections) {
      const std::string name = "model.layers." + std::to_string(l) + "." + p + ".weight";
      int64_t out = 0, in = 0;
      REQUIRE(llama_projection_shape(c, name, &out, &in));
      m.emplace(name, random_codebook(out, in, d, k, 1, dt, seed++));
    }
  return m;
}

struct Dense {
  std::vector<uint16_t> embed, norm;
  std::vector<TensorRef> refs;
  explicit Dense(const LlamaConfig& c) {
    embed.resize(static_cast<size_t>(c.vocab_size * c.hidden_size));
    norm.resize(static_cast<size_t>(c.hidden_size));
    for (size_t i = 0; i < embed.size(); ++i) embed[i] = float_to_bf16_bits(static_cast<float>(i) * 0.25f);
    for (size_t i = 0; i < norm.size(); ++i) norm[i] = float_to_bf16_bits(1.0f + static_cast<float>(i));
    refs.push_back(TensorRef{"model.embed_tokens.weight", DType::kBF16, {c.vocab_size, c.hidden_size},
                             reinterpret_cast<const unsigned char*>(embed.data()), embed.size() * 2});
    refs.push_back(TensorRef{"model.norm.weight", DType::kBF16, {c.hidden_size},
                             reinterpret_cast<const unsigned char*>(norm.data()), norm.size() * 2});
  }
};

void require_dense(const std::vector<TensorRef>& got, const Dense& want) {
  REQUIRE(got.size() == want.refs.size());
  for (const auto& w : want.refs) {
    const TensorRef* g = nullptr;
    for (const auto& t : got)
      if (t.name == w.name) g = &t;
    REQUIRE(g != nullptr);
    REQUIRE(g->dtype == w.dtype);
    REQUIRE(g->shape == w.shape);
    REQUIRE(g->nbytes == w.nbytes);
    REQUIRE(std::memcmp(g->data, w.data, w.nbytes) == 0);
  }
}

}  // namespace

// ---- reference layout -------------------------------------------------------------------------

TEST_CASE("reference tensors round-trip in memory (I32 and U16, odd out)", "[reference]") {
  for (DType ix : {DType::kI32, DType::kU16}) {
    for (DType dt : {DType::kF32, DType::kF16, DType::kBF16}) {
      const CodebookTensor t = random_codebook(7, 5, 4, 300, 1, dt, 42);  // out 7 -> out_pad 8
      const ReferenceTensors r = codebook_to_reference(t, ix);
      REQUIRE(r.cluster_shape == std::vector<int64_t>{300, 4});
      REQUIRE(r.index_shape == std::vector<int64_t>{5 * 2});
      REQUIRE(r.index_dtype == ix);
      const TensorRef c{"m.cluster", r.cluster_dtype, r.cluster_shape, r.cluster.data(), r.cluster.size()};
      const TensorRef i{"m.index", r.index_dtype, r.index_shape, r.index.data(), r.index.size()};
      require_same(codebook_from_reference(c, i, 7, 5), t);
    }
  }
  const CodebookTensor multi = random_codebook(8, 6, 4, 16, 2, DType::kF32, 1);
  expect_error([&] { (void)codebook_to_reference(multi); }, StatusCode::kUnsupported, {"S = 2"});
}

TEST_CASE("reference checkpoint directory round-trips", "[reference]") {
  cluscomp_test::TempDir dir;
  const LlamaConfig cfg = tiny_config();
  const Dense dense(cfg);
  for (DType ix : {DType::kI32, DType::kU16}) {
    const auto clustered = tiny_clustered(cfg, 16, 4, DType::kBF16);
    const std::string path = (dir / (std::string("ck_") + dtype_name(ix))).string();
    write_reference_checkpoint(path, cfg, dense.refs, clustered, ix);

    // The file uses the reference names and dtypes.
    const auto f = SafetensorsFile::open(path + "/model.safetensors");
    const TensorRef& idx = f.at("model.layers.1.mlp.down_proj.index");
    REQUIRE(idx.dtype == ix);
    REQUIRE(idx.shape == std::vector<int64_t>{12 * 8 / 4});
    REQUIRE(f.at("model.layers.1.mlp.down_proj.cluster").shape == std::vector<int64_t>{16, 4});
    REQUIRE(!f.contains("model.layers.1.mlp.down_proj.weight"));

    const ReferenceCheckpoint ck = read_reference_checkpoint(path);
    REQUIRE(ck.config.num_clusters == 16);
    REQUIRE(ck.config.cluster_dim == 4);
    REQUIRE(ck.config.extra == cfg.extra);
    REQUIRE(ck.clustered.size() == clustered.size());
    for (const auto& kv : clustered) require_same(ck.clustered.at(kv.first), kv.second);
    require_dense(ck.dense, dense);
  }
}

TEST_CASE("sharded reference checkpoints are read through the index", "[reference]") {
  cluscomp_test::TempDir dir;
  LlamaConfig cfg = tiny_config();
  cfg.num_hidden_layers = 1;
  const Dense dense(cfg);
  const auto clustered = tiny_clustered(cfg, 8, 2, DType::kF32);
  cfg.num_clusters = 8;
  cfg.cluster_dim = 2;
  write_llama_config((dir / "config.json").string(), cfg);
  // Shard 1: dense tensors; shard 2: the clustered ones.
  SafetensorsWriter w1, w2;
  nlohmann::json wm;
  for (const auto& t : dense.refs) {
    w1.add(t);
    wm[t.name] = "model-00001-of-00002.safetensors";
  }
  std::vector<ReferenceTensors> keep;
  for (const auto& kv : clustered) {
    keep.push_back(codebook_to_reference(kv.second));
    const std::string prefix = kv.first.substr(0, kv.first.size() - 7);
    const ReferenceTensors& r = keep.back();
    w2.add(prefix + ".cluster", r.cluster_dtype, r.cluster_shape, r.cluster.data(), r.cluster.size());
    w2.add(prefix + ".index", r.index_dtype, r.index_shape, r.index.data(), r.index.size());
    wm[prefix + ".cluster"] = "model-00002-of-00002.safetensors";
    wm[prefix + ".index"] = "model-00002-of-00002.safetensors";
  }
  w1.write((dir / "model-00001-of-00002.safetensors").string());
  w2.write((dir / "model-00002-of-00002.safetensors").string());
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", wm}};
  write_text_file_atomic((dir / "model.safetensors.index.json").string(), index.dump());

  const ReferenceCheckpoint ck = read_reference_checkpoint(dir.path().string());
  REQUIRE(ck.files.size() == 2);
  for (const auto& kv : clustered) require_same(ck.clustered.at(kv.first), kv.second);
  require_dense(ck.dense, dense);

  // A weight_map that points a tensor at the wrong shard is an error.
  wm["model.norm.weight"] = "model-00002-of-00002.safetensors";
  index["weight_map"] = wm;
  write_text_file_atomic((dir / "model.safetensors.index.json").string(), index.dump());
  expect_error([&] { (void)read_reference_checkpoint(dir.path().string()); }, StatusCode::kFormatError,
               {"'model.norm.weight'", "not assigned to this shard"});
  wm["model.norm.weight"] = "../escape.safetensors";
  index["weight_map"] = wm;
  write_text_file_atomic((dir / "model.safetensors.index.json").string(), index.dump());
  expect_error([&] { (void)read_reference_checkpoint(dir.path().string()); }, StatusCode::kFormatError,
               {"not a plain file name"});
}

TEST_CASE("a full disk while rewriting a reference checkpoint keeps the old pair", "[reference]") {
  cluscomp_test::TempDir dir;
  const LlamaConfig cfg = tiny_config();
  const Dense dense(cfg);
  const std::string path = (dir / "ck").string();
  write_reference_checkpoint(path, cfg, dense.refs, tiny_clustered(cfg, 16, 4, DType::kF16));
  auto bytes = [](const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string old_model = bytes(fs::path(path) / "model.safetensors");
  const std::string old_config = bytes(fs::path(path) / "config.json");
  // A limit the new config.json fits under and the new model.safetensors does not: the config
  // is staged first, then the model's write fails; neither may appear.
  const int64_t limit = 2048;
  REQUIRE(static_cast<int64_t>(old_config.size()) < limit);
  REQUIRE(static_cast<int64_t>(old_model.size()) > limit);
  const auto other = tiny_clustered(cfg, 8, 2, DType::kF32);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of being killed
    struct rlimit lim = {static_cast<rlim_t>(limit), static_cast<rlim_t>(limit)};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(10);
    try {
      write_reference_checkpoint(path, cfg, dense.refs, other);
      ::_exit(11);  // must not succeed
    } catch (const Error& e) {
      const std::string msg = e.what();
      if (e.code() != StatusCode::kIoError) ::_exit(12);
      if (msg.find("model.safetensors") == std::string::npos) ::_exit(13);
      if (msg.find("disk full or file size limit") == std::string::npos) ::_exit(14);
    } catch (...) {
      ::_exit(15);
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(bytes(fs::path(path) / "model.safetensors") == old_model);
  REQUIRE(bytes(fs::path(path) / "config.json") == old_config);
  int64_t files = 0;
  for (const auto& e : fs::directory_iterator(path)) {
    INFO(e.path().string());
    REQUIRE(e.path().filename().string().find(".tmp.") == std::string::npos);
    ++files;
  }
  REQUIRE(files == 2);
  // The same write without the limit replaces both, and they load together.
  write_reference_checkpoint(path, cfg, dense.refs, other);
  REQUIRE(read_llama_config(path + "/config.json").num_clusters == 8);
  REQUIRE(read_reference_checkpoint(path).clustered.size() == other.size());
}

TEST_CASE("reference checkpoint errors", "[reference]") {
  cluscomp_test::TempDir dir;
  const LlamaConfig cfg = tiny_config();
  const Dense dense(cfg);
  const auto clustered = tiny_clustered(cfg, 16, 4, DType::kF16);
  const std::string path = (dir / "ck").string();
  write_reference_checkpoint(path, cfg, dense.refs, clustered);

  SECTION("config from a different model: index length mismatch") {
    LlamaConfig other = read_llama_config(path + "/config.json");
    other.intermediate_size = 16;
    write_llama_config(path + "/config.json", other);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError,
                 {"mlp", "index has", "entries but (out, in)"});
  }
  SECTION("config with a different K") {
    LlamaConfig other = read_llama_config(path + "/config.json");
    other.num_clusters = 32;
    write_llama_config(path + "/config.json", other);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError,
                 {"[16, 4]", "num_clusters = 32"});
  }
  SECTION("config with a different d") {
    LlamaConfig other = read_llama_config(path + "/config.json");
    other.cluster_dim = 2;
    write_llama_config(path + "/config.json", other);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError, {"cluster_dim = 2"});
  }
  SECTION("config without num_clusters") {
    LlamaConfig other = read_llama_config(path + "/config.json");
    other.num_clusters = 0;
    other.cluster_dim = 0;
    write_llama_config(path + "/config.json", other);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError, {"no num_clusters"});
  }
  SECTION("no safetensors at all") {
    fs::remove(path + "/model.safetensors");
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kNotFound,
                 {"neither model.safetensors"});
  }
  SECTION("index >= K, index missing, unknown matrix, bad dtypes") {
    const std::vector<uint16_t> cl(16 * 4, 0);
    std::vector<int32_t> ix(8 * 8 / 4, 0);
    ix[5] = 16;
    auto write_one = [&](const std::string& name, bool with_index, DType cdt) {
      SafetensorsWriter w;
      w.add(name + ".cluster", cdt, {16, 4}, cl.data(), 16 * 4 * 2);
      if (with_index) w.add(name + ".index", DType::kI32, {16}, ix.data(), ix.size() * 4);
      w.write(path + "/model.safetensors");
    };
    write_one("model.layers.0.self_attn.q_proj", true, DType::kF16);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError,
                 {"q_proj", "index 16 at vector 5", "outside [0, K = 16)"});
    ix[5] = -1;
    write_one("model.layers.0.self_attn.q_proj", true, DType::kF16);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError, {"index -1 at vector 5"});
    write_one("model.layers.0.self_attn.q_proj", false, DType::kF16);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kFormatError,
                 {"'model.layers.0.self_attn.q_proj.cluster' has no", ".index"});
    ix[5] = 0;
    write_one("model.layers.0.other_proj", true, DType::kF16);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kUnsupported,
                 {"cannot tell the (out, in) shape", "other_proj"});
    // A caller-supplied resolver handles it.
    const auto ck = read_reference_checkpoint(path, [](const std::string&, int64_t* o, int64_t* i) {
      *o = 8;
      *i = 8;
      return true;
    });
    REQUIRE(ck.clustered.count("model.layers.0.other_proj.weight") == 1);
    write_one("model.layers.0.self_attn.q_proj", true, DType::kI16);
    expect_error([&] { (void)read_reference_checkpoint(path); }, StatusCode::kUnsupported,
                 {"cluster dtype I16"});
  }
  SECTION("writer refuses what the reference cannot load") {
    auto mixed = tiny_clustered(cfg, 16, 4, DType::kF16);
    mixed.at("model.layers.0.mlp.up_proj.weight") = random_codebook(12, 8, 4, 32, 1, DType::kF16, 3);
    expect_error([&] { write_reference_checkpoint((dir / "x").string(), cfg, {}, mixed); },
                 StatusCode::kUnsupported, {"up_proj", "K = 32", "one K and d per model"});
    auto multi = tiny_clustered(cfg, 16, 4, DType::kF16);
    multi.at("model.layers.0.mlp.up_proj.weight") = random_codebook(12, 8, 4, 16, 2, DType::kF16, 3);
    expect_error([&] { write_reference_checkpoint((dir / "x").string(), cfg, {}, multi); },
                 StatusCode::kUnsupported, {"up_proj", "S = 2"});
    REQUIRE(!fs::exists(dir / "x" / "model.safetensors"));
  }
}

// ---- cluscomp format --------------------------------------------------------------------------

TEST_CASE("cluscomp format round-trips S > 1, odd out, every centroid dtype and code width", "[cluscomp_format]") {
  cluscomp_test::TempDir dir;
  const LlamaConfig cfg = tiny_config();
  const Dense dense(cfg);
  std::map<std::string, CodebookTensor> clustered;
  uint32_t seed = 7;
  const DType dts[] = {DType::kF32, DType::kF16, DType::kBF16};
  for (int bits = 1; bits <= 16; ++bits) {
    const int64_t k = bits == 1 ? 2 : (int64_t{1} << bits) - 1 - (bits % 3);  // not always a power of 2
    const int s = 1 + bits % 3;                                               // S = 1, 2, 3
    const int d = 1 + bits % 5;
    const int64_t out = 3 + bits * 2 + 1;  // odd
    const int64_t in = 5 + bits;
    clustered.emplace("m" + std::to_string(bits) + ".weight",
                      random_codebook(out, in, d, k, s, dts[bits % 3], seed++, bits));
  }
  // A code width wider than needed survives too.
  clustered.emplace("wide.weight", random_codebook(9, 4, 4, 3, 1, DType::kF16, 99, 7));
  const std::string path = (dir / "model.cluscomp.safetensors").string();
  const std::string cfg_text = llama_config_to_json(cfg).dump();
  write_cluscomp_model(path, dense.refs, clustered, {{"cluscomp.config", cfg_text}, {"source", "unit test"}});

  const CluscompModel m = read_cluscomp_model(path);
  REQUIRE(m.format_version == kCluscompFormatVersion);
  REQUIRE(m.clustered.size() == clustered.size());
  for (const auto& kv : clustered) {
    INFO(kv.first);
    require_same(m.clustered.at(kv.first), kv.second);
  }
  require_dense(m.dense, dense);
  REQUIRE(m.metadata.at("source") == "unit test");
  REQUIRE(m.config_json() == cfg_text);
  REQUIRE(parse_llama_config(m.config_json()).hidden_size == cfg.hidden_size);
  const auto meta = nlohmann::json::parse(m.metadata.at("cluscomp.matrix.m5.weight"));
  REQUIRE(meta.at("code_bits") == 5);
  REQUIRE(meta.at("out_pad") == clustered.at("m5.weight").shape().out_pad());
  REQUIRE(meta.at("bpw_packed").get<double>() == clustered.at("m5.weight").shape().bpw_packed());
  // Deterministic: writing the same content twice gives identical bytes.
  const std::string path2 = (dir / "again.safetensors").string();
  write_cluscomp_model(path2, dense.refs, clustered, {{"cluscomp.config", cfg_text}, {"source", "unit test"}});
  REQUIRE(read_text_file(path) == read_text_file(path2));
}

namespace {

/// A hand-built cluscomp file with one matrix "w": lets each test break one thing.
struct Crafted {
  std::string meta;
  std::string version = "1";
  DType cdt = DType::kF32;
  std::vector<int64_t> cshape = {1, 4, 2};
  std::vector<float> centroids = std::vector<float>(8, 0.5f);
  std::vector<uint32_t> codes = {0};
  std::vector<int64_t> code_shape = {1};
  bool with_codes = true;
  Crafted() {
    CodebookShape s;
    s.out = 3;
    s.in = 4;
    s.d = 2;
    s.k = 4;
    s.code_bits = 2;
    meta = cluscomp_matrix_metadata(s);  // 4 rows * 2 vectors = 8 codes * 2 bits = 1 word
    codes[0] = 0xE4E4;                   // codes 0,1,2,3,0,1,2,3
  }
  std::vector<unsigned char> bytes() const {
    SafetensorsWriter w;
    if (!version.empty()) w.set_metadata("cluscomp.format_version", version);
    w.set_metadata("cluscomp.matrix.w", meta);
    w.add("w.centroids", cdt, cshape, centroids.data(), centroids.size() * 4);
    if (with_codes) w.add("w.codes", DType::kU32, code_shape, codes.data(), codes.size() * 4);
    return w.to_bytes();
  }
};

void expect_model_error(const Crafted& c, StatusCode code, std::initializer_list<const char*> fragments) {
  const auto b = c.bytes();
  expect_error([&] { (void)read_cluscomp_model(SafetensorsFile::from_buffer(b.data(), b.size(), "m.st")); },
               code, fragments);
}

nlohmann::json meta_of(const Crafted& c) { return nlohmann::json::parse(c.meta); }

}  // namespace

TEST_CASE("cluscomp format validation", "[cluscomp_format]") {
  {
    const Crafted ok;
    const auto b = ok.bytes();
    const CluscompModel m = read_cluscomp_model(SafetensorsFile::from_buffer(b.data(), b.size(), "m.st"));
    REQUIRE(m.clustered.at("w").codes() == std::vector<uint32_t>{0, 1, 2, 3, 0, 1, 2, 3});
    REQUIRE(m.dense.empty());
  }
  const auto F = StatusCode::kFormatError;
  SECTION("no version / unknown version / garbage version") {
    Crafted c;
    c.version = "";
    expect_model_error(c, F, {"not a cluscomp model"});
    c.version = "2";
    expect_model_error(c, StatusCode::kUnsupported, {"format version 2 is not supported"});
    c.version = "1.0";
    expect_model_error(c, F, {"'1.0' is not a decimal integer"});
  }
  SECTION("matrix metadata malformed") {
    Crafted c;
    c.meta = "{oops";
    expect_model_error(c, F, {"clustered matrix 'w'", "not valid JSON"});
    c.meta = "[]";
    expect_model_error(c, F, {"not a JSON object"});
    auto j = meta_of(Crafted());
    j.erase("k");
    c.meta = j.dump();
    expect_model_error(c, F, {"lacks 'k'"});
    j = meta_of(Crafted());
    j["d"] = -2;
    c.meta = j.dump();
    expect_model_error(c, F, {"'d' must be a non-negative integer"});
    j = meta_of(Crafted());
    j["centroid_dtype"] = "I8";
    c.meta = j.dump();
    expect_model_error(c, StatusCode::kUnsupported, {"centroid dtype I8"});
    j = meta_of(Crafted());
    j["code_bits"] = 1;  // cannot index K = 4
    c.meta = j.dump();
    expect_model_error(c, F, {"1-bit codes cannot index K = 4"});
    j = meta_of(Crafted());
    j["out_pad"] = 6;
    c.meta = j.dump();
    expect_model_error(c, F, {"out_pad 6"});
  }
  SECTION("shapes inconsistent with metadata") {
    Crafted c;
    c.cshape = {2, 2, 2};
    expect_model_error(c, F, {"centroids are F32 [2, 2, 2]", "metadata says F32 [1, 4, 2]"});
    Crafted h;
    h.cdt = DType::kF16;
    h.cshape = {1, 4, 4};
    expect_model_error(h, F, {"centroids are F16"});
  }
  SECTION("word count mismatch") {
    Crafted c;
    c.codes = {0xE4E4, 0};
    c.code_shape = {2};
    expect_model_error(c, F, {"codes are U32 [2], expected U32 [1]"});
    auto j = meta_of(c);
    j["code_words"] = 2;
    c.meta = j.dump();
    expect_model_error(c, F, {"code_words 2 disagrees"});
  }
  SECTION("missing codes tensor") {
    Crafted c;
    c.with_codes = false;
    expect_model_error(c, F, {"'w.codes' is missing"});
  }
  SECTION("codes >= K") {
    Crafted c;
    auto j = meta_of(c);
    j["k"] = 3;  // code 3 now out of range
    c.meta = j.dump();
    c.centroids.resize(6);
    c.cshape = {1, 3, 2};
    expect_model_error(c, F, {"code 3 at vector 3 is not below K = 3"});
  }
  SECTION("non-zero bits past the last code") {
    Crafted c;
    c.codes[0] = 0x1E4E4;
    expect_model_error(c, F, {"bits past the last code"});
  }
  SECTION("writer refuses reserved metadata") {
    cluscomp_test::TempDir dir;
    expect_error([&] { write_cluscomp_model((dir / "x").string(), {}, {}, {{"cluscomp.format_version", "9"}}); },
                 StatusCode::kInvalidArgument, {"reserved"});
  }
}

}  // namespace test_checkpoints
