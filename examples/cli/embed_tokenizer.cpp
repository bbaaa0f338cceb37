// cluscomp embed-tokenizer COMPRESSED SOURCE: stores SOURCE's tokenizer in a compressed file written
// before tokenizers were embedded.
#include <fmt/core.h>

#include <string>

#include "cli.hpp"
#include "cluscomp/io/tokenizer/model_tokenizer.hpp"

namespace cc = cluscomp;

namespace cli {

int run_embed_tokenizer(const Invocation& inv) {
  const std::string &model_path = inv.args[0], &source_path = inv.args[1];
  const Options& opt = inv.opt;
  const std::string out = opt.values.count("out") ? opt.values.at("out") : model_path;
  const cc::Tokenizer tok = cc::load_model_tokenizer(source_path);
  cc::embed_model_tokenizer(model_path, tok, out);
  fmt::print("{}: embedded the tokenizer of {} ({} tokens{})\n", out, source_path, tok.vocab_size(),
             tok.chat_template().empty() ? "" : ", chat template");
  return 0;
}

}  // namespace cli
