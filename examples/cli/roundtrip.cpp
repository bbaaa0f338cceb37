// cluscomp roundtrip MODEL.gguf --out DIR: writes a GGUF model back through our GGUF writer and,
// dense fp32, through our safetensors writer (+ config.json), re-reads both and checks every value
// bit for bit.
#include <fmt/core.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/io/gguf.hpp"
#include "cluscomp/io/gguf_llama.hpp"
#include "cluscomp/io/gguf_quant.hpp"
#include "cluscomp/io/gguf_writer.hpp"
#include "cluscomp/io/hf_config.hpp"
#include "cluscomp/io/safetensors.hpp"

namespace cc = cluscomp;
namespace fs = std::filesystem;

namespace cli {
namespace {

bool same_value(const cc::GgufValue& a, const cc::GgufValue& b) {
  if (a.type != b.type || a.bits != b.bits || a.str != b.str || a.items.size() != b.items.size())
    return false;
  for (size_t i = 0; i < a.items.size(); ++i)
    if (!same_value(a.items[i], b.items[i])) return false;
  return true;
}

int roundtrip_gguf(const std::string& path, const fs::path& out) {
  fs::create_directories(out);
  cc::GgufReader g(path);

  // 1. GGUF -> our GGUF writer -> our reader: metadata and tensor bytes identical.
  auto t0 = Clock::now();
  const std::string gguf_out = (out / "model.gguf").string();
  {
    cc::GgufWriter w;
    for (const auto& kv : g.metadata()) w.add(kv.key, kv.value);
    for (const auto& t : g.tensors())
      w.add_tensor_view(t.name, t.type, t.ne, g.tensor_data(t), t.n_bytes);
    w.write_file(gguf_out);
  }
  const double gguf_write_s = seconds_since(t0);
  {
    cc::GgufReader r(gguf_out);
    if (r.metadata().size() != g.metadata().size() || r.tensors().size() != g.tensors().size())
      throw cc::Error(cc::StatusCode::kFormatError, gguf_out + ": key or tensor count differs");
    for (size_t i = 0; i < g.metadata().size(); ++i)
      if (r.metadata()[i].key != g.metadata()[i].key ||
          !same_value(r.metadata()[i].value, g.metadata()[i].value))
        throw cc::Error(cc::StatusCode::kFormatError,
                        gguf_out + ": metadata '" + g.metadata()[i].key + "' differs after round trip");
    for (size_t i = 0; i < g.tensors().size(); ++i) {
      const auto &a = g.tensors()[i], &b = r.tensors()[i];
      if (a.name != b.name || a.type != b.type || a.ne != b.ne ||
          std::memcmp(g.tensor_data(a), r.tensor_data(b), a.n_bytes) != 0)
        throw cc::Error(cc::StatusCode::kFormatError,
                        gguf_out + ": tensor '" + a.name + "' differs after round trip");
    }
  }
  fmt::print("GGUF        -> {} ({:.1f} MiB, written in {:.2f} s): {} keys and {} tensors identical\n",
             gguf_out, static_cast<double>(fs::file_size(gguf_out)) / (1 << 20), gguf_write_s,
             g.metadata().size(), g.tensors().size());

  // 2. GGUF -> dequantised fp32, HF names and shapes -> our safetensors writer + config.json.
  t0 = Clock::now();
  const std::string st_out = (out / "model.safetensors").string();
  const cc::LlamaConfig cfg = cc::llama_config_from_gguf(g);
  {
    cc::SafetensorsWriter w;
    for (const auto& t : g.tensors()) {
      std::string hf = cc::hf_name_from_gguf(t.name);
      if (hf.empty()) hf = t.name;
      const cc::GgufTensorInfo* info = &t;
      w.add_streamed(hf, cc::DType::kF32, torch_shape(t.ne), [&g, info](const auto& sink) {
        const std::vector<float> v = cc::dequantize_tensor(g, *info);
        sink(v.data(), v.size() * sizeof(float));
      });
    }
    w.set_metadata("format", "pt");
    w.set_metadata("cluscomp.source", fs::path(path).filename().string());
    w.write(st_out);
  }
  cc::write_llama_config((out / "config.json").string(), cfg);
  const double st_write_s = seconds_since(t0);
  {
    cc::SafetensorsFile f = cc::SafetensorsFile::open(st_out);
    if (f.tensors().size() != g.tensors().size())
      throw cc::Error(cc::StatusCode::kFormatError, st_out + ": tensor count differs");
    for (const auto& t : g.tensors()) {
      std::string hf = cc::hf_name_from_gguf(t.name);
      if (hf.empty()) hf = t.name;
      const cc::TensorRef& r = f.at(hf);
      const std::vector<float> v = cc::dequantize_tensor(g, t);
      if (r.dtype != cc::DType::kF32 || r.shape != torch_shape(t.ne) ||
          r.nbytes != v.size() * sizeof(float) || std::memcmp(r.data, v.data(), r.nbytes) != 0)
        throw cc::Error(cc::StatusCode::kFormatError,
                        st_out + ": tensor '" + hf + "' differs from the dequantised GGUF tensor");
    }
    const cc::LlamaConfig back = cc::read_llama_config((out / "config.json").string());
    if (back.hidden_size != cfg.hidden_size || back.num_hidden_layers != cfg.num_hidden_layers)
      throw cc::Error(cc::StatusCode::kFormatError, "config.json differs after round trip");
  }
  fmt::print("fp32 HF     -> {} ({:.1f} MiB, written in {:.2f} s) + config.json: {} tensors bit-identical "
             "to the dequantised GGUF\n",
             st_out, static_cast<double>(fs::file_size(st_out)) / (1 << 20), st_write_s,
             g.tensors().size());
  return 0;
}

}  // namespace

int run_roundtrip(const Invocation& inv) {
  const std::string& model = inv.args[0];
  const std::string out = inv.opt.get("out", "");
  if (out.empty()) {
    fmt::print(stderr, "{}", verb_help_text(*inv.verb));
    return 2;
  }
  if (!cc::is_gguf_file(model)) {
    fmt::print(stderr, "cluscomp roundtrip: {} is not a GGUF file\n", model);
    return 2;
  }
  return roundtrip_gguf(model, out);
}

}  // namespace cli
