// The verb table: every verb, its one-line summary and its options with their help. The parser
// accepts exactly these options and `cluscomp --help` / `cluscomp VERB --help` are generated from
// them (options.cpp), so an option is added here and nowhere else. Defaults in the help are the
// ones the verb files and the library options use.
#include <fmt/core.h>

#include "cli.hpp"

namespace cli {

namespace {

int run_version(const Invocation&) {
  fmt::print("cluscomp {}\n", CLUSCOMP_VERSION_STRING);
  return 0;
}

OptionSpec threads_option() { return {"threads", "N", "worker threads (default 0: all hardware threads)"}; }

// recover and finetune share these (training.cpp reads them).
std::vector<OptionSpec> training_options() {
  return {
      {"samples", "N", "training windows taken from TEXT at seeded offsets (default 16)"},
      {"window", "N", "tokens per window (default 256)"},
      {"epochs", "N", "passes over the windows, 1..10000 (default 1)"},
      {"steps", "N", "stop after N optimiser steps (default 0: epochs x ceil(samples / grad-accum))"},
      {"grad-accum", "N", "windows per optimiser step (default 1)"},
      {"lr", "X", "AdamW learning rate (default 0.001)"},
      {"weight-decay", "X", "AdamW weight decay (default 0)"},
      {"seed", "N", "seed of the window offsets (default 1234)"},
      {"recompute", nullptr, "recompute each block's activations in the backward pass (less memory)"},
      {"no-eval", nullptr, "skip the loss measurement over the training windows before and after"},
      {"loss-csv", "FILE", "write the loss of every step as CSV (step,epoch,loss)"},
      threads_option(),
      device_option(),
  };
}

std::vector<VerbSpec> make_verbs() {
  std::vector<VerbSpec> v;
  v.push_back({"inspect", "MODEL", "architecture and a per-tensor summary (GGUF, safetensors, cluscomp format)", {}, "",
               run_inspect});
  v.push_back({"roundtrip", "MODEL.gguf",
               "checks our writers: MODEL written back and re-read, every value compared bit for bit",
               {{"out", "DIR", "directory for model.gguf, model.safetensors and config.json", true}},
               "model.gguf: through our GGUF writer; model.safetensors + config.json: dequantised to fp32, HF names,\n"
               "through our safetensors writer\n",
               run_roundtrip});
  v.push_back({"eval", "MODEL TEXT", "perplexity of MODEL on a UTF-8 text file (CLUSCOMP.md §4)",
               {
                   {"window", "N", "tokens per window (default 0: min(context, 2048))"},
                   {"stride", "N", "tokens between window starts (default 0: the window, no overlap)"},
                   {"max-windows", "N", "evaluate at most N windows from the start (default 0: all)"},
                   threads_option(),
                   device_option(),
                   dense_fp32_option(),
               },
               "", run_eval});
  v.push_back({"generate", "MODEL PROMPT",
               "streams a continuation of PROMPT, through the chat template when the model declares one",
               {
                   {"max-tokens", "N", "tokens to generate at most (default 64)"},
                   {"temperature", "T", "sampling temperature (default 0: greedy)"},
                   {"top-k", "K", "sample among the K most likely tokens (default 0: all)"},
                   {"top-p", "P", "sample among the smallest set whose probability reaches P (default 1: all)"},
                   {"seed", "S", "sampling seed (default 0)"},
                   {"raw", nullptr, "plain continuation of PROMPT, no chat template"},
                   threads_option(),
                   device_option(),
                   dense_fp32_option(),
               },
               "", run_generate});
  v.push_back(
      {"compress", "MODEL",
       "clusters the projection matrices (CLUSCOMP.md §1), or quantises them with --method rtn; resumable",
       {
           {"out", "OUT", "the compressed model (cluscomp format, or a directory with --reference-layout)", true},
           {"bpw", "B", "target bits per weight: chooses d, K and S per matrix (not with --d/--k/--s/--per-kind)"},
           {"d", "N", "vector length (default 4)"},
           {"k", "N", "codebook size K (default 4096)"},
           {"s", "N", "codebooks per matrix S (default 1)"},
           {"per-kind", "SPEC", "per-kind overrides, \"KINDS:d=N,k=N,s=N,code-bits=N,centroid-dtype=T;KINDS:...\""},
           {"search-d", "LIST", "the d values --bpw tries, e.g. 4,8 (each in 1..16)"},
           {"method", "M", "cluscomp or rtn (default cluscomp)"},
           {"bits", "N", "rtn: bits per weight (default 4)"},
           {"group-size", "N", "rtn: weights per scale/min group (default 128)"},
           {"matrices", "PATTERNS", "which matrices: q,k,v,o,gate,up,down,attn,mlp,all (default all)"},
           {"iterations", "N", "k-means iterations, 0..1000 (default 20)"},
           {"seed", "N", "k-means seed; also the --activations window offsets (default 1234)"},
           {"code-bits", "N", "bits per stored code (default 0: ceil(log2 K))"},
           {"centroid-dtype", "T", "centroid storage: f16, bf16 or f32 (default f16)"},
           {"dense-dtype", "T", "storage of the tensors that stay dense: f16, bf16 or f32 (default f16)"},
           {"reference-layout", nullptr, "write the reference implementation's layout (S = 1, one K and d)"},
           {"work-dir", "D", "where finished matrices are kept for a resume (default OUT.work)"},
           threads_option(),
           {"jobs", "N",
            "matrices compressed at once, threads / N threads each (default 0: min(threads, 2)); the output is "
            "the same for any N"},
           {"activations", "TEXT",
            "activation-aware clustering, input statistics from windows of TEXT (not with rtn or "
            "--reference-layout)"},
           {"act-samples", "N", "--activations: windows (default 16)"},
           {"act-window", "N", "--activations: tokens per window (default 256)"},
           {"importance-damp", "X", "--activations: damping, a fraction of the mean importance (default 0.01)"},
           device_option(),
       },
       "", run_compress});
  v.push_back({"calibrate", "TEACHER STUDENT TEXT",
               "block-wise codebook finetuning of a compressed STUDENT against TEACHER (CLUSCOMP.md §2); resumable",
               {
                   {"out", "OUT", "the calibrated model", true},
                   {"samples", "N", "calibration windows taken from TEXT at seeded offsets (default 16)"},
                   {"window", "N", "tokens per window (default 256)"},
                   {"epochs", "N", "passes over the windows per block, 1..10000 (default 2)"},
                   {"lr", "X", "AdamW learning rate (default 0.005)"},
                   {"weight-decay", "X", "AdamW weight decay (default 0.1)"},
                   {"aug-loss", nullptr, "also match the teacher block run on the compressed stream (a second MSE term)"},
                   {"seed", "N", "seed of the window offsets (default 1234)"},
                   {"work-dir", "D", "where finished blocks are kept for a resume (default OUT.work)"},
                   threads_option(),
                   device_option(),
               },
               "STUDENT: a cluscomp-format file compressed from TEACHER; TEXT: calibration text\n"
               "an interrupted run resumes from OUT.work's finished blocks, also at another --lr\n",
               run_calibrate});
  std::vector<OptionSpec> recover_opts = {
      {"out", "OUT", "the trained model, written at the end", true},
      {"loss", "L", "kd (distillation from TEACHER) or ce (cross-entropy on TEXT) (default kd)"},
      {"train", "WHAT", "codebooks or all (default codebooks)"},
  };
  for (const OptionSpec& o : training_options()) recover_opts.push_back(o);
  v.push_back({"recover", "TEACHER STUDENT TEXT",
               "end-to-end training of a compressed STUDENT (CLUSCOMP.md §3); not resumable", recover_opts,
               "--train all: codebooks, norms, embedding, untied lm_head; projection biases (e.g. Qwen2 q/k/v)\n"
               "             and unclustered (dense) projection matrices stay frozen\n",
               run_recover});
  std::vector<OptionSpec> finetune_opts = {{"out", "OUT", "the finetuned model, written at the end", true}};
  for (const OptionSpec& o : training_options()) finetune_opts.push_back(o);
  v.push_back({"finetune", "STUDENT TEXT",
               "codebook-only finetuning of a compressed STUDENT on TEXT (causal LM loss); not resumable",
               finetune_opts, "", run_finetune});
  v.push_back({"embed-tokenizer", "COMPRESSED SOURCE",
               "stores SOURCE's tokenizer in COMPRESSED, for files compressed before tokenizers were embedded",
               {{"out", "OUT", "write the result here (default: COMPRESSED, in place)"}},
               "tensors and other metadata unchanged\n", run_embed_tokenizer});
  v.push_back({"version", "", "prints the version", {}, "", run_version});
  return v;
}

}  // namespace

const std::vector<VerbSpec>& verbs() {
  static const std::vector<VerbSpec> table = make_verbs();
  return table;
}

}  // namespace cli
