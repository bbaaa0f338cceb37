#pragma once
// The command line's shared pieces: the verb table's types, the parsed arguments a verb gets, and
// the helpers several verbs print with. The table itself is verbs.cpp; one file per verb
// (inspect.cpp, eval.cpp, ...) holds that verb's run function.
//
// The table is the only place a verb's options are written: the parser accepts exactly the
// options listed there and the usage/--help texts are generated from it, so the two cannot drift.

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluscomp/core/config.hpp"
#include "cluscomp/core/device.hpp"

CLUSCOMP_NAMESPACE_BEGIN
class LlamaModel;
enum class DenseWeights;  // model/llama.hpp
CLUSCOMP_NAMESPACE_END

namespace cli {

// ---- the verb table -------------------------------------------------------------------------------

struct OptionSpec {
  const char* name;   // without the leading "--"
  const char* value;  // the value's placeholder in the help ("N", "FILE"); nullptr: a flag
  const char* help;   // one line; the default belongs here
  bool required = false;  // shown outside the brackets in the synopsis; the verb checks it
};

struct Invocation;

struct VerbSpec {
  const char* name;
  const char* args;     // positional arguments, e.g. "TEACHER STUDENT TEXT" ("" for none)
  const char* summary;  // one line, in `cluscomp --help` and the verb's help
  std::vector<OptionSpec> options;
  const char* details;  // further lines for the verb's help ("" for none)
  int (*run)(const Invocation&);
};

// Every verb, in the order `cluscomp --help` lists them (verbs.cpp).
const std::vector<VerbSpec>& verbs();
const VerbSpec* find_verb(const std::string& name);

// The texts generated from the table: the whole command line's and one verb's.
std::string usage_text();
std::string verb_help_text(const VerbSpec& v);

// ---- parsed arguments ---------------------------------------------------------------------------

// "--name value" options after the positional arguments, checked against the verb's table entry.
struct Options {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;

  bool has(const std::string& k) const { return values.count(k) > 0; }
  std::string get(const std::string& k, const std::string& dflt) const;
  // Integers and numbers name the option when the value is not one; numbers refuse nan and inf
  // (std::stod accepts them, and a NaN passes every "<= 0" range check after this).
  int64_t get_int(const std::string& k, int64_t dflt) const;
  double get_double(const std::string& k, double dflt) const;
  bool flag(const std::string& k) const { return flags.count(k) > 0; }
};

// Parses argv[first..argc) against the verb's options: an unknown option, a missing value or a
// stray positional argument is an Error naming it. False when --help or -h was asked for.
bool parse_options(int argc, char** argv, int first, const VerbSpec& verb, Options* out);

struct Invocation {
  const VerbSpec* verb = nullptr;
  std::vector<std::string> args;  // the positional arguments, as many as verb->args names
  Options opt;
};

// --device (cpu unless given), refused with the allowed values when it is not one, then the
// backend's Status for `operation` (host/device_status.hpp) thrown as an Error when not ok:
// verbs that compute call this before any work.
cluscomp::Device device_for(const Options& opt, const char* operation);

// --epochs for the training verbs (calibrate, recover, finetune): 1..10000, else an Error.
int epochs_option(const Options& opt, int dflt);

// The --device entry every computing verb lists in the table.
OptionSpec device_option();

// --dense-fp32 of the inference verbs (eval, generate): without it their models keep dense
// weights in the file's stored type (DenseWeights::kStored).
OptionSpec dense_fp32_option();
cluscomp::DenseWeights dense_weights_for(const Options& opt);

// The verbs, one file each (inspect.cpp, roundtrip.cpp, ...): the table's run functions.
int run_inspect(const Invocation& inv);
int run_roundtrip(const Invocation& inv);
int run_eval(const Invocation& inv);
int run_generate(const Invocation& inv);
int run_compress(const Invocation& inv);
int run_calibrate(const Invocation& inv);
int run_recover(const Invocation& inv);
int run_finetune(const Invocation& inv);
int run_embed_tokenizer(const Invocation& inv);

// ---- helpers several verbs print with ------------------------------------------------------------

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0);
std::string format_seconds(double s);
void progress_bar(int64_t done, int64_t total, const std::string& tail);

// GGUF ne (fastest first) -> PyTorch order (slowest first).
std::vector<int64_t> torch_shape(const std::vector<int64_t>& ne);

// The "loaded MODEL in ..." line on stderr.
void print_loaded(const std::string& path, double seconds, const cluscomp::LlamaModel& m);
// Loads a model for `device` (already checked by device_for) and prints the "loaded" line. The
// training verbs pass DenseWeights::kFp32 (they read the weights as fp32); eval and generate
// pass dense_weights_for(opt).
cluscomp::LlamaModel load_model_timed(const std::string& path, int threads, cluscomp::Device device,
                                      cluscomp::DenseWeights dense);

// A text file the user pointed at: it must exist, be non-empty and be valid UTF-8.
std::string read_utf8_text(const std::string& path);

// Training text (calibrate, recover, finetune, compress --activations) tokenised with the model's
// tokenizer, no BOS: the windows are slices of one long token stream, as the reference's loader
// cuts them.
std::vector<int32_t> read_training_tokens(const std::string& model_path, const std::string& text_path);

}  // namespace cli
