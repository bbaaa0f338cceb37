// Option parsing and the usage texts, both driven by the verb table (verbs.cpp).
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "cli.hpp"
#include "cluscomp/core/error.hpp"
#include "cluscomp/host/device_status.hpp"

namespace cc = cluscomp;

namespace cli {

const VerbSpec* find_verb(const std::string& name) {
  for (const VerbSpec& v : verbs())
    if (name == v.name) return &v;
  return nullptr;
}

std::string Options::get(const std::string& k, const std::string& dflt) const {
  auto it = values.find(k);
  return it == values.end() ? dflt : it->second;
}

int64_t Options::get_int(const std::string& k, int64_t dflt) const {
  auto it = values.find(k);
  if (it == values.end()) return dflt;
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != it->second.size() || it->second.empty())
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--" + k + " expects an integer, got '" + it->second + "'");
  return v;
}

double Options::get_double(const std::string& k, double dflt) const {
  auto it = values.find(k);
  if (it == values.end()) return dflt;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != it->second.size() || it->second.empty() || !std::isfinite(v))
    throw cc::Error(cc::StatusCode::kInvalidArgument, "--" + k + " expects a finite number, got '" + it->second + "'");
  return v;
}

bool parse_options(int argc, char** argv, int first, const VerbSpec& verb, Options* out) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") return false;
    if (a.rfind("--", 0) != 0) throw cc::Error(cc::StatusCode::kInvalidArgument, "unexpected argument '" + a + "'");
    const std::string name = a.substr(2);
    const auto spec = std::find_if(verb.options.begin(), verb.options.end(),
                                   [&](const OptionSpec& o) { return name == o.name; });
    if (spec == verb.options.end()) throw cc::Error(cc::StatusCode::kInvalidArgument, "unknown option '" + a + "'");
    if (spec->value == nullptr) {
      out->flags[name] = true;
    } else {
      if (i + 1 >= argc) throw cc::Error(cc::StatusCode::kInvalidArgument, a + " needs a value");
      out->values[name] = argv[++i];
    }
  }
  return true;
}

OptionSpec device_option() {
  return {"device", "cpu|cuda",
          "where the work runs (default cpu); cuda needs a build with the CUDA backend and a GPU"};
}

OptionSpec dense_fp32_option() {
  return {"dense-fp32", nullptr,
          "hold the embedding, lm_head and dense projections as fp32 (the runtime before issue 23) instead of "
          "the type the file stores them in"};
}

int epochs_option(const Options& opt, int dflt) {
  const int64_t epochs = opt.get_int("epochs", dflt);
  if (epochs < 1 || epochs > 10000) throw cc::Error(cc::StatusCode::kInvalidArgument, "--epochs must be in 1..10000");
  return static_cast<int>(epochs);
}

cc::Device device_for(const Options& opt, const char* operation) {
  cc::Device d = cc::Device::kCpu;
  if (opt.has("device") && !cc::parse_device(opt.values.at("device").c_str(), &d))
    throw cc::Error(cc::StatusCode::kInvalidArgument,
                    "--device must be cpu or cuda, got '" + opt.values.at("device") + "'");
  cc::throw_if_error(cc::backend_status(d, operation));
  return d;
}

// ---- usage texts -----------------------------------------------------------------------------------

namespace {

std::string option_synopsis(const OptionSpec& o) {
  return std::string("--") + o.name + (o.value ? std::string(" ") + o.value : std::string());
}

// "cluscomp compress MODEL --out OUT [options]"
std::string synopsis(const VerbSpec& v) {
  std::string s = std::string("cluscomp ") + v.name;
  if (*v.args) s += std::string(" ") + v.args;
  bool optional = false;
  for (const OptionSpec& o : v.options) {
    if (o.required)
      s += " " + option_synopsis(o);
    else
      optional = true;
  }
  return optional ? s + " [options]" : s;
}

// Words of `text` in lines that end before column kColumns; continuation lines indented by `indent`.
constexpr size_t kColumns = 100;
std::string wrap(const std::string& text, size_t indent) {
  std::string out;
  size_t column = indent, pos = 0;
  while (pos < text.size()) {
    const size_t end = std::min(text.find(' ', pos), text.size());
    const std::string word = text.substr(pos, end - pos);
    pos = end + 1;
    if (column > indent && column + 1 + word.size() > kColumns) {
      out += "\n" + std::string(indent, ' ');
      column = indent;
    } else if (column > indent) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
  }
  return out;
}

const char* kModelNote =
    "MODEL: a .gguf file, a .safetensors file (HF or cluscomp format); eval/generate also\n"
    "       take an HF model directory (config.json + model.safetensors + tokenizer.json)\n";

}  // namespace

std::string usage_text() {
  std::string s = "usage: cluscomp VERB ARGS [options]\n"
                  "       cluscomp VERB --help    the verb's options\n"
                  "verbs:\n";
  for (const VerbSpec& v : verbs()) s += fmt::format("  {}\n      {}\n", synopsis(v), wrap(v.summary, 6));
  return s + kModelNote;
}

std::string verb_help_text(const VerbSpec& v) {
  std::string s = fmt::format("usage: {}\n{}\n", synopsis(v), wrap(v.summary, 0));
  if (*v.details) s += v.details;
  if (!v.options.empty()) {
    size_t width = 0;
    for (const OptionSpec& o : v.options) width = std::max(width, option_synopsis(o).size());
    s += "options:\n";
    for (const OptionSpec& o : v.options) {
      s += fmt::format("  {:<{}}  ", option_synopsis(o), width);
      s += wrap(o.help, width + 4) + "\n";
    }
  }
  if (std::string(v.args).find("MODEL") != std::string::npos || std::string(v.args).find("TEACHER") != std::string::npos)
    s += kModelNote;
  return s;
}

}  // namespace cli
