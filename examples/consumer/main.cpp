// Embeds cluscomp the way an inference engine would: build a tiny clustered matrix, decode one
// weight, and report bits per weight. Exits non-zero if anything is off.
#include <cstdio>
#include <cstdlib>

#include "cluscomp/codebook/codebook_tensor.hpp"

int main() {
  cluscomp::CodebookShape shape;
  shape.out = 6;  // not a multiple of d: exercises the padding
  shape.in = 3;
  shape.d = 4;
  shape.k = 5;
  shape.centroid_dtype = cluscomp::DType::kBF16;
  cluscomp::CodebookTensor t(shape);
  for (int c = 0; c < 5; ++c)
    for (int j = 0; j < 4; ++j) t.set_centroid(0, c, j, static_cast<float>(10 * c + j));
  for (int64_t v = 0; v < shape.num_vectors(); ++v) t.set_code(v, static_cast<uint32_t>(v % 5));
  const auto view = t.view<cluscomp::bf16>();
  // W[5, 2]: input row 2, vector j = 1 -> v = 2 * 2 + 1 = 5 -> code 0 -> component 1 -> 1.0
  const float w = view.weight(5, 2);
  std::printf("cluscomp %s consumer: W[5,2] = %g, %d-bit codes, %.4f bpw packed\n",
              CLUSCOMP_VERSION_STRING, static_cast<double>(w), t.code_bits(), shape.bpw_packed());
  return w == 1.0f ? EXIT_SUCCESS : EXIT_FAILURE;
}
